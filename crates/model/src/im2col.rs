//! CPU convolution as im2col -> gemm through candle's matmul, one graph node per convolution.
//!
//! candle 0.11's CPU `conv2d` backward computes the input gradient with its `conv_transpose2d`,
//! a loop of short dot products several times slower than the forward. Here the forward unfolds
//! the input into columns (im2col) and multiplies them by the weight; the backward unfolds the
//! input again for the weight gradient (`dW = dY colsᵀ`) and folds `Wᵀ dY` back onto the input
//! (col2im, overlapping windows summed). All three products are candle matmuls (gemm). The
//! columns live only inside the op, a batch chunk at a time: they are not kept for the backward
//! and get no gradient buffer of their own (a composed im2col -> matmul would keep them and
//! accumulate a zero-filled gradient of their size). A 1x1 stride-1 convolution skips the unfold.
//!
//! Shapes: [`conv2d_im2col`] maps `(B, Cin, H, W)` and a weight `(Cout, Cin, k, k)` to
//! `(B, Cout, H', W')`, `H' = (H + 2p - k) / s + 1`, equal to `x.conv2d(w, p, s, 1, 1)`. Columns
//! are `(B, Cin * k * k, H' * W')`, row `c * k * k + ky * k + kx` holding the input pixel under
//! kernel tap `(ky, kx)` of every output position (zero in the padding). CPU only, f32 or f64;
//! on CUDA use candle's `conv2d`.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
//! let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
//! let y = model::im2col::conv2d_im2col(&x, &w, 1, 0)?; // 2x2 window sums
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [8., 12., 20., 24.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::cpu_slice::contiguous_as;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape};
use candle_core::{Storage, Tensor, WithDType};
use rayon::prelude::*;

/// Most column elements unfolded at once (128 MiB of f32): larger batches go in chunks.
const COLS_BUDGET: usize = 1 << 25;

/// Output side `(n + 2p - k) / s + 1` of a convolution over a side `n`.
pub fn conv_out_size(n: usize, k: usize, stride: usize, padding: usize) -> usize {
    (n + 2 * padding - k) / stride + 1
}

/// `x.conv2d(weight, padding, stride, 1, 1)` as im2col + gemm: `(B, Cin, H, W)`, weight
/// `(Cout, Cin, k, k)` -> `(B, Cout, H', W')`, with gradients for both. CPU only, f32 or f64.
pub fn conv2d_im2col(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, cin, h, w) = x.dims4()?;
    let (_, wcin, k, kw) = weight.dims4()?;
    if wcin != cin || kw != k || weight.dtype() != x.dtype() {
        candle_core::bail!(
            "conv2d_im2col: input {:?} {:?} and weight {:?} {:?} do not match (square kernel, same Cin and dtype)",
            x.dims(),
            x.dtype(),
            weight.dims(),
            weight.dtype()
        );
    }
    check(x.dtype(), h, w, k, stride, padding)?;
    x.contiguous()?.apply_op2(
        &weight.contiguous()?,
        Conv2dGemm {
            stride,
            padding,
            cols_budget: COLS_BUDGET,
        },
    )
}

fn check(dtype: DType, h: usize, w: usize, k: usize, stride: usize, padding: usize) -> Result<()> {
    if !matches!(dtype, DType::F32 | DType::F64) {
        candle_core::bail!("conv2d_im2col: f32 or f64 input required, got {dtype:?}");
    }
    if k == 0 || stride == 0 || h + 2 * padding < k || w + 2 * padding < k {
        candle_core::bail!(
            "conv2d_im2col: kernel {k}, stride {stride}, padding {padding} do not fit a {h}x{w} input"
        );
    }
    Ok(())
}

/// Output indices `o` in `0..out_len` whose input index `o * stride + offset` lies in
/// `0..in_len`: a contiguous range `lo..hi` (empty when none).
fn valid_range(out_len: usize, in_len: usize, stride: usize, offset: isize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    let room = in_len as isize - offset; // o * stride < room
    let hi = if room <= 0 {
        0
    } else {
        ((room as usize - 1) / stride + 1).min(out_len)
    };
    (lo.min(hi), hi)
}

