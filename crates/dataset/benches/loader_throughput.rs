//! Two-view SPMix samples per second: decode a 600x450 JPEG and its saliency PNG, build the query
//! and key views of both, normalise (one "sample" = one image through both views), on 1 and 2
//! worker threads, against `scripts/bench_torchvision.py` (torchvision + PIL) on the same files in
//! the same run, and the peak resident memory.
//!
//! `cargo bench -p dataset --bench loader_throughput` (`SPMIX_PYTHON` names the python, else
//! `python3`; the reference is skipped when no python with torch is found).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use dataset::augment::AugmentConfig;
use dataset::data_set::DataSet;
use dataset::loader::{Loader, LoaderConfig, LoaderMode};
use dataset::split_files::{saliency_path, write_split_csv, SplitRow};
use dataset::IsicClass;
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};

const N_IMAGES: usize = 32;
const BATCH: usize = 16;

/// Dermoscopy-like 600x450 JPEG (skin tone, a dark irregular lesion, noise) and a lesion-shaped map.
fn write_data(dir: &Path) -> Vec<SplitRow> {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("saliency")).unwrap();
    let mut rows = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for i in 0..N_IMAGES {
        let id = format!("ISIC_{i:07}");
        let (cx, cy) = (
            rng.random_range(200.0..400.0f32),
            rng.random_range(150.0..300.0f32),
        );
        let (rx, ry) = (
            rng.random_range(60.0..160.0f32),
            rng.random_range(50.0..130.0f32),
        );
        let inside = |x: u32, y: u32| {
            let (dx, dy) = ((x as f32 - cx) / rx, (y as f32 - cy) / ry);
            let wobble = 1.0 + 0.15 * ((dx * 7.0).sin() + (dy * 5.0).cos());
            dx * dx + dy * dy < wobble
        };
        let mut noise = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let img = RgbImage::from_fn(600, 450, |x, y| {
            let n = noise.random_range(-12i32..12);
            let base = if inside(x, y) {
                [110, 60, 50]
            } else {
                [225, 170, 160]
            };
            Rgb(base.map(|c: i32| (c + n).clamp(0, 255) as u8))
        });
        let path = dir.join("images").join(format!("{id}.jpg"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 90)
            .encode_image(&img)
            .unwrap();
        f.flush().unwrap();
        let map = GrayImage::from_fn(600, 450, |x, y| Luma([if inside(x, y) { 180 } else { 20 }]));
        map.save(saliency_path(dir, &id)).unwrap();
        let class = IsicClass::ALL[i % 7];
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

/// Rust samples per second with `threads` workers over `epochs` epochs (2 * BATCH samples a step).
fn rust_rate(data: &Arc<DataSet>, threads: usize, epochs: u64) -> f64 {
    let cfg = LoaderConfig {
        batch_size: BATCH,
        threads,
        prefetch: 2,
        ..LoaderConfig::default()
    };
    let loader = Loader::new(
        Arc::clone(data),
        LoaderMode::Spmix,
        AugmentConfig::default(),
        cfg,
        0,
    )
    .unwrap();
    loader.load_step(99, 0).unwrap(); // warm-up: page cache, thread start
    let t = Instant::now();
    let mut samples = 0;
    for e in 0..epochs {
        for s in loader.epoch(e) {
            let s = s.unwrap();
            samples += s.batches.iter().map(|b| b.indices.len()).sum::<usize>();
        }
    }
    samples as f64 / t.elapsed().as_secs_f64()
}

fn python_rate(list: &Path, workers: usize, samples: usize) -> Option<(f64, u64)> {
    let py = std::env::var("SPMIX_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_torchvision.py");
    let out = Command::new(py)
        .arg(script)
        .args([
            "--list",
            list.to_str()?,
            "--samples",
            &samples.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["samples_per_s"].as_f64()?, v["peak_rss_kib"].as_u64()?))
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let dir = tempfile::tempdir().unwrap();
    let rows = write_data(dir.path());
    let data = Arc::new(DataSet::open(dir.path(), "train").unwrap());
    let list = dir.path().join("files.txt");
    let text: String = rows
        .iter()
        .map(|r| {
            format!(
                "{}\t{}\n",
                r.path.display(),
                saliency_path(dir.path(), &r.image).display()
            )
        })
        .collect();
    std::fs::write(&list, text).unwrap();

    let epochs = 3; // 2 steps of 2 x 16 samples per epoch: 192 samples
    let r1 = rust_rate(&data, 1, epochs);
    let r2 = rust_rate(&data, 2, epochs);
    let hwm = vm_hwm_kib().unwrap_or(0);
    let p1 = python_rate(&list, 1, 96);
    let p2 = python_rate(&list, 2, 192);

    println!(
        "two-view SPMix samples/s, 600x450 JPEG + PNG map -> 2 x 224 views + maps, normalised"
    );
    println!("| workers | rust samples/s | rust per core | torchvision+PIL samples/s | ratio |");
    println!("|---|---|---|---|---|");
    for (w, r, p) in [(1, r1, p1), (2, r2, p2)] {
        let (ps, ratio) = match p {
            Some((p, _)) => (format!("{p:.1}"), format!("{:.2}x", r / p)),
            None => ("n/a".into(), "n/a".into()),
        };
        println!("| {w} | {r:.1} | {:.1} | {ps} | {ratio} |", r / w as f64);
    }
    println!("rust 2-thread scaling: {:.2}x of 1 thread", r2 / r1);
    println!(
        "rust peak RSS (VmHWM, whole bench incl. data generation): {:.1} MiB",
        hwm as f64 / 1024.0
    );
    if let Some((_, rss)) = p2 {
        println!(
            "python peak RSS (self + largest child, 2 workers): {:.1} MiB",
            rss as f64 / 1024.0
        );
    }
}
