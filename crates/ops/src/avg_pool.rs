//! The avg-down shortcut's pool: AvgPool2d(2, stride 2, ceil_mode=True, count_include_pad=False)
//! as timm's ResNet-D uses it, one CPU graph node with its backward.
//!
//! Shapes: `(B, C, H, W)` -> `(B, C, ceil(H / 2), ceil(W / 2))`. Each output is the mean of the
//! pixels its 2x2 window covers (a window hanging over an odd edge averages the 1 or 2 pixels
//! it holds). f32 on the CPU; other devices and dtypes use composed candle ops.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
//! let y = ops::avg_pool::avg_pool_2x2_ceil(&x)?;
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [2., 3.5, 6.5, 8.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;

/// 2x2 / stride 2 average pool, ceil mode, padding not counted: `(B, C, H, W)` ->
/// `(B, C, ceil(H/2), ceil(W/2))`.
pub fn avg_pool_2x2_ceil(x: &Tensor) -> Result<Tensor> {
    x.dims4()?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(AvgPool2x2)
    } else {
        composed(x)
    }
}

/// The same pool from candle ops (any device and dtype).
fn composed(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let x = x
        .pad_with_zeros(2, 0, 2 * ho - h)?
        .pad_with_zeros(3, 0, 2 * wo - w)?;
    let sum = x.reshape((b, c, ho, 2, wo, 2))?.sum(5)?.sum(3)?;
    if h % 2 == 0 && w % 2 == 0 {
        return sum * 0.25;
    }
    let inv: Vec<f32> = (0..ho * wo)
        .map(|i| 1.0 / window_count(h, w, i / wo, i % wo))
        .collect();
    let inv = Tensor::from_vec(inv, (1, 1, ho, wo), x.device())?.to_dtype(x.dtype())?;
    sum.broadcast_mul(&inv)
}

/// Pixels under output (i, j)'s window of an `h x w` plane (4, or fewer on an odd edge).
fn window_count(h: usize, w: usize, i: usize, j: usize) -> f32 {
    let rows = if 2 * i + 1 < h { 2 } else { 1 };
    let cols = if 2 * j + 1 < w { 2 } else { 1 };
    (rows * cols) as f32
}

struct AvgPool2x2;

impl CustomOp1 for AvgPool2x2 {
    fn name(&self) -> &'static str {
        "avg-pool-2x2-ceil"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous(s, l, "avg_pool_2x2_ceil", "input")?;
        let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
        let mut y = zeroed(b * c * ho * wo, 0f32);
        y.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(out, plane)| {
                for i in 0..ho {
                    let rows = (2 * i..(2 * i + 2).min(h)).map(|r| &plane[r * w..(r + 1) * w]);
                    let out_row = &mut out[i * wo..(i + 1) * wo];
                    for row in rows {
                        for (j, o) in out_row.iter_mut().enumerate() {
                            *o += row[2 * j] + if 2 * j + 1 < w { row[2 * j + 1] } else { 0.0 };
                        }
                    }
                    for (j, o) in out_row.iter_mut().enumerate() {
                        *o /= window_count(h, w, i, j);
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((b, c, ho, wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&AvgPool2x2Backward { h, w })?,
        ))
    }
}

/// `(B, C, H', W')` output gradient -> `(B, C, H, W)`: each pixel gets its window's gradient
/// divided by the window's pixel count.
struct AvgPool2x2Backward {
    h: usize,
    w: usize,
}

impl CustomOp1 for AvgPool2x2Backward {
    fn name(&self) -> &'static str {
        "avg-pool-2x2-ceil-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, ho, wo) = l.shape().dims4()?;
        let (h, w) = (self.h, self.w);
        if (ho, wo) != (h.div_ceil(2), w.div_ceil(2)) {
            candle_core::bail!(
                "avg_pool_2x2_ceil backward: gradient {:?} does not fit a {h}x{w} input",
                l.shape()
            );
        }
        let g = contiguous(s, l, "avg_pool_2x2_ceil backward", "gradient")?;
        let mut dx = zeroed(b * c * h * w, 0f32);
        dx.par_chunks_mut(h * w)
            .zip(g.par_chunks(ho * wo))
            .for_each(|(plane, gp)| {
                for r in 0..h {
                    let i = r / 2;
                    for (q, d) in plane[r * w..(r + 1) * w].iter_mut().enumerate() {
                        let j = q / 2;
                        *d = gp[i * wo + j] / window_count(h, w, i, j);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_ops_on_even_and_odd_sides() -> Result<()> {
        let dev = Device::Cpu;
        for (h, w) in [(6, 8), (7, 5), (1, 3)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, h, w), &dev)?)?;
            let y = avg_pool_2x2_ceil(&x)?;
            let y0 = composed(&x)?;
            let r = Tensor::randn(0f32, 1., y.dims(), &dev)?;
            let g = (&y * &r)?.sum_all()?.backward()?;
            let g0 = (&y0 * &r)?.sum_all()?.backward()?;
            let max_diff = |u: &Tensor, v: &Tensor| -> Result<f32> {
                (u - v)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
            };
            assert!(max_diff(&y, &y0)? < 1e-6, "{h}x{w} output");
            let (gx, gx0) = (g.get(&x).expect("grad"), g0.get(&x).expect("grad"));
            assert!(max_diff(gx, gx0)? < 1e-6, "{h}x{w} gradient");
        }
        Ok(())
    }
}
