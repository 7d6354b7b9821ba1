//! Backward passes: every trainable variable gets a gradient; the initial weights follow timm.
//! (The stem max-pool's own gradient tests are the ops crate's `tests/max_pool.rs`.)

mod common;

use candle_core::{Device, Tensor};
use common::fixture;
use model::{ModelConfig, QueryNetwork};

#[test]
fn one_backward_pass_reaches_every_trainable_variable() {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    let dev = Device::Cpu;
    let net = QueryNetwork::new(&cfg, &dev).unwrap();
    // timm's zero_init_last starts every bottleneck's last BatchNorm at 0, which stops the
    // gradient into the residual branches: give them a weight so every path is exercised.
    for (name, var) in net.trainable_vars() {
        if name.ends_with("bn3.weight") {
            var.set(&var.ones_like().unwrap()).unwrap();
        }
    }
    let images = Tensor::randn(0f32, 1., (3, 3, 40, 40), &dev).unwrap();
    let tokens = net.encoder().embed_t(&images, true).unwrap();
    let features = net.encoder().encode(&tokens).unwrap();
    let (q, logits) = net.heads_t(&features, true).unwrap();
    // Random weights: a plain sum through a BatchNorm without affine has zero gradient.
    let wq = Tensor::randn(0f32, 1., q.dims(), &dev).unwrap();
    let wl = Tensor::randn(0f32, 1., logits.dims(), &dev).unwrap();
    let loss =
        ((q * wq).unwrap().sum_all().unwrap() + (logits * wl).unwrap().sum_all().unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let vars = net.trainable_vars();
    assert!(
        vars.len() > 50,
        "expected the whole network, got {} variables",
        vars.len()
    );
    let mut bad = Vec::new();
    for (name, var) in &vars {
        match grads.get(var.as_tensor()) {
            None => bad.push(format!("{name}: no gradient")),
            Some(g) => {
                let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                if v.iter().any(|x| !x.is_finite()) {
                    bad.push(format!("{name}: non-finite gradient"));
                } else if v.iter().all(|&x| x == 0.0) {
                    bad.push(format!("{name}: zero gradient"));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "variables without a usable gradient:\n{}",
        bad.join("\n")
    );
    // Running statistics are in the VarMap but are not trainable.
    assert!(vars.iter().all(|(n, _)| !n.contains("running_")));
}

/// The network's own initial weights follow timm: each bottleneck's last BatchNorm weight is 0
/// (`zero_init_last`) and the token projection is PyTorch's default conv init; every variable's
/// law is recorded, so a caller that re-draws the weights never has to guess.
#[test]
fn initial_weights_follow_timm_and_every_variable_has_a_law() {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    let net = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let laws = net.init_laws();
    let vars = net.trainable_vars();
    for (name, _) in &vars {
        assert!(laws.contains_key(name), "{name} has no recorded law");
    }
    let mut zero_init = 0;
    for (name, var) in &vars {
        if name.ends_with("bn3.weight") {
            let v: Vec<f32> = var.as_tensor().to_vec1().unwrap();
            assert!(v.iter().all(|&x| x == 0.0), "{name} is not zero");
            assert!(matches!(laws[name], candle_nn::Init::Const(c) if c == 0.0));
            zero_init += 1;
        }
    }
    assert_eq!(zero_init, cfg.trunk_layers.iter().sum::<usize>());
    let fan_in = cfg.trunk_out_channels() as f64;
    let bound = 1.0 / fan_in.sqrt();
    match laws["patch_embed.proj.weight"] {
        candle_nn::Init::Uniform { lo, up } => {
            assert!((lo + bound).abs() < 1e-12 && (up - bound).abs() < 1e-12)
        }
        other => panic!("patch_embed.proj.weight drawn from {other:?}"),
    }
}
