//! CUDA kernels against the CPU ops (feature `cuda`). Every test that needs a device says
//! "skipping" and returns when none is present; the NVRTC compile test needs only libnvrtc.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, seeded};
use patchmix::{lesion_aware_ratio, patch_mix, patch_mix_backward, RatioConfig};

fn device() -> Option<Device> {
    match patchmix::cuda_device(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipping CUDA test: {e}");
            None
        }
    }
}

const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];
/// C = 768 and 32 take the 16-byte vector path; 7 and 13 the scalar one.
const SHAPES: [(usize, usize, usize); 5] =
    [(1, 1, 1), (2, 3, 7), (3, 5, 13), (2, 9, 32), (4, 196, 768)];

#[test]
fn nvrtc_compiles_the_kernels() {
    let ptx = patchmix::cuda::compile_kernels().expect("NVRTC compile");
    for k in [
        "patchmix_fwd_vec_bf16",
        "patchmix_bwd_scalar_f16",
        "patchmix_ratio_f32",
    ] {
        assert!(ptx.contains(k), "PTX lacks {k}");
    }
}

#[test]
fn no_device_error_is_clear() {
    if let Err(e) = patchmix::cuda_device(4096) {
        assert!(
            e.to_string().contains("no CUDA device 4096 available"),
            "{e}"
        );
    }
}

#[test]
fn cuda_forward_and_backward_match_cpu() {
    let Some(dev) = device() else { return };
    for dt in DTYPES {
        for (i, &(b, n, c)) in SHAPES.iter().enumerate() {
            let s = 1000 + 10 * i as u64;
            let cpu = Device::Cpu;
            let fg = seeded(&[b, n, c], -2.0, 2.0, s, dt, &cpu);
            let bg = seeded(&[b, n, c], -2.0, 2.0, s + 1, dt, &cpu);
            let r = seeded(&[b, n], 0.5, 0.8, s + 2, dt, &cpu);
            let g = seeded(&[b, n, c], -1.0, 1.0, s + 3, dt, &cpu);
            let on = |t: &Tensor| t.to_device(&dev).unwrap();
            let what = format!("{b}x{n}x{c}");
            let want = patch_mix(&fg, &bg, &r).unwrap();
            let got = patch_mix(&on(&fg), &on(&bg), &on(&r)).unwrap();
            assert_close(
                &format!("cuda fwd {what}"),
                &got.to_device(&cpu).unwrap(),
                &want,
                dt,
                0.0,
            );
            let w = patch_mix_backward(&fg, &bg, &r, &g).unwrap();
            let k = patch_mix_backward(&on(&fg), &on(&bg), &on(&r), &on(&g)).unwrap();
            for (name, a, e) in [
                ("d_fg", &k.0, &w.0),
                ("d_bg", &k.1, &w.1),
                ("d_r", &k.2, &w.2),
            ] {
                let extra = if name == "d_r" { 1e-6 * c as f64 } else { 0.0 };
                assert_close(
                    &format!("cuda {name} {what}"),
                    &a.to_device(&cpu).unwrap(),
                    e,
                    dt,
                    extra,
                );
            }
        }
    }
}

#[test]
fn cuda_unaligned_views_take_the_scalar_path_and_agree() {
    let Some(dev) = device() else { return };
    // Rows of 8 bf16 (16 bytes) starting one row of 7 elements in: misaligned pointers.
    let (b, n, c) = (2, 4, 8);
    let big = seeded(&[b * n * c + 7], -1.0, 1.0, 5, DType::BF16, &Device::Cpu);
    let fg = big
        .narrow(0, 7, b * n * c)
        .unwrap()
        .reshape((b, n, c))
        .unwrap();
    let bg = seeded(&[b, n, c], -1.0, 1.0, 6, DType::BF16, &Device::Cpu);
    let r = seeded(&[b, n], 0.5, 0.8, 7, DType::BF16, &Device::Cpu);
    let want = patch_mix(&fg, &bg, &r).unwrap();
    let got = patch_mix(
        &big.to_device(&dev)
            .unwrap()
            .narrow(0, 7, b * n * c)
            .unwrap()
            .reshape((b, n, c))
            .unwrap(),
        &bg.to_device(&dev).unwrap(),
        &r.to_device(&dev).unwrap(),
    )
    .unwrap();
    assert_close(
        "unaligned",
        &got.to_device(&Device::Cpu).unwrap(),
        &want,
        DType::BF16,
        0.0,
    );
}

#[test]
fn cuda_autograd_reaches_all_three_inputs() {
    let Some(dev) = device() else { return };
    let (b, n, c) = (2, 14, 64);
    let fg = Var::from_tensor(&seeded(&[b, n, c], -1.0, 1.0, 1, DType::F32, &dev)).unwrap();
    let bg = Var::from_tensor(&seeded(&[b, n, c], -1.0, 1.0, 2, DType::F32, &dev)).unwrap();
    let r = Var::from_tensor(&seeded(&[b, n], 0.5, 0.8, 3, DType::F32, &dev)).unwrap();
    let loss = patch_mix(fg.as_tensor(), bg.as_tensor(), r.as_tensor())
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for v in [&fg, &bg, &r] {
        let g = grads.get(v.as_tensor()).expect("gradient");
        let s = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(s.is_finite() && s > 0.0);
    }
}

#[test]
fn cuda_ratio_matches_cpu_with_the_same_noise() {
    let Some(dev) = device() else { return };
    for dt in DTYPES {
        for (i, &(b, h, w, p)) in [(4, 224, 224, 16), (3, 37, 50, 8), (2, 9, 9, 3)]
            .iter()
            .enumerate()
        {
            let cfg = RatioConfig {
                patch: p,
                ..Default::default()
            };
            let sf = seeded(&[b, 1, h, w], -1.0, 6.0, 20 + i as u64, dt, &Device::Cpu);
            let sb = seeded(&[b, 1, h, w], -1.0, 6.0, 40 + i as u64, dt, &Device::Cpu);
            let want = lesion_aware_ratio(&sf, &sb, &cfg, 31).unwrap();
            let got = lesion_aware_ratio(
                &sf.to_device(&dev).unwrap(),
                &sb.to_device(&dev).unwrap(),
                &cfg,
                31,
            )
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap();
            assert_close(
                &format!("cuda ratio {b}x{h}x{w}/{p}"),
                &got,
                &want,
                dt,
                1e-5,
            );
        }
    }
}
