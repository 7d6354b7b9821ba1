//! Loading errors name the tensors at fault; prefixes are stripped; options behave.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::{fixture, load};
use model::{LoadOptions, ModelConfig, ModelError, QueryNetwork};

fn tiny() -> QueryNetwork {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    QueryNetwork::new(&cfg, &Device::Cpu).unwrap()
}

fn save(map: &HashMap<String, Tensor>) -> tempfile::TempPath {
    let path = tempfile::Builder::new()
        .suffix(".safetensors")
        .tempfile()
        .unwrap()
        .into_temp_path();
    candle_core::safetensors::save(map, &path).unwrap();
    path
}

#[test]
fn errors_list_missing_unexpected_and_misshaped_tensors_and_change_nothing() {
    let net = tiny();
    let before = net.tensors().unwrap()["blocks.0.attn.qkv.weight"].clone();
    let mut w = load("tiny_weights.safetensors");
    w.remove("blocks.1.mlp.fc2.bias");
    w.insert(
        "blocks.9.attn.qkv.weight".into(),
        Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    w.insert(
        "pos_embed".into(),
        Tensor::zeros((1, 5, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let path = save(&w);
    let err = net
        .load_safetensors(&path, &LoadOptions::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::WeightsMismatch { .. }));
    for needle in [
        "blocks.1.mlp.fc2.bias",
        "blocks.9.attn.qkv.weight",
        "pos_embed: file [1, 5, 32], model [1, 10, 32]",
        "missing",
        "unexpected",
        "wrong shape",
        path.to_str().unwrap(),
    ] {
        assert!(msg.contains(needle), "error lacks {needle:?}:\n{msg}");
    }
    let after = net.tensors().unwrap()["blocks.0.attn.qkv.weight"].clone();
    assert_eq!(
        common::rel_err(&after, &before),
        0.0,
        "a failed load must not write"
    );
}

#[test]
fn module_and_base_encoder_prefixes_are_stripped_and_num_batches_tracked_ignored() {
    let net = tiny();
    let w = load("tiny_weights.safetensors");
    let mut prefixed: HashMap<String, Tensor> = w
        .iter()
        .map(|(k, v)| (format!("module.base_encoder.{k}"), v.clone()))
        .collect();
    prefixed.insert(
        "module.base_encoder.norm.num_batches_tracked".into(),
        Tensor::new(&[3i64], &Device::Cpu).unwrap(),
    );
    let path = save(&prefixed);
    let report = net
        .load_safetensors(&path, &LoadOptions::default())
        .unwrap();
    assert_eq!(report.loaded.len(), w.len());
    let got = &net.tensors().unwrap()["blocks.1.attn.proj.weight"];
    assert_eq!(common::rel_err(got, &w["blocks.1.attn.proj.weight"]), 0.0);
}

#[test]
fn encoder_only_state_dict_loads_and_unexpected_can_be_allowed() {
    let net = tiny();
    let mut w = load("tiny_weights.safetensors");
    w.retain(|k, _| {
        !k.starts_with("projector.") && !k.starts_with("predictor.") && !k.starts_with("head.")
    });
    let path = save(&w);
    // Strict load: the heads are missing.
    let msg = net
        .load_safetensors(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("head.weight") && msg.contains("projector.0.weight"),
        "{msg}"
    );
    let report = net.load_encoder(&path).unwrap();
    assert!(report.kept.contains(&"head.weight".to_string()));
    assert_eq!(report.loaded.len(), w.len());

    w.insert(
        "extra.thing".into(),
        Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let path = save(&w);
    let opts = LoadOptions {
        allow_unexpected: true,
        optional_prefixes: vec!["projector.".into(), "predictor.".into(), "head.".into()],
        ..Default::default()
    };
    let report = net.load_safetensors(&path, &opts).unwrap();
    assert_eq!(report.ignored, vec!["extra.thing".to_string()]);
}

#[test]
fn trunk_load_names_missing_trunk_tensors() {
    let net = tiny();
    let mut w = load("tiny_resnet.safetensors");
    w.remove("layer2.0.downsample.2.running_var");
    let path = save(&w);
    let msg = net.load_resnet_trunk(&path).unwrap_err().to_string();
    assert!(
        msg.contains("patch_embed.backbone.layer2.0.downsample.2.running_var"),
        "{msg}"
    );
}

#[test]
fn config_rejects_unknown_keys_and_bad_sizes_naming_them() {
    let text = std::fs::read_to_string(fixture("tiny.toml")).unwrap();
    let typo = text.replace("depth = 2", "dept = 2");
    let msg = ModelConfig::from_toml_str(&typo, "typo.toml")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("dept") && msg.contains("typo.toml"), "{msg}");
    let heads = text.replace("num_heads = 4", "num_heads = 5");
    let msg = ModelConfig::from_toml_str(&heads, "h.toml")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("num_heads = 5"), "{msg}");
    // Other tables of a trainer config are ignored.
    let with_other = format!("[train]\nepochs = 3\n\n{text}");
    assert!(ModelConfig::from_toml_str(&with_other, "t.toml").is_ok());
}

fn tiny_resnet50() -> QueryNetwork {
    let cfg = ModelConfig::from_toml_file(fixture("tiny_resnet50.toml")).unwrap();
    QueryNetwork::new(&cfg, &Device::Cpu).unwrap()
}

/// A timm ResNet-D state dict (no heads) with an ImageNet-sized `fc` loads whole into a
/// `resnet50`: every backbone tensor is set, the 1000-class `fc` is reported as mismatched and
/// left alone, the absent projector/predictor are kept.
#[test]
fn resnet50d_loads_whole_and_reports_a_mismatched_classifier() {
    let net = tiny_resnet50();
    let fc_before = net.tensors().unwrap()["fc.weight"].clone();
    let mut w: HashMap<String, Tensor> = load("tiny_resnet50_weights.safetensors")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("projector.") && !n.starts_with("predictor."))
        .collect();
    let backbone = w.len() - 2;
    let c4 = w["fc.weight"].dim(1).unwrap();
    w.insert(
        "fc.weight".into(),
        Tensor::zeros((1000, c4), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    w.insert(
        "fc.bias".into(),
        Tensor::zeros(1000, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    w.insert(
        "module.layer1.0.bn1.num_batches_tracked".into(),
        Tensor::zeros((), candle_core::DType::I64, &Device::Cpu).unwrap(),
    );
    let report = net.load_resnet50d(save(&w)).unwrap();
    assert_eq!(report.loaded.len(), backbone);
    assert!(report.loaded.iter().any(|n| n == "layer4.1.conv3.weight"));
    assert_eq!(
        report.mismatched,
        vec![
            format!("fc.bias: file [1000], model [5]"),
            format!("fc.weight: file [1000, {c4}], model [5, {c4}]"),
        ]
    );
    assert!(report.kept.iter().any(|n| n == "projector.0.weight"));
    assert!(report.kept.iter().all(|n| !n.starts_with("fc.")));
    let t = net.tensors().unwrap();
    let same = (&t["fc.weight"] - &fc_before)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(same, 0.0, "a mismatched classifier must not change fc");

    // A matching classifier loads; a missing backbone tensor is an error naming it.
    let full = load("tiny_resnet50_weights.safetensors");
    let report = net.load_resnet50d(save(&full)).unwrap();
    assert!(report.mismatched.is_empty() && report.kept.is_empty());
    let mut broken = full.clone();
    broken.remove("layer3.0.downsample.2.running_mean");
    let msg = net.load_resnet50d(save(&broken)).unwrap_err().to_string();
    assert!(msg.contains("layer3.0.downsample.2.running_mean"), "{msg}");
}

#[test]
fn each_arch_refuses_the_other_archs_resnet_loader() {
    let msg = tiny_resnet50()
        .load_resnet_trunk(fixture("tiny_resnet.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("load_resnet50d"), "{msg}");
    let msg = tiny()
        .load_resnet50d(fixture("tiny_resnet.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("load_resnet_trunk"), "{msg}");
}

#[test]
fn stage_lists_must_fit_the_arch_and_errors_name_the_key() {
    let hybrid = std::fs::read_to_string(fixture("tiny.toml")).unwrap();
    let four = hybrid.replace("trunk_layers = [2, 1, 2]", "trunk_layers = [2, 1, 2, 1]");
    let msg = ModelConfig::from_toml_str(&four, "h.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("trunk_layers") && msg.contains("\"hybrid\" has 3"),
        "{msg}"
    );
    let resnet = std::fs::read_to_string(fixture("tiny_resnet50.toml")).unwrap();
    let three = resnet.replace(
        "trunk_channels = [4, 8, 8, 16]",
        "trunk_channels = [4, 8, 8]",
    );
    let msg = ModelConfig::from_toml_str(&three, "r.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("trunk_channels") && msg.contains("\"resnet50\" has 4"),
        "{msg}"
    );
    let bad_arch = resnet.replace("\"resnet50\"", "\"resnet18\"");
    let msg = ModelConfig::from_toml_str(&bad_arch, "a.toml")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("resnet18") && msg.contains("a.toml"), "{msg}");
    // The transformer keys are optional (and unused) for resnet50, required for the hybrid.
    let cfg = ModelConfig::from_toml_str(&resnet, "r.toml").unwrap();
    assert_eq!((cfg.token_dim(), cfg.feature_dim()), (32, 64));
    let no_depth = hybrid.replace("depth = 2\n", "");
    assert!(ModelConfig::from_toml_str(&no_depth, "h.toml").is_err());
}
