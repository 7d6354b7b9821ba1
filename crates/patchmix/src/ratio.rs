//! Lesion-aware mixing ratios (SPMix steps 4-5) and the ablation variants of the paper's Table 2.
//!
//! Input: two normalised saliency batches (B, 1, H, W), one per mixed image (foreground and
//! background). Output: ratios (B, N) with N = (H / P) * (W / P) patches in row-major patch order
//! (the ViT token order); rows and columns past the last whole patch are dropped, as
//! `avg_pool2d` does. Per view and sample:
//! ```text
//! S[p]  = mean over patch p of (s[y,x] + noise * (2 u(seed, view, b, y, x) - 1))   noise in [-a, a)
//! S'    = (S - min S) / (max S - min S)        (0 everywhere when max == min: no NaN)
//! S''   = floor + (1 - floor) * S'             in [floor, 1]
//! ratio = min(alpha, max(S''_fg, S''_bg))      in [floor, alpha]
//! ```
//! `u` is the counter-based generator of [`crate::noise`], so the same seed gives the same
//! ratios on the CPU and on CUDA. Use a fresh seed per step and per view pair.

use crate::checks::{check_dtype, contiguous_range, dtype_error};
use crate::elem::Elem;
use crate::error::{PatchMixError, Result};
use crate::noise::{
    sample_key, uniform, uniform_at, STREAM_BG, STREAM_FG, STREAM_PATCH, STREAM_SAMPLE,
};
use crate::ratio_config::{Grid, RatioConfig};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Which mixing ratio a training run uses (the rows of the paper's Table 2 ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RatioMode {
    /// Saliency and patches: [`lesion_aware_ratio`] (SPMix).
    #[default]
    LesionAware,
    /// Saliency without patches: [`sample_scalar_ratio`].
    SampleScalar,
    /// Patches without saliency: [`random_patch_ratio`] in [floor, alpha].
    RandomPatch,
    /// Neither (plain token mixup): [`random_sample_ratio`] in [floor, alpha], one per sample.
    ConstantSample,
}

/// The ratio (B, N) of `mode` for saliency batches (B, 1, H, W); see each variant's function.
/// The random modes use only the saliency's shape, dtype and device.
pub fn mixing_ratio(
    mode: RatioMode,
    sal_fg: &Tensor,
    sal_bg: &Tensor,
    cfg: &RatioConfig,
    seed: u64,
) -> Result<Tensor> {
    match mode {
        RatioMode::LesionAware => lesion_aware_ratio(sal_fg, sal_bg, cfg, seed),
        RatioMode::SampleScalar => sample_scalar_ratio(sal_fg, sal_bg, cfg, seed),
        RatioMode::RandomPatch | RatioMode::ConstantSample => {
            let (b, n) = check_ratio_args(sal_fg, sal_bg, cfg)?;
            let (dt, dev) = (sal_fg.dtype(), sal_fg.device());
            if mode == RatioMode::RandomPatch {
                random_patch_ratio(b, n, cfg.floor, cfg.alpha, seed, dt, dev)
            } else {
                random_sample_ratio(b, n, cfg.floor, cfg.alpha, seed, dt, dev)
            }
        }
    }
}

/// Lesion-aware per-patch ratio: saliency (B, 1, H, W) x 2 -> (B, N) in [floor, alpha],
/// N = (H / P) * (W / P). Dtype of the output = dtype of the saliency (f32, bf16, f16, or f64 on
/// the CPU); arithmetic in f32. Runs as one fused op on the CPU (rayon over samples) or CUDA.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use patchmix::{lesion_aware_ratio, RatioConfig};
/// let s = Tensor::zeros((2, 1, 32, 32), candle_core::DType::F32, &Device::Cpu)?;
/// let r = lesion_aware_ratio(&s, &s, &RatioConfig::default(), 7)?; // 2 x 2 grid of 16 px
/// assert_eq!(r.dims(), &[2, 4]);
/// let v = r.flatten_all()?.to_vec1::<f32>()?;
/// assert!(v.iter().all(|&x| (0.5..=0.8).contains(&x)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lesion_aware_ratio(
    sal_fg: &Tensor,
    sal_bg: &Tensor,
    cfg: &RatioConfig,
    seed: u64,
) -> Result<Tensor> {
    check_ratio_args(sal_fg, sal_bg, cfg)?;
    let (sal_fg, sal_bg) = (sal_fg.contiguous()?, sal_bg.contiguous()?);
    Ok(sal_fg.apply_op2_no_bwd(&sal_bg, &LesionRatio { cfg: *cfg, seed })?)
}

