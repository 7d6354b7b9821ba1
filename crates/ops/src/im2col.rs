//! CPU convolution as im2col -> gemm, one graph node per convolution.
//!
//! candle 0.11's CPU `conv2d` backward computes the input gradient with its `conv_transpose2d`,
//! a loop of short dot products several times slower than the forward. Here the forward unfolds
//! the input into columns (im2col) and multiplies them by the weight; the backward unfolds the
//! input again for the weight gradient (`dW = dY colsᵀ`) and folds `Wᵀ dY` back onto the input
//! (col2im, overlapping windows summed). The three products are gemm calls writing straight into
//! the output and gradient buffers ([`crate::matmul`]). The columns live only inside the op, one
//! sample at a time: they are not kept for the backward and get no gradient buffer of their own
//! (a composed im2col -> matmul would keep them and accumulate a zero-filled gradient of their
//! size). A 1x1 stride-1 convolution skips the unfold.
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
//! let y = ops::im2col::conv2d_im2col(&x, &w, 1, 0)?; // 2x2 window sums
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [8., 12., 20., 24.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::buffer::zeroed;
use crate::cpu_slice::{float_slices, FloatSlices};
use crate::matmul::{matmul_into, GemmScalar, MatRef, Threads};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape};
use candle_core::{Storage, Tensor, WithDType};
use rayon::prelude::*;
use std::ops::Range;

