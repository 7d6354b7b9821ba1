//! Patch-wise token mixing: `out = r * fg + (1 - r) * bg`, the ratio broadcast over channels.
//!
//! Shapes: `fg`, `bg`: (B, N, C) tokens (N patches, C channels); `ratio`: (B, N).
//! Output (B, N, C). Backward, in one fused pass over the three (B, N, C) tensors:
//! `d_fg = r * g`, `d_bg = (1 - r) * g` (both (B, N, C)), `d_r = sum_c (fg - bg) * g` (B, N).
//! Dtypes: f32, bf16, f16 (arithmetic in f32, one rounding at the store) on CPU and CUDA, and
//! f64 on the CPU (for finite-difference checks).

use crate::checks::{check_dtype, contiguous_range, dtype_error};
use crate::elem::Elem;
use crate::error::{PatchMixError, Result};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per rayon task: big enough to amortise scheduling, small enough to balance.
const TASK_ELEMS: usize = 1 << 15;

/// Mixes two token batches patch by patch, with backward.
///
/// `fg`, `bg`: (B, N, C); `ratio`: (B, N), usually in [floor, alpha] from
/// [`crate::lesion_aware_ratio`]; all three of one dtype (f32, bf16, f16; f64 on CPU) and on one
/// device. Strided inputs are made contiguous first. Returns (B, N, C).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let fg = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &dev)?; // (1, 2, 2)
/// let bg = Tensor::zeros((1, 2, 2), candle_core::DType::F32, &dev)?;
/// let r = Tensor::new(&[[0.5f32, 0.75]], &dev)?; // (1, 2)
/// let out = patchmix::patch_mix(&fg, &bg, &r)?;
/// assert_eq!(out.to_vec3::<f32>()?, [[[0.5, 1.0], [2.25, 3.0]]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn patch_mix(fg: &Tensor, bg: &Tensor, ratio: &Tensor) -> Result<Tensor> {
    check_mix_args("patch_mix", fg, bg, ratio, None)?;
    let (fg, bg, ratio) = (fg.contiguous()?, bg.contiguous()?, ratio.contiguous()?);
    Ok(fg.apply_op3(&bg, &ratio, PatchMix)?)
}

/// The fused backward of [`patch_mix`] for an upstream gradient `grad` (B, N, C).
///
/// Returns `(d_fg, d_bg, d_ratio)` with shapes (B, N, C), (B, N, C), (B, N), computed in one pass.
/// The three are contiguous views of one buffer (no copy is made to split it).
pub fn patch_mix_backward(
    fg: &Tensor,
    bg: &Tensor,
    ratio: &Tensor,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, n, c) = check_mix_args("patch_mix_backward", fg, bg, ratio, Some(grad))?;
    let (fg, bg, grad) = (fg.contiguous()?, bg.contiguous()?, grad.contiguous()?);
    let ratio = ratio.contiguous()?;
    let packed = fg.apply_op3_no_bwd(&bg, &grad, &PatchMixBackward { ratio })?;
    let m = b * n * c;
    let d_fg = packed.narrow(0, 0, m)?.reshape((b, n, c))?;
    let d_bg = packed.narrow(0, m, m)?.reshape((b, n, c))?;
    let d_r = packed.narrow(0, 2 * m, b * n)?.reshape((b, n))?;
    Ok((d_fg, d_bg, d_r))
}

