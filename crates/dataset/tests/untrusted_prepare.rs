//! `prepare-isic` and the split reader on hostile or corrupted data folders: ids that try to leave
//! the folders, pixel bombs, truncated images, a cache that must not be fooled, empty inputs. Each
//! test checks the error names the file / row / id, that nothing outside `--out` changed, and that
//! no partial output remains.

mod common_isic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common_isic::*;
use dataset::index::{ham_names, isic_names};
use dataset::prepare::{prepare_split, DecodeLimits, PrepareOptions};
use dataset::split_files::{read_split_csv, saliency_path, SplitProtocol};
use dataset::DatasetError;

fn small_options(root: &Path, out: &Path) -> PrepareOptions {
    PrepareOptions {
        protocol: SplitProtocol::Balanced {
            val_per_class: 2,
            test_per_class: 3,
        },
        ..PrepareOptions::new(root, out)
    }
}

/// Every file under `dir` (relative path -> bytes), skipping `skip` (the `--out` folder).
fn snapshot(dir: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            if Some(p.as_path()) == skip {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    files
}

fn gt_path(root: &Path) -> PathBuf {
    root.join(isic_names::TRAIN_GT_DIR)
        .join(isic_names::TRAIN_GT_CSV)
}

fn input_dir(root: &Path) -> PathBuf {
    root.join(isic_names::TRAIN_INPUT)
}

/// No staging folder or temporary file left in `out`.
fn assert_no_leftovers(out: &Path) {
    if let Ok(rd) = std::fs::read_dir(out) {
        for ent in rd {
            let name = ent.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                !name.starts_with('.'),
                "left behind in {}: {name}",
                out.display()
            );
        }
    }
}

#[test]
fn traversal_id_in_ground_truth_is_refused_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    // The files an id `../../victim/logo` would read (<root>/<input>/../../victim/logo.jpg) and
    // overwrite (<out>/saliency/../../victim/logo.png).
    let victim = dir.path().join("victim");
    write_jpeg(&victim.join("logo.jpg"), 9);
    std::fs::write(victim.join("logo.png"), b"precious").unwrap();
    let gt = gt_path(&root);
    let text = std::fs::read_to_string(&gt).unwrap();
    let text = text.replacen("ISIC_00003,", "../../victim/logo,", 1);
    std::fs::write(&gt, text).unwrap();
    let out = dir.path().join("split");
    let before = snapshot(dir.path(), Some(&out));

    let err = prepare_split(&small_options(&root, &out)).unwrap_err();
    assert!(matches!(err, DatasetError::UnsafeImageId { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&gt.display().to_string())
            && msg.contains("row 5")
            && msg.contains("\"../../victim/logo\""),
        "{msg}"
    );
    assert_eq!(
        snapshot(dir.path(), Some(&out)),
        before,
        "something outside --out changed"
    );
    assert!(!out.join("train.csv").exists());
    assert_no_leftovers(&out);
}

#[test]
fn traversal_id_in_ham_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let isic = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let ham = dir.path().join("ham");
    ham_from_isic(&isic, &ham);
    let meta = ham.join(ham_names::METADATA);
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replacen(",ISIC_00002,", ",/etc/hostname,", 1)).unwrap();
    let out = dir.path().join("split");
    let err = prepare_split(&small_options(&ham, &out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(ham_names::METADATA) && err.contains("row 4") && err.contains("/etc/hostname"),
        "{err}"
    );
    assert!(!out.exists() || snapshot(&out, None).is_empty());
}

