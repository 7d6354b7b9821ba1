//! Backward passes: every trainable variable gets a gradient; the stem max-pool's gradient
//! matches finite differences and goes to the first maximum.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::fixture;
use model::max_pool::stem_max_pool;
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

/// Direct reference of the pool: for each output, the first max of its clipped window.
fn reference_pool(x: &[f32], h: usize, w: usize) -> (Vec<f32>, Vec<usize>) {
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let (mut out, mut arg) = (vec![], vec![]);
    for oh in 0..ho {
        for ow in 0..wo {
            let mut best = (usize::MAX, f32::NEG_INFINITY);
            for ih in (2 * oh).saturating_sub(1)..(2 * oh + 2).min(h) {
                for iw in (2 * ow).saturating_sub(1)..(2 * ow + 2).min(w) {
                    if best.0 == usize::MAX || x[ih * w + iw] > best.1 {
                        best = (ih * w + iw, x[ih * w + iw]);
                    }
                }
            }
            out.push(best.1);
            arg.push(best.0);
        }
    }
    (out, arg)
}

#[test]
fn stem_max_pool_forward_and_backward_match_reference_with_ties() {
    let dev = Device::Cpu;
    for &(h, w) in &[(7usize, 6usize), (8, 9), (1, 1), (2, 5)] {
        // Small integers give many ties; the gradient must go to the first max only.
        let data: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 7919 + 13) % 5) as f32)
            .collect();
        let x =
            Var::from_tensor(&Tensor::from_vec(data.clone(), (1, 2, h, w), &dev).unwrap()).unwrap();
        let y = stem_max_pool(x.as_tensor()).unwrap();
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        assert_eq!(y.dims(), &[1, 2, ho, wo]);
        let gy = Tensor::randn(0f32, 1., (1, 2, ho, wo), &dev).unwrap();
        let grads = (y.clone() * &gy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let gyv: Vec<f32> = gy.flatten_all().unwrap().to_vec1().unwrap();
        for p in 0..2 {
            let plane = &data[p * h * w..(p + 1) * h * w];
            let (out, arg) = reference_pool(plane, h, w);
            assert_eq!(
                &yv[p * ho * wo..(p + 1) * ho * wo],
                out.as_slice(),
                "forward {h}x{w}"
            );
            let mut want = vec![0f32; h * w];
            for (o, &a) in arg.iter().enumerate() {
                want[a] += gyv[p * ho * wo + o];
            }
            for (i, (g, e)) in gx[p * h * w..(p + 1) * h * w].iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() < 1e-6,
                    "grad {h}x{w} plane {p} elem {i}: {g} vs {e}"
                );
            }
        }
    }
}

#[test]
fn stem_max_pool_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let (h, w) = (9, 8);
    // Distinct values (a random permutation scaled) so the max is unique and differentiable.
    let n = 2 * 3 * h * w;
    let mut vals: Vec<f32> = (0..n).map(|i| ((i * 37) % n) as f32 * 0.01).collect();
    vals.rotate_left(5);
    let x = Var::from_tensor(&Tensor::from_vec(vals.clone(), (2, 3, h, w), &dev).unwrap()).unwrap();
    let gy = Tensor::randn(0f32, 1., (2, 3, 5, 4), &dev).unwrap();
    let loss = |t: &Tensor| -> f64 {
        (stem_max_pool(t).unwrap() * &gy)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = (stem_max_pool(x.as_tensor()).unwrap() * &gy)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<f32> = grads
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let eps = 1e-3f32; // values are 0.01 apart: a perturbation never changes the argmax
    for i in 0..n {
        let mut plus = vals.clone();
        plus[i] += eps;
        let mut minus = vals.clone();
        minus[i] -= eps;
        let fd = (loss(&Tensor::from_vec(plus, (2, 3, h, w), &dev).unwrap())
            - loss(&Tensor::from_vec(minus, (2, 3, h, w), &dev).unwrap()))
            / (2.0 * eps as f64);
        assert!(
            (fd - g[i] as f64).abs() < 1e-2,
            "element {i}: analytic {} vs fd {fd}",
            g[i]
        );
    }
    assert!(g.iter().any(|&v| v != 0.0));
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
