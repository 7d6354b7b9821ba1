//! Backward passes: every trainable variable gets a gradient; the initial weights follow timm.
//! (The stem max-pool's own gradient tests are the ops crate's `tests/max_pool.rs`.)

mod common;

use candle_core::{Device, Tensor};
use common::fixture;
use model::{ModelConfig, QueryNetwork};

/// One train-mode backward through encoder (via the token seam), heads and classifier of the
/// model in fixture `config`: every trainable variable gets a finite, non-zero gradient.
fn backward_reaches_every_trainable_variable(config: &str) {
    let cfg = ModelConfig::from_toml_file(fixture(config)).unwrap();
    let dev = Device::Cpu;
    let net = QueryNetwork::new(&cfg, &dev).unwrap();
    // timm's zero_init_last starts every bottleneck's last BatchNorm at 0, which stops the
    // gradient into the residual branches: give them a weight so every path is exercised.
    for (name, var) in net.trainable_vars() {
        if name.ends_with("bn3.weight") {
            var.set(&var.ones_like().unwrap()).unwrap();
        }
    }
    let s = cfg.image_size;
    let images = Tensor::randn(0f32, 1., (3, 3, s, s), &dev).unwrap();
    let tokens = net.encoder().embed_t(&images, true).unwrap();
    let features = net.encoder().encode_t(&tokens, true).unwrap();
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
        "{config}: variables without a usable gradient:\n{}",
        bad.join("\n")
    );
    // Running statistics are in the VarMap but are not trainable.
    assert!(vars.iter().all(|(n, _)| !n.contains("running_")));
}

#[test]
fn one_backward_pass_reaches_every_trainable_variable() {
    backward_reaches_every_trainable_variable("tiny.toml");
}

#[test]
fn one_backward_pass_reaches_every_trainable_variable_of_resnet50() {
    backward_reaches_every_trainable_variable("tiny_resnet50.toml");
}

