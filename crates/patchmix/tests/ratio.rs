//! lesion_aware_ratio and the ablation ratios against candle-composed maths (CPU).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, seeded};
use patchmix::reference::lesion_aware_ratio_composed;
use patchmix::{
    constant_ratio, lesion_aware_ratio, mixing_ratio, random_patch_ratio, random_sample_ratio,
    sample_scalar_ratio, PatchMixError, RatioConfig, RatioMode,
};

/// Normalised saliency (mean 0.144, std 0.137 on an 8-bit map in [0, 1]).
fn saliency(b: usize, h: usize, w: usize, seed: u64, dt: DType) -> Tensor {
    let raw = seeded(&[b, 1, h, w], 0.0, 1.0, seed, DType::F32, &Device::Cpu);
    ((raw - 0.144).unwrap() / 0.137)
        .unwrap()
        .to_dtype(dt)
        .unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
}

#[test]
fn fused_ratio_matches_composed_ops() {
    // (B, H, W, P): the paper's 224/16, non-square, and sizes that leave a remainder.
    let cases = [
        (2, 224, 224, 16),
        (3, 32, 48, 8),
        (2, 37, 50, 16),
        (1, 16, 16, 16),
        (2, 9, 9, 3),
    ];
    for dt in [DType::F32, DType::F64, DType::BF16, DType::F16] {
        for (i, &(b, h, w, p)) in cases.iter().enumerate() {
            let cfg = RatioConfig {
                patch: p,
                ..Default::default()
            };
            let (sf, sb) = (
                saliency(b, h, w, 2 * i as u64, dt),
                saliency(b, h, w, 2 * i as u64 + 1, dt),
            );
            let got = lesion_aware_ratio(&sf, &sb, &cfg, 99).unwrap();
            assert_eq!(got.dims(), &[b, (h / p) * (w / p)]);
            assert_eq!(got.dtype(), dt);
            let want = lesion_aware_ratio_composed(&sf, &sb, &cfg, 99).unwrap();
            // Pooled means are f32 sums of P^2 terms in different orders; min-max divides by
            // the range, so allow 1e-5 beyond the output rounding.
            assert_close(
                &format!("ratio {b}x{h}x{w}/{p}"),
                &got,
                &want.to_dtype(DType::F32).unwrap(),
                dt,
                1e-5,
            );
        }
    }
}

#[test]
fn ratios_lie_in_floor_alpha_and_each_sample_reaches_alpha() {
    let cfg = RatioConfig {
        patch: 8,
        noise: 0.3,
        floor: 0.4,
        alpha: 0.9,
    };
    let r = lesion_aware_ratio(
        &saliency(4, 64, 64, 1, DType::F32),
        &saliency(4, 64, 64, 2, DType::F32),
        &cfg,
        5,
    )
    .unwrap();
    for row in rows(&r) {
        assert!(row.iter().all(|&v| (0.4..=0.9).contains(&v)), "{row:?}");
        // The most salient patch of either view maps to 1 and is clipped to alpha.
        assert!(row.contains(&0.9));
    }
}

#[test]
fn the_lesion_patch_of_the_foreground_gets_alpha_and_flat_maps_give_floor_not_nan() {
    let dev = Device::Cpu;
    let cfg = RatioConfig {
        patch: 4,
        noise: 0.0,
        ..Default::default()
    };
    // Foreground: a bright 4x4 block on patch (1, 2) of a 3x3 grid; background: flat.
    let mut fg = vec![0f32; 12 * 12];
    for y in 4..8 {
        for x in 8..12 {
            fg[y * 12 + x] = 3.0;
        }
    }
    let sf = Tensor::from_vec(fg, (1, 1, 12, 12), &dev).unwrap();
    let flat = Tensor::full(0.25f32, (1, 1, 12, 12), &dev).unwrap();
    let r = rows(&lesion_aware_ratio(&sf, &flat, &cfg, 0).unwrap());
    let mut want = vec![0.5f32; 9];
    want[5] = 0.8;
    assert_eq!(r[0], want);
    // Both flat: every patch at the floor, no NaN.
    let r = rows(&lesion_aware_ratio(&flat, &flat, &cfg, 0).unwrap());
    assert_eq!(r[0], vec![0.5f32; 9]);
}