/// Input side, square kernel, stride and padding of a convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    /// A 1x1 stride-1 unpadded convolution: the input already is its columns.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    fn out_hw(&self) -> (usize, usize) {
        (
            conv_out_size(self.h, self.k, self.stride, self.padding),
            conv_out_size(self.w, self.k, self.stride, self.padding),
        )
    }

    /// Calls `f(oy, iy, ox_lo, ox_hi, ix_lo)` for every output row `oy` of tap `(ky, kx)` that
    /// reads an input row `iy`; output columns `ox_lo..ox_hi` read input columns
    /// `ix_lo + (ox - ox_lo) * stride`.
    fn for_each_row(
        &self,
        ky: usize,
        kx: usize,
        mut f: impl FnMut(usize, usize, usize, usize, usize),
    ) {
        let (ho, wo) = self.out_hw();
        let p = self.padding as isize;
        let (oy_lo, oy_hi) = valid_range(ho, self.h, self.stride, ky as isize - p);
        let (ox_lo, ox_hi) = valid_range(wo, self.w, self.stride, kx as isize - p);
        if ox_lo == ox_hi {
            return;
        }
        let ix_lo = (ox_lo * self.stride + kx) - self.padding;
        for oy in oy_lo..oy_hi {
            let iy = oy * self.stride + ky - self.padding;
            f(oy, iy, ox_lo, ox_hi, ix_lo);
        }
    }
}

fn unfold<T: WithDType>(x: &[T], planes: usize, g: Geometry) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (l, kk) = (ho * wo, g.k * g.k);
    let mut cols = vec![T::zero(); planes * kk * l];
    // One task per (b, c) plane: the k*k rows it fills are contiguous in `cols`.
    cols.par_chunks_mut(kk * l)
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(rows, plane)| {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = &mut rows[(ky * g.k + kx) * l..][..l];
                    g.for_each_row(ky, kx, |oy, iy, ox_lo, ox_hi, ix_lo| {
                        let dst = &mut row[oy * wo + ox_lo..oy * wo + ox_hi];
                        let src = &plane[iy * g.w + ix_lo..];
                        if g.stride == 1 {
                            dst.copy_from_slice(&src[..dst.len()]);
                        } else {
                            for (i, d) in dst.iter_mut().enumerate() {
                                *d = src[i * g.stride];
                            }
                        }
                    });
                }
            }
        });
    cols
}

fn fold<T: WithDType>(cols: &[T], planes: usize, g: Geometry) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (l, kk) = (ho * wo, g.k * g.k);
    let mut x = vec![T::zero(); planes * g.h * g.w];
    // One task per (b, c) plane, which alone receives its k*k rows: no write conflicts, and the
    // sum order is fixed (deterministic).
    x.par_chunks_mut(g.h * g.w)
        .zip(cols.par_chunks(kk * l))
        .for_each(|(plane, rows)| {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = &rows[(ky * g.k + kx) * l..][..l];
                    g.for_each_row(ky, kx, |oy, iy, ox_lo, ox_hi, ix_lo| {
                        let src = &row[oy * wo + ox_lo..oy * wo + ox_hi];
                        let dst = &mut plane[iy * g.w + ix_lo..];
                        if g.stride == 1 {
                            for (d, s) in dst.iter_mut().zip(src) {
                                *d += *s;
                            }
                        } else {
                            for (i, s) in src.iter().enumerate() {
                                dst[i * g.stride] += *s;
                            }
                        }
                    });
                }
            }
        });
    x
}

const CPU_ONLY: &str = "is CPU-only (Conv2d uses candle's conv2d on other devices)";

/// Batch samples per chunk so that a chunk's columns stay within `budget` elements.
fn batch_chunk(b: usize, rows: usize, len: usize, budget: usize) -> usize {
    (budget / (rows * len).max(1)).clamp(1, b.max(1))
}

/// Appends the elements of a contiguous CPU tensor to `out`.
fn extend_from_tensor<T: WithDType>(out: &mut Vec<T>, t: &Tensor) -> Result<()> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("conv2d_im2col: CPU tensor expected");
    };
    out.extend_from_slice(contiguous_as::<T>(cpu, layout, "conv2d_im2col: input")?);
    Ok(())
}

