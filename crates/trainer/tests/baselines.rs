//! Demo-sized runs of the MiSLAS and BCL Table 1 rows on the tiny synthetic set: the losses are
//! finite, a run killed mid-epoch and resumed ends bit-identical to an uninterrupted one, and each
//! method does what it says (MiSLAS stage 2 freezes the backbone's weights but moves its BatchNorm
//! statistics and the classifier; BCL trains and checkpoints its prototype head).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod common;

use candle_core::Tensor;
use trainer::config::Config;
use trainer::train::{Outcome, Trainer};

fn tiny_config(data: &Path, runs: &Path, method: &str, overrides: &[&str]) -> Config {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::from_toml_str(
        &common::tiny_config_text(data, runs, method, 2),
        "tiny",
        &overrides,
    )
    .unwrap()
}

fn bytes(t: &Tensor) -> Vec<u8> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

/// Trains `cfg` uninterrupted and, in a second folder, killed one step into epoch 2 and resumed;
/// asserts both end bit-identical with finite losses. Returns the uninterrupted trainer and the
/// epoch-1 checkpoint's tensors of the resumed run.
fn run_killed_and_resumed(cfg: &Config) -> (Trainer, HashMap<String, Vec<u8>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut a = Trainer::create(cfg.clone(), Arc::clone(&stop)).unwrap();
    a.progress = false;
    assert_eq!(a.fit().unwrap(), Outcome::Finished);
    let steps_per_epoch = a.state().global_step / 2;
    assert!(steps_per_epoch >= 2, "need >= 2 steps per epoch");
    for row in &a.state().history {
        assert!(
            row.train_loss.is_finite() && row.train_loss > 0.0,
            "{row:?}"
        );
    }

    let mut b = Trainer::create(cfg.clone(), Arc::clone(&stop)).unwrap();
    b.progress = false;
    b.halt_at_step = Some(steps_per_epoch + 1);
    assert_eq!(b.fit().unwrap(), Outcome::Halted);
    let dir = b.run_dir.clone();
    drop(b);
    let first = trainer::checkpoint::list(&dir).unwrap()[0];
    let (epoch1, _) = trainer::checkpoint::load(
        &trainer::checkpoint::step_dir(&dir, first),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let epoch1 = epoch1.iter().map(|(k, v)| (k.clone(), bytes(v))).collect();
    let mut b = Trainer::resume(&dir, None, Arc::clone(&stop)).unwrap();
    b.progress = false;
    assert_eq!(b.state().epoch, 1);
    assert_eq!(b.fit().unwrap(), Outcome::Finished);

    let (ta, tb) = (common::state_bytes(&a), common::state_bytes(&b));
    assert_eq!(ta.len(), tb.len());
    let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
    assert!(
        differing.is_empty(),
        "tensors differ after resume: {differing:?}"
    );
    for (ra, rb) in a.state().history.iter().zip(&b.state().history) {
        assert_eq!(ra.train_loss.to_bits(), rb.train_loss.to_bits());
    }
    let m = b.finish().unwrap();
    assert!(m.num_samples > 0);
    assert!(dir.join("report.json").exists());
    (a, epoch1)
}

#[test]
fn mislas_runs_both_stages_resumes_exactly_and_freezes_the_backbone_in_stage_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(
        tmp.path(),
        &tmp.path().join("runs"),
        "mislas",
        &["mislas.stage2_epochs=1", "mislas.mixup_alpha=1.0"],
    );
    let (a, epoch1) = run_killed_and_resumed(&cfg);
    let end = common::state_bytes(&a);
    let is_running_stat = |k: &str| k.ends_with("running_mean") || k.ends_with("running_var");
    let encoder_weights: Vec<&String> = end
        .keys()
        .filter(|k| {
            k.starts_with("query.")
                && !["query.projector.", "query.predictor.", "query.head."]
                    .iter()
                    .any(|p| k.starts_with(p))
                && !is_running_stat(k)
                && !k.ends_with("num_batches_tracked")
        })
        .collect();
    assert!(encoder_weights.len() > 10);
    for k in &encoder_weights {
        assert_eq!(end[*k], epoch1[*k], "{k} changed in stage 2");
    }
    for k in [
        "query.head.weight",
        "query.head.bias",
        "query.head.logit_scale",
    ] {
        assert_ne!(end[k], epoch1[k], "{k} did not train in stage 2");
    }
    // Learnable weight scaling: the per-class logit scale starts at 1 and stage 1 leaves it there.
    let scale = &epoch1["query.head.logit_scale"];
    assert_eq!(scale.len(), 4 * cfg.model.num_classes);
    assert!(
        scale
            .chunks(4)
            .all(|c| f32::from_le_bytes(c.try_into().unwrap()) == 1.0),
        "stage 1 moved the logit scale"
    );
    let shifted = end
        .keys()
        .filter(|k| k.starts_with("query.") && !k.starts_with("query.projector."))
        .filter(|k| !k.starts_with("query.predictor.") && k.ends_with("running_mean"))
        .filter(|k| end[*k] != epoch1[*k])
        .count();
    assert!(shifted > 0, "no BatchNorm running mean moved in stage 2");
}

#[test]
fn bcl_runs_resumes_exactly_and_trains_its_prototype_head() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path(), &tmp.path().join("runs"), "bcl", &[]);
    let (a, epoch1) = run_killed_and_resumed(&cfg);
    let end = common::state_bytes(&a);
    let head: Vec<&String> = end
        .keys()
        .filter(|k| k.starts_with("bcl_head.") && k.ends_with("weight"))
        .collect();
    assert!(!head.is_empty(), "no prototype head in the checkpoint");
    assert!(
        head.iter().any(|k| end[*k] != epoch1[*k]),
        "the prototype head did not train"
    );
    assert!(end.keys().any(|k| k.starts_with("opt.m.bcl_head.")));
}

#[test]
fn mislas_stage_split_is_validated_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let text = common::tiny_config_text(tmp.path(), tmp.path(), "mislas", 2);
    let e = Config::from_toml_str(&text, "tiny", &[]).unwrap_err();
    assert!(format!("{e}").contains("mislas.stage2_epochs"), "{e}");
    let split = "mislas.stage2_epochs=1".to_string();
    let e = Config::from_toml_str(
        &text,
        "tiny",
        &[split.clone(), "mislas.smooth_head=1.5".into()],
    )
    .unwrap_err();
    assert!(format!("{e}").contains("mislas.smooth_head"), "{e}");
    let e = Config::from_toml_str(&text, "tiny", &[split, "bcl.temperature=0".into()]).unwrap_err();
    assert!(format!("{e}").contains("bcl.temperature"), "{e}");
}
