//! patch_mix forward and backward against the same maths composed from candle ops (CPU).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, seeded};
use patchmix::reference::{patch_mix_backward_composed, patch_mix_composed};
use patchmix::{patch_mix, patch_mix_backward, PatchMix, PatchMixError};

const DTYPES: [DType; 4] = [DType::F32, DType::BF16, DType::F16, DType::F64];
/// (B, N, C): C below, at and off the 4- and 8-wide vectors, and the paper's C = 768.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (2, 3, 7),
    (3, 5, 13),
    (2, 9, 32),
    (4, 14, 100),
    (2, 7, 768),
];

fn inputs(b: usize, n: usize, c: usize, dt: DType, seed: u64) -> (Tensor, Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    (
        seeded(&[b, n, c], -2.0, 2.0, seed, dt, &dev),
        seeded(&[b, n, c], -2.0, 2.0, seed + 1, dt, &dev),
        seeded(&[b, n], 0.5, 0.8, seed + 2, dt, &dev),
        seeded(&[b, n, c], -1.0, 1.0, seed + 3, dt, &dev),
    )
}

/// The reference computes in f32 (f64 for f64) from the same (exactly upcast) inputs.
fn ref_dtype(dt: DType) -> DType {
    if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

#[test]
fn forward_matches_composed_ops_all_shapes_and_dtypes() {
    for dt in DTYPES {
        for (i, &(b, n, c)) in SHAPES.iter().enumerate() {
            let (fg, bg, r, _) = inputs(b, n, c, dt, 10 * i as u64);
            let got = patch_mix(&fg, &bg, &r).unwrap();
            assert_eq!(got.dtype(), dt);
            let up = |t: &Tensor| t.to_dtype(ref_dtype(dt)).unwrap();
            let want = patch_mix_composed(&up(&fg), &up(&bg), &up(&r)).unwrap();
            assert_close(&format!("forward {b}x{n}x{c}"), &got, &want, dt, 0.0);
        }
    }
}

#[test]
fn fused_backward_matches_composed_gradients() {
    for dt in DTYPES {
        for (i, &(b, n, c)) in SHAPES.iter().enumerate() {
            let (fg, bg, r, g) = inputs(b, n, c, dt, 100 + 10 * i as u64);
            let (d_fg, d_bg, d_r) = patch_mix_backward(&fg, &bg, &r, &g).unwrap();
            let up = |t: &Tensor| t.to_dtype(ref_dtype(dt)).unwrap();
            let (w_fg, w_bg, w_r) =
                patch_mix_backward_composed(&up(&fg), &up(&bg), &up(&r), &up(&g)).unwrap();
            let what = format!("{b}x{n}x{c}");
            assert_close(&format!("d_fg {what}"), &d_fg, &w_fg, dt, 0.0);
            assert_close(&format!("d_bg {what}"), &d_bg, &w_bg, dt, 0.0);
            // d_r sums C products of size <= 4: allow f32 summation-order noise.
            assert_close(&format!("d_r {what}"), &d_r, &w_r, dt, 1e-6 * c as f64);
            assert!(d_fg.is_contiguous() && d_bg.is_contiguous() && d_r.is_contiguous());
        }
    }
}

#[test]
fn autograd_through_patch_mix_matches_autograd_through_composed_ops() {
    for dt in DTYPES {
        for &(b, n, c) in &SHAPES[1..] {
            let (fg, bg, r, g) = inputs(b, n, c, dt, 7);
            let vars = [&fg, &bg, &r].map(|t| Var::from_tensor(t).unwrap());
            let loss = (patch_mix(
                vars[0].as_tensor(),
                vars[1].as_tensor(),
                vars[2].as_tensor(),
            )
            .unwrap()
                * &g)
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();

            let rd = ref_dtype(dt);
            let rvars = [&fg, &bg, &r].map(|t| Var::from_tensor(&t.to_dtype(rd).unwrap()).unwrap());
            let rloss = (patch_mix_composed(
                rvars[0].as_tensor(),
                rvars[1].as_tensor(),
                rvars[2].as_tensor(),
            )
            .unwrap()
                * g.to_dtype(rd).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
            let rgrads = rloss.backward().unwrap();
            for (k, name) in ["d_fg", "d_bg", "d_r"].iter().enumerate() {
                let got = grads.get(vars[k].as_tensor()).expect("gradient missing");
                let want = rgrads.get(rvars[k].as_tensor()).unwrap();
                assert_close(
                    &format!("autograd {name} {b}x{n}x{c}"),
                    got,
                    want,
                    dt,
                    1e-6 * c as f64,
                );
            }
        }
    }
}

#[test]
fn finite_differences_agree_with_the_fused_gradient_in_f64() {
    let (b, n, c) = (2, 3, 5);
    let (fg, bg, r, g) = inputs(b, n, c, DType::F64, 77);
    let loss = |fg: &Tensor, bg: &Tensor, r: &Tensor| -> f64 {
        (patch_mix(fg, bg, r).unwrap() * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let (d_fg, d_bg, d_r) = patch_mix_backward(&fg, &bg, &r, &g).unwrap();
    let eps = 1e-6;
    let inputs = [&fg, &bg, &r];
    let analytic = [&d_fg, &d_bg, &d_r];
    for which in 0..3 {
        let x = inputs[which]
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let ana = analytic[which]
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for i in 0..x.len() {
            let bump = |delta: f64| {
                let mut y = x.clone();
                y[i] += delta;
                let t = Tensor::from_vec(y, inputs[which].dims(), &Device::Cpu).unwrap();
                let mut args = inputs.map(|t| t.clone());
                args[which] = t;
                loss(&args[0], &args[1], &args[2])
            };
            let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
            assert!(
                (fd - ana[i]).abs() <= 1e-7 * (1.0 + fd.abs()),
                "input {which} element {i}: finite difference {fd}, fused gradient {}",
                ana[i]
            );
        }
    }
}

#[test]
fn strided_inputs_are_made_contiguous_and_the_raw_op_rejects_them() {
    let (b, n, c) = (2, 6, 10);
    let (fg, bg, r, _) = inputs(b, n, c, DType::F32, 3);
    // The same values, stored as (B, C, N) and viewed as (B, N, C): a strided tensor.
    let fg_t = fg
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    assert!(!fg_t.is_contiguous());
    let want = patch_mix(&fg, &bg, &r).unwrap();
    let got = patch_mix(&fg_t, &bg, &r).unwrap();
    assert_close("strided fg", &got, &want, DType::F32, 0.0);

    let err = fg_t.apply_op3(&bg, &r, PatchMix).unwrap_err().to_string();
    assert!(err.contains("`fg` is not contiguous"), "{err}");
}

#[test]
fn shape_dtype_and_device_errors_name_the_tensor() {
    let dev = Device::Cpu;
    let (fg, bg, r, g) = inputs(2, 3, 4, DType::F32, 5);
    let check = |res: patchmix::Result<Tensor>, needle: &str| match res {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "message `{msg}` lacks `{needle}`");
        }
        Ok(_) => panic!("expected an error containing `{needle}`"),
    };
    let r_bad = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
    check(
        patch_mix(&fg, &bg, &r_bad),
        "tensor `ratio` has shape [2, 4]",
    );
    let bg_bad = Tensor::zeros((2, 3, 5), DType::F32, &dev).unwrap();
    check(
        patch_mix(&fg, &bg_bad, &r),
        "tensor `bg` has shape [2, 3, 5]",
    );
    let fg2 = Tensor::zeros((6, 4), DType::F32, &dev).unwrap();
    check(
        patch_mix(&fg2, &bg, &r),
        "tensor `fg` has shape [6, 4], expected rank 3",
    );
    check(
        patch_mix(&fg, &bg.to_dtype(DType::F16).unwrap(), &r),
        "tensor `bg` has dtype F16",
    );
    let fg_u8 = fg.to_dtype(DType::U8).unwrap();
    check(patch_mix(&fg_u8, &bg, &r), "tensor `fg` has dtype U8");
    let g_bad = Tensor::zeros((2, 3, 3), DType::F32, &dev).unwrap();
    let res = patch_mix_backward(&fg, &bg, &r, &g_bad).map(|t| t.0);
    check(res, "tensor `grad` has shape [2, 3, 3]");
    assert!(patch_mix_backward(&fg, &bg, &r, &g).is_ok());
    // Typed variant, not only a message.
    assert!(matches!(
        patch_mix(&fg, &bg, &r_bad),
        Err(PatchMixError::Shape {
            tensor: "ratio",
            ..
        })
    ));
}

#[test]
fn empty_batch_is_fine() {
    let (fg, bg, r, g) = inputs(0, 3, 4, DType::F32, 1);
    assert_eq!(patch_mix(&fg, &bg, &r).unwrap().dims(), &[0, 3, 4]);
    let (a, b, c) = patch_mix_backward(&fg, &bg, &r, &g).unwrap();
    assert_eq!(
        (a.dims(), b.dims(), c.dims()),
        (&[0, 3, 4][..], &[0, 3, 4][..], &[0, 3][..])
    );
}
