//! The synthetic generator: ISIC layout, determinism, lesions, and a saliency map that finds the lesion.

use dataset::index::{IndexOptions, IsicIndex};
use dataset::synth::{generate_synthetic_isic, SynthOptions};
use dataset::IsicClass;

fn opts(seed: u64) -> SynthOptions {
    SynthOptions {
        scale: 0.02,
        width: 96,
        height: 72,
        seed,
        ..SynthOptions::default()
    }
}

#[test]
fn writes_a_readable_isic_layout_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let summary = generate_synthetic_isic(&a, &opts(5), false).unwrap();
    generate_synthetic_isic(&b, &opts(5), false).unwrap();
    generate_synthetic_isic(&c, &opts(6), false).unwrap();
    let index = IsicIndex::read(&a, &IndexOptions::default()).unwrap();
    assert_eq!(index.entries.len(), summary.images);
    assert_eq!(index.class_counts(), summary.counts);
    assert!(index.warnings.is_empty(), "{:?}", index.warnings);
    assert!(summary.multi_image_lesions > 0 && summary.lesions < summary.images);
    let mut differs = false;
    for e in &index.entries {
        let rel = e.path.strip_prefix(&a).unwrap();
        let bytes = std::fs::read(&e.path).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(b.join(rel)).unwrap(),
            "{} differs between runs",
            e.image
        );
        differs |= c.join(rel).exists() && bytes != std::fs::read(c.join(rel)).unwrap();
        assert_eq!(image::image_dimensions(&e.path).unwrap(), (96, 72));
    }
    assert!(differs, "another seed gives other images");
    let err = generate_synthetic_isic(&a, &opts(5), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--force"), "{err}");
}

/// The lesion (centre of the first view) is darker than the skin and is where the saliency is.
#[test]
fn saliency_concentrates_on_the_lesion() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    generate_synthetic_isic(
        &root,
        &SynthOptions {
            scale: 0.01,
            width: 160,
            height: 120,
            ..SynthOptions::default()
        },
        false,
    )
    .unwrap();
    let index = IsicIndex::read(&root, &IndexOptions::default()).unwrap();
    let mut centre_wins = 0;
    let mut n = 0;
    for e in index.entries.iter().take(60) {
        let img = image::open(&e.path).unwrap().to_rgb8();
        let map = saliency::fine_grained_saliency(&img);
        // Mean saliency in the central third vs the border frame.
        let (mut inner, mut ni, mut outer, mut no) = (0f64, 0f64, 0f64, 0f64);
        for (x, y, p) in map.enumerate_pixels() {
            let central = (53..107).contains(&x) && (40..80).contains(&y);
            let frame = !(16..144).contains(&x) || !(12..108).contains(&y);
            if central {
                inner += p.0[0] as f64;
                ni += 1.0;
            } else if frame {
                outer += p.0[0] as f64;
                no += 1.0;
            }
        }
        n += 1;
        if inner / ni > outer / no {
            centre_wins += 1;
        }
    }
    assert!(
        centre_wins * 10 >= n * 8,
        "saliency on the lesion in {centre_wins} of {n} images"
    );
    assert!(index.class_counts()[IsicClass::Df.label()] >= 24);
}
