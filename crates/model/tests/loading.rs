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