/// The convolution: args `(x, weight)`, output `(B, Cout, H', W')`.
struct Conv2dGemm {
    stride: usize,
    padding: usize,
    /// Most column elements unfolded at once ([`COLS_BUDGET`]; smaller in tests).
    cols_budget: usize,
}

impl Conv2dGemm {
    fn geometry(&self, h: usize, w: usize, k: usize) -> Geometry {
        Geometry {
            h,
            w,
            k,
            stride: self.stride,
            padding: self.padding,
        }
    }

    fn forward<T: WithDType>(
        &self,
        x: &[T],
        (b, c, h, w): (usize, usize, usize, usize),
        weight: &[T],
        (cout, k): (usize, usize),
    ) -> Result<Vec<T>> {
        let g = self.geometry(h, w, k);
        let (ho, wo) = g.out_hw();
        let (rows, len) = (c * k * k, ho * wo);
        let wm = Tensor::from_slice(weight, (cout, rows), &Device::Cpu)?;
        let chunk = batch_chunk(b, rows, len, self.cols_budget);
        let mut y = Vec::with_capacity(b * cout * len);
        for b0 in (0..b).step_by(chunk) {
            let n = chunk.min(b - b0);
            let xs = &x[b0 * c * h * w..(b0 + n) * c * h * w];
            let cols = if g.pointwise() {
                Tensor::from_slice(xs, (n, c, len), &Device::Cpu)?
            } else {
                Tensor::from_vec(unfold(xs, n * c, g), (n, rows, len), &Device::Cpu)?
            };
            extend_from_tensor(&mut y, &wm.broadcast_left(n)?.matmul(&cols)?)?;
        }
        Ok(y)
    }
}

impl CustomOp2 for Conv2dGemm {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let (cout, _, k, _) = l2.shape().dims4()?;
        let (b, _, h, w) = dims;
        let (ho, wo) = self.geometry(h, w, k).out_hw();
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.forward(
                contiguous_as(s1, l1, "conv input: input")?,
                dims,
                contiguous_as(s2, l2, "conv weight: input")?,
                (cout, k),
            )?),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.forward(
                contiguous_as(s1, l1, "conv input: input")?,
                dims,
                contiguous_as(s2, l2, "conv weight: input")?,
                (cout, k),
            )?),
            _ => candle_core::bail!(
                "conv2d_im2col: f32 or f64 input and weight required, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((out, Shape::from((b, cout, ho, wo))))
    }

    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        candle_core::bail!("conv2d_im2col {CPU_ONLY}")
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let (cout, _, k, _) = weight.dims4()?;
        let g = self.geometry(h, w, k);
        let (ho, wo) = g.out_hw();
        let (rows, len) = (c * k * k, ho * wo);
        // Plain tensors: nothing below is recorded for a second-order backward.
        let x = x.detach();
        let wt = weight.detach().reshape((cout, rows))?.t()?;
        let grad = grad.detach().contiguous()?.reshape((b, cout, len))?;
        let chunk = batch_chunk(b, rows, len, self.cols_budget);
        let (mut dxs, mut dw) = (Vec::new(), None::<Tensor>);
        for b0 in (0..b).step_by(chunk) {
            let n = chunk.min(b - b0);
            let (xs, gs) = (x.narrow(0, b0, n)?, grad.narrow(0, b0, n)?);
            let cols = if g.pointwise() {
                xs.reshape((n, c, len))?
            } else {
                xs.apply_op1_no_bwd(&Im2Col { g })?
            };
            // dW = sum over samples of dY colsᵀ: (n, Cout, L) x (n, L, rows) -> (Cout, rows).
            let dws = gs.matmul(&cols.t()?)?.sum(0)?;
            dw = Some(match dw {
                None => dws,
                Some(acc) => (acc + dws)?,
            });
            // dcols = Wᵀ dY: (rows, Cout) x (n, Cout, L) -> (n, rows, L), folded onto x.
            let dcols = wt.broadcast_left(n)?.matmul(&gs)?;
            dxs.push(if g.pointwise() {
                dcols.reshape((n, c, h, w))?
            } else {
                dcols.apply_op1_no_bwd(&Col2Im { g })?
            });
        }
        let dx = if dxs.len() == 1 {
            dxs.remove(0)
        } else {
            Tensor::cat(&dxs, 0)?
        };
        let dw = dw
            .expect("batch of at least one sample")
            .reshape((cout, c, k, k))?;
        Ok((Some(dx), Some(dw)))
    }
}