/// Column elements per tile (1 MiB of f32, about one core's L2 cache) and the fewest output
/// positions per tile.
const TILE: (usize, usize) = (1 << 18, 512);

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
            tile: TILE,
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

    /// Calls `f(oy, iy, ox_lo, ox_hi, ix_lo)` for every output row `oy` in `rows` of tap
    /// `(ky, kx)` that reads an input row `iy`; output columns `ox_lo..ox_hi` read input columns
    /// `ix_lo + (ox - ox_lo) * stride`.
    fn for_each_row(
        &self,
        ky: usize,
        kx: usize,
        rows: Range<usize>,
        mut f: impl FnMut(usize, usize, usize, usize, usize),
    ) {
        let (ho, wo) = self.out_hw();
        let p = self.padding as isize;
        let (oy_lo, oy_hi) = valid_range(ho, self.h, self.stride, ky as isize - p);
        let (oy_lo, oy_hi) = (oy_lo.max(rows.start), oy_hi.min(rows.end));
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

/// Unfolds output rows `rows` of one sample `x (planes, H, W)` into
/// `cols (planes * k * k, rows.len() * W')` (zero where a tap reads the padding).
fn unfold_into<T: WithDType>(
    cols: &mut Vec<T>,
    x: &[T],
    planes: usize,
    g: Geometry,
    rows: Range<usize>,
) {
    let (_, wo) = g.out_hw();
    let (l, kk) = (rows.len() * wo, g.k * g.k);
    cols.clear();
    cols.resize(planes * kk * l, T::zero());
    // One task per plane: the k*k rows it fills are contiguous in `cols`.
    cols.par_chunks_mut(kk * l)
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(taps, plane)| {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = &mut taps[(ky * g.k + kx) * l..][..l];
                    g.for_each_row(ky, kx, rows.clone(), |oy, iy, ox_lo, ox_hi, ix_lo| {
                        let o = (oy - rows.start) * wo;
                        let dst = &mut row[o + ox_lo..o + ox_hi];
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
}

/// Folds the column gradient of output rows `rows`, `cols (planes * k * k, rows.len() * W')`,
/// onto one sample's input gradient `x (planes, H, W)`, overlapping windows summed.
fn fold_into<T: WithDType>(
    x: &mut [T],
    cols: &[T],
    planes: usize,
    g: Geometry,
    rows: Range<usize>,
) {
    let (_, wo) = g.out_hw();
    let (l, kk) = (rows.len() * wo, g.k * g.k);
    debug_assert_eq!(cols.len(), planes * kk * l);
    // One task per plane, which alone receives its k*k rows: no write conflicts, and the sum
    // order is fixed (deterministic).
    x.par_chunks_mut(g.h * g.w)
        .zip(cols.par_chunks(kk * l))
        .for_each(|(plane, taps)| {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = &taps[(ky * g.k + kx) * l..][..l];
                    g.for_each_row(ky, kx, rows.clone(), |oy, iy, ox_lo, ox_hi, ix_lo| {
                        let o = (oy - rows.start) * wo;
                        let src = &row[o + ox_lo..o + ox_hi];
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
}

/// Output rows per tile: columns of about `budget` elements (so a tile's columns stay in cache
/// between the unfold and the products), but at least `min_len` output positions (narrower
/// products run slower in gemm). Everything in one tile when the columns are small.
fn tile_rows(g: Geometry, planes: usize, (budget, min_len): (usize, usize)) -> usize {
    let (ho, wo) = g.out_hw();
    let per_row = (planes * g.k * g.k * wo).max(1);
    (budget / per_row)
        .max(min_len.div_ceil(wo.max(1)))
        .clamp(1, ho.max(1))
}

/// Splits `0..ho` into tiles of `step` rows.
fn tiles(ho: usize, step: usize) -> impl Iterator<Item = Range<usize>> {
    (0..ho)
        .step_by(step.max(1))
        .map(move |r| r..(r + step).min(ho))
}

const CPU_ONLY: &str = "is CPU-only (Conv2d uses candle's conv2d on other devices)";

/// The convolution: args `(x, weight)`, output `(B, Cout, H', W')`.
///
/// One sample at a time: its columns `(Cin * k * k, H' * W')` are unfolded into a buffer reused
/// across samples (a 1x1 stride-1 convolution reads the input itself), and the products write
/// straight into the output and gradient buffers ([`matmul_into`]); the weight's gradient is
/// accumulated over samples in place.
struct Conv2dGemm {
    stride: usize,
    padding: usize,
    /// Column elements per tile of output rows and the fewest output positions per tile
    /// ([`TILE`]; smaller in tests).
    tile: (usize, usize),
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

    fn forward<T: WithDType + GemmScalar>(
        &self,
        x: &[T],
        (b, c, h, w): (usize, usize, usize, usize),
        weight: &[T],
        (cout, k): (usize, usize),
    ) -> Vec<T> {
        let g = self.geometry(h, w, k);
        let (ho, wo) = g.out_hw();
        let (rows, len) = (c * k * k, ho * wo);
        let wm = MatRef::row_major(weight, cout, rows);
        let mut y = zeroed(b * cout * len, T::zero());
        let (per, threads) = sample_groups(b);
        y.par_chunks_mut(per * cout * len)
            .zip(x.par_chunks(per * c * h * w))
            .with_max_len(1)
            .for_each(|(yg, xg)| {
                let mut cols = Vec::new();
                for (xs, ys) in xg.chunks(c * h * w).zip(yg.chunks_mut(cout * len)) {
                    if g.pointwise() {
                        let cm = MatRef::row_major(xs, rows, len);
                        matmul_into(ys, len, wm, cm, T::ONE, false, threads);
                        continue;
                    }
                    // Tile by output rows: y[:, tile] = W cols(tile).
                    for t in tiles(ho, tile_rows(g, c, self.tile)) {
                        let lt = t.len() * wo;
                        let off = t.start * wo;
                        unfold_into(&mut cols, xs, c, g, t);
                        let cm = MatRef::row_major(&cols, rows, lt);
                        matmul_into(&mut ys[off..], len, wm, cm, T::ONE, false, threads);
                    }
                }
            });
        y
    }

    /// `(dx, dweight)` for the input `x`, the weight and the output's gradient `gy`.
    fn backward<T: WithDType + GemmScalar>(
        &self,
        x: &[T],
        (b, c, h, w): (usize, usize, usize, usize),
        weight: &[T],
        (cout, k): (usize, usize),
        gy: &[T],
    ) -> (Vec<T>, Vec<T>) {
        let g = self.geometry(h, w, k);
        let (ho, wo) = g.out_hw();
        let (rows, len) = (c * k * k, ho * wo);
        let wt = MatRef::row_major(weight, cout, rows).t();
        let mut dx = zeroed(b * c * h * w, T::zero());
        let (per, threads) = sample_groups(b);
        // Each group of samples sums its own weight gradient; the groups' sums are added in
        // group order below, so the result does not depend on scheduling.
        let partial_dw: Vec<Vec<T>> = dx
            .par_chunks_mut(per * c * h * w)
            .zip(
                x.par_chunks(per * c * h * w)
                    .zip(gy.par_chunks(per * cout * len)),
            )
            .with_max_len(1)
            .map(|(dxg, (xg, gg))| {
                let mut dw = vec![T::zero(); cout * rows];
                let (mut cols, mut dcols) = (Vec::new(), Vec::new());
                for (i, ((xs, gs), dxs)) in xg
                    .chunks(c * h * w)
                    .zip(gg.chunks(cout * len))
                    .zip(dxg.chunks_mut(c * h * w))
                    .enumerate()
                {
                    if g.pointwise() {
                        let gm = MatRef::row_major(gs, cout, len);
                        // dW += dY xᵀ; dx = Wᵀ dY.
                        let ct = MatRef::row_major(xs, rows, len).t();
                        matmul_into(&mut dw, rows, gm, ct, T::ONE, i > 0, threads);
                        matmul_into(dxs, len, wt, gm, T::ONE, false, threads);
                        continue;
                    }
                    for (j, t) in tiles(ho, tile_rows(g, c, self.tile)).enumerate() {
                        let lt = t.len() * wo;
                        // dY[:, tile]: (Cout, lt) with the full row stride.
                        let gm = MatRef::new(&gs[t.start * wo..], (cout, lt), (len, 1));
                        // Recomputed rather than kept from the forward: k*k times the input.
                        unfold_into(&mut cols, xs, c, g, t.clone());
                        // dW += dY cols(tile)ᵀ: (Cout, lt) x (lt, rows).
                        let ct = MatRef::row_major(&cols, rows, lt).t();
                        matmul_into(&mut dw, rows, gm, ct, T::ONE, i > 0 || j > 0, threads);
                        // dcols = Wᵀ dY[:, tile]: (rows, Cout) x (Cout, lt), folded onto x.
                        dcols.resize(rows * lt, T::zero());
                        matmul_into(&mut dcols, lt, wt, gm, T::ONE, false, threads);
                        fold_into(dxs, &dcols, c, g, t);
                    }
                }
                dw
            })
            .collect();
        let mut partial_dw = partial_dw.into_iter();
        let mut dw = partial_dw.next().expect("at least one sample");
        for p in partial_dw {
            for (d, v) in dw.iter_mut().zip(p) {
                *d += v;
            }
        }
        (dx, dw)
    }
}

/// How a batch of `b` samples is shared out: `(samples per group, gemm threads)`.
/// With at least as many samples as threads, one group per thread runs its samples' products on
/// its own thread (one hand-off per convolution instead of one per product); otherwise one group
/// runs the samples in turn, each product split across the pool.
fn sample_groups(b: usize) -> (usize, Threads) {
    let threads = rayon::current_num_threads();
    if threads > 1 && b >= threads {
        (b.div_ceil(threads), Threads::Caller)
    } else {
        (b.max(1), Threads::Pool)
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
        let out = match float_slices("conv2d_im2col", [(s1, l1, "input"), (s2, l2, "weight")])? {
            FloatSlices::F32([x, wt]) => CpuStorage::F32(self.forward(x, dims, wt, (cout, k))),
            FloatSlices::F64([x, wt]) => CpuStorage::F64(self.forward(x, dims, wt, (cout, k))),
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
        let dims = x.dims4()?;
        let (cout, c, k, _) = weight.dims4()?;
        let grad = grad.contiguous()?;
        let (xg, xl) = x.storage_and_layout();
        let (wg, wl) = weight.storage_and_layout();
        let (gg, gl) = grad.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(ws), Storage::Cpu(gs)) = (&*xg, &*wg, &*gg) else {
            candle_core::bail!("conv2d_im2col {CPU_ONLY}");
        };
        let dev = x.device();
        let wdims = (cout, c, k, k);
        let (dx, dw) = match float_slices(
            "conv2d_im2col backward",
            [(xs, xl, "input"), (ws, wl, "weight"), (gs, gl, "gradient")],
        )? {
            FloatSlices::F32([x, wt, g]) => {
                let (dx, dw) = self.backward(x, dims, wt, (cout, k), g);
                (
                    Tensor::from_vec(dx, dims, dev)?,
                    Tensor::from_vec(dw, wdims, dev)?,
                )
            }
            FloatSlices::F64([x, wt, g]) => {
                let (dx, dw) = self.backward(x, dims, wt, (cout, k), g);
                (
                    Tensor::from_vec(dx, dims, dev)?,
                    Tensor::from_vec(dw, wdims, dev)?,
                )
            }
        };
        Ok((Some(dx), Some(dw)))
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
    fn tiles_of_output_rows_give_the_same_output_and_gradients() {
        use candle_core::{Device, Var};
        let dev = Device::Cpu;
        for (k, stride, padding) in [(3, 1, 1), (3, 2, 1), (7, 2, 3)] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1., (3, 3, 11, 9), &dev).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 1., (4, 3, k, k), &dev).unwrap()).unwrap();
            let run = |tile| {
                let op = Conv2dGemm {
                    stride,
                    padding,
                    tile,
                };
                let y = x.as_tensor().apply_op2(w.as_tensor(), op).unwrap();
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
            // One output row per tile vs the whole output at once.
            let (tiled, whole) = (run((1, 1)), run((usize::MAX, 1)));
            for (a, b) in tiled.iter().zip(&whole) {
                for (u, v) in a.iter().zip(b) {
                    assert!(
                        (u - v).abs() <= 1e-4 * (1. + v.abs()),
                        "k{k} s{stride}: {u} vs {v}"
                    );
                }
            }
        }
    }
}