/// Validates shapes, dtypes and devices; returns (B, N, C).
fn check_mix_args(
    op: &'static str,
    fg: &Tensor,
    bg: &Tensor,
    ratio: &Tensor,
    grad: Option<&Tensor>,
) -> Result<(usize, usize, usize)> {
    let (b, n, c) = match fg.dims() {
        &[b, n, c] => (b, n, c),
        d => {
            return Err(PatchMixError::Shape {
                op,
                tensor: "fg",
                got: d.to_vec(),
                expected: "rank 3 (B, N, C)".into(),
            })
        }
    };
    let mut others: Vec<(&'static str, &Tensor, Vec<usize>)> =
        vec![("bg", bg, vec![b, n, c]), ("ratio", ratio, vec![b, n])];
    if let Some(g) = grad {
        others.push(("grad", g, vec![b, n, c]));
    }
    check_dtype(op, "fg", fg.dtype())?;
    for (name, t, dims) in &others {
        if t.dims() != dims.as_slice() {
            return Err(PatchMixError::Shape {
                op,
                tensor: name,
                got: t.dims().to_vec(),
                expected: format!("{dims:?} to match fg {:?}", fg.dims()),
            });
        }
        if t.dtype() != fg.dtype() {
            return Err(PatchMixError::DType {
                op,
                tensor: name,
                got: t.dtype(),
                expected: format!("{:?} (the dtype of fg)", fg.dtype()),
            });
        }
        if !t.device().same_device(fg.device()) {
            return Err(PatchMixError::Device {
                op,
                tensor: name,
                other: "fg",
                got: t.device().location(),
                expected: fg.device().location(),
            });
        }
    }
    Ok((b, n, c))
}

/// The forward custom op: (fg (B,N,C), bg (B,N,C), ratio (B,N)) -> (B,N,C). Inputs must be
/// contiguous (an error names the strided one); use [`patch_mix`] unless you need the raw op.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchMix;

impl CustomOp3 for PatchMix {
    fn name(&self) -> &'static str {
        "patchmix-fwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "patchmix-fwd";
        let c = *l1.dims().last().unwrap_or(&1);
        let (a1, b1) = contiguous_range(OP, "fg", l1)?;
        let (a2, b2) = contiguous_range(OP, "bg", l2)?;
        let (a3, b3) = contiguous_range(OP, "ratio", l3)?;
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(f), CpuStorage::F32(g), CpuStorage::F32(r)) => {
                CpuStorage::F32(mix_fwd_cpu(&f[a1..b1], &g[a2..b2], &r[a3..b3], c))
            }
            (CpuStorage::F64(f), CpuStorage::F64(g), CpuStorage::F64(r)) => {
                CpuStorage::F64(mix_fwd_cpu(&f[a1..b1], &g[a2..b2], &r[a3..b3], c))
            }
            (CpuStorage::BF16(f), CpuStorage::BF16(g), CpuStorage::BF16(r)) => {
                CpuStorage::BF16(mix_fwd_cpu::<bf16>(&f[a1..b1], &g[a2..b2], &r[a3..b3], c))
            }
            (CpuStorage::F16(f), CpuStorage::F16(g), CpuStorage::F16(r)) => {
                CpuStorage::F16(mix_fwd_cpu::<f16>(&f[a1..b1], &g[a2..b2], &r[a3..b3], c))
            }
            _ => return Err(dtype_error(OP, s1.dtype(), s2.dtype(), s3.dtype()).into()),
        };
        Ok((out, l1.shape().clone()))
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::mix_fwd(s1, l1, s2, l2, s3, l3)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (s1, l1, s2, l2, s3, l3);
            Err(crate::error::no_cuda_feature().into())
        }
    }

    fn bwd(
        &self,
        fg: &Tensor,
        bg: &Tensor,
        ratio: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (d_fg, d_bg, d_r) = patch_mix_backward(fg, bg, ratio, grad)?;
        Ok((Some(d_fg), Some(d_bg), Some(d_r)))
    }
}

/// The fused backward custom op: (fg, bg, grad), all (B,N,C), with the ratio (B,N) held in the
/// op, -> one packed 1-D buffer `[d_fg (B*N*C) | d_bg (B*N*C) | d_r (B*N)]`, because a custom op
/// has a single output and one pass should write all three. [`patch_mix_backward`] splits it.
#[derive(Debug, Clone)]
pub struct PatchMixBackward {
    /// (B, N), contiguous, same dtype and device as the other inputs.
    pub ratio: Tensor,
}

impl CustomOp3 for PatchMixBackward {
    fn name(&self) -> &'static str {
        "patchmix-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "patchmix-bwd";
        let c = *l1.dims().last().unwrap_or(&1);
        let (a1, b1) = contiguous_range(OP, "fg", l1)?;
        let (a2, b2) = contiguous_range(OP, "bg", l2)?;
        let (a3, b3) = contiguous_range(OP, "grad", l3)?;
        let (rs, rl) = self.ratio.storage_and_layout();
        let (ar, br) = contiguous_range(OP, "ratio", rl)?;
        let rs = match &*rs {
            candle_core::Storage::Cpu(s) => s,
            _ => {
                return Err(PatchMixError::Device {
                    op: OP,
                    tensor: "ratio",
                    other: "fg",
                    got: self.ratio.device().location(),
                    expected: candle_core::DeviceLocation::Cpu,
                }
                .into())
            }
        };
        let out = match (s1, s2, s3, rs) {
            (CpuStorage::F32(f), CpuStorage::F32(b), CpuStorage::F32(g), CpuStorage::F32(r)) => {
                CpuStorage::F32(mix_bwd_cpu(
                    &f[a1..b1],
                    &b[a2..b2],
                    &g[a3..b3],
                    &r[ar..br],
                    c,
                ))
            }
            (CpuStorage::F64(f), CpuStorage::F64(b), CpuStorage::F64(g), CpuStorage::F64(r)) => {
                CpuStorage::F64(mix_bwd_cpu(
                    &f[a1..b1],
                    &b[a2..b2],
                    &g[a3..b3],
                    &r[ar..br],
                    c,
                ))
            }
            (
                CpuStorage::BF16(f),
                CpuStorage::BF16(b),
                CpuStorage::BF16(g),
                CpuStorage::BF16(r),
            ) => CpuStorage::BF16(mix_bwd_cpu::<bf16>(
                &f[a1..b1],
                &b[a2..b2],
                &g[a3..b3],
                &r[ar..br],
                c,
            )),
            (CpuStorage::F16(f), CpuStorage::F16(b), CpuStorage::F16(g), CpuStorage::F16(r)) => {
                CpuStorage::F16(mix_bwd_cpu::<f16>(
                    &f[a1..b1],
                    &b[a2..b2],
                    &g[a3..b3],
                    &r[ar..br],
                    c,
                ))
            }
            _ => return Err(dtype_error(OP, s1.dtype(), s2.dtype(), s3.dtype()).into()),
        };
        let len = 2 * (b1 - a1) + (br - ar);
        Ok((out, Shape::from(len)))
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::mix_bwd(s1, l1, s2, l2, s3, l3, &self.ratio)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (s1, l1, s2, l2, s3, l3);
            Err(crate::error::no_cuda_feature().into())
        }
    }
}

