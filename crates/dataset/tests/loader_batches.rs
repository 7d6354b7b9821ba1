//! Loader: batches identical across runs and thread counts, resume mid-epoch, shapes and dtypes,
//! errors naming the unreadable file, the skip policy, and bounded memory.

use std::path::Path;
use std::sync::Arc;

use candle_core::DType;
use dataset::augment::{AugmentConfig, EvalConfig, ViewConfig};
use dataset::data_set::DataSet;
use dataset::loader::{LoadedStep, Loader, LoaderConfig, LoaderMode};
use dataset::split_files::{saliency_path, write_split_csv, SplitRow};
use dataset::IsicClass;
use image::{GrayImage, Luma, Rgb, RgbImage};

/// Writes `n` small images (alternating PNG and JPEG, 40 x 30) with their maps and a `train.csv`
/// into `dir`; returns the rows.
fn write_split(dir: &Path, n: usize) -> Vec<SplitRow> {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("saliency")).unwrap();
    let mut rows = Vec::new();
    for i in 0..n {
        let id = format!("IMG_{i:04}");
        let img = RgbImage::from_fn(40, 30, |x, y| {
            Rgb([
                (x * 6 + i as u32 * 7) as u8,
                (y * 8) as u8,
                ((x + y) * 3 + i as u32) as u8,
            ])
        });
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        let path = dir.join("images").join(format!("{id}.{ext}"));
        img.save(&path).unwrap();
        let map = GrayImage::from_fn(40, 30, |x, y| {
            Luma([if x > 10 + (i as u32 % 5) && y < 20 {
                200
            } else {
                10
            }])
        });
        map.save(saliency_path(dir, &id)).unwrap();
        let class = IsicClass::ALL[i % 3 + (i % 7 == 0) as usize * 3];
        rows.push(SplitRow {
            image: id,
            path,
            label: class.label(),
            class: class.name().into(),
            lesion_id: format!("L{i}"),
        });
    }
    write_split_csv(&dir.join("train.csv"), &rows).unwrap();
    rows
}

fn small_augment() -> AugmentConfig {
    AugmentConfig {
        query: ViewConfig::query(24),
        key: ViewConfig::key(20),
        baseline: ViewConfig::query(24),
        eval: EvalConfig {
            resize: 28,
            crop: 24,
        },
        ..AugmentConfig::default()
    }
}

fn loader(
    data: &Arc<DataSet>,
    mode: LoaderMode,
    threads: usize,
    cfg: Option<LoaderConfig>,
) -> Loader {
    let cfg = LoaderConfig {
        batch_size: 4,
        threads,
        prefetch: 2,
        ..cfg.unwrap_or_default()
    };
    Loader::new(Arc::clone(data), mode, small_augment(), cfg, 1234).unwrap()
}

/// Indices, labels and tensor values of a step.
type Flat = (Vec<Vec<usize>>, Vec<Vec<u32>>, Vec<Vec<f32>>);