/// Ablation "saliency without patches": every patch of a sample gets the mean of that sample's
/// lesion-aware patch ratios. (B, 1, H, W) x 2 -> (B, N).
pub fn sample_scalar_ratio(
    sal_fg: &Tensor,
    sal_bg: &Tensor,
    cfg: &RatioConfig,
    seed: u64,
) -> Result<Tensor> {
    let r = lesion_aware_ratio(sal_fg, sal_bg, cfg, seed)?;
    let dims = r.dims2()?;
    // Mean in f32: a bf16 sum of 196 values near 0.7 would lose the last bits.
    let mean = r.to_dtype(DType::F32)?.mean_keepdim(1)?;
    Ok(mean.broadcast_as(dims)?.contiguous()?.to_dtype(r.dtype())?)
}

/// Ablation "patches without saliency": (B, N) ratios drawn independently, uniform in
/// [floor, alpha), from stream 2 of the counter-based generator at (seed, b, 0, patch).
pub fn random_patch_ratio(
    batch: usize,
    n: usize,
    floor: f32,
    alpha: f32,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    check_range(floor, alpha)?;
    let v: Vec<f32> = (0..batch)
        .flat_map(|b| {
            let key = sample_key(seed, STREAM_PATCH, b as u32);
            (0..n).map(move |p| floor + (alpha - floor) * uniform_at(key, 0, p as u32))
        })
        .collect();
    Ok(Tensor::from_vec(v, (batch, n), device)?.to_dtype(dtype)?)
}

/// Ablation "plain token mixup": one ratio per sample, uniform in [lo, hi) from stream 3 at
/// (seed, b, 0, 0), broadcast over the N patches. Returns (B, N).
pub fn random_sample_ratio(
    batch: usize,
    n: usize,
    lo: f32,
    hi: f32,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    check_range(lo, hi)?;
    let per_sample: Vec<f32> = (0..batch)
        .map(|b| lo + (hi - lo) * uniform(seed, STREAM_SAMPLE, b as u32, 0, 0))
        .collect();
    constant_ratio(&per_sample, n, dtype, device)
}

/// A given ratio per sample (e.g. drawn by the caller from a Beta law), broadcast over the N
/// patches: `lambdas` (B) -> (B, N).
pub fn constant_ratio(lambdas: &[f32], n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    if let Some(bad) = lambdas.iter().find(|l| !(0.0..=1.0).contains(*l)) {
        return Err(PatchMixError::param(
            "lambdas",
            bad,
            "every ratio must lie in [0, 1]",
        ));
    }
    let v: Vec<f32> = lambdas
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, n))
        .collect();
    Ok(Tensor::from_vec(v, (lambdas.len(), n), device)?.to_dtype(dtype)?)
}

fn check_range(lo: f32, hi: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&lo) {
        return Err(PatchMixError::param("floor", lo, "must lie in [0, 1]"));
    }
    if !(lo..=1.0).contains(&hi) {
        return Err(PatchMixError::param("alpha", hi, "must lie in [floor, 1]"));
    }
    Ok(())
}

/// Validates the two saliency batches; returns (B, N).
fn check_ratio_args(sal_fg: &Tensor, sal_bg: &Tensor, cfg: &RatioConfig) -> Result<(usize, usize)> {
    const OP: &str = "lesion_aware_ratio";
    cfg.validate()?;
    let (b, h, w) = match sal_fg.dims() {
        &[b, 1, h, w] => (b, h, w),
        d => {
            return Err(PatchMixError::Shape {
                op: OP,
                tensor: "sal_fg",
                got: d.to_vec(),
                expected: "(B, 1, H, W)".into(),
            })
        }
    };
    if sal_bg.dims() != sal_fg.dims() {
        return Err(PatchMixError::Shape {
            op: OP,
            tensor: "sal_bg",
            got: sal_bg.dims().to_vec(),
            expected: format!("{:?} to match sal_fg", sal_fg.dims()),
        });
    }
    if h < cfg.patch || w < cfg.patch {
        return Err(PatchMixError::Shape {
            op: OP,
            tensor: "sal_fg",
            got: sal_fg.dims().to_vec(),
            expected: format!("H and W at least the patch size {}", cfg.patch),
        });
    }
    check_dtype(OP, "sal_fg", sal_fg.dtype())?;
    if sal_bg.dtype() != sal_fg.dtype() {
        return Err(PatchMixError::DType {
            op: OP,
            tensor: "sal_bg",
            got: sal_bg.dtype(),
            expected: format!("{:?} (the dtype of sal_fg)", sal_fg.dtype()),
        });
    }
    if !sal_bg.device().same_device(sal_fg.device()) {
        return Err(PatchMixError::Device {
            op: OP,
            tensor: "sal_bg",
            other: "sal_fg",
            got: sal_bg.device().location(),
            expected: sal_fg.device().location(),
        });
    }
    Ok((b, (h / cfg.patch) * (w / cfg.patch)))
}

