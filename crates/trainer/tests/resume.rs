//! Exact resume: a run killed between checkpoints (mid-epoch, nothing saved after the last
//! epoch-end checkpoint) and resumed ends with bit-identical weights, key network, optimiser
//! moments and queue to an uninterrupted run. Also: a checkpoint of another model config is
//! refused with the mismatched tensors named.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod common;

use candle_core::Tensor;
use trainer::config::Config;
use trainer::train::{Outcome, Trainer};

fn tiny_config(data: &Path, runs: &Path, method: &str) -> Config {
    Config::from_toml_str(
        &common::tiny_config_text(data, runs, method, 2),
        "tiny",
        &[],
    )
    .unwrap()
}

#[test]
fn killed_and_resumed_run_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let cfg = tiny_config(tmp.path(), &runs, "spmix");
    let stop = Arc::new(AtomicBool::new(false));

    let mut a = Trainer::create(cfg.clone(), Arc::clone(&stop)).unwrap();
    a.progress = false;
    assert_eq!(a.fit().unwrap(), Outcome::Finished);
    let steps_per_epoch = a.state().global_step / 2;
    assert!(
        steps_per_epoch >= 2,
        "need >= 2 steps per epoch, got {steps_per_epoch}"
    );

    let mut b = Trainer::create(cfg.clone(), Arc::clone(&stop)).unwrap();
    b.progress = false;
    assert_ne!(a.run_dir, b.run_dir, "a second run must get a new folder");
    // Killed one step into epoch 2: that step is lost, epoch 1's checkpoint is on disk.
    b.halt_at_step = Some(steps_per_epoch + 1);
    assert_eq!(b.fit().unwrap(), Outcome::Halted);
    let dir = b.run_dir.clone();
    drop(b);
    let mut b = Trainer::resume(&dir, None, Arc::clone(&stop)).unwrap();
    b.progress = false;
    assert_eq!(b.state().epoch, 1);
    assert_eq!(b.fit().unwrap(), Outcome::Finished);

    let (ta, tb) = (common::state_bytes(&a), common::state_bytes(&b));
    assert_eq!(ta.len(), tb.len());
    assert!(ta.keys().any(|k| k.starts_with("key.")) && ta.keys().any(|k| k.starts_with("queue.")));
    let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
    assert!(
        differing.is_empty(),
        "tensors differ after resume: {differing:?}"
    );
    assert_eq!(a.state().history.len(), 2);
    for (ra, rb) in a.state().history.iter().zip(&b.state().history) {
        assert_eq!(ra.train_loss.to_bits(), rb.train_loss.to_bits());
        assert_eq!(ra.val_accuracy, rb.val_accuracy);
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // The run's best checkpoint evaluated on the test split writes the report files.
    let m = b.finish().unwrap();
    assert!(m.num_samples > 0);
    for f in [
        "report.md",
        "report.json",
        "predictions.csv",
        "confusion.png",
        "curves.png",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }

    // A checkpoint loaded into a network of another config names the mismatched tensors.
    let mut other = cfg.model.clone();
    other.embed_dim = 24;
    let net = model::QueryNetwork::new(&other, &candle_core::Device::Cpu).unwrap();
    let ckpt = trainer::checkpoint::find(&dir, trainer::checkpoint::Which::Last).unwrap();
    let (t, _) = trainer::checkpoint::load(&ckpt, &candle_core::Device::Cpu).unwrap();
    let e = format!(
        "{:#}",
        trainer::evaluate_run::load_query(&net, &t, "ckpt").unwrap_err()
    );
    assert!(e.contains("cls_token") && e.contains("pos_embed"), "{e}");
}

#[test]
fn same_seed_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mut cfg = tiny_config(tmp.path(), &runs, "spmix");
    cfg.run.epochs = 1;
    let stop = Arc::new(AtomicBool::new(false));
    let mut a = Trainer::create(cfg.clone(), Arc::clone(&stop)).unwrap();
    let mut b = Trainer::create(cfg, Arc::clone(&stop)).unwrap();
    let (ta, tb) = (common::state_bytes(&a), common::state_bytes(&b));
    let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
    assert!(
        differing.is_empty(),
        "initial tensors differ: {differing:?}"
    );
    a.halt_at_step = Some(1);
    b.halt_at_step = Some(1);
    a.progress = false;
    b.progress = false;
    a.fit().unwrap();
    b.fit().unwrap();
    let (ta, tb) = (common::state_bytes(&a), common::state_bytes(&b));
    let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
    assert!(
        differing.is_empty(),
        "tensors differ after one step: {differing:?}"
    );
}

