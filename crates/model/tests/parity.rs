//! Parity with timm on the tiny fixtures written by `scripts/make_fixtures.py`.

mod common;

use candle_core::{Device, ModuleT};
use common::{check_outputs_against_fixture, fixture, load, rel_err};
use model::{ModelConfig, QueryNetwork};

const TOL: f32 = 1e-4;

fn tiny() -> QueryNetwork {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    let net = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let report = net
        .load_safetensors(fixture("tiny_weights.safetensors"), &Default::default())
        .unwrap();
    assert!(report.kept.is_empty() && report.ignored.is_empty());
    net
}

fn check_mode(train: bool) {
    let io = load("tiny_io.safetensors");
    check_outputs_against_fixture(&tiny(), &io, train, false, TOL);
}

#[test]
fn eval_mode_matches_timm() {
    check_mode(false);
}

#[test]
fn train_mode_matches_timm_and_updates_running_stats_like_pytorch() {
    check_mode(true);
    // One more train-mode forward from fresh weights, then compare every running statistic
    // with PyTorch's after its single train-mode forward (unbiased variance, momentum 0.1).
    let net = tiny();
    let io = load("tiny_io.safetensors");
    let f = net.encoder().forward_t(&io["images"], true).unwrap();
    let p = net.projector().forward_t(&f, true).unwrap();
    net.predictor().forward_t(&p, true).unwrap();
    let after = load("tiny_after_train.safetensors");
    let mine = net.tensors().unwrap();
    assert!(!after.is_empty());
    for (name, want) in &after {
        let e = rel_err(&mine[name], want);
        assert!(e <= TOL, "{name} after a train step: relative error {e:e}");
    }
}

#[test]
fn plain_timm_resnet_state_dict_loads_into_trunk_and_matches() {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    let net = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let report = net
        .load_resnet_trunk(fixture("tiny_resnet.safetensors"))
        .unwrap();
    assert!(report.ignored.iter().any(|n| n.starts_with("layer4.")));
    assert!(report.ignored.iter().any(|n| n == "fc.weight"));
    let io = load("tiny_resnet_io.safetensors");
    let got = net
        .encoder()
        .trunk()
        .forward_t(&io["images"], false)
        .unwrap();
    let e = rel_err(&got, &io["features"]);
    assert!(e <= TOL, "trunk features: relative error {e:e}");
}
