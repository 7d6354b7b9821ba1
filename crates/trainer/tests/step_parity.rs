//! Step parity with the PyTorch/timm reference trainer: for each method, the first 20 optimiser
//! steps of `fixtures/step_parity/config.toml` (a tiny Hybrid-ViT on a tiny synthetic split)
//! give the same learning rate, loss and gradient norm as the reference (1e-4 relative), and
//! the same weights after the last step (1e-4).
//!
//! The fixtures (`METHOD.trace.json`, `METHOD.final.safetensors`) come from
//! `crates/trainer/scripts/reference_trainer.py steps`, which replays the exact inputs the Rust
//! loader produced (see `scripts/step-parity-fixtures.sh`). Each row carries checksums of those
//! inputs: if the loader's batches change, the test says so instead of reporting a training
//! difference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use trainer::config::Config;
use trainer::step_trace::{self, Trace, TraceRow};
use trainer::train::{Outcome, Trainer};

const STEPS: u64 = 20;
const REL_TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/step_parity")
}

/// One synthetic data folder for every method (generated once per test binary).
fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// Runs STEPS steps of `method` and returns the Rust trace rows and final state.
fn run_rust(method: &str) -> (Vec<TraceRow>, HashMap<String, Tensor>) {
    // The first caller generates the data; the others wait for it.
    static PREPARE: Mutex<()> = Mutex::new(());
    let _guard = PREPARE.lock().unwrap_or_else(|e| e.into_inner());
    let runs = tempfile::tempdir().unwrap();
    let set = vec![
        format!("data.source=\"{}\"", data_dir().join("synthetic").display()),
        format!("data.split_dir=\"{}\"", data_dir().join("split").display()),
        format!("run.output_dir=\"{}\"", runs.path().display()),
        format!("method.name=\"{method}\""),
    ];
    let cfg = Config::from_file(&fixtures().join("config.toml"), &set).unwrap();
    let mut t = Trainer::create(cfg, Arc::new(AtomicBool::new(false))).unwrap();
    drop(_guard);
    t.progress = false;
    t.halt_at_step = Some(STEPS);
    let rows = Arc::new(Mutex::new(Vec::new()));
    t.observer = Some(step_trace::observer(
        Arc::clone(&rows),
        step_trace::Dump::default(),
    ));
    assert_eq!(t.fit().unwrap(), Outcome::Halted);
    let state = t.state_tensors().unwrap();
    let rows = rows.lock().unwrap().clone();
    (rows, state)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn check(method: &str) {
    let reference = Trace::read(&fixtures().join(format!("{method}.trace.json"))).unwrap();
    assert_eq!(reference.producer, "pytorch");
    assert_eq!(
        reference.rows.len() as u64,
        STEPS,
        "{method}: fixture steps"
    );
    let (rows, state) = run_rust(method);
    assert_eq!(rows.len(), reference.rows.len());
    for (r, p) in rows.iter().zip(&reference.rows) {
        let at = format!("{method} step {}", p.global_step);
        assert_eq!(
            (r.global_step, r.epoch, r.step),
            (p.global_step, p.epoch, p.step),
            "{at}"
        );
        // Inputs first: a different batch is a loader change, not a training difference.
        let (ri, pi) = (r.inputs, p.inputs);
        assert!(
            ri.label_sum == pi.label_sum
                && rel(ri.image_sum, pi.image_sum) < 1e-5
                && rel(ri.image_abs_sum, pi.image_abs_sum) < 1e-6
                && rel(ri.ratio_sum, pi.ratio_sum) < 1e-6,
            "{at}: the loader's inputs differ from the fixture's ({ri:?} vs {pi:?}); if the loader \
             changed on purpose, regenerate the fixtures with scripts/step-parity-fixtures.sh"
        );
        assert!(rel(r.lr, p.lr) < 1e-12, "{at}: lr {} vs {}", r.lr, p.lr);
        for (what, got, want) in [
            ("loss", r.loss, p.loss),
            ("gradient norm", r.grad_norm, p.grad_norm),
        ] {
            let e = rel(got, want);
            assert!(
                e < REL_TOL,
                "{at}: {what} {got} vs reference {want} (rel {e:.2e})"
            );
        }
    }
    let final_ref = candle_core::safetensors::load(
        fixtures().join(format!("{method}.final.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    assert!(
        final_ref.len() >= 10,
        "{method}: too few weights in the fixture"
    );
    for (name, want) in &final_ref {
        let got = state
            .get(name)
            .unwrap_or_else(|| panic!("{method}: the Rust state has no {name}"));
        let want = want.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
        let got = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
        let diff = (&got - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = want
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1.0);
        assert!(
            diff <= 1e-4 * scale,
            "{method}: {name} differs from the reference by {diff:.2e} after {STEPS} steps"
        );
    }
}

#[test]
fn ce_steps_match_the_pytorch_reference() {
    check("ce");
}

#[test]
fn ce_resample_steps_match_the_pytorch_reference() {
    check("ce-resample");
}

#[test]
fn paco_steps_match_the_pytorch_reference() {
    check("paco");
}

#[test]
fn spmix_steps_match_the_pytorch_reference() {
    check("spmix");
}
