//! Counter-based random numbers, identical on the CPU and in the CUDA kernels.
//!
//! A stateful generator would make the noise depend on the order in which threads draw it; here
//! every value is a pure function of its coordinates, so any thread on either device can draw
//! any pixel's noise and the CPU and CUDA paths agree bit for bit on the integers.
//!
//! Generator (the CUDA source in `kernels.cu` repeats it exactly):
//! ```text
//! mix64(z)  = SplitMix64 finaliser: z ^= z>>30; z *= 0xbf58476d1ce4e5b9; z ^= z>>27;
//!             z *= 0x94d049bb133111eb; z ^= z>>31          (wrapping u64 arithmetic)
//! key(seed, stream, b) = mix64(mix64(mix64(seed + 0x9e3779b97f4a7c15) ^ stream) ^ b)
//! bits(seed, stream, b, y, x) = mix64(key ^ ((y << 32) | x))
//! uniform   = (bits >> 40) as f32 * 2^-24                   in [0, 1), exact in f32
//! ```
//! Streams used by this crate: 0 and 1 = per-pixel noise of the foreground and background
//! saliency views, 2 = random per-patch ratios, 3 = random per-sample ratios.

/// Stream id of the foreground view's per-pixel noise.
pub const STREAM_FG: u32 = 0;
/// Stream id of the background view's per-pixel noise.
pub const STREAM_BG: u32 = 1;
/// Stream id of [`crate::random_patch_ratio`].
pub const STREAM_PATCH: u32 = 2;
/// Stream id of [`crate::random_sample_ratio`].
pub const STREAM_SAMPLE: u32 = 3;

/// SplitMix64's output function: a bijective 64-bit mixer.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Per-(seed, stream, sample) key; hoisted out of the per-pixel loop.
#[inline(always)]
pub fn sample_key(seed: u64, stream: u32, b: u32) -> u64 {
    mix64(mix64(mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ stream as u64) ^ b as u64)
}

/// Uniform in [0, 1) with 24 random bits, from a key of [`sample_key`] and a 2-D coordinate.
#[inline(always)]
pub fn uniform_at(key: u64, y: u32, x: u32) -> f32 {
    let bits = mix64(key ^ (((y as u64) << 32) | x as u64));
    (bits >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform in [0, 1) for coordinates (seed, stream, b, y, x).
#[inline]
pub fn uniform(seed: u64, stream: u32, b: u32, y: u32, x: u32) -> f32 {
    uniform_at(sample_key(seed, stream, b), y, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_coordinates_same_value_and_neighbours_differ() {
        assert_eq!(uniform(7, 0, 3, 10, 11), uniform(7, 0, 3, 10, 11));
        assert_ne!(uniform(7, 0, 3, 10, 11), uniform(7, 0, 3, 10, 12));
        assert_ne!(uniform(7, 0, 3, 10, 11), uniform(7, 1, 3, 10, 11));
        assert_ne!(uniform(7, 0, 3, 10, 11), uniform(8, 0, 3, 10, 11));
        assert_ne!(uniform(7, 0, 3, 10, 11), uniform(7, 0, 4, 10, 11));
        // Swapping y and x must not collide (the packing keeps them apart).
        assert_ne!(uniform(7, 0, 3, 10, 11), uniform(7, 0, 3, 11, 10));
    }

    #[test]
    fn known_values_pin_the_generator() {
        // SplitMix64 reference: the first output of a SplitMix64 stream seeded with 0 is
        // mix64(0x9e3779b97f4a7c15) = 0xe220a8397b1dcdaf.
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn moments_are_uniform() {
        let key = sample_key(123, STREAM_FG, 0);
        let n = 1 << 16;
        let (mut s, mut s2, mut lo, mut hi) = (0f64, 0f64, 1f32, 0f32);
        for i in 0..n {
            let u = uniform_at(key, i / 256, i % 256);
            assert!((0.0..1.0).contains(&u));
            s += u as f64;
            s2 += (u as f64) * (u as f64);
            lo = lo.min(u);
            hi = hi.max(u);
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
        assert!(lo < 0.001 && hi > 0.999);
    }
}
