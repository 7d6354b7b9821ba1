//! Every shipped Table 1 / Table 2 row (`configs/spmix.toml`, `configs/resnet50.toml`,
//! `configs/baselines/**`, `configs/ablation/*`) trains for 2 epochs through the `trainer` binary,
//! as a user would run it: the config file as shipped, and `--set` overrides that point it at a
//! tiny synthetic set and shrink the model. Each run must finish and write a complete report.

use std::path::{Path, PathBuf};
use std::process::Command;

use trainer::config::Config;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// The row configs: the two method roots and every overlay under baselines/ and ablation/.
fn shipped_rows() -> Vec<PathBuf> {
    let root = configs_dir();
    let mut rows = vec![root.join("spmix.toml"), root.join("resnet50.toml")];
    let mut stack = vec![root.join("baselines"), root.join("ablation")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                rows.push(path);
            }
        }
    }
    rows.sort();
    rows
}

/// What a user types to try a paper-sized row on a small machine: demo-sized data and model,
/// two epochs on the CPU. Only sizes change; the method keys stay the row's own.
fn demo_overrides(row: &Config, data: &Path, runs: &Path) -> Vec<String> {
    let mut sets: Vec<String> = vec![
        "run.device=\"cpu\"".into(),
        "run.epochs=2".into(),
        "run.batch_size=8".into(),
        format!("run.output_dir=\"{}\"", runs.display()),
        format!("data.split_dir=\"{}\"", data.join("split").display()),
        format!("data.source=\"{}\"", data.join("synth").display()),
        "data.synthetic=true".into(),
        "data.synthetic_scale=0.004".into(),
        "data.synthetic_size=\"64x48\"".into(),
        "data.synthetic_min_per_class=10".into(),
        "data.protocol=\"stratified\"".into(),
        "model.stem_width=4".into(),
        "model.embed_dim=16".into(),
        "model.depth=1".into(),
        "model.num_heads=2".into(),
        "model.image_size=32".into(),
        "model.proj_hidden=32".into(),
        "model.proj_dim=16".into(),
        "loss.queue_size=64".into(),
        "optim.lr=1e-3".into(),
        "optim.warmup_epochs=1".into(),
    ];
    match row.model.arch {
        model::Arch::Resnet50 => {
            sets.push("model.trunk_layers=[1, 1, 1, 1]".into());
            sets.push("model.trunk_channels=[4, 8, 8, 16]".into());
        }
        model::Arch::Hybrid => {
            sets.push("model.trunk_layers=[1, 1, 1]".into());
            sets.push("model.trunk_channels=[4, 8, 8]".into());
        }
    }
    if row.method.name.as_str() == "mislas" {
        // Stage 1 in epoch 1, stage 2 in epoch 2: both stages run.
        sets.push("mislas.stage2_epochs=1".into());
    }
    sets
}

#[test]
fn every_shipped_row_trains_two_epochs_and_writes_a_complete_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rows = shipped_rows();
    assert!(rows.len() >= 17, "only {} shipped rows found", rows.len());
    let mut methods = std::collections::BTreeSet::new();
    for (index, path) in rows.iter().enumerate() {
        let row = Config::from_file(path, &[]).unwrap_or_else(|e| panic!("{e:#}"));
        methods.insert(format!("{}/{:?}", row.method.name.as_str(), row.model.arch));
        // A folder of its own per row: run names share prefixes ("ce", "ce-resample").
        let runs = tmp.path().join(format!("runs-{index}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
        cmd.args(["train", "--config"]).arg(path);
        for set in demo_overrides(&row, &data, &runs) {
            cmd.args(["--set", &set]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let run_dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(run_dirs.len(), 1, "{}: {run_dirs:?}", path.display());
        let run_dir = &run_dirs[0];
        let folder = run_dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            folder.starts_with(&format!("{}-", row.run.name)),
            "{}: run folder {folder} is not named after run.name {}",
            path.display(),
            row.run.name
        );
        for file in [
            "config.toml",
            "run.json",
            "metrics.csv",
            "curves.png",
            "report.json",
            "report.md",
            "confusion.png",
            "predictions.csv",
        ] {
            let f = run_dir.join(file);
            let len = std::fs::metadata(&f)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", path.display(), f.display()))
                .len();
            assert!(len > 0, "{}: {} is empty", path.display(), f.display());
        }
        let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
        assert_eq!(
            metrics.lines().count(),
            3,
            "{}: header and two epochs expected:\n{metrics}",
            path.display()
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
                .unwrap();
        let total = report["metrics"]["total_accuracy"]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no total accuracy in {report}", path.display()));
        assert!((0.0..=1.0).contains(&total), "{}: {total}", path.display());
        // The run kept the row's method (the overrides changed only sizes).
        let kept = Config::from_file(&run_dir.join("config.toml"), &[]).unwrap();
        assert_eq!(kept.method.name, row.method.name, "{}", path.display());
        assert_eq!(kept.model.arch, row.model.arch, "{}", path.display());
    }
    // Every method on both backbones.
    for method in ["spmix", "ce", "ce-resample", "paco", "mislas", "bcl"] {
        for arch in ["Hybrid", "Resnet50"] {
            assert!(
                methods.contains(&format!("{method}/{arch}")),
                "no shipped row for {method} on {arch}: {methods:?}"
            );
        }
    }
}
