//! The fused CPU kernels (im2col convolution, BatchNorm2d, LayerNorm, GELU, softmax, linear,
//! self-attention) against the candle ops they replace: same outputs and same gradients, f32,
//! relative error <= 1e-4.

use candle_core::{DType, Device, ModuleT, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use ops::activation::{gelu_erf, softmax_last_dim};
use ops::batch_norm::BatchNorm2d;
use ops::im2col::conv2d_im2col;
use ops::layer_norm::layer_norm;

const TOL: f32 = 1e-4;

fn randn(shape: &[usize], std: f64) -> Tensor {
    Tensor::randn(0f32, std as f32, shape, &Device::Cpu).unwrap()
}

/// Output of `f(inputs)` and the gradients of `sum(f(inputs) * r)` for a random `r`, for the
/// same `r` across calls that share `r`.
fn run(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor], r: &Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = ts
        .iter()
        .map(|t| grads.get(t).expect("gradient for every input").clone())
        .collect();
    (y, g)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let e = ops::compare::rel_err(got, want).unwrap();
    assert!(e <= TOL, "{what}: relative error {e:e} > {TOL:e}");
}

#[test]
fn im2col_conv_matches_candle_conv2d_forward_and_gradients() {
    // (batch, cin, cout, h, w, k, stride, padding)
    let cases = [
        (2, 3, 4, 9, 7, 3, 1, 1),
        (2, 3, 4, 9, 7, 3, 2, 1),
        (1, 5, 3, 11, 11, 3, 2, 0),
        (2, 4, 6, 8, 8, 3, 1, 0),
        (2, 6, 5, 10, 10, 3, 2, 1),
        (2, 3, 5, 15, 15, 7, 2, 3),
        (1, 2, 3, 9, 9, 7, 1, 0),
        (2, 2, 4, 13, 13, 7, 1, 1),
        // 1x1 stride 1: the input is its own columns (no unfold).
        (3, 4, 6, 5, 5, 1, 1, 0),
        (2, 4, 6, 6, 6, 1, 2, 0),
    ];
    for (b, cin, cout, h, w, k, s, p) in cases {
        let what = format!("b{b} cin{cin} cout{cout} {h}x{w} k{k} s{s} p{p}");
        let x = randn(&[b, cin, h, w], 1.0);
        let wt = randn(&[cout, cin, k, k], 0.3);
        let ho = (h + 2 * p - k) / s + 1;
        let wo = (w + 2 * p - k) / s + 1;
        let r = randn(&[b, cout, ho, wo], 1.0);
        let (y, g) = run(
            |t| conv2d_im2col(&t[0], &t[1], s, p).unwrap(),
            &[x.clone(), wt.clone()],
            &r,
        );
        let (y0, g0) = run(|t| t[0].conv2d(&t[1], p, s, 1, 1).unwrap(), &[x, wt], &r);
        assert_close(&format!("{what} output"), &y, &y0);
        assert_close(&format!("{what} input gradient"), &g[0], &g0[0]);
        assert_close(&format!("{what} weight gradient"), &g[1], &g0[1]);
    }
}

