//! BatchNorm2d (PyTorch defaults: eps 1e-5, momentum 0.1, affine) with an optional fused ReLU.
//!
//! Shapes: `(B, C, H, W)` -> `(B, C, H, W)`. In train mode the statistics are the batch's
//! (biased variance for normalising, unbiased for the running variance, as PyTorch).
//!
//! Train mode on the CPU runs as fused custom ops: one reduction for the statistics, one pass
//! for the output, and in the backward one reduction and one pass. candle-nn's BatchNorm is a
//! chain of about seven full-size tensor ops (a transposed copy among them) with several times
//! that in its backward, each a separate pass over memory and a thread-pool round trip; in the
//! ResNet trunk they cost more than the convolutions. Eval mode, other dtypes and other devices
//! use candle-nn's BatchNorm, which holds the same variables. [`batch_norm`] and
//! [`batch_norm_with_weight`] build that candle-nn BatchNorm with PyTorch's defaults (the
//! projection heads use it directly).
//!
//! ```
//! use candle_core::{DType, Device, ModuleT, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! let vm = VarMap::new();
//! let bn = ops::batch_norm::BatchNorm2d::new(1, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
//! let x = Tensor::new(&[1f32, 3.], &Device::Cpu)?.reshape((2, 1, 1, 1))?;
//! let y = bn.forward_t(&x, true)?; // batch mean 2, variance 1
//! let y = y.flatten_all()?.to_vec1::<f32>()?;
//! assert!((y[0] + 1.0).abs() < 1e-4 && (y[1] - 1.0).abs() < 1e-4);
//! // running_mean = 0.9 * 0 + 0.1 * 2
//! assert!((bn.running_mean().to_vec1::<f32>()?[0] - 0.2).abs() < 1e-6);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, ModuleT};
use candle_core::{Result, Shape, Tensor, Var};
use candle_nn::{BatchNorm, BatchNormConfig, Init, VarBuilder};
use rayon::prelude::*;

/// PyTorch-default BatchNorm (eps 1e-5, momentum 0.1) over dim 1 of `(B, C, ..)`; `affine`
/// adds `weight`/`bias`. Running stats are `running_mean`/`running_var` in the VarMap and are
/// updated in train mode with the unbiased batch variance, as PyTorch does.
pub fn batch_norm(num_features: usize, affine: bool, vb: VarBuilder) -> Result<BatchNorm> {
    let cfg = BatchNormConfig {
        eps: 1e-5,
        remove_mean: true,
        affine,
        momentum: 0.1,
    };
    candle_nn::batch_norm(num_features, cfg, vb)
}

/// An affine BatchNorm (eps 1e-5, momentum 0.1) whose weight starts at `weight` instead of 1:
/// timm's ResNet zero-initialises the last BatchNorm of each bottleneck (`zero_init_last`), so
/// that every residual block starts as its shortcut.
pub fn batch_norm_with_weight(
    num_features: usize,
    weight: f64,
    vb: VarBuilder,
) -> Result<BatchNorm> {
    let running_mean = vb.get_with_hints(num_features, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(num_features, "running_var", Init::Const(1.0))?;
    let w = vb.get_with_hints(num_features, "weight", Init::Const(weight))?;
    let b = vb.get_with_hints(num_features, "bias", Init::Const(0.0))?;
    BatchNorm::new(num_features, running_mean, running_var, w, b, 1e-5)
}

/// Affine BatchNorm over dim 1 of `(B, C, H, W)`; names `weight`, `bias`, `running_mean`,
/// `running_var` under its VarBuilder prefix.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    inner: BatchNorm,
    running_mean: Var,
    running_var: Var,
    weight: Tensor,
    bias: Tensor,
}

impl BatchNorm2d {
    /// Builds `weight` (ones), `bias` (zeros), `running_mean` (zeros), `running_var` (ones),
    /// each `(num_features,)`.
    pub fn new(num_features: usize, vb: VarBuilder) -> Result<Self> {
        Self::from_inner(batch_norm(num_features, true, vb)?)
    }

    /// Like [`Self::new`] with the weight at zero: the last BatchNorm of a bottleneck (timm's
    /// `zero_init_last`, so every residual block starts as its shortcut).
    pub fn new_zero_weight(num_features: usize, vb: VarBuilder) -> Result<Self> {
        Self::from_inner(batch_norm_with_weight(num_features, 0.0, vb)?)
    }

    fn from_inner(inner: BatchNorm) -> Result<Self> {
        // `Var::from_tensor` of a variable shares its storage: updates land in the VarMap.
        let running_mean = Var::from_tensor(inner.running_mean())?;
        let running_var = Var::from_tensor(inner.running_var())?;
        let (weight, bias) = inner.weight_and_bias().expect("affine batch norm");
        let (weight, bias) = (weight.clone(), bias.clone());
        Ok(Self {
            inner,
            running_mean,
            running_var,
            weight,
            bias,
        })
    }