/// ResNet-50 through its token seam (`encode_t(embed_t(x))`: map -> tokens -> map) gives the
/// same features and the same gradient for every variable as the direct `forward_t(x)`, so the
/// seam SPMix mixes at changes nothing but the layout.
#[test]
fn resnet50_token_seam_gives_the_direct_features_and_gradients() {
    let cfg = ModelConfig::from_toml_file(fixture("tiny_resnet50.toml")).unwrap();
    let dev = Device::Cpu;
    let net = QueryNetwork::new(&cfg, &dev).unwrap();
    for (name, var) in net.trainable_vars() {
        if name.ends_with("bn3.weight") {
            var.set(&var.ones_like().unwrap()).unwrap();
        }
    }
    let s = cfg.image_size;
    let images = Tensor::randn(0f32, 1., (3, 3, s, s), &dev).unwrap();
    let r = Tensor::randn(0f32, 1., (3, cfg.feature_dim()), &dev).unwrap();
    let enc = net.encoder();
    let via_tokens = enc
        .encode_t(&enc.embed_t(&images, true).unwrap(), true)
        .unwrap();
    let direct = enc.forward_t(&images, true).unwrap();
    let max_abs = |t: &Tensor| -> f32 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert!(max_abs(&(&via_tokens - &direct).unwrap()) <= 1e-5 * max_abs(&direct));
    let g_tokens = (via_tokens * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g_direct = (direct * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let mut compared = 0;
    for (name, var) in net.trainable_vars() {
        let (Some(a), Some(b)) = (g_tokens.get(var.as_tensor()), g_direct.get(var.as_tensor()))
        else {
            continue; // the heads are not on this path
        };
        let e = max_abs(&(a - b).unwrap());
        assert!(
            e <= 1e-4 * max_abs(b).max(1e-6),
            "{name}: gradients differ by {e}"
        );
        compared += 1;
    }
    assert!(compared > 40, "only {compared} variables compared");
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

/// ResNet-50's initial weights follow timm's `ResNet.init_weights`: convs Kaiming-normal
/// fan-out, each bottleneck's bn3 weight 0 (`zero_init_last`), other BatchNorms 1/0, and the
/// classifier `fc` PyTorch's default `nn.Linear` (weight and bias `U(+-1/sqrt(fan_in))`).
#[test]
fn resnet50_initial_weights_follow_timm_and_every_variable_has_a_law() {
    use candle_nn::Init;
    let cfg = ModelConfig::from_toml_file(fixture("tiny_resnet50.toml")).unwrap();
    let net = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let laws = net.init_laws();
    let vars = net.trainable_vars();
    let mut zero_init = 0;
    for (name, var) in &vars {
        let Some(law) = laws.get(name) else {
            panic!("{name} has no recorded law")
        };
        if name.ends_with("bn3.weight") {
            assert!(
                matches!(law, Init::Const(c) if *c == 0.0),
                "{name}: {law:?}"
            );
            zero_init += 1;
        } else if name.contains("conv") && name.ends_with(".weight") && var.rank() == 4
            || name.contains("downsample.1.weight")
        {
            let d = var.dims();
            let fan_out = (d[0] * d[2] * d[3]) as f64;
            match law {
                Init::Randn { mean, stdev } => assert!(
                    *mean == 0.0 && (stdev - (2.0 / fan_out).sqrt()).abs() < 1e-12,
                    "{name}: {law:?}"
                ),
                other => panic!("{name} drawn from {other:?}"),
            }
        }
    }
    assert_eq!(zero_init, cfg.trunk_layers.iter().sum::<usize>());
    let bound = 1.0 / (cfg.feature_dim() as f64).sqrt();
    for name in ["fc.weight", "fc.bias"] {
        match laws[name] {
            Init::Uniform { lo, up } => {
                assert!(
                    (lo + bound).abs() < 1e-12 && (up - bound).abs() < 1e-12,
                    "{name}"
                )
            }
            other => panic!("{name} drawn from {other:?}"),
        }
    }
}

/// MiSLAS's learnable weight scaling: `with_logit_scale` adds `head.logit_scale` `(C,)`, law
/// constant 1, that multiplies the classifier's logits per class and gets their gradient;
/// `classify_unscaled` leaves it out of the graph.
#[test]
fn logit_scale_multiplies_the_logits_per_class_and_starts_at_one() {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    let dev = Device::Cpu;
    let plain = QueryNetwork::new(&cfg, &dev).unwrap();
    assert!(plain.logit_scale_name().is_none());
    let net = QueryNetwork::with_logit_scale(&cfg, &dev).unwrap();
    assert_eq!(net.logit_scale_name().as_deref(), Some("head.logit_scale"));
    assert!(matches!(net.init_laws()["head.logit_scale"], candle_nn::Init::Const(c) if c == 1.0));
    let (_, scale) = net
        .trainable_vars()
        .into_iter()
        .find(|(n, _)| n == "head.logit_scale")
        .expect("the scale is trainable");
    assert_eq!(scale.dims(), [cfg.num_classes]);
    assert_eq!(scale.to_vec1::<f32>().unwrap(), vec![1.0; cfg.num_classes]);
    let s: Vec<f32> = (0..cfg.num_classes).map(|k| 1.0 + k as f32).collect();
    scale
        .set(&Tensor::new(s.as_slice(), &dev).unwrap())
        .unwrap();

    let f = Tensor::randn(0f32, 1.0, (2, cfg.feature_dim()), &dev).unwrap();
    let scaled = net.classify(&f).unwrap().to_vec2::<f32>().unwrap();
    let unscaled = net.classify_unscaled(&f).unwrap().to_vec2::<f32>().unwrap();
    for (row_s, row_u) in scaled.iter().zip(&unscaled) {
        for (k, (a, b)) in row_s.iter().zip(row_u).enumerate() {
            assert!(
                (a - s[k] * b).abs() <= 1e-5 * (1.0 + b.abs()),
                "class {k}: {a} vs {b}"
            );
        }
    }
    let grads = net
        .classify(&f)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(scale.as_tensor()).is_some());
    let grads = net
        .classify_unscaled(&f)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(scale.as_tensor()).is_none());
}
