//! Exact-erf GELU and last-dim softmax with fused CPU kernels for both directions.
//!
//! Shapes: any `(.., D)` -> same shape; softmax normalises over the last dim `D`.
//!
//! candle computes the GELU's gradient with about a dozen full-size tensor ops and composes a
//! differentiable softmax from five (its fused softmax has no backward); each is a pass over
//! memory and a thread-pool round trip, which dominate the transformer's backward on the CPU.
//! Here each direction is one rayon pass. f32 on the CPU; other dtypes and devices use candle's
//! ops (same maths).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::new(&[[0f32, 1f32.ln()], [2f32.ln(), 0.]], &Device::Cpu)?;
//! let p = ops::activation::softmax_last_dim(&x)?.flatten_all()?.to_vec1::<f32>()?;
//! for (got, want) in p.iter().zip([0.5, 0.5, 2. / 3., 1. / 3.]) {
//!     assert!((got - want).abs() < 1e-6);
//! }
//! let g = ops::activation::gelu_erf(&Tensor::new(&[0f32], &Device::Cpu)?)?;
//! assert_eq!(g.to_vec1::<f32>()?, [0.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;
use crate::fast_math::{erf, exp, sum};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Elements per rayon task of the elementwise kernels (big enough to amortise the split).
const CHUNK: usize = 16 * 1024;

fn fused_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

fn same_shape(l1: &Layout, l2: &Layout, op: &str) -> Result<()> {
    if l1.shape() != l2.shape() {
        candle_core::bail!(
            "{op}: gradient {:?} does not match {:?}",
            l2.shape(),
            l1.shape()
        );
    }
    Ok(())
}

/// `x * Phi(x)` with the exact normal CDF (PyTorch's `GELU(approximate='none')`).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !fused_cpu(x) {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1(GeluErf)
}

struct GeluErf;
struct GeluErfBackward;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "gelu_erf", "input")?;
        let mut y = zeroed(x.len(), 0f32);
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (o, &v) in y.iter_mut().zip(x) {
                    // candle's gelu_erf expression, with the vectorisable erf.
                    *o = (erf(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v;
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluErfBackward)?,
        ))
    }
}

impl CustomOp2 for GeluErfBackward {
    fn name(&self) -> &'static str {
        "gelu-erf-backward"
    }

    /// Args `(x, dy)` -> `dy * (Phi(x) + x * phi(x))`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "gelu_erf backward")?;
        let x = contiguous(s1, l1, "gelu_erf backward", "input")?;
        let dy = contiguous(s2, l2, "gelu_erf backward", "gradient")?;
        // 1 / sqrt(2 pi)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let mut dx = zeroed(x.len(), 0f32);
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(dx, (x, dy))| {
                for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
                    let cdf = 0.5 * (1. + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                    let pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
                    *o = g * (cdf + v * pdf);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Softmax over the last dim (max-subtracted, so large logits do not overflow).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !fused_cpu(x) {
        // candle's fused softmax_last_dim has no backward; this one is composed.
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    x.contiguous()?.apply_op1(Softmax)
}

/// Softmax over the last dim, f32 (its backward: [`SoftmaxBackward`] on the output).
pub(crate) struct Softmax;
/// Args `(y, dy)` of a softmax output -> the gradient of its input.
pub(crate) struct SoftmaxBackward;

/// Rows per rayon task for a row length `d`.
fn rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).max(1)
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = l.shape().dims().last().copied().unwrap_or(1);
        let x = contiguous(s, l, "softmax", "input")?;
        let mut y = zeroed(x.len(), 0f32);
        if d == 0 {
            return Ok((CpuStorage::F32(y), l.shape().clone()));
        }
        let task = rows_per_task(d) * d;
        y.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .for_each(|(y, x)| {
                for (yr, xr) in y.chunks_mut(d).zip(x.chunks(d)) {
                    let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = exp(v - m);
                    }
                    let inv = 1. / sum(yr);
                    for o in yr.iter_mut() {
                        *o *= inv;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward)?,
        ))
    }
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-last-dim-backward"
    }

    /// Args `(y, dy)` -> `y * (dy - sum(dy * y))` per row.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "softmax backward")?;
        let d = l1.shape().dims().last().copied().unwrap_or(1);
        let y = contiguous(s1, l1, "softmax backward", "input")?;
        let dy = contiguous(s2, l2, "softmax backward", "gradient")?;
        let mut dx = zeroed(y.len(), 0f32);
        if d == 0 {
            return Ok((CpuStorage::F32(dx), l1.shape().clone()));
        }
        let task = rows_per_task(d) * d;
        dx.par_chunks_mut(task)
            .zip(y.par_chunks(task).zip(dy.par_chunks(task)))
            .for_each(|(dx, (y, dy))| {
                for ((dxr, yr), dyr) in dx.chunks_mut(d).zip(y.chunks(d)).zip(dy.chunks(d)) {
                    let dot: f32 = yr.iter().zip(dyr).map(|(a, b)| a * b).sum();
                    for ((o, &p), &g) in dxr.iter_mut().zip(yr).zip(dyr) {
                        *o = p * (g - dot);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