    /// The running mean `(C,)`.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance `(C,)` (unbiased batch variances averaged in).
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// `relu(bn(x))`, fused in train mode on the CPU.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train && x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 4 {
            return self.forward_train_cpu(x, true);
        }
        self.inner.forward_t(x, train)?.relu()
    }

    fn forward_train_cpu(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.weight.dim(0)? {
            candle_core::bail!(
                "BatchNorm2d: input {:?} does not have {} channels",
                x.dims(),
                self.weight.dim(0)?
            );
        }
        let n = b * h * w;
        if n < 2 {
            candle_core::bail!(
                "BatchNorm2d: train mode needs more than one value per channel, got {:?}",
                x.dims()
            );
        }
        let x = x.contiguous()?;
        let stats = x.apply_op1_no_bwd(&ChannelStats)?; // (2, C): mean, biased variance
        let (mean, var) = (stats.get(0)?, stats.get(1)?);
        let m = self.inner.momentum();
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (&mean * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))?
            + (&var * (m * n as f64 / (n - 1) as f64))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        let eps = self.inner.eps();
        let invstd = var
            .to_vec1::<f32>()?
            .iter()
            .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
            .collect();
        let op = BnTrain {
            mean: mean.to_vec1()?,
            invstd,
            relu,
        };
        x.apply_op3(&self.weight, &self.bias, op)
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train && x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 4 {
            return self.forward_train_cpu(x, false);
        }
        self.inner.forward_t(x, train)
    }
}

/// Runs `f(c, plane)` for every `(b, c)` plane of channel `c` and sums the results per channel
/// (f64 accumulators), in parallel over channels.
fn per_channel<const K: usize>(
    b: usize,
    c: usize,
    hw: usize,
    f: impl Fn(usize, usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = [0f64; K];
            for bi in 0..b {
                let part = f(ch, (bi * c + ch) * hw);
                for (a, p) in acc.iter_mut().zip(part) {
                    *a += p;
                }
            }
            acc
        })
        .collect()
}

/// Sums of `f(x[i], y[i])` (two values) over equal-length slices: eight f32 lanes over blocks of
/// 256 elements, each block's total added in f64. The lanes let the loop vectorise (a single
/// f64 accumulator makes every add wait for the previous one); a block's f32 partial sums carry
/// a relative error near 1e-6, far below BatchNorm's 1e-4 parity tolerance.
#[inline]
fn lane_sums2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    const LANES: usize = 8;
    let (mut a, mut b) = (0f64, 0f64);
    for (xb, yb) in x.chunks(256).zip(y.chunks(256)) {
        let (mut la, mut lb) = ([0f32; LANES], [0f32; LANES]);
        // Fixed-size arrays: no bounds checks in the lane loop, which lets it vectorise.
        let ((xc, xr), (yc, yr)) = (xb.as_chunks::<LANES>(), yb.as_chunks::<LANES>());
        for (xs, ys) in xc.iter().zip(yc) {
            for j in 0..LANES {
                let (u, v) = f(xs[j], ys[j]);
                la[j] += u;
                lb[j] += v;
            }
        }
        let (mut sa, mut sb) = (la.iter().sum::<f32>(), lb.iter().sum::<f32>());
        for (&xv, &yv) in xr.iter().zip(yr) {
            let (u, v) = f(xv, yv);
            sa += u;
            sb += v;
        }
        a += sa as f64;
        b += sb as f64;
    }
    (a, b)
}