#[test]
fn split_csv_paths_may_not_leave_the_split_folder() {
    let dir = tempfile::tempdir().unwrap();
    let split = dir.path().join("split");
    std::fs::create_dir_all(split.join("images")).unwrap();
    write_jpeg(&split.join("images/a.jpg"), 1);
    write_jpeg(&dir.path().join("outside.jpg"), 2);
    let header = "image,path,label,class,lesion_id\n";
    let csv = split.join("train.csv");
    let read_with = |row: &str| {
        std::fs::write(&csv, format!("{header}a,images/a.jpg,0,MEL,L1\n{row}\n")).unwrap();
        read_split_csv(&csv)
    };

    let rows = read_with("b,./images/a.jpg,1,NV,L2").unwrap();
    assert_eq!(
        rows[0].path,
        split.join("images/a.jpg").canonicalize().unwrap()
    );
    let outside = dir.path().join("outside.jpg");
    let rows = read_with(&format!("b,{},1,NV,L2", outside.display())).unwrap();
    assert_eq!(
        rows[1].path,
        outside.canonicalize().unwrap(),
        "absolute paths are allowed"
    );

    for bad in ["../outside.jpg", "images/../../outside.jpg"] {
        let err = read_with(&format!("b,{bad},1,NV,L2")).unwrap_err();
        assert!(matches!(err, DatasetError::PathOutsideRoot { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("train.csv") && msg.contains("row 3") && msg.contains(bad),
            "{msg}"
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path(), split.join("up")).unwrap();
        let err = read_with("b,up/outside.jpg,1,NV,L2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("leaves the split folder"), "{err}");
    }
    let err = read_with("../b,images/a.jpg,1,NV,L2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 3") && err.contains("\"../b\""), "{err}");
}

#[test]
fn header_bomb_and_over_budget_images_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    // A PNG (named .jpg) claiming 100000 x 100000 pixels: 77 bytes.
    let bomb = png_header_bomb(100_000, 100_000);
    let bombed = input_dir(&root).join("ISIC_30003.jpg");
    std::fs::write(&bombed, &bomb).unwrap();
    let out = dir.path().join("split");
    let err = prepare_split(&small_options(&root, &out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&bombed.display().to_string()) && err.contains("100000x100000"),
        "{err}"
    );
    assert_eq!(
        err.matches(&bombed.display().to_string()).count(),
        1,
        "the file is named once: {err}"
    );
    assert!(!out.exists(), "a failed run leaves no new --out folder");

    // The 24x18 images themselves are over a budget of 400 pixels.
    write_jpeg(&bombed, 3);
    let err = prepare_split(&PrepareOptions {
        limits: DecodeLimits::with_max_pixels(400),
        ..small_options(&root, &out)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("24x18 = 432 pixels, over the limit of 400"),
        "{err}"
    );
}

#[test]
fn jpeg_cut_after_its_headers_is_refused_and_a_png_named_jpg_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let cut = input_dir(&root).join("ISIC_40001.jpg");
    let good = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &good[..good.len() - 20]).unwrap();
    // Same size as the JPEGs, PNG inside: the decoder is chosen by content everywhere.
    let png = input_dir(&root).join("ISIC_50001.jpg");
    image::open(&png)
        .unwrap()
        .save_with_format(&png, image::ImageFormat::Png)
        .unwrap();
    let out = dir.path().join("split");
    let err = prepare_split(&small_options(&root, &out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 image(s) could not be decoded")
            && err.contains(&cut.display().to_string())
            && err.contains("without its end-of-image marker"),
        "{err}"
    );
    std::fs::write(&cut, &good).unwrap();
    prepare_split(&small_options(&root, &out)).unwrap();
}

/// Two roots with the same image ids but different pixels.
fn two_roots(dir: &Path) -> (PathBuf, PathBuf) {
    let rows = balanced_rows(8);
    let a = isic_layout(&dir.join("a"), &as_refs(&rows));
    let b = isic_layout(&dir.join("b"), &as_refs(&rows));
    for (i, (image, _, _)) in rows.iter().enumerate() {
        let p = input_dir(&b).join(format!("{image}.jpg"));
        let img = image::RgbImage::from_fn(24, 18, |x, y| {
            image::Rgb([(x * 10) as u8, (i * 3) as u8, (y * 13) as u8 ^ 0x55])
        });
        img.save(&p).unwrap();
    }
    (a, b)
}

#[test]
fn failed_force_run_leaves_the_previous_split_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_roots(dir.path());
    let out = dir.path().join("split");
    prepare_split(&small_options(&a, &out)).unwrap();
    let before = snapshot(&out, None);
    std::fs::write(input_dir(&b).join("ISIC_60004.jpg"), b"corrupt").unwrap();
    let err = prepare_split(&PrepareOptions {
        force: true,
        ..small_options(&b, &out)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("ISIC_60004.jpg"), "{err}");
    assert_eq!(
        snapshot(&out, None),
        before,
        "a failed --force changed the split"
    );
    assert_no_leftovers(&out);
}

#[test]
fn cache_is_keyed_on_content_not_file_times() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_roots(dir.path());
    let out = dir.path().join("split");
    prepare_split(&small_options(&a, &out)).unwrap();
    // b's files look a year old (as when unpacked from an archive): older than every map.
    let old = SystemTime::now() - Duration::from_secs(365 * 86_400);
    for ent in std::fs::read_dir(input_dir(&b)).unwrap() {
        let p = ent.unwrap().path();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let report = prepare_split(&PrepareOptions {
        force: true,
        ..small_options(&b, &out)
    })
    .unwrap();
    assert_eq!((report.maps_written, report.maps_up_to_date), (56, 0));
    for r in read_split_csv(&out.join("train.csv")).unwrap() {
        assert!(r.path.starts_with(b.canonicalize().unwrap()));
        let map = image::open(saliency_path(&out, &r.image))
            .unwrap()
            .to_luma8();
        let want = saliency::fine_grained_saliency(&image::open(&r.path).unwrap().to_rgb8());
        assert_eq!(map, want, "{}: stale map of another image", r.image);
    }
    // Same content again: every map carried over.
    let again = prepare_split(&PrepareOptions {
        force: true,
        ..small_options(&b, &out)
    })
    .unwrap();
    assert_eq!((again.maps_written, again.maps_up_to_date), (0, 56));
    assert_no_leftovers(&out);
}

#[test]
fn empty_ground_truth_and_empty_splits_are_refused_with_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let out = dir.path().join("split");
    let err = prepare_split(&PrepareOptions {
        protocol: SplitProtocol::Stratified { ratios: [10, 0, 0] },
        ..small_options(&root, &out)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the val split would be empty")
            && err.contains("stratified 10:0:0")
            && err.contains("train [8, 8, 8, 8, 8, 8, 8]"),
        "{err}"
    );
    assert!(!out.join("train.csv").exists());

    let gt = gt_path(&root);
    std::fs::write(&gt, format!("{}\n", isic_names::GT_HEADER.join(","))).unwrap();
    let err = prepare_split(&small_options(&root, &out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&gt.display().to_string()) && err.contains("no images"),
        "{err}"
    );
    assert!(!out.join("train.csv").exists());
}

#[test]
fn io_errors_carry_the_os_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-root");
    let err = prepare_split(&small_options(&missing, &dir.path().join("o"))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert_eq!(msg.matches("No such file or directory").count(), 1, "{msg}");
    // Not also a source(), so a printed chain (anyhow's `{:#}`) does not repeat it.
    assert!(std::error::Error::source(&err).is_none());
}

#[cfg(unix)]
#[test]
fn outputs_have_the_mode_of_ordinary_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = isic_layout(dir.path(), &as_refs(&balanced_rows(8)));
    let out = dir.path().join("split");
    prepare_split(&small_options(&root, &out)).unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let want = mode(&plain);
    for p in [
        out.join("train.csv"),
        out.join("split.json"),
        out.join("saliency/manifest.json"),
        saliency_path(&out, "ISIC_00001"),
    ] {
        assert_eq!(mode(&p), want, "{}", p.display());
    }
}
