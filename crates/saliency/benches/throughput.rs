//! Images per second of the saliency map, against OpenCV measured in the same run.
//!
//! `cargo bench -p saliency --bench throughput` (about a minute). OpenCV is timed through
//! `scripts/bench_opencv.py` with the Python in `$SPMIX_PYTHON`, else
//! `python3` (BENCHMARKS.md says how to make the reference venv); when none has cv2 the ratios are
//! reported as unavailable. Rows:
//! - one thread, 600x450 and 224x224 RGB (`fine_grained_saliency`, in memory);
//! - `saliency_batch` (in memory) and `write_maps` (PNG decode + map + PNG encode + rename) on a
//!   rayon pool of 1 and of 2 threads, and on all cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::RgbImage;
use saliency::{fine_grained_saliency, saliency_batch, write_maps, MapJob};

/// Best images/s over `rounds` rounds of about `budget / rounds` each.
fn rate(budget: Duration, images_per_call: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t0 = Instant::now();
    f();
    let once = t0.elapsed().as_secs_f64().max(1e-6);
    let rounds = 3;
    let reps = ((budget.as_secs_f64() / rounds as f64 / once) as usize).max(1);
    (0..rounds)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..reps {
                f();
            }
            (reps * images_per_call) as f64 / t0.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// CPU seconds used so far by this process, all threads (Linux `/proc/self/stat`, 100 ticks/s).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn opencv_rates(images: &[PathBuf]) -> Result<Vec<f64>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_opencv.py");
    let candidates: Vec<String> = std::env::var("SPMIX_PYTHON")
        .into_iter()
        .chain(["python3".to_owned()])
        .collect();
    let mut last_err = String::from("no Python found");
    for python in candidates {
        let out = Command::new(&python)
            .arg(&script)
            .arg("--seconds")
            .arg("4")
            .args(images)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                return text
                    .lines()
                    .map(|l| {
                        l.rsplit(' ')
                            .next()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| format!("bad line from {python}: {l}"))
                    })
                    .collect();
            }
            Ok(o) => {
                last_err = format!(
                    "{python}: {}",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                )
            }
            Err(e) => last_err = format!("{python}: {e}"),
        }
    }
    Err(last_err)
}

fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let inputs = [
        ("600x450", fixtures.join("astronaut_600x450.input.png")),
        ("224x224", fixtures.join("astronaut_224x224.input.png")),
    ];
    let images: Vec<RgbImage> = inputs
        .iter()
        .map(|(_, p)| image::open(p).expect("fixture").into_rgb8())
        .collect();
    let budget = Duration::from_secs(4);

    let single = pool(1);
    let ours: Vec<f64> = images
        .iter()
        .map(|img| {
            single.install(|| {
                rate(budget, 1, || {
                    std::hint::black_box(fine_grained_saliency(img));
                })
            })
        })
        .collect();
    let paths: Vec<PathBuf> = inputs.iter().map(|(_, p)| p.clone()).collect();
    let opencv = opencv_rates(&paths);

    println!("| case | saliency (img/s) | OpenCV 1 thread (img/s) | ratio |");
    println!("|---|---:|---:|---:|");
    for (i, (size, _)) in inputs.iter().enumerate() {
        let (cv, ratio) = match &opencv {
            Ok(r) => (format!("{:.1}", r[i]), format!("{:.2}x", ours[i] / r[i])),
            Err(_) => ("unavailable".into(), "n/a".into()),
        };
        println!(
            "| one thread, {size} RGB | {:.1} | {cv} | {ratio} |",
            ours[i]
        );
    }
    if let Err(e) = &opencv {
        println!("OpenCV not measured: {e}");
    }

    // Batch API, 1 vs 2 threads (and all cores when there are more).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1, 2];
    if cores > 2 {
        thread_counts.push(cores);
    }
    let batch: Vec<RgbImage> = (0..32).map(|_| images[0].clone()).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs: Vec<MapJob> = (0..32)
        .map(|i| MapJob {
            input: inputs[0].1.clone(),
            output: dir.path().join(format!("map{i}.png")),
        })
        .collect();
    let mut mem_rates = Vec::new();
    let mut mem_cpu = Vec::new();
    let mut file_rates = Vec::new();
    for &t in &thread_counts {
        let p = pool(t);
        let (cpu0, wall0) = (process_cpu_seconds(), Instant::now());
        mem_rates.push(p.install(|| {
            rate(budget, batch.len(), || {
                std::hint::black_box(saliency_batch(&batch));
            })
        }));
        // Cores actually obtained: on a shared machine the wall-clock speed-up is capped by it.
        mem_cpu.push(
            process_cpu_seconds()
                .zip(cpu0)
                .map(|(b, a)| (b - a) / wall0.elapsed().as_secs_f64()),
        );
        file_rates.push(p.install(|| {
            rate(budget, jobs.len(), || {
                for j in &jobs {
                    let _ = std::fs::remove_file(&j.output);
                }
                for r in write_maps(&jobs) {
                    r.expect("map written");
                }
            })
        }));
    }
    println!();
    println!(
        "| batch API, 600x450 RGB, 32 images | threads | img/s | speed-up vs 1 thread | \
         cores obtained (CPU s / wall s) | img per CPU second |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, &t) in thread_counts.iter().enumerate() {
        let cpu = mem_cpu[i].map_or("n/a".into(), |c| format!("{c:.2}"));
        let per_cpu = mem_cpu[i].map_or("n/a".into(), |c| format!("{:.1}", mem_rates[i] / c));
        println!(
            "| saliency_batch (in memory) | {t} | {:.1} | {:.2}x | {cpu} | {per_cpu} |",
            mem_rates[i],
            mem_rates[i] / mem_rates[0]
        );
    }
    for (i, &t) in thread_counts.iter().enumerate() {
        println!(
            "| write_maps (PNG in, PNG out) | {t} | {:.1} | {:.2}x | | |",
            file_rates[i],
            file_rates[i] / file_rates[0]
        );
    }
    println!("{} cores, load average {}", cores, load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
