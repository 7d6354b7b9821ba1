//! Run folders under failure and concurrency: a failed setup leaves no run folder and names the
//! split row at fault before epoch 1; a second writer on a run folder is refused naming the
//! holder; files are written with the mode of ordinary files; SIGTERM stops training with a
//! checkpoint as Ctrl-C does; `predict` keeps going past an unreadable image.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use trainer::config::Config;
use trainer::train::Trainer;

fn tiny_config_text(data: &Path, runs: &Path, epochs: usize) -> String {
    common::tiny_config_text(data, runs, "ce", epochs)
}

fn tiny_config(data: &Path, runs: &Path) -> Config {
    Config::from_toml_str(&tiny_config_text(data, runs, 2), "tiny", &[]).unwrap()
}

fn run_folders(runs: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(runs) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Held by the test that checks the run lock and by the tests that start processes (a trainer
/// run spawns `git rev-parse` for its provenance): a child spawned while the lock test runs holds
/// a copy of the lock's descriptor until it execs, and on a loaded machine that window is long
/// enough to keep the "released" lock held.
static SPAWN_GUARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spawn_guard() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_GUARD.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_stop() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

#[test]
fn missing_val_image_fails_setup_naming_the_row_and_leaves_no_run_folder() {
    let _guard = spawn_guard();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let cfg = tiny_config(tmp.path(), &runs);
    trainer::train::ensure_split(&cfg.data).unwrap();
    let val = dataset::read_split_csv(&cfg.data.split_dir.join("val.csv")).unwrap();
    let gone = &val[1];
    std::fs::remove_file(&gone.path).unwrap();

    let err = format!("{:#}", Trainer::create(cfg, no_stop()).err().unwrap());
    assert!(
        err.contains("val.csv row 3")
            && err.contains(&gone.image)
            && err.contains(&gone.path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        run_folders(&runs),
        Vec::<PathBuf>::new(),
        "orphan run folder"
    );
}

#[test]
fn second_writer_is_refused_and_files_are_world_readable() {
    let _guard = spawn_guard();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let first = Trainer::create(tiny_config(tmp.path(), &runs), no_stop()).unwrap();
    let dir = first.run_dir.clone();

    let err = format!(
        "{:#}",
        Trainer::resume(&dir, None, no_stop()).err().unwrap()
    );
    assert!(
        err.contains(&format!("in use by process {}", std::process::id()))
            && err.contains("run.lock"),
        "{err}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for f in ["config.toml", "run.json", "metrics.csv"] {
            assert_eq!(mode(&dir.join(f)), mode(&plain), "{f}");
        }
    }

    drop(first);
    Trainer::resume(&dir, None, no_stop()).expect("the lock goes with its holder");
}

#[test]
fn predict_reports_an_unreadable_image_and_predicts_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path(), &tmp.path().join("runs"));
    let query = model::QueryNetwork::new(&cfg.model, &candle_core::Device::Cpu).unwrap();
    let good = tmp.path().join("good.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 100, 50]))
        .save(&good)
        .unwrap();
    let truncated = tmp.path().join("cut.jpg");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * y) as u8, x as u8, y as u8])
        }))
        .unwrap();
    std::fs::write(&truncated, &jpeg[..jpeg.len() - 30]).unwrap();
    let files = [good.clone(), truncated.clone(), good];
    let limits = dataset::prepare::DecodeLimits::default();
    let out =
        trainer::predict::predict_images(&query, &files, &cfg, &candle_core::Device::Cpu, &limits)
            .unwrap();
    assert_eq!(out.len(), 3);
    let p0 = out[0].as_ref().unwrap();
    assert_eq!(p0.len(), 7);
    assert!((p0.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert_eq!(out[2].as_ref().unwrap(), p0);
    let err = out[1].as_ref().unwrap_err();
    assert!(
        err.contains(&truncated.display().to_string()) && err.contains("truncated"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_stops_training_with_a_checkpoint() {
    let _guard = spawn_guard();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("long.toml");
    std::fs::write(&config, tiny_config_text(tmp.path(), &runs, 1000)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run folder appears after the signal handler is installed.
    let start = Instant::now();
    while !run_folders(&runs)
        .iter()
        .any(|d| d.join("metrics.csv").exists())
    {
        assert!(start.elapsed() < Duration::from_secs(180), "no run folder");
        assert!(child.try_wait().unwrap().is_none(), "trainer exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let dir = &run_folders(&runs)[0];
    let steps = trainer::checkpoint::list(dir).unwrap();
    assert!(!steps.is_empty(), "no checkpoint after SIGTERM: {stderr}");
}

#[test]
fn io_errors_print_the_os_message_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.toml");
    let err = anyhow::Error::from(Config::from_file(&missing, &[]).unwrap_err());
    let printed = format!("{err:#}");
    assert!(
        printed.contains(&missing.display().to_string()),
        "{printed}"
    );
    assert_eq!(
        printed.matches("No such file or directory").count(),
        1,
        "{printed}"
    );

    // The same through the data set reader and the checked decoder.
    let split = tmp.path().join("split");
    let err = anyhow::Error::from(dataset::data_set::DataSet::open(&split, "train").unwrap_err());
    let printed = format!("{err:#}");
    assert_eq!(
        printed.matches("No such file or directory").count(),
        1,
        "{printed}"
    );
    let err = anyhow::Error::from(dataset::data_set::decode(&missing).unwrap_err());
    let printed = format!("{err:#}");
    assert_eq!(
        printed.matches("No such file or directory").count(),
        1,
        "{printed}"
    );
}
