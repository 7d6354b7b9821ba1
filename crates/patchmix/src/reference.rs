//! The same maths as the fused ops, composed from plain candle tensor ops. Used by the tests as
//! the ground truth and by the benchmark as the baseline; slower (several passes, several
//! launches on CUDA) but obviously right.
//!
//! Shapes as in the fused ops: tokens (B, N, C), ratios (B, N), saliency (B, 1, H, W).

use crate::noise::{sample_key, uniform_at};
use crate::ratio_config::RatioConfig;
use candle_core::{DType, Device, Result, Tensor};

/// `r * fg + (1 - r) * bg` with `r` (B, N) broadcast over C, from candle ops (autograd works).
pub fn patch_mix_composed(fg: &Tensor, bg: &Tensor, ratio: &Tensor) -> Result<Tensor> {
    let r = ratio.unsqueeze(2)?;
    let q = (1.0 - &r)?;
    fg.broadcast_mul(&r)? + bg.broadcast_mul(&q)?
}

/// Gradients of [`patch_mix_composed`] for upstream `grad` (B, N, C), written out as the ops
/// candle's autograd runs: `(r g, (1 - r) g, sum_c (fg - bg) g)`.
pub fn patch_mix_backward_composed(
    fg: &Tensor,
    bg: &Tensor,
    ratio: &Tensor,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let r = ratio.unsqueeze(2)?;
    let q = (1.0 - &r)?;
    let d_fg = grad.broadcast_mul(&r)?;
    let d_bg = grad.broadcast_mul(&q)?;
    let d_r = ((fg - bg)? * grad)?.sum(2)?;
    Ok((d_fg, d_bg, d_r))
}

/// The per-pixel noise `a * (2u - 1)` of one view as an f32 tensor (B, 1, H, W), from the same
/// counter-based generator as the fused op (`stream` 0 = foreground, 1 = background).
pub fn noise_tensor(
    batch: usize,
    h: usize,
    w: usize,
    stream: u32,
    amplitude: f32,
    seed: u64,
    device: &Device,
) -> Result<Tensor> {
    let mut v = Vec::with_capacity(batch * h * w);
    for b in 0..batch {
        let key = sample_key(seed, stream, b as u32);
        for y in 0..h {
            for x in 0..w {
                v.push(amplitude * (2.0 * uniform_at(key, y as u32, x as u32) - 1.0));
            }
        }
    }
    Tensor::from_vec(v, (batch, 1, h, w), device)
}

/// One view's scores in [floor, 1], (B, N), f32: avg-pool of saliency + noise, min-max, map.
pub fn view_scores_composed(
    sal: &Tensor,
    stream: u32,
    cfg: &RatioConfig,
    seed: u64,
) -> Result<Tensor> {
    let (b, _, h, w) = sal.dims4()?;
    let noise = noise_tensor(b, h, w, stream, cfg.noise, seed, sal.device())?;
    let x = (sal.to_dtype(DType::F32)? + noise)?;
    let pooled = x.avg_pool2d(cfg.patch)?.flatten_from(1)?; // (B, N)
    let lo = pooled.min_keepdim(1)?;
    let hi = pooled.max_keepdim(1)?;
    // A flat map has hi == lo; the numerator is then 0 too, so any positive divisor gives 0.
    let range = (hi - &lo)?.maximum(f32::MIN_POSITIVE)?;
    let s = pooled.broadcast_sub(&lo)?.broadcast_div(&range)?;
    (s * (1.0 - cfg.floor) as f64)? + cfg.floor as f64
}

/// [`crate::lesion_aware_ratio`] composed from candle ops; output (B, N) in the saliency dtype.
pub fn lesion_aware_ratio_composed(
    sal_fg: &Tensor,
    sal_bg: &Tensor,
    cfg: &RatioConfig,
    seed: u64,
) -> Result<Tensor> {
    let a = view_scores_composed(sal_fg, crate::noise::STREAM_FG, cfg, seed)?;
    let b = view_scores_composed(sal_bg, crate::noise::STREAM_BG, cfg, seed)?;
    a.maximum(&b)?.minimum(cfg.alpha)?.to_dtype(sal_fg.dtype())
}