/// `(B, C, H, W)` -> `(2, C)`: per-channel mean and biased variance (two passes, f64 totals).
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "batch-norm-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous(s, l, "batch norm", "input")?;
        let (hw, n) = (h * w, (b * h * w) as f64);
        let plane = |o: usize| &x[o..o + hw];
        let sums = per_channel(b, c, hw, |_, o| {
            [lane_sums2(plane(o), plane(o), |v, _| (v, 0.0)).0]
        });
        let means: Vec<f64> = sums.iter().map(|s| s[0] / n).collect();
        let sq = per_channel(b, c, hw, |ch, o| {
            let m = means[ch] as f32;
            [lane_sums2(plane(o), plane(o), |v, _| ((v - m) * (v - m), 0.0)).0]
        });
        let mut out: Vec<f32> = means.iter().map(|&m| m as f32).collect();
        out.extend(sq.iter().map(|s| (s[0] / n) as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// Train-mode forward `y = (x - mean) * invstd * weight + bias` (then ReLU when `relu`) with the
/// batch statistics computed beforehand; args `(x, weight, bias)`.
struct BnTrain {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    relu: bool,
}

impl BnTrain {
    /// Per-channel `(scale, shift)` with `y = x * scale + shift`.
    fn scale_shift(&self, weight: &[f32], bias: &[f32]) -> Vec<(f32, f32)> {
        (0..self.mean.len())
            .map(|ch| {
                let s = weight[ch] * self.invstd[ch];
                (s, bias[ch] - self.mean[ch] * s)
            })
            .collect()
    }
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        let x = contiguous(s1, l1, "batch norm", "input")?;
        let ss = self.scale_shift(
            contiguous(s2, l2, "batch norm", "weight")?,
            contiguous(s3, l3, "batch norm", "bias")?,
        );
        let mut y = zeroed(x.len(), 0f32);
        y.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .enumerate()
            .for_each(|(i, (yp, xp))| {
                let (s, t) = ss[i % c];
                if self.relu {
                    for (o, &v) in yp.iter_mut().zip(xp) {
                        *o = (v * s + t).max(0.0);
                    }
                } else {
                    for (o, &v) in yp.iter_mut().zip(xp) {
                        *o = v * s + t;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ss = self.scale_shift(&weight.to_vec1()?, &bias.to_vec1()?);
        let grad = grad.contiguous()?;
        let reduce = BnBackwardSums {
            mean: &self.mean,
            invstd: &self.invstd,
            ss: &ss,
            relu: self.relu,
        };
        let sums = x.apply_op2_no_bwd(&grad, &reduce)?; // (2, C): d weight, d bias
        let (b, _, h, w) = x.dims4()?;
        let dx = x.apply_op2_no_bwd(
            &grad,
            &BnBackwardInput {
                sums: reduce,
                dweight: sums.get(0)?.to_vec1()?,
                dbias: sums.get(1)?.to_vec1()?,
                n: (b * h * w) as f32,
            },
        )?;
        Ok((Some(dx), Some(sums.get(0)?), Some(sums.get(1)?)))
    }
}

/// Backward reduction, args `(x, dy)` -> `(2, C)`: `sum(dz * xhat)` (the weight's gradient)
/// and `sum(dz)` (the bias's), with `dz = dy` masked by the ReLU when fused.
#[derive(Clone, Copy)]
struct BnBackwardSums<'a> {
    mean: &'a [f32],
    invstd: &'a [f32],
    ss: &'a [(f32, f32)],
    relu: bool,
}

impl BnBackwardSums<'_> {
    /// For channel `ch`: `dz(x, dy)`, the gradient reaching the BatchNorm's output (before the
    /// ReLU's mask). The channel's constants are read once, outside the per-element loop, so
    /// that loop has no lookups and vectorises.
    #[inline]
    fn dz(&self, ch: usize) -> impl Fn(f32, f32) -> f32 + Copy {
        let (s, t) = self.ss[ch];
        let relu = self.relu;
        // `>` rather than `<=` so the mask is one comparison and a select (branch-free).
        move |x, dy| if !relu || x * s + t > 0.0 { dy } else { 0.0 }
    }
}

fn check_pair(l1: &Layout, l2: &Layout) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = l1.shape().dims4()?;
    if l2.shape() != l1.shape() {
        candle_core::bail!(
            "batch norm backward: gradient {:?} does not match input {:?}",
            l2.shape(),
            l1.shape()
        );
    }
    Ok((b, c, h * w))
}

impl CustomOp2 for BnBackwardSums<'_> {
    fn name(&self) -> &'static str {
        "batch-norm-backward-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, hw) = check_pair(l1, l2)?;
        let x = contiguous(s1, l1, "batch norm", "input")?;
        let dy = contiguous(s2, l2, "batch norm", "gradient")?;
        let sums = per_channel(b, c, hw, |ch, o| {
            let (m, is, dz) = (self.mean[ch], self.invstd[ch], self.dz(ch));
            let (sdx, sd) = lane_sums2(&x[o..o + hw], &dy[o..o + hw], |xv, g| {
                let dz = dz(xv, g);
                (dz * (xv - m) * is, dz)
            });
            [sdx, sd]
        });
        let mut out: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        out.extend(sums.iter().map(|s| s[1] as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// Backward pass for the input, args `(x, dy)` -> `dx`:
/// `dx = weight * invstd * (dz - dbias / N - xhat * dweight / N)`.
struct BnBackwardInput<'a> {
    sums: BnBackwardSums<'a>,
    dweight: Vec<f32>,
    dbias: Vec<f32>,
    n: f32,
}

impl CustomOp2 for BnBackwardInput<'_> {
    fn name(&self) -> &'static str {
        "batch-norm-backward-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = check_pair(l1, l2)?;
        let x = contiguous(s1, l1, "batch norm", "input")?;
        let dy = contiguous(s2, l2, "batch norm", "gradient")?;
        let p = &self.sums;
        let mut dx = zeroed(x.len(), 0f32);
        dx.par_chunks_mut(hw)
            .zip(x.par_chunks(hw).zip(dy.par_chunks(hw)))
            .enumerate()
            .for_each(|(i, (dxp, (xp, dyp)))| {
                let ch = i % c;
                let (m, is, s, dz) = (p.mean[ch], p.invstd[ch], p.ss[ch].0, p.dz(ch));
                let mean_dz = self.dbias[ch] / self.n;
                let k = self.dweight[ch] / self.n * is;
                for ((o, &xv), &g) in dxp.iter_mut().zip(xp).zip(dyp) {
                    *o = s * (dz(xv, g) - mean_dz - (xv - m) * k);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
