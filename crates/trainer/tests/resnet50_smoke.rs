//! Every method (`ce`, `ce-resample`, `paco`, `spmix`, `mislas`, `bcl`) trains on the plain ResNet-50-D backbone
//! (`model.arch = "resnet50"`, a tiny four-stage one) on the tiny synthetic set: the loss of
//! every epoch is finite, the run writes its report, and a run killed one step into epoch 2 and
//! resumed from epoch 1's checkpoint ends bit-identical to an uninterrupted one.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod common;

use model::Arch;
use trainer::config::Config;
use trainer::train::{Outcome, Trainer};

/// The tiny run of `common`, its model swapped for a four-stage ResNet-D (the same overrides a
/// user would pass with `--set`).
fn resnet50_config(data: &Path, runs: &Path, method: &str) -> Config {
    let mut overrides: Vec<String> = [
        "model.arch=\"resnet50\"",
        "model.trunk_layers=[1, 1, 1, 1]",
        "model.trunk_channels=[4, 8, 8, 16]",
    ]
    .map(String::from)
    .to_vec();
    if method == "mislas" {
        // Stage 1 in epoch 1, stage 2 (frozen backbone) in epoch 2: the resume crosses stages.
        overrides.push("mislas.stage2_epochs=1".into());
    }
    let cfg = Config::from_toml_str(
        &common::tiny_config_text(data, runs, method, 2),
        "tiny resnet50",
        &overrides,
    )
    .unwrap();
    assert_eq!(cfg.model.arch, Arch::Resnet50);
    cfg
}

fn trains_and_resumes_bit_exactly(method: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let cfg = resnet50_config(tmp.path(), &runs, method);
    let stop = Arc::new(AtomicBool::new(false));

    let mut a = Trainer::create(cfg.clone(), Arc::clone(&stop)).unwrap();
    a.progress = false;
    assert_eq!(a.fit().unwrap(), Outcome::Finished);
    let names: Vec<String> = a.query().tensors().unwrap().into_keys().collect();
    assert!(
        names.iter().any(|n| n == "layer4.0.conv3.weight")
            && names.iter().any(|n| n == "fc.weight"),
        "{method}: not the resnet50 network"
    );
    for r in &a.state().history {
        assert!(
            r.train_loss.is_finite(),
            "{method}: epoch {} loss {}",
            r.epoch,
            r.train_loss
        );
    }
    let steps_per_epoch = a.state().global_step / 2;
    assert!(steps_per_epoch >= 2, "{method}: {steps_per_epoch} steps");

    let mut b = Trainer::create(cfg, Arc::clone(&stop)).unwrap();
    b.progress = false;
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
    let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
    assert!(
        differing.is_empty(),
        "{method}: tensors differ after resume: {differing:?}"
    );
    for (ra, rb) in a.state().history.iter().zip(&b.state().history) {
        assert_eq!(ra.train_loss.to_bits(), rb.train_loss.to_bits(), "{method}");
    }
    let m = b.finish().unwrap();
    assert!(m.num_samples > 0);
    assert!(dir.join("report.json").exists(), "{method}: no report");
}

#[test]
fn ce_on_resnet50() {
    trains_and_resumes_bit_exactly("ce");
}

#[test]
fn ce_resample_on_resnet50() {
    trains_and_resumes_bit_exactly("ce-resample");
}

#[test]
fn paco_on_resnet50() {
    trains_and_resumes_bit_exactly("paco");
}

#[test]
fn spmix_on_resnet50() {
    trains_and_resumes_bit_exactly("spmix");
}

#[test]
fn mislas_on_resnet50() {
    trains_and_resumes_bit_exactly("mislas");
}

#[test]
fn bcl_on_resnet50() {
    trains_and_resumes_bit_exactly("bcl");
}