#[test]
fn ce_runs_and_resume_of_a_finished_run_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mut cfg = tiny_config(tmp.path(), &runs, "ce-resample");
    cfg.run.epochs = 1;
    let stop = Arc::new(AtomicBool::new(false));
    let mut a = Trainer::create(cfg, Arc::clone(&stop)).unwrap();
    a.progress = false;
    assert_eq!(a.fit().unwrap(), Outcome::Finished);
    // The run folder is locked while `a` lives: resume after it is gone.
    let (dir, finished) = (a.run_dir.clone(), a.state().clone());
    drop(a);
    let mut b = Trainer::resume(&dir, None, stop).unwrap();
    assert_eq!(b.fit().unwrap(), Outcome::Finished);
    assert_eq!(b.state(), &finished);
}

/// `--resume DIR --set run.epochs=N` extends a finished run by the missing epochs and records
/// the new length; any other key, or fewer epochs than already done, is refused by name.
#[test]
fn a_finished_run_is_extended_with_more_epochs_and_other_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(tmp.path(), &tmp.path().join("runs"), "ce");
    cfg.run.epochs = 2;
    let stop = Arc::new(AtomicBool::new(false));
    let mut a = Trainer::create(cfg, Arc::clone(&stop)).unwrap();
    a.progress = false;
    assert_eq!(a.fit().unwrap(), Outcome::Finished);
    let dir = a.run_dir.clone();
    drop(a);
    let refused = |set: &str| {
        let e = Trainer::resume_with(&dir, None, &[set.to_string()], Arc::clone(&stop))
            .err()
            .unwrap_or_else(|| panic!("{set} was accepted"));
        format!("{e:#}")
    };
    let e = refused("optim.lr=1e-2");
    assert!(
        e.contains("optim.lr") && e.contains("only run.epochs"),
        "{e}"
    );
    let e = refused("run.epochs=1");
    assert!(e.contains("already trained 2 epochs"), "{e}");
    let mut b =
        Trainer::resume_with(&dir, None, &["run.epochs=3".to_string()], Arc::clone(&stop)).unwrap();
    b.progress = false;
    assert_eq!(b.fit().unwrap(), Outcome::Finished);
    assert_eq!(b.state().epoch, 3);
    assert_eq!(b.state().history.len(), 3);
    drop(b);
    // The new length is the run's own now: a plain resume has nothing left to do.
    let (cfg, _) = trainer::run_dir::open(&dir).unwrap();
    assert_eq!(cfg.run.epochs, 3);
}

/// The seeded re-draw follows the model crate's own initialisers: every variable's spread stays
/// within 30% of candle's random draw (variables with at least 256 values), constants stay.
#[test]
fn seeded_init_matches_the_model_init() {
    let cfg = tiny_config(
        Path::new("/nonexistent"),
        Path::new("/nonexistent"),
        "spmix",
    );
    let mut m = cfg.model.clone();
    m.embed_dim = 64;
    m.proj_hidden = 128;
    m.trunk_channels = vec![16, 16, 16];
    let net = model::QueryNetwork::new(&m, &candle_core::Device::Cpu).unwrap();
    let std = |t: &Tensor| -> f64 {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let before: HashMap<String, f64> = net
        .trainable_vars()
        .iter()
        .map(|(n, v)| (n.clone(), std(v.as_tensor())))
        .collect();
    trainer::init::seeded_init(&net, 3).unwrap();
    let mut checked = 0;
    for (n, v) in net.trainable_vars() {
        let (a, b) = (before[&n], std(v.as_tensor()));
        if a == 0.0 {
            assert_eq!(b, 0.0, "{n}: a constant was re-drawn");
        } else if v.elem_count() >= 256 && !n.ends_with("cls_token") {
            assert!(
                (b / a - 1.0).abs() < 0.3,
                "{n}: std {b} after re-draw, {a} before"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} variables checked");
}