/// Every number of a step, flattened, for exact comparison.
fn flatten(s: &LoadedStep) -> Flat {
    let mut idx = Vec::new();
    let mut labels = Vec::new();
    let mut values = Vec::new();
    for b in &s.batches {
        idx.push(b.indices.clone());
        labels.push(b.labels.to_vec1::<u32>().unwrap());
        for v in &b.views {
            values.push(v.images.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            values.push(v.saliency.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }
    (idx, labels, values)
}

fn open(n: usize) -> (tempfile::TempDir, Arc<DataSet>) {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), n);
    let data = Arc::new(DataSet::open(dir.path(), "train").unwrap());
    (dir, data)
}

#[test]
fn spmix_batches_have_the_documented_shapes() {
    let (_d, data) = open(18);
    assert_eq!(data.len(), 18);
    let l = loader(&data, LoaderMode::Spmix, 2, None);
    assert_eq!(l.steps_per_epoch(), 4);
    let steps: Vec<LoadedStep> = l.epoch(0).map(|s| s.unwrap()).collect();
    assert_eq!(steps.len(), 4);
    let s = &steps[1];
    assert_eq!(s.step, 1);
    assert_eq!(s.batches.len(), 2, "instance + class-balanced");
    for b in &s.batches {
        assert_eq!(b.labels.dims(), &[4]);
        assert_eq!(b.labels.dtype(), DType::U32);
        assert_eq!(b.views.len(), 2, "query + key");
        assert_eq!(b.views[0].images.dims(), &[4, 3, 24, 24]);
        assert_eq!(b.views[0].saliency.dims(), &[4, 1, 24, 24]);
        assert_eq!(b.views[1].images.dims(), &[4, 3, 20, 20]);
        assert_eq!(b.views[1].images.dtype(), DType::F32);
        let labels = b.labels.to_vec1::<u32>().unwrap();
        for (i, l) in b.indices.iter().zip(labels) {
            assert_eq!(data.item(*i).label as u32, l);
        }
    }
    // Normalised saliency stays within the normalised range of the map's values (0..=200).
    let sal = s.batches[0].views[0]
        .saliency
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // RandAugment's geometric ops fill uncovered map pixels with 0.
    let lo = (0.0 - 0.144) / 0.137;
    assert!(sal
        .iter()
        .all(|&v| v >= lo - 1e-3 && v <= (200.0 / 255.0 - 0.144) / 0.137 + 1e-3));
}

#[test]
fn batches_are_identical_whatever_the_thread_count() {
    let (_d, data) = open(20);
    for mode in [LoaderMode::Spmix, LoaderMode::Baseline, LoaderMode::Eval] {
        let run = |threads| -> Vec<_> {
            loader(&data, mode, threads, None)
                .epoch(3)
                .map(|s| flatten(&s.unwrap()))
                .collect()
        };
        let one = run(1);
        assert_eq!(one, run(3), "{mode:?}: 1 vs 3 threads");
        assert_eq!(one, run(1), "{mode:?}: two runs");
    }
    // A different epoch gives different augmentations.
    let l = loader(&data, LoaderMode::Spmix, 2, None);
    assert_ne!(
        flatten(&l.load_step(0, 0).unwrap()),
        flatten(&l.load_step(1, 0).unwrap())
    );
}

#[test]
fn resuming_mid_epoch_gives_the_rest_of_the_epoch() {
    let (_d, data) = open(20);
    let l = loader(&data, LoaderMode::Spmix, 2, None);
    let full: Vec<_> = l.epoch(2).map(|s| flatten(&s.unwrap())).collect();
    let rest: Vec<_> = l.epoch_from(2, 3).map(|s| flatten(&s.unwrap())).collect();
    assert_eq!(full.len(), 5);
    assert_eq!(&full[3..], &rest[..]);
}

#[test]
fn eval_mode_covers_the_data_set_in_order() {
    let (_d, data) = open(10);
    let l = loader(&data, LoaderMode::Eval, 2, None);
    assert_eq!(l.steps_per_epoch(), 3);
    let idx: Vec<usize> = l
        .epoch(0)
        .flat_map(|s| s.unwrap().batches[0].indices.clone())
        .collect();
    assert_eq!(idx, (0..10).collect::<Vec<_>>());
    let last = l.load_step(0, 2).unwrap();
    assert_eq!(last.batches[0].views[0].images.dims(), &[2, 3, 24, 24]);
    // Evaluation ignores the epoch: it is deterministic.
    assert_eq!(
        flatten(&l.load_step(0, 1).unwrap()),
        flatten(&l.load_step(7, 1).unwrap())
    );
}

#[test]
fn an_unreadable_file_surfaces_with_its_name() {
    let (dir, data) = open(12);
    let bad = data.item(5).path.clone();
    std::fs::write(&bad, b"this is not a jpeg").unwrap();
    let l = loader(&data, LoaderMode::Eval, 2, None);
    let errs: Vec<String> = l
        .epoch(0)
        .filter_map(|s| s.err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(&*bad.file_name().unwrap().to_string_lossy()),
        "{}",
        errs[0]
    );

    // A missing map is named too.
    let map = saliency_path(dir.path(), &data.item(2).image);
    std::fs::remove_file(&map).unwrap();
    let e = data.load_pair(2, true).unwrap_err().to_string();
    assert!(e.contains("IMG_0002.png") && e.contains("saliency"), "{e}");
    // Without maps the image alone loads.
    assert!(data.load_pair(2, false).is_ok());
}

#[test]
fn skip_policy_replaces_unreadable_files_and_counts_them() {
    let (_d, data) = open(12);
    std::fs::write(&data.item(5).path, b"garbage").unwrap();
    let cfg = LoaderConfig {
        skip_unreadable: true,
        ..LoaderConfig::default()
    };
    let l = loader(&data, LoaderMode::Eval, 2, Some(cfg));
    let idx: Vec<usize> = l
        .epoch(0)
        .flat_map(|s| s.unwrap().batches[0].indices.clone())
        .collect();
    assert_eq!(idx.len(), 12);
    assert!(!idx.contains(&5));
    assert_eq!(idx[5], 6, "replaced by the next readable image");
    assert_eq!(l.skipped(), 1);
}

#[cfg(target_os = "linux")]
fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn memory_stays_bounded_over_many_batches() {
    let (_d, data) = open(40);
    let l = loader(&data, LoaderMode::Spmix, 2, None);
    // A slow consumer: the producer may not run ahead more than prefetch (2) + 1 steps.
    let mut it = l.epoch(0);
    for s in it.by_ref().take(5) {
        s.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    assert!(
        it.peak_in_flight() <= 3,
        "peak {} steps in flight",
        it.peak_in_flight()
    );
    assert!(it.peak_in_flight() >= 2, "the producer never ran ahead");
    drop(it);

    #[cfg(target_os = "linux")]
    {
        // Resident memory after 10 epochs (100 steps) stays near that after the first.
        let mut after_first = 0;
        for epoch in 0..10 {
            for s in l.epoch(epoch) {
                s.unwrap();
            }
            if epoch == 0 {
                after_first = rss_kib();
            }
        }
        let grown = rss_kib().saturating_sub(after_first);
        assert!(grown < 16 * 1024, "RSS grew by {grown} KiB over 9 epochs");
    }
}

#[test]
fn dropping_an_epoch_early_stops_the_producer() {
    let (_d, data) = open(40);
    let l = loader(&data, LoaderMode::Spmix, 2, None);
    let mut it = l.epoch(0);
    assert!(it.next().unwrap().is_ok());
    drop(it); // must not hang
}