/// The fused ratio op: (sal_fg (B,1,H,W), sal_bg (B,1,H,W)) -> (B, N). No backward (saliency is
/// data). Inputs must be contiguous; use [`lesion_aware_ratio`] unless you need the raw op.
#[derive(Debug, Clone, Copy)]
pub struct LesionRatio {
    /// Patch size, noise amplitude, floor, alpha.
    pub cfg: RatioConfig,
    /// Seed of the per-pixel noise.
    pub seed: u64,
}

impl CustomOp2 for LesionRatio {
    fn name(&self) -> &'static str {
        "patchmix-ratio"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "patchmix-ratio";
        let (b, _, h, w) = l1.shape().dims4()?;
        let (a1, e1) = contiguous_range(OP, "sal_fg", l1)?;
        let (a2, e2) = contiguous_range(OP, "sal_bg", l2)?;
        let g = Grid::new(h, w, self.cfg.patch);
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(ratio_cpu(
                &x[a1..e1],
                &y[a2..e2],
                b,
                g,
                &self.cfg,
                self.seed,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(ratio_cpu(
                &x[a1..e1],
                &y[a2..e2],
                b,
                g,
                &self.cfg,
                self.seed,
            )),
            (CpuStorage::BF16(x), CpuStorage::BF16(y)) => CpuStorage::BF16(ratio_cpu::<bf16>(
                &x[a1..e1],
                &y[a2..e2],
                b,
                g,
                &self.cfg,
                self.seed,
            )),
            (CpuStorage::F16(x), CpuStorage::F16(y)) => CpuStorage::F16(ratio_cpu::<f16>(
                &x[a1..e1],
                &y[a2..e2],
                b,
                g,
                &self.cfg,
                self.seed,
            )),
            _ => return Err(dtype_error(OP, s1.dtype(), s2.dtype(), s2.dtype()).into()),
        };
        Ok((out, Shape::from((b, g.np()))))
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::ratio_fwd(s1, l1, s2, l2, &self.cfg, self.seed)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (s1, l1, s2, l2);
            Err(crate::error::no_cuda_feature().into())
        }
    }
}

/// CPU ratio: rayon over samples; per sample, both views are pooled row by row (streaming
/// through memory in order) into the patch grid.
fn ratio_cpu<T: Elem>(
    s_fg: &[T],
    s_bg: &[T],
    batch: usize,
    g: Grid,
    cfg: &RatioConfig,
    seed: u64,
) -> Vec<T> {
    let np = g.np();
    let plane = g.h * g.w;
    let mut out: Vec<T> = vec![T::from_acc(T::ZERO); batch * np];
    out.par_chunks_mut(np.max(1))
        .enumerate()
        .for_each(|(b, out)| {
            let range = b * plane..(b + 1) * plane;
            let a = view_scores(&s_fg[range.clone()], b, STREAM_FG, g, cfg, seed);
            let c = view_scores(&s_bg[range], b, STREAM_BG, g, cfg, seed);
            for ((o, a), c) in out.iter_mut().zip(a).zip(c) {
                *o = T::from_acc(T::acc_from_f32(cfg.alpha.min(a.max(c))));
            }
        });
    out
}

/// One view of one sample: pooled noisy saliency, min-max normalised and mapped to [floor, 1].
fn view_scores<T: Elem>(
    s: &[T],
    b: usize,
    stream: u32,
    g: Grid,
    cfg: &RatioConfig,
    seed: u64,
) -> Vec<f32> {
    let key = sample_key(seed, stream, b as u32);
    let mut pooled = vec![0f32; g.np()];
    for y in 0..g.hp * g.p {
        let row = &s[y * g.w..y * g.w + g.wp * g.p];
        let prow = &mut pooled[(y / g.p) * g.wp..(y / g.p + 1) * g.wp];
        for (px, cells) in row.chunks_exact(g.p).enumerate() {
            let mut sum = 0f32;
            for (i, v) in cells.iter().enumerate() {
                let x = (px * g.p + i) as u32;
                let u = uniform_at(key, y as u32, x);
                sum += T::acc_to_f32(v.to_acc()) + cfg.noise * (2.0 * u - 1.0);
            }
            prow[px] += sum;
        }
    }
    let inv_area = 1.0 / (g.p * g.p) as f32;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in pooled.iter_mut() {
        *v *= inv_area;
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let range = hi - lo;
    for v in pooled.iter_mut() {
        let n = if range > 0.0 { (*v - lo) / range } else { 0.0 };
        *v = cfg.floor + (1.0 - cfg.floor) * n;
    }
    pooled
}