/// The unfold `(B, C, H, W)` -> `(B, C * k * k, H' * W')`, no backward of its own.
struct Im2Col {
    g: Geometry,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let g = self.g;
        if (h, w) != (g.h, g.w) {
            candle_core::bail!("im2col: input {:?} is not {}x{}", l.shape(), g.h, g.w);
        }
        let (ho, wo) = g.out_hw();
        let out = match s {
            CpuStorage::F32(_) => {
                CpuStorage::F32(unfold(contiguous_as(s, l, "im2col: input")?, b * c, g))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(unfold(contiguous_as(s, l, "im2col: input")?, b * c, g))
            }
            _ => candle_core::bail!("im2col: f32 or f64 input required, got {:?}", s.dtype()),
        };
        Ok((out, Shape::from((b, c * g.k * g.k, ho * wo))))
    }

    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        candle_core::bail!("im2col {CPU_ONLY}")
    }
}

/// The fold `(B, C * k * k, H' * W')` -> `(B, C, H, W)`, overlapping windows summed; no
/// backward of its own.
struct Col2Im {
    g: Geometry,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, rows, len) = l.shape().dims3()?;
        let g = self.g;
        let (ho, wo) = g.out_hw();
        let kk = g.k * g.k;
        if rows % kk != 0 || len != ho * wo {
            candle_core::bail!(
                "col2im: columns {:?} do not fit kernel {}, output {ho}x{wo}",
                l.shape(),
                g.k
            );
        }
        let c = rows / kk;
        let out = match s {
            CpuStorage::F32(_) => {
                CpuStorage::F32(fold(contiguous_as(s, l, "col2im: input")?, b * c, g))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(fold(contiguous_as(s, l, "col2im: input")?, b * c, g))
            }
            _ => candle_core::bail!("col2im: f32 or f64 input required, got {:?}", s.dtype()),
        };
        Ok((out, Shape::from((b, c, g.h, g.w))))
    }

    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        candle_core::bail!("col2im {CPU_ONLY}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_cases() {
        // stride 1, padding 1, k 3 over 5: tap 0 reads o-1 (o >= 1), tap 2 reads o+1 (o <= 3).
        assert_eq!(valid_range(5, 5, 1, -1), (1, 5));
        assert_eq!(valid_range(5, 5, 1, 1), (0, 4));
        // stride 2 over 5 with padding 1: outputs 3, tap 0 reads 2o-1.
        assert_eq!(valid_range(3, 5, 2, -1), (1, 3));
        assert_eq!(valid_range(3, 5, 2, 1), (0, 2));
        // Nothing valid.
        assert_eq!(valid_range(2, 1, 1, 3), (0, 0));
    }

    #[test]
    fn batch_chunks_give_the_same_output_and_gradients() {
        use candle_core::Var;
        let dev = Device::Cpu;
        for (k, stride, padding) in [(3, 2, 1), (1, 1, 0)] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1., (5, 3, 7, 6), &dev).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 1., (4, 3, k, k), &dev).unwrap()).unwrap();
            let run = |budget| {
                let op = Conv2dGemm {
                    stride,
                    padding,
                    cols_budget: budget,
                };
                let y = x.as_tensor().apply_op2(w.as_tensor(), op).unwrap();
                // The same upstream gradient in both runs.
                let r = Tensor::arange(0f32, y.elem_count() as f32, &dev)
                    .unwrap()
                    .sin()
                    .unwrap()
                    .reshape(y.dims())
                    .unwrap();
                let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                [
                    flat(&y),
                    flat(g.get(x.as_tensor()).unwrap()),
                    flat(g.get(w.as_tensor()).unwrap()),
                ]
            };
            // One sample per chunk (budget 1) vs the whole batch at once.
            let (chunked, whole) = (run(1), run(usize::MAX));
            for (a, b) in chunked.iter().zip(&whole) {
                for (u, v) in a.iter().zip(b) {
                    assert!((u - v).abs() <= 1e-4 * (1. + v.abs()), "{u} vs {v}");
                }
            }
        }
    }
}
