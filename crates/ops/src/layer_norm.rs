//! Layer normalisation over the last dim as fused CPU kernels with a backward (candle 0.11's
//! fused LayerNorm has none, and the composed one is five full-size tensor ops with more in its
//! backward, each a pass over memory and a thread-pool round trip).
//!
//! Shapes: `x` `(.., C)`, `weight` and `bias` `(C,)` -> `(.., C)`;
//! `y = (x - mean) / sqrt(var + eps) * weight + bias` with the biased variance of each row.
//! f32 on the CPU; the model crate's `layers::LayerNorm` composes candle ops elsewhere.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::new(&[[1f32, 3.]], &Device::Cpu)?;
//! let w = Tensor::new(&[1f32, 2.], &Device::Cpu)?;
//! let b = Tensor::new(&[0f32, 1.], &Device::Cpu)?;
//! let y = ops::layer_norm::layer_norm(&x, &w, &b, 0.)?; // x normalised to [-1, 1]
//! assert_eq!(y.to_vec2::<f32>()?, [[-1., 3.]]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows per rayon task (the weight/bias gradient sums one partial per task, in task order, so
/// the result does not depend on scheduling).
const ROWS_PER_TASK: usize = 32;

/// Fused layer norm over the last dim; `x` f32 on the CPU, `weight`/`bias` `(C,)`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(candle_core::D::Minus1)?;
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        candle_core::bail!(
            "layer_norm: f32 CPU input required, got {:?} on {:?}",
            x.dtype(),
            x.device()
        );
    }
    if weight.dims() != [c] || bias.dims() != [c] {
        candle_core::bail!(
            "layer_norm: weight {:?} / bias {:?} must be ({c},) for input {:?}",
            weight.dims(),
            bias.dims(),
            x.dims()
        );
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps },
    )
}

/// `(mean, 1 / sqrt(var + eps))` of a row, two passes with f64 sums.
#[inline]
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

#[derive(Clone, Copy)]
struct LayerNormOp {
    eps: f64,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
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
        let x = contiguous(s1, l1, "layer_norm", "input")?;
        let w = contiguous(s2, l2, "layer_norm", "weight")?;
        let b = contiguous(s3, l3, "layer_norm", "bias")?;
        let c = w.len();
        let mut y = zeroed(x.len(), 0f32);
        if c == 0 {
            return Ok((CpuStorage::F32(y), l1.shape().clone()));
        }
        y.par_chunks_mut(ROWS_PER_TASK * c)
            .zip(x.par_chunks(ROWS_PER_TASK * c))
            .for_each(|(y, x)| {
                for (yr, xr) in y.chunks_mut(c).zip(x.chunks(c)) {
                    let (m, is) = row_stats(xr, self.eps);
                    for (((o, &v), &wv), &bv) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                        *o = (v - m) * is * wv + bv;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(&grad, weight, &InputGrad(*self))?;
        let dwb = x.apply_op2_no_bwd(&grad, &ParamGrads(*self))?; // (2, C)
        Ok((Some(dx), Some(dwb.get(0)?), Some(dwb.get(1)?)))
    }
}

/// Args `(x, dy, weight)` -> `dx = invstd * (g - mean(g) - xhat * mean(g * xhat))`, `g = dy * w`.
struct InputGrad(LayerNormOp);

impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "layer-norm-backward-input"
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
        let x = contiguous(s1, l1, "layer_norm", "input")?;
        let dy = contiguous(s2, l2, "layer_norm", "gradient")?;
        let w = contiguous(s3, l3, "layer_norm", "weight")?;
        let c = w.len();
        let mut dx = zeroed(x.len(), 0f32);
        if c == 0 || dy.len() != x.len() {
            candle_core::bail!("layer_norm backward: {:?} vs {:?}", l1.shape(), l2.shape());
        }
        let task = ROWS_PER_TASK * c;
        dx.par_chunks_mut(task)
            .zip(x.par_chunks(task).zip(dy.par_chunks(task)))
            .for_each(|(dx, (x, dy))| {
                for ((dxr, xr), dyr) in dx.chunks_mut(c).zip(x.chunks(c)).zip(dy.chunks(c)) {
                    let (m, is) = row_stats(xr, self.0.eps);
                    let (mut sg, mut sgx) = (0f32, 0f32);
                    for ((&v, &g), &wv) in xr.iter().zip(dyr).zip(w) {
                        let g = g * wv;
                        sg += g;
                        sgx += g * (v - m) * is;
                    }
                    let (mg, mgx) = (sg / c as f32, sgx / c as f32);
                    for (((o, &v), &g), &wv) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
                        *o = is * (g * wv - mg - (v - m) * is * mgx);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Args `(x, dy)` -> `(2, C)`: `sum_rows(dy * xhat)` (weight gradient), `sum_rows(dy)` (bias).
struct ParamGrads(LayerNormOp);

impl CustomOp2 for ParamGrads {
    fn name(&self) -> &'static str {
        "layer-norm-backward-params"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, "layer_norm", "input")?;
        let dy = contiguous(s2, l2, "layer_norm", "gradient")?;
        let c = l1.shape().dims().last().copied().unwrap_or(0);
        if c == 0 || dy.len() != x.len() {
            candle_core::bail!("layer_norm backward: {:?} vs {:?}", l1.shape(), l2.shape());
        }
        let task = ROWS_PER_TASK * c;
        let partials: Vec<Vec<f32>> = x
            .par_chunks(task)
            .zip(dy.par_chunks(task))
            .map(|(x, dy)| {
                let mut acc = vec![0f32; 2 * c];
                for (xr, dyr) in x.chunks(c).zip(dy.chunks(c)) {
                    let (m, is) = row_stats(xr, self.0.eps);
                    let (dw, db) = acc.split_at_mut(c);
                    for (((aw, ab), &v), &g) in dw.iter_mut().zip(db).zip(xr).zip(dyr) {
                        *aw += g * (v - m) * is;
                        *ab += g;
                    }
                }
                acc
            })
            .collect();
        let mut out = zeroed(2 * c, 0f32);
        for p in &partials {
            for (o, v) in out.iter_mut().zip(p) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}