/// Rows per rayon task for rows of `c` elements.
#[inline]
fn rows_per_task(c: usize) -> usize {
    (TASK_ELEMS / c.max(1)).max(1)
}

/// Forward on the CPU: rows of `c` channels in parallel; the inner loop is a plain zip the
/// compiler vectorises (for f32/f64; half types convert per element).
pub(crate) fn mix_fwd_cpu<T: Elem>(fg: &[T], bg: &[T], ratio: &[T], c: usize) -> Vec<T> {
    let len = fg.len();
    let mut out: Vec<T> = ops::buffer::output_buffer(len);
    if len == 0 || c == 0 {
        return out;
    }
    let rpt = rows_per_task(c);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(rpt * c)
        .zip(fg.par_chunks(rpt * c))
        .zip(bg.par_chunks(rpt * c))
        .zip(ratio.par_chunks(rpt))
        .for_each(|(((o, f), b), r)| {
            for (((o, f), b), &r) in o
                .chunks_mut(c)
                .zip(f.chunks(c))
                .zip(b.chunks(c))
                .zip(r.iter())
            {
                let r = r.to_acc();
                let q = T::ONE - r;
                for ((o, &f), &b) in o.iter_mut().zip(f).zip(b) {
                    o.write(T::from_acc(r * f.to_acc() + q * b.to_acc()));
                }
            }
        });
    // SAFETY: the chunks above cover [0, len) exactly and every element was written.
    unsafe { out.set_len(len) };
    out
}

/// Backward on the CPU, one pass: writes d_fg and d_bg and reduces d_r per row.
/// Returns the packed buffer `[d_fg | d_bg | d_r]`.
pub(crate) fn mix_bwd_cpu<T: Elem>(
    fg: &[T],
    bg: &[T],
    grad: &[T],
    ratio: &[T],
    c: usize,
) -> Vec<T> {
    let len = fg.len();
    let rows = ratio.len();
    let total = 2 * len + rows;
    let mut out: Vec<T> = ops::buffer::output_buffer(total);
    if c == 0 {
        // Rows of zero channels: d_fg, d_bg are empty and d_r is a sum over nothing.
        out.extend(std::iter::repeat_n(T::from_acc(T::ZERO), rows));
        return out;
    }
    let rpt = rows_per_task(c);
    let (d_fg, rest) = out.spare_capacity_mut()[..total].split_at_mut(len);
    let (d_bg, d_r) = rest.split_at_mut(len);
    d_fg.par_chunks_mut(rpt * c)
        .zip(d_bg.par_chunks_mut(rpt * c))
        .zip(d_r.par_chunks_mut(rpt))
        .zip(fg.par_chunks(rpt * c))
        .zip(bg.par_chunks(rpt * c))
        .zip(grad.par_chunks(rpt * c))
        .zip(ratio.par_chunks(rpt))
        .for_each(|((((((da, db), dr), f), b), g), r)| {
            for (row, (dr, &r)) in dr.iter_mut().zip(r).enumerate() {
                let span = row * c..(row + 1) * c;
                dr.write(T::from_acc(bwd_row(
                    &mut da[span.clone()],
                    &mut db[span.clone()],
                    &f[span.clone()],
                    &b[span.clone()],
                    &g[span],
                    r.to_acc(),
                )));
            }
        });
    // SAFETY: the zipped chunks cover d_fg, d_bg and d_r, i.e. [0, total), and all are written.
    unsafe { out.set_len(total) };
    out
}

/// One row of the backward. The reduction keeps 8 independent partial sums so it vectorises
/// (a single running sum is a serial dependency chain the compiler may not reorder).
#[inline(always)]
fn bwd_row<T: Elem>(
    da: &mut [MaybeUninit<T>],
    db: &mut [MaybeUninit<T>],
    f: &[T],
    b: &[T],
    g: &[T],
    r: T::Acc,
) -> T::Acc {
    const L: usize = 8;
    let q = T::ONE - r;
    let mut acc = [T::ZERO; L];
    let c = g.len();
    let head = c - c % L;
    for i in (0..head).step_by(L) {
        for k in 0..L {
            let gk = g[i + k].to_acc();
            da[i + k].write(T::from_acc(r * gk));
            db[i + k].write(T::from_acc(q * gk));
            acc[k] = acc[k] + (f[i + k].to_acc() - b[i + k].to_acc()) * gk;
        }
    }
    for i in head..c {
        let gi = g[i].to_acc();
        da[i].write(T::from_acc(r * gi));
        db[i].write(T::from_acc(q * gi));
        acc[0] = acc[0] + (f[i].to_acc() - b[i].to_acc()) * gi;
    }
    let mut s = T::ZERO;
    for a in acc {
        s = s + a;
    }
    s
}
