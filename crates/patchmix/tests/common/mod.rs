//! Helpers shared by the test files: seeded inputs and tolerance checks.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use patchmix::noise::uniform;

/// Seeded uniform values in [lo, hi) of the given shape, as f32 then cast to `dtype`.
pub fn seeded(shape: &[usize], lo: f32, hi: f32, seed: u64, dtype: DType, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| lo + (hi - lo) * uniform(seed, 9, 0, (i >> 20) as u32, (i & 0xfffff) as u32))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

/// (rtol, atol) for a fused result in `dtype` against an f32/f64 reference: one rounding to the
/// output dtype (half an ulp: 2^-9 for bf16, 2^-12 for f16) plus f32 summation-order noise.
pub fn tol(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F64 => (1e-12, 1e-12),
        DType::F32 => (2e-6, 2e-6),
        DType::F16 => (1e-3, 1e-4),
        DType::BF16 => (4e-3, 1e-3),
        _ => unreachable!("no tolerance for {dtype:?}"),
    }
}

/// Asserts |got - want| <= atol + rtol |want| elementwise (NaN fails); extra_atol widens atol
/// for reductions.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, dtype: DType, extra_atol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    let g = got
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let w = want
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let (rtol, atol) = tol(dtype);
    let mut worst = (0.0f64, 0usize);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        let bound = atol + extra_atol + rtol * b.abs();
        assert!(
            err <= bound,
            "{what} ({dtype:?}): element {i}: got {a}, want {b}, |diff| {err:e} > {bound:e}"
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
}
