//! `prepare-isic` end to end on small on-disk layouts: the happy path on both layouts, determinism,
//! the saliency cache, and every bad input the tool must name.

mod common_isic;

use std::path::Path;

use common_isic::*;
use dataset::index::{isic_names, IndexOptions, IsicIndex};
use dataset::prepare::{prepare_split, PrepareOptions};
use dataset::split_files::{read_split_csv, saliency_path, SplitManifest, SplitProtocol};
use dataset::synth::{generate_synthetic_isic, SynthOptions};
use dataset::DatasetError;

fn small_protocol() -> SplitProtocol {
    SplitProtocol::Balanced {
        val_per_class: 2,
        test_per_class: 3,
    }
}

fn options(root: &Path, out: &Path) -> PrepareOptions {
    PrepareOptions {
        protocol: small_protocol(),
        ..PrepareOptions::new(root, out)
    }
}

fn gt_path(root: &Path) -> std::path::PathBuf {
    root.join(isic_names::TRAIN_GT_DIR)
        .join(isic_names::TRAIN_GT_CSV)
}

#[test]
fn isic_layout_prepares_with_maps_and_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rows = balanced_rows(8);
    let root = isic_layout(dir.path(), &as_refs(&rows));
    let out = dir.path().join("split");
    let report = prepare_split(&options(&root, &out)).unwrap();
    assert_eq!(report.manifest.counts.val, [2; 7]);
    assert_eq!(report.manifest.counts.test, [3; 7]);
    assert_eq!(report.manifest.counts.train, [3; 7]);
    assert_eq!(report.maps_written, 56);
    let train = read_split_csv(&out.join("train.csv")).unwrap();
    for r in &train {
        assert!(r.path.is_absolute() && r.path.is_file());
        let map = image::open(saliency_path(&out, &r.image))
            .unwrap()
            .to_luma8();
        assert_eq!(map.dimensions(), (24, 18));
    }
    assert_eq!(SplitManifest::read(&out).unwrap(), report.manifest);
}

#[test]
fn rerun_refuses_without_force_and_recomputes_no_map() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let out = dir.path().join("split");
    prepare_split(&options(&root, &out)).unwrap();
    let before = std::fs::read(out.join("train.csv")).unwrap();
    let err = prepare_split(&options(&root, &out)).unwrap_err();
    assert!(matches!(err, DatasetError::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"));
    let again = prepare_split(&PrepareOptions {
        force: true,
        ..options(&root, &out)
    })
    .unwrap();
    assert_eq!(again.maps_written, 0);
    assert_eq!(again.maps_up_to_date, 56);
    assert_eq!(std::fs::read(out.join("train.csv")).unwrap(), before);
}

#[test]
fn missing_image_is_listed_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    std::fs::remove_file(root.join(isic_names::TRAIN_INPUT).join("ISIC_00003.jpg")).unwrap();
    let err = prepare_split(&options(&root, &dir.path().join("a")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 image file(s)") && err.contains("ISIC_00003.jpg"),
        "{err}"
    );
    let report = prepare_split(&PrepareOptions {
        skip_missing: true,
        ..options(&root, &dir.path().join("b"))
    })
    .unwrap();
    assert_eq!(
        report.manifest.skipped_missing,
        vec!["ISIC_00003".to_string()]
    );
    assert!(report.warnings.iter().any(|w| w.contains("ISIC_00003")));
    assert!(
        !dir.path().join("a").join("train.csv").exists(),
        "a failed run writes no CSV"
    );
}

#[test]
fn corrupt_and_truncated_jpegs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let input = root.join(isic_names::TRAIN_INPUT);
    std::fs::write(input.join("ISIC_10001.jpg"), b"this is not a jpeg").unwrap();
    let good = std::fs::read(input.join("ISIC_20002.jpg")).unwrap();
    std::fs::write(input.join("ISIC_20002.jpg"), &good[..good.len() / 3]).unwrap();
    let out = dir.path().join("split");
    let err = prepare_split(&options(&root, &out))
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 image(s) could not be decoded"), "{err}");
    assert!(
        err.contains("ISIC_10001.jpg") && err.contains("ISIC_20002.jpg"),
        "{err}"
    );
    assert!(!out.join("train.csv").exists() && !out.join("split.json").exists());
}

