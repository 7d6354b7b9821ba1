//! Parity of the plain ResNet-50-D backbone (`arch = "resnet50"`) with timm's `ResNet` built as
//! `resnet50d` builds it, on the tiny fixtures written by `scripts/make_fixtures.py`
//! (`tiny_resnet50*`): tokens (stage-3 map flattened), pooled features, logits, projector and
//! predictor in eval and train mode, and the running statistics after one train-mode forward.

mod common;

use candle_core::{Device, ModuleT};
use common::{check_outputs_against_fixture, fixture, load, rel_err};
use model::{Arch, ModelConfig, QueryNetwork};

const TOL: f32 = 1e-4;

fn tiny() -> QueryNetwork {
    let cfg = ModelConfig::from_toml_file(fixture("tiny_resnet50.toml")).unwrap();
    assert_eq!(cfg.arch, Arch::Resnet50);
    let net = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let report = net
        .load_safetensors(
            fixture("tiny_resnet50_weights.safetensors"),
            &Default::default(),
        )
        .unwrap();
    assert!(report.kept.is_empty() && report.ignored.is_empty());
    net
}

fn check_mode(train: bool) {
    let io = load("tiny_resnet50_io.safetensors");
    check_outputs_against_fixture(&tiny(), &io, train, true, TOL);
}

#[test]
fn eval_mode_matches_timm() {
    check_mode(false);
}

#[test]
fn train_mode_matches_timm_and_updates_running_stats_like_pytorch() {
    check_mode(true);
    let net = tiny();
    let io = load("tiny_resnet50_io.safetensors");
    let f = net.encoder().forward_t(&io["images"], true).unwrap();
    let p = net.projector().forward_t(&f, true).unwrap();
    net.predictor().forward_t(&p, true).unwrap();
    let after = load("tiny_resnet50_after_train.safetensors");
    let mine = net.tensors().unwrap();
    assert!(after.keys().any(|n| n.starts_with("layer4.")));
    for (name, want) in &after {
        let e = rel_err(&mine[name], want);
        assert!(e <= TOL, "{name} after a train step: relative error {e:e}");
    }
}

#[test]
fn timm_names_cover_the_whole_network() {
    let net = tiny();
    let names: Vec<String> = net.tensors().unwrap().into_keys().collect();
    for want in [
        "conv1.0.weight",
        "conv1.1.running_var",
        "bn1.weight",
        "layer1.0.downsample.1.weight",
        "layer4.1.bn3.weight",
        "fc.weight",
        "fc.bias",
        "projector.0.weight",
        "predictor.3.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("head.") || n.starts_with("patch_embed.")),
        "hybrid names in a resnet50"
    );
}
