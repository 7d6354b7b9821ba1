//! `exp` and `erf` for f32 written so that loops over slices vectorise.
//!
//! libm's `expf` and `erff` are calls with branches, one element at a time: in the transformer's
//! GELU and softmax they cost more than the arithmetic around them. These are branch-free
//! polynomial forms that LLVM turns into SIMD code inside the elementwise loops (SSE2 at the
//! baseline x86-64 target). Accuracy, checked against f64 references over dense grids in the
//! tests: `exp` within 2.5e-7 relative error on [-87, 88]; `erf` within 5e-7 absolute (a
//! rational form of the same kind as the vectorised f32 erf of Eigen and XLA).
//!
//! Shapes: `exp`, `erf` map one f32 to one f32; `sum` reduces a slice to one f32.

/// `e^x` for `x` in about [-87, 88] (clamped there: below, the result is ~1e-38 instead of a
/// subnormal or 0; NaN stays NaN). Cephes' `expf`: `x = n ln2 + r`, `|r| <= ln2 / 2`, a degree-6
/// polynomial for `e^r`, and `2^n` built from its exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let z = x * LOG2E + ROUND;
    let n = z - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let er = p * r * r + r + 1.0;
    // n sits in z's mantissa; its exponent field (n + 127) gives 2^n.
    let n_int = (z.to_bits() as i32).wrapping_sub(0x4B40_0000);
    er * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// The error function (as Eigen's and XLA's f32 `erf`): `x * P(x^2) / Q(x^2)` on [-4, 4]
/// (clamped there; erf(4) is 1 to f32 precision).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// Sum of a slice in eight f32 lanes (a single accumulator makes every add wait for the
/// previous one and keeps the loop from vectorising).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    const LANES: usize = 8;
    let (chunks, rest) = xs.as_chunks::<LANES>();
    let mut lanes = [0f32; LANES];
    for c in chunks {
        for j in 0..LANES {
            lanes[j] += c[j];
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x <= 6.0 {
            let want = libm_erf(x as f64);
            worst = worst.max((erf(x) as f64 - want).abs());
            x += 1e-4;
        }
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
        assert_eq!(erf(0.0), 0.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn lane_sum_adds_every_element() {
        let xs: Vec<f32> = (0..1001).map(|i| i as f32).collect();
        assert_eq!(sum(&xs), 500_500.0);
        assert_eq!(sum(&xs[..3]), 3.0);
        assert_eq!(sum(&[]), 0.0);
    }

    /// erf in f64 from candle's port of the Boost implementation (the reference here).
    fn libm_erf(x: f64) -> f64 {
        candle_core::cpu::erf::erf_f64(x)
    }
}