#[test]
fn label_csv_errors_name_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(3)));
    let gt = gt_path(&root);
    let text = std::fs::read_to_string(&gt).unwrap();
    let read = || {
        IsicIndex::read(&root, &IndexOptions::default())
            .unwrap_err()
            .to_string()
    };

    // Not one-hot (two ones) on the third data row = line 4.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("0.0", "1.0", 1);
    std::fs::write(&gt, lines.join("\n") + "\n").unwrap();
    let err = read();
    assert!(
        err.contains("ISIC2018_Task3_Training_GroundTruth.csv")
            && err.contains("row 4")
            && err.contains("one-hot"),
        "{err}"
    );

    // No class set.
    let zeros = format!(
        "{},0.0,0.0,0.0,0.0,0.0,0.0,0.0",
        lines[1].split(',').next().unwrap()
    );
    let mut l2: Vec<String> = text.lines().map(str::to_owned).collect();
    l2[1] = zeros;
    std::fs::write(&gt, l2.join("\n") + "\n").unwrap();
    assert!(read().contains("no class is 1"));

    // Duplicate image id.
    let mut l3: Vec<String> = text.lines().map(str::to_owned).collect();
    l3.push(l3[1].clone());
    std::fs::write(&gt, l3.join("\n") + "\n").unwrap();
    let err = read();
    assert!(err.contains("duplicate image id ISIC_00000"), "{err}");

    // Wrong header.
    std::fs::write(&gt, text.replacen("image,MEL", "img,MEL", 1)).unwrap();
    let err = read();
    assert!(
        err.contains("unexpected header") && err.contains("img"),
        "{err}"
    );
    // Unknown extra column.
    std::fs::write(&gt, text.replacen("VASC", "VASC,UNK", 1)).unwrap();
    assert!(read().contains("unexpected header"));
}

#[test]
fn image_without_lesion_is_its_own_lesion_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let groups = root.join(isic_names::LESION_GROUPINGS);
    let text = std::fs::read_to_string(&groups).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("ISIC_30005"))
        .collect();
    std::fs::write(&groups, kept.join("\n") + "\n").unwrap();
    let index = IsicIndex::read(&root, &IndexOptions::default()).unwrap();
    let e = index
        .entries
        .iter()
        .find(|e| e.image == "ISIC_30005")
        .unwrap();
    assert_eq!(e.lesion_id, "ISIC_30005");
    assert!(
        index
            .warnings
            .iter()
            .any(|w| w.contains("ISIC_30005") && w.contains("own lesion")),
        "{:?}",
        index.warnings
    );
}

#[test]
fn too_small_class_and_unknown_root_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = balanced_rows(8);
    rows.retain(|(img, c, _)| {
        *c != 5 || img.ends_with('0') || img.ends_with('1') || img.ends_with('2')
    });
    let root = isic_layout(dir.path(), &as_refs(&rows));
    let err = prepare_split(&options(&root, &dir.path().join("o")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class DF has 3 images") && err.contains("val 2 + test 3"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = IsicIndex::read(&empty, &IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unrecognised data root") && err.contains("HAM10000_metadata.csv"),
        "{err}"
    );
}

#[test]
fn ham_layout_errors() {
    let dir = tempfile::tempdir().unwrap();
    let isic = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let ham = dir.path().join("ham");
    ham_from_isic(&isic, &ham);
    let meta = ham.join("HAM10000_metadata.csv");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replacen(",nv,", ",naevus,", 1)).unwrap();
    let err = IsicIndex::read(&ham, &IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HAM10000_metadata.csv") && err.contains("unknown dx \"naevus\""),
        "{err}"
    );
    std::fs::write(
        &meta,
        text.replacen("lesion_id,image_id", "lesion,image_id", 1),
    )
    .unwrap();
    assert!(IsicIndex::read(&ham, &IndexOptions::default())
        .unwrap_err()
        .to_string()
        .contains("unexpected header"));
}

/// A full-size ISIC2018-format folder (10,015 tiny images, the real class counts, multi-image lesions)
/// and the same images in the HAM10000 layout: the paper's default 20/40 split is exact and balanced,
/// no image or lesion is in two splits, the union is everything, and two runs are byte-identical.
#[test]
fn full_size_both_layouts_exact_disjoint_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let isic = dir.path().join("isic");
    let synth = SynthOptions {
        scale: 1.0,
        width: 32,
        height: 24,
        min_per_class: 0,
        ..SynthOptions::default()
    };
    let summary = generate_synthetic_isic(&isic, &synth, false).unwrap();
    assert_eq!(summary.images, 10_015);
    assert!(summary.multi_image_lesions > 500);
    let ham = dir.path().join("ham");
    ham_from_isic(&isic, &ham);

    for root in [&isic, &ham] {
        let run = |name: &str| {
            let out = dir.path().join(name);
            let opts = PrepareOptions {
                saliency: false,
                ..PrepareOptions::new(root, &out)
            };
            let report = prepare_split(&opts).unwrap();
            (out, report)
        };
        let (a, report) = run("a");
        assert_eq!(
            report.manifest.counts.val, [20; 7],
            "{:?}",
            report.shortfalls
        );
        assert_eq!(report.manifest.counts.test, [40; 7]);
        let splits: Vec<_> = ["train", "val", "test"]
            .iter()
            .map(|s| read_split_csv(&a.join(format!("{s}.csv"))).unwrap())
            .collect();
        let mut images = std::collections::HashSet::new();
        let mut lesion_split = std::collections::HashMap::new();
        for (k, rows) in splits.iter().enumerate() {
            for r in rows {
                assert!(images.insert(r.image.clone()), "{} twice", r.image);
                assert_eq!(
                    *lesion_split.entry(r.lesion_id.clone()).or_insert(k),
                    k,
                    "lesion {} straddles",
                    r.lesion_id
                );
            }
        }
        assert_eq!(images.len(), 10_015);
        let (b, _) = run("b");
        for f in ["train.csv", "val.csv", "test.csv", "split.json"] {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f} differs"
            );
        }
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
}