#[test]
fn im2col_of_a_non_square_input_matches_a_direct_convolution() {
    // candle's own conv2d backward takes its output padding from the height alone and fails
    // (shape mismatch) here, so this non-square stride-2 case is checked against direct sums.
    let (b, cin, cout, h, w, k, s, p) = (2, 3, 2, 9, 6, 3, 2, 1);
    let x = randn(&[b, cin, h, w], 1.0);
    let wt = randn(&[cout, cin, k, k], 0.3);
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let r = randn(&[b, cout, ho, wo], 1.0);
    let (y, g) = run(
        |t| conv2d_im2col(&t[0], &t[1], s, p).unwrap(),
        &[x.clone(), wt.clone()],
        &r,
    );
    let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let wv = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rv = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut yw = vec![0f32; b * cout * ho * wo];
    let mut gx = vec![0f32; xv.len()];
    let mut gw = vec![0f32; wv.len()];
    for bi in 0..b {
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let oi = ((bi * cout + co) * ho + oy) * wo + ox;
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy * s + ky) as isize - p as isize,
                                    (ox * s + kx) as isize - p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((bi * cin + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((co * cin + ci) * k + ky) * k + kx;
                                yw[oi] += xv[xi] * wv[wi];
                                gx[xi] += rv[oi] * wv[wi];
                                gw[wi] += rv[oi] * xv[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    let t = |v: Vec<f32>, like: &Tensor| Tensor::from_vec(v, like.dims(), &Device::Cpu).unwrap();
    assert_close("output", &y, &t(yw, &y));
    assert_close("input gradient", &g[0], &t(gx, &x));
    assert_close("weight gradient", &g[1], &t(gw, &wt));
}

/// A BatchNorm2d and candle-nn's BatchNorm over the same random affine parameters.
fn batch_norms(c: usize) -> (BatchNorm2d, candle_nn::BatchNorm, VarMap, VarMap) {
    let (mut vm, mut vm0) = (VarMap::new(), VarMap::new());
    let bn = BatchNorm2d::new(c, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let bn0 = ops::batch_norm::batch_norm(
        c,
        true,
        VarBuilder::from_varmap(&vm0, DType::F32, &Device::Cpu),
    )
    .unwrap();
    for (name, t) in [
        ("weight", (randn(&[c], 0.5) + 1.0).unwrap()),
        ("bias", randn(&[c], 0.5)),
        ("running_mean", randn(&[c], 0.5)),
        (
            "running_var",
            (randn(&[c], 0.1).abs().unwrap() + 0.5).unwrap(),
        ),
    ] {
        vm.set_one(name, &t).unwrap();
        vm0.set_one(name, &t).unwrap();
    }
    (bn, bn0, vm, vm0)
}

#[test]
fn batch_norm_train_matches_candle_nn_outputs_gradients_and_running_stats() {
    for (shape, relu) in [
        ([3usize, 5, 7, 6], false),
        ([3, 5, 7, 6], true),
        ([3, 4, 1, 1], true),
        ([2, 8, 5, 3], false),
    ] {
        let what = format!("{shape:?} relu {relu}");
        let c = shape[1];
        let (bn, bn0, vm, vm0) = batch_norms(c);
        let x = (randn(&shape, 2.0) + 0.5).unwrap();
        let r = randn(&shape, 1.0);
        let params = |vm: &VarMap| {
            let d = vm.data().lock().unwrap();
            (
                d["weight"].as_tensor().clone(),
                d["bias"].as_tensor().clone(),
            )
        };
        let check = |vm: &VarMap, f: &dyn Fn(&Tensor) -> Tensor| {
            let xv = Var::from_tensor(&x).unwrap();
            let y = f(xv.as_tensor());
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (w, b) = params(vm);
            let g = |t: &Tensor| grads.get(t).unwrap().clone();
            (y, g(xv.as_tensor()), g(&w), g(&b))
        };
        let (y, gx, gw, gb) = check(&vm, &|x| {
            if relu {
                bn.forward_relu_t(x, true).unwrap()
            } else {
                bn.forward_t(x, true).unwrap()
            }
        });
        let (y0, gx0, gw0, gb0) = check(&vm0, &|x| {
            let y = bn0.forward_t(x, true).unwrap();
            if relu {
                y.relu().unwrap()
            } else {
                y
            }
        });
        assert_close(&format!("{what} output"), &y, &y0);
        assert_close(&format!("{what} input gradient"), &gx, &gx0);
        assert_close(&format!("{what} weight gradient"), &gw, &gw0);
        assert_close(&format!("{what} bias gradient"), &gb, &gb0);
        assert_close(
            &format!("{what} running mean"),
            bn.running_mean(),
            bn0.running_mean(),
        );
        assert_close(
            &format!("{what} running var"),
            bn.running_var(),
            bn0.running_var(),
        );
        // Eval mode is candle-nn's: same numbers from the same (updated) statistics.
        assert_close(
            &format!("{what} eval output"),
            &bn.forward_t(&x, false).unwrap(),
            &bn0.forward_t(&x, false).unwrap(),
        );
    }
}

#[test]
fn batch_norm_train_refuses_a_single_value_per_channel() {
    let (bn, ..) = batch_norms(3);
    let err = bn.forward_t(&randn(&[1, 3, 1, 1], 1.0), true).unwrap_err();
    assert!(err.to_string().contains("more than one value"), "{err}");
}

#[test]
fn layer_norm_matches_composed_ops() {
    for shape in [[2usize, 5, 16], [3, 1, 7], [4, 1, 768]] {
        let c = shape[2];
        let x = (randn(&shape, 3.0) + 1.0).unwrap();
        let w = (randn(&[c], 0.5) + 1.0).unwrap();
        let b = randn(&[c], 0.5);
        let r = randn(&shape, 1.0);
        let eps = 1e-6;
        let (y, g) = run(
            |t| layer_norm(&t[0], &t[1], &t[2], eps).unwrap(),
            &[x.clone(), w.clone(), b.clone()],
            &r,
        );
        let (y0, g0) = run(
            |t| {
                let mean = t[0].mean_keepdim(D::Minus1).unwrap();
                let xc = t[0].broadcast_sub(&mean).unwrap();
                let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                let xn = xc
                    .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
                    .unwrap();
                xn.broadcast_mul(&t[1])
                    .unwrap()
                    .broadcast_add(&t[2])
                    .unwrap()
            },
            &[x, w, b],
            &r,
        );
        assert_close(&format!("{shape:?} output"), &y, &y0);
        for (i, name) in ["input", "weight", "bias"].iter().enumerate() {
            assert_close(&format!("{shape:?} {name} gradient"), &g[i], &g0[i]);
        }
    }
}

#[test]
fn gelu_and_softmax_match_candle() {
    let x = randn(&[3, 4, 37], 3.0);
    let r = randn(&[3, 4, 37], 1.0);
    let (y, g) = run(|t| gelu_erf(&t[0]).unwrap(), std::slice::from_ref(&x), &r);
    let (y0, g0) = run(|t| t[0].gelu_erf().unwrap(), std::slice::from_ref(&x), &r);
    assert_close("gelu output", &y, &y0);
    assert_close("gelu gradient", &g[0], &g0[0]);
    // Large logits: the max subtraction keeps exp finite.
    let x = (x * 10.0).unwrap();
    let (y, g) = run(
        |t| softmax_last_dim(&t[0]).unwrap(),
        std::slice::from_ref(&x),
        &r,
    );
    let (y0, g0) = run(
        |t| candle_nn::ops::softmax(&t[0], D::Minus1).unwrap(),
        &[x],
        &r,
    );
    assert_close("softmax output", &y, &y0);
    assert_close("softmax gradient", &g[0], &g0[0]);
}

#[test]
fn linear_matches_composed_matmul_and_bias() {
    // (input shape, out): 3-d and 2-d inputs, one row, and enough rows (300) for several
    // blocks of the bias gradient's column sums.
    for (shape, out) in [
        (vec![2usize, 5, 12], 7),
        (vec![3, 12], 7),
        (vec![1, 1, 1, 12], 7),
        (vec![3, 100, 24], 200),
    ] {
        for dtype in [DType::F32, DType::F64] {
            let what = format!("{shape:?} -> {out} {dtype:?}");
            let in_dim = *shape.last().unwrap();
            let cast = |t: Tensor| t.to_dtype(dtype).unwrap();
            let x = cast(randn(&shape, 1.0));
            let w = cast(randn(&[out, in_dim], 0.5));
            let b = cast(randn(&[out], 0.5));
            let mut out_shape = shape.clone();
            *out_shape.last_mut().unwrap() = out;
            let r = cast(randn(&out_shape, 1.0));
            let (y, g) = run(
                |t| ops::linear::linear(&t[0], &t[1], &t[2]).unwrap(),
                &[x.clone(), w.clone(), b.clone()],
                &r,
            );
            let (y0, g0) = run(
                |t| {
                    t[0].broadcast_matmul(&t[1].t().unwrap())
                        .unwrap()
                        .broadcast_add(&t[2])
                        .unwrap()
                },
                &[x, w, b],
                &r,
            );
            assert_eq!(y.dtype(), dtype, "{what}");
            let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            assert_close(&format!("{what} output"), &f32s(&y), &f32s(&y0));
            for (i, name) in ["input", "weight", "bias"].iter().enumerate() {
                assert_eq!(g[i].dims(), g0[i].dims(), "{what} {name} gradient shape");
                assert_close(
                    &format!("{what} {name} gradient"),
                    &f32s(&g[i]),
                    &f32s(&g0[i]),
                );
            }
        }
    }
}

#[test]
fn linear_of_a_non_contiguous_weight_and_mismatched_shapes() {
    // A transposed weight view: made contiguous on the way in, gradient still reaches it.
    let x = randn(&[4, 6], 1.0);
    let wt = randn(&[6, 5], 0.5);
    let b = randn(&[5], 0.5);
    let r = randn(&[4, 5], 1.0);
    let (y, g) = run(
        |t| ops::linear::linear(&t[0], &t[1].t().unwrap(), &t[2]).unwrap(),
        &[x.clone(), wt.clone(), b.clone()],
        &r,
    );
    let (y0, g0) = run(
        |t| t[0].matmul(&t[1]).unwrap().broadcast_add(&t[2]).unwrap(),
        &[x.clone(), wt.clone(), b],
        &r,
    );
    assert_close("transposed weight output", &y, &y0);
    for (i, name) in ["input", "weight", "bias"].iter().enumerate() {
        assert_close(&format!("transposed weight {name} gradient"), &g[i], &g0[i]);
    }
    let err = ops::linear::linear(&x, &wt, &randn(&[6], 0.5)).unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
}

#[test]
fn self_attention_matches_composed_heads() {
    // (batch, tokens, heads, head dim): 70 and 197 tokens take several row blocks per batch
    // element, 1 token and 1 head are the edges.
    for (b, n, h, d) in [
        (2usize, 7usize, 3usize, 4usize),
        (2, 70, 3, 8),
        (1, 197, 2, 5),
        (3, 1, 1, 4),
        (1, 33, 4, 1),
    ] {
        let what = format!("b{b} n{n} h{h} d{d}");
        let c = h * d;
        let scale = (d as f64).powf(-0.5);
        let qkv = randn(&[b, n, 3 * c], 1.5);
        let r = randn(&[b, n, c], 1.0);
        let (y, g) = run(
            |t| ops::attention::self_attention(&t[0], h, scale).unwrap(),
            std::slice::from_ref(&qkv),
            &r,
        );
        let (y0, g0) = run(
            |t| {
                let heads = t[0]
                    .reshape((b, n, 3, h, d))
                    .unwrap()
                    .permute((2, 0, 3, 1, 4))
                    .unwrap();
                let part = |i| heads.get(i).unwrap().contiguous().unwrap();
                let q = (part(0) * scale).unwrap();
                let attn = q.matmul(&part(1).t().unwrap()).unwrap();
                let attn = candle_nn::ops::softmax(&attn, D::Minus1).unwrap();
                attn.matmul(&part(2))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .reshape((b, n, c))
                    .unwrap()
            },
            &[qkv],
            &r,
        );
        assert_close(&format!("{what} attention output"), &y, &y0);
        assert_close(&format!("{what} attention qkv gradient"), &g[0], &g0[0]);
    }
}

#[test]
fn self_attention_refuses_qkv_that_does_not_split_into_heads() {
    let err = ops::attention::self_attention(&randn(&[1, 2, 10], 1.0), 3, 1.0).unwrap_err();
    assert!(err.to_string().contains("does not split"), "{err}");
}
