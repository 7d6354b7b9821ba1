//! Every config under `configs/` parses and validates, and each Table 1 / Table 2 row differs from
//! `spmix.toml` only in what its row is about.

use std::path::{Path, PathBuf};

use model::Arch;
use trainer::config::{Config, Foreground, KeyNetwork, MethodName};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn load(rel: &str) -> Config {
    let p = configs_dir().join(rel);
    Config::from_file(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()))
}

#[test]
fn every_shipped_config_parses() {
    let mut seen = 0;
    let mut stack = vec![configs_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                let cfg =
                    Config::from_file(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                cfg.validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 10, "found only {seen} configs");
}

#[test]
fn rows_change_only_their_switch() {
    let base = load("spmix.toml");
    let with = |f: &dyn Fn(&mut Config)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let rows: [(&str, Config); 10] = [
        (
            "baselines/mislas.toml",
            with(&|c| c.method.name = MethodName::Mislas),
        ),
        (
            "baselines/bcl.toml",
            with(&|c| c.method.name = MethodName::Bcl),
        ),
        (
            "baselines/ce.toml",
            with(&|c| c.method.name = MethodName::Ce),
        ),
        (
            "baselines/ce-resample.toml",
            with(&|c| c.method.name = MethodName::CeResample),
        ),
        (
            "baselines/paco.toml",
            with(&|c| c.method.name = MethodName::Paco),
        ),
        ("ablation/no-patch.toml", with(&|c| c.mix.patch = false)),
        (
            "ablation/no-saliency.toml",
            with(&|c| c.mix.saliency = false),
        ),
        (
            "ablation/no-patch-no-saliency.toml",
            with(&|c| {
                c.mix.patch = false;
                c.mix.saliency = false
            }),
        ),
        (
            "ablation/foreground-instance.toml",
            with(&|c| c.mix.foreground = Foreground::Instance),
        ),
        (
            "ablation/shared-keys.toml",
            with(&|c| c.method.key_network = KeyNetwork::Shared),
        ),
    ];
    for (rel, mut want) in rows {
        let got = load(rel);
        // Run names differ by design.
        want.run.name = got.run.name.clone();
        assert_eq!(
            got, want,
            "{rel} differs from spmix.toml in more than its row's switch"
        );
    }
}

/// Table 1's ResNet-50 rows: each equals its hybrid row (spmix.toml, baselines/*.toml) with only
/// the model keys swapped for timm's resnet50d (`arch`, four-entry `trunk_layers` and
/// `trunk_channels`).
#[test]
fn resnet50_rows_differ_from_their_hybrid_rows_only_in_the_model_keys() {
    let to_resnet50 = |mut c: Config| {
        c.model.arch = Arch::Resnet50;
        c.model.trunk_layers = vec![3, 4, 6, 3];
        c.model.trunk_channels = vec![64, 128, 256, 512];
        c
    };
    assert_eq!(
        load("resnet50.toml").model.feature_dim(),
        2048,
        "not timm's resnet50d"
    );
    for (resnet, hybrid) in [
        ("resnet50.toml", "spmix.toml"),
        ("baselines/resnet50/ce.toml", "baselines/ce.toml"),
        (
            "baselines/resnet50/ce-resample.toml",
            "baselines/ce-resample.toml",
        ),
        ("baselines/resnet50/paco.toml", "baselines/paco.toml"),
        ("baselines/resnet50/mislas.toml", "baselines/mislas.toml"),
        ("baselines/resnet50/bcl.toml", "baselines/bcl.toml"),
    ] {
        let got = load(resnet);
        let mut want = to_resnet50(load(hybrid));
        assert_eq!(load(hybrid).model.arch, Arch::Hybrid, "{hybrid}");
        // Run names differ by design.
        want.run.name = got.run.name.clone();
        assert_eq!(
            got, want,
            "{resnet} differs from {hybrid} in more than the model keys"
        );
    }
}

/// The ResNet-50 benchmark preset is bench.toml with only the model swapped, so its rows in
/// RESULTS.md differ from the hybrid rows in the backbone alone.
#[test]
fn resnet50_bench_preset_differs_from_bench_only_in_the_model_keys() {
    let got = load("bench-resnet50.toml");
    let mut want = load("bench.toml");
    want.model.arch = Arch::Resnet50;
    want.model.trunk_layers = vec![1, 1, 1, 1];
    want.model.trunk_channels = vec![16, 32, 64, 128];
    want.run.name = got.run.name.clone();
    assert_eq!(got, want);
}