#[test]
fn seeded_noise_is_deterministic_and_seed_dependent() {
    let (sf, sb) = (
        saliency(2, 32, 32, 1, DType::F32),
        saliency(2, 32, 32, 2, DType::F32),
    );
    let cfg = RatioConfig {
        patch: 8,
        ..Default::default()
    };
    let a = rows(&lesion_aware_ratio(&sf, &sb, &cfg, 1234).unwrap());
    let b = rows(&lesion_aware_ratio(&sf, &sb, &cfg, 1234).unwrap());
    let c = rows(&lesion_aware_ratio(&sf, &sb, &cfg, 1235).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    // The two views draw different noise: swapping them changes the result only through
    // the noise, so with identical maps the swap is not a no-op.
    let d = rows(&lesion_aware_ratio(&sf, &sf, &cfg, 7).unwrap());
    let e = rows(&lesion_aware_ratio(&sb, &sb, &cfg, 7).unwrap());
    assert_ne!(d, e);

    let p1 = rows(&random_patch_ratio(3, 10, 0.5, 0.8, 42, DType::F32, &Device::Cpu).unwrap());
    let p2 = rows(&random_patch_ratio(3, 10, 0.5, 0.8, 42, DType::F32, &Device::Cpu).unwrap());
    let p3 = rows(&random_patch_ratio(3, 10, 0.5, 0.8, 43, DType::F32, &Device::Cpu).unwrap());
    assert_eq!(p1, p2);
    assert_ne!(p1, p3);
}

#[test]
fn ablation_ratios() {
    let dev = Device::Cpu;
    let cfg = RatioConfig {
        patch: 8,
        ..Default::default()
    };
    let (sf, sb) = (
        saliency(3, 32, 32, 4, DType::F32),
        saliency(3, 32, 32, 5, DType::F32),
    );

    // Saliency without patches: each row constant, equal to the mean of the patch ratios.
    let per_patch = rows(&lesion_aware_ratio(&sf, &sb, &cfg, 9).unwrap());
    let scalar = rows(&sample_scalar_ratio(&sf, &sb, &cfg, 9).unwrap());
    for (pp, sc) in per_patch.iter().zip(&scalar) {
        let mean = pp.iter().sum::<f32>() / pp.len() as f32;
        assert!(
            sc.iter().all(|&v| (v - mean).abs() < 1e-6),
            "{sc:?} vs mean {mean}"
        );
    }

    // Patches without saliency: in [floor, alpha), and not all equal.
    let rp = rows(&random_patch_ratio(4, 196, 0.5, 0.8, 1, DType::F32, &dev).unwrap());
    for row in &rp {
        assert!(row.iter().all(|&v| (0.5..0.8).contains(&v)));
        assert!(row.iter().any(|&v| v != row[0]));
    }
    let mean = rp.iter().flatten().sum::<f32>() / (4.0 * 196.0);
    assert!((mean - 0.65).abs() < 0.02, "mean {mean}");

    // Plain token mixup: one value per sample.
    let rs = rows(&random_sample_ratio(5, 7, 0.5, 0.8, 1, DType::F32, &dev).unwrap());
    for row in &rs {
        assert!((0.5..0.8).contains(&row[0]) && row.iter().all(|&v| v == row[0]));
    }
    assert!(rs.iter().any(|r| r[0] != rs[0][0]));
    let cr = rows(&constant_ratio(&[0.6, 0.7], 3, DType::F32, &dev).unwrap());
    assert_eq!(cr, vec![vec![0.6f32; 3], vec![0.7f32; 3]]);

    // The dispatcher returns what the functions return.
    let m = rows(&mixing_ratio(RatioMode::SampleScalar, &sf, &sb, &cfg, 9).unwrap());
    assert_eq!(m, scalar);
    let m = rows(&mixing_ratio(RatioMode::LesionAware, &sf, &sb, &cfg, 9).unwrap());
    assert_eq!(m, per_patch);
    let m = mixing_ratio(RatioMode::RandomPatch, &sf, &sb, &cfg, 9).unwrap();
    assert_eq!(m.dims(), &[3, 16]);
    let m = rows(&mixing_ratio(RatioMode::ConstantSample, &sf, &sb, &cfg, 9).unwrap());
    assert!(m.iter().all(|r| r.iter().all(|&v| v == r[0])));
}

#[test]
fn bad_parameters_and_shapes_are_rejected_with_their_names() {
    let s = saliency(2, 32, 32, 1, DType::F32);
    let bad = |cfg: RatioConfig, needle: &str| {
        let e = lesion_aware_ratio(&s, &s, &cfg, 0).unwrap_err().to_string();
        assert!(e.contains(needle), "`{e}` lacks `{needle}`");
    };
    let d = RatioConfig::default();
    bad(RatioConfig { patch: 0, ..d }, "`patch` = 0");
    bad(RatioConfig { noise: -1.0, ..d }, "`noise` = -1");
    bad(
        RatioConfig {
            noise: f32::NAN,
            ..d
        },
        "`noise` = NaN",
    );
    bad(RatioConfig { floor: 1.5, ..d }, "`floor` = 1.5");
    bad(RatioConfig { alpha: 0.4, ..d }, "`alpha` = 0.4");
    bad(RatioConfig { patch: 64, ..d }, "at least the patch size 64");

    let s3 = s.squeeze(1).unwrap();
    let e = lesion_aware_ratio(&s3, &s3, &d, 0).unwrap_err();
    assert!(
        matches!(
            e,
            PatchMixError::Shape {
                tensor: "sal_fg",
                ..
            }
        ),
        "{e}"
    );
    let other = saliency(2, 32, 16, 1, DType::F32);
    let e = lesion_aware_ratio(&s, &other, &d, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`sal_bg` has shape [2, 1, 32, 16]"), "{e}");
    let e = lesion_aware_ratio(&s, &s.to_dtype(DType::BF16).unwrap(), &d, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`sal_bg` has dtype BF16"), "{e}");
    let e = random_patch_ratio(1, 1, 0.9, 0.5, 0, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`alpha` = 0.5"), "{e}");
    let e = constant_ratio(&[1.5], 1, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`lambdas` = 1.5"), "{e}");
}

#[test]
fn strided_saliency_is_accepted() {
    let s = saliency(2, 32, 32, 3, DType::F32);
    let st = s
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!st.is_contiguous());
    let cfg = RatioConfig {
        patch: 8,
        ..Default::default()
    };
    assert_eq!(
        rows(&lesion_aware_ratio(&st, &s, &cfg, 3).unwrap()),
        rows(&lesion_aware_ratio(&s, &s, &cfg, 3).unwrap())
    );
}
