//! Multi-head self-attention core as one graph node on the CPU: fused qkv -> per-head
//! `softmax(q kᵀ * scale) v`, heads merged back.
//!
//! Composed from candle ops this is more than a dozen nodes (reshape, permute, three narrows and
//! copies, scale, transpose, two matmuls, softmax, transpose, reshape), and candle's backward
//! gives each a zero-filled, then accumulated, gradient buffer; its batched matmul also splits
//! every small per-head product (197 x 96 x 197) across all threads, which costs more than it
//! gains. Here one custom op reads q, k and v straight out of the qkv buffer through strides
//! (no copies), runs each product on one thread ([`Threads::Caller`]) with rayon parallel over
//! blocks of query rows, and writes the merged heads straight into the output. It keeps the
//! probabilities for its backward, which writes dq, dk and dv straight into the qkv gradient.
//!
//! Shapes: `qkv` `(B, N, 3C)` laid out as timm's (`3` outer, then heads, then head dim, i.e.
//! `(B, N, 3, H, D)`) -> `(B, N, C)`. f32 on the CPU; the model crate's ViT composes candle ops
//! elsewhere.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! // One head of width 1, two tokens: q = k = 0, so attention averages v = [1, 3].
//! let qkv = Tensor::new(&[[[0f32, 0., 1.], [0., 0., 3.]]], &Device::Cpu)?;
//! let y = ops::attention::self_attention(&qkv, 1, 1.0)?;
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [2., 2.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;
use crate::fast_math::{exp, sum};
use crate::matmul::{matmul_into, MatRef, Threads};

/// `(B, N, 3C)` -> `(B, N, C)`: softmax attention of `num_heads` heads, logits scaled by
/// `scale`, heads concatenated. f32 on the CPU, with a backward.
pub fn self_attention(qkv: &Tensor, num_heads: usize, scale: f64) -> Result<Tensor> {
    let (_, _, c3) = qkv.dims3()?;
    if num_heads == 0 || c3 % (3 * num_heads) != 0 {
        candle_core::bail!(
            "self_attention: qkv {:?} does not split into 3 x {num_heads} heads",
            qkv.dims()
        );
    }
    if !qkv.device().is_cpu() || qkv.dtype() != DType::F32 {
        candle_core::bail!(
            "self_attention: f32 CPU input required, got {:?}",
            qkv.dtype()
        );
    }
    qkv.contiguous()?.apply_op1(Attention {
        num_heads,
        scale: scale as f32,
        probs: Mutex::new(None),
    })
}

/// The sizes of one call, and how its rows are split into rayon tasks.
#[derive(Debug, Clone, Copy)]
struct HeadDims {
    /// Batch `B`, tokens `N`, heads `H`, head dim `D`.
    b: usize,
    n: usize,
    h: usize,
    d: usize,
    /// Token rows per task (each task owns whole rows of its outputs).
    rows_per_task: usize,
}

impl HeadDims {
    fn new(b: usize, n: usize, c3: usize, h: usize) -> Self {
        // Two tasks per thread, so work stealing can even out a shared machine, with blocks as
        // tall as that allows: per-product overhead (packing k and v) grows with the number
        // of blocks (4 per thread measured ~15% slower than 1-2 at B = 2, N = 197).
        let blocks_per_batch = (2 * rayon::current_num_threads()).div_ceil(b.max(1));
        let rows_per_task = n.div_ceil(blocks_per_batch).max(32).min(n).max(1);
        Self {
            b,
            n,
            h,
            d: c3 / (3 * h),
            rows_per_task,
        }
    }

    /// Model width `C = H * D`.
    fn c(&self) -> usize {
        self.h * self.d
    }

    /// Elements of the probabilities of one token row, all heads: `(H, N)`.
    fn probs_row(&self) -> usize {
        self.h * self.n
    }
}

/// Arg `qkv` `(B, N, 3C)`; output `(B, N, C)`.
///
/// The probabilities are kept as `(B, N, H, N)` (a token row's heads side by side), not
/// `(B, H, N, N)`: the heads' outputs interleave within each token row of `(B, N, C)`, so a
/// task must own whole token rows, and then it owns a contiguous block of the probabilities
/// too. Head `h`'s `N x N` matrix is the view at offset `h * N` with row stride `H * N`.
struct Attention {
    num_heads: usize,
    scale: f32,
    /// Filled by `cpu_fwd`, read by `bwd` (the op lives in the graph until then).
    probs: Mutex<Option<(HeadDims, Vec<f32>)>>,
}

/// Which of q, k, v a view of qkv is (the order of timm's fused projection).
#[derive(Clone, Copy)]
enum Part {
    Q = 0,
    K = 1,
    V = 2,
}

/// Rows `r0 .. r0 + rows` of head `hi`'s q, k or v, as a `(rows, D)` view of one batch
/// element's qkv `(N, 3C)` (row stride 3C, no copy).
fn head_part(
    qkv_b: &[f32],
    dims: HeadDims,
    part: Part,
    hi: usize,
    r0: usize,
    rows: usize,
) -> MatRef<'_, f32> {
    let c3 = 3 * dims.c();
    let col = part as usize * dims.c() + hi * dims.d;
    MatRef::new(&qkv_b[r0 * c3 + col..], (rows, dims.d), (c3, 1))
}

/// Row `r0..` block of a `(N, H, N)` probability-like buffer as head `hi`'s `(rows, N)` view.
fn head_rows(buf: &[f32], dims: HeadDims, hi: usize, r0: usize, rows: usize) -> MatRef<'_, f32> {
    MatRef::new(
        &buf[r0 * dims.probs_row() + hi * dims.n..],
        (rows, dims.n),
        (dims.probs_row(), 1),
    )
}

/// Columns `c0 .. c0 + cols` of head `hi`'s `N x N` matrix in a `(N, H, N)` buffer, transposed:
/// a `(cols, N)` view.
fn head_cols_t(buf: &[f32], dims: HeadDims, hi: usize, c0: usize, cols: usize) -> MatRef<'_, f32> {
    MatRef::new(
        &buf[hi * dims.n + c0..],
        (dims.n, cols),
        (dims.probs_row(), 1),
    )
    .t()
}

/// Max-subtracted softmax of one row in place (the same arithmetic as
/// [`crate::activation::softmax_last_dim`]).
fn softmax_in_place(row: &mut [f32]) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for o in row.iter_mut() {
        *o = exp(*o - m);
    }
    let inv = 1. / sum(row);
    for o in row.iter_mut() {
        *o *= inv;
    }
}

impl Attention {
    /// Token rows `r0 .. r0 + rows` of batch element `qkv_b` `(N, 3C)`: their probabilities
    /// `probs` `(rows, H, N)` and outputs `y` `(rows, C)`.
    fn forward_rows(
        &self,
        dims: HeadDims,
        qkv_b: &[f32],
        r0: usize,
        probs: &mut [f32],
        y: &mut [f32],
    ) {
        let rows = y.len() / dims.c();
        for hi in 0..dims.h {
            let q = head_part(qkv_b, dims, Part::Q, hi, r0, rows);
            let k = head_part(qkv_b, dims, Part::K, hi, 0, dims.n);
            let v = head_part(qkv_b, dims, Part::V, hi, 0, dims.n);
            let p = &mut probs[hi * dims.n..];
            matmul_into(
                p,
                dims.probs_row(),
                q,
                k.t(),
                self.scale,
                false,
                Threads::Caller,
            );
            for row in p.chunks_mut(dims.probs_row()).take(rows) {
                softmax_in_place(&mut row[..dims.n]);
            }
            let p = head_rows(probs, dims, hi, 0, rows);
            matmul_into(
                &mut y[hi * dims.d..],
                dims.c(),
                p,
                v,
                1.,
                false,
                Threads::Caller,
            );
        }
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, n, c3) = l.shape().dims3()?;
        let dims = HeadDims::new(b, n, c3, self.num_heads);
        let qkv = contiguous(s, l, "self_attention", "qkv")?;
        let mut y = zeroed(b * n * dims.c(), 0f32);
        let mut probs = zeroed(b * n * dims.probs_row(), 0f32);
        if !y.is_empty() {
            let rows = dims.rows_per_task;
            y.par_chunks_mut(n * dims.c())
                .zip(probs.par_chunks_mut(n * dims.probs_row()))
                .zip(qkv.par_chunks(n * c3))
                .for_each(|((y_b, probs_b), qkv_b)| {
                    y_b.par_chunks_mut(rows * dims.c())
                        .zip(probs_b.par_chunks_mut(rows * dims.probs_row()))
                        .enumerate()
                        .for_each(|(blk, (y, p))| self.forward_rows(dims, qkv_b, blk * rows, p, y));
                });
        }
        *self.probs.lock().map_err(|_| {
            candle_core::Error::Msg("self_attention: poisoned probabilities".into())
        })? = Some((dims, probs));
        Ok((CpuStorage::F32(y), Shape::from((b, n, dims.c()))))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let saved = self.probs.lock().map_err(|_| {
            candle_core::Error::Msg("self_attention: poisoned probabilities".into())
        })?;
        let Some((dims, probs)) = saved.as_ref() else {
            candle_core::bail!("self_attention: backward before forward");
        };
        let dqkv = qkv.apply_op2_no_bwd(
            &grad.contiguous()?,
            &AttentionBackward {
                dims: *dims,
                scale: self.scale,
                probs,
            },
        )?;
        Ok(Some(dqkv))
    }
}

/// Args `(qkv, dy)` `(B, N, 3C)`, `(B, N, C)` -> `dqkv` `(B, N, 3C)`, from the forward's
/// probabilities `P`: per head `dv = Pᵀ dy`, `dP = dy vᵀ`, `dlogits = P ⊙ (dP - rowsum(P ⊙ dP))`,
/// `dq = scale * dlogits k`, `dk = scale * dlogitsᵀ q`.
struct AttentionBackward<'a> {
    dims: HeadDims,
    scale: f32,
    /// `(B, N, H, N)`, see [`Attention`].
    probs: &'a [f32],
}

impl AttentionBackward<'_> {
    /// Query rows `r0 ..` of one batch element: their `dlogits` `(rows, H, N)` and `dq` (the
    /// q columns of `dqkv` `(rows, 3C)`).
    #[allow(clippy::too_many_arguments)]
    fn query_rows(
        &self,
        qkv_b: &[f32],
        dy_b: &[f32],
        probs_b: &[f32],
        r0: usize,
        dlogits: &mut [f32],
        dqkv: &mut [f32],
    ) {
        let dims = self.dims;
        let (c, pr) = (dims.c(), dims.probs_row());
        let rows = dqkv.len() / (3 * c);
        for hi in 0..dims.h {
            let k = head_part(qkv_b, dims, Part::K, hi, 0, dims.n);
            let v = head_part(qkv_b, dims, Part::V, hi, 0, dims.n);
            let dy = MatRef::new(&dy_b[r0 * c + hi * dims.d..], (rows, dims.d), (c, 1));
            let dl = &mut dlogits[hi * dims.n..];
            matmul_into(dl, pr, dy, v.t(), 1., false, Threads::Caller); // dP
            let p_rows = probs_b[r0 * pr + hi * dims.n..].chunks(pr);
            for (dl_row, p_row) in dl.chunks_mut(pr).zip(p_rows).take(rows) {
                let (dl_row, p_row) = (&mut dl_row[..dims.n], &p_row[..dims.n]);
                let dot: f32 = dl_row.iter().zip(p_row).map(|(a, b)| a * b).sum();
                for (o, &p) in dl_row.iter_mut().zip(p_row) {
                    *o = p * (*o - dot);
                }
            }
            let dl = head_rows(dlogits, dims, hi, 0, rows);
            matmul_into(
                &mut dqkv[hi * dims.d..],
                3 * c,
                dl,
                k,
                self.scale,
                false,
                Threads::Caller,
            );
        }
    }

    /// Key rows `r0 ..` of one batch element: `dk` and `dv` (the k and v columns of `dqkv`
    /// `(rows, 3C)`), from columns `r0 ..` of every query row's `P` and `dlogits`.
    #[allow(clippy::too_many_arguments)]
    fn key_rows(
        &self,
        qkv_b: &[f32],
        dy_b: &[f32],
        probs_b: &[f32],
        dlogits_b: &[f32],
        r0: usize,
        dqkv: &mut [f32],
    ) {
        let dims = self.dims;
        let c = dims.c();
        let rows = dqkv.len() / (3 * c);
        for hi in 0..dims.h {
            let q = head_part(qkv_b, dims, Part::Q, hi, 0, dims.n);
            let dy = MatRef::new(&dy_b[hi * dims.d..], (dims.n, dims.d), (c, 1));
            let dk = &mut dqkv[c + hi * dims.d..];
            matmul_into(
                dk,
                3 * c,
                head_cols_t(dlogits_b, dims, hi, r0, rows),
                q,
                self.scale,
                false,
                Threads::Caller,
            );
            let dv = &mut dqkv[2 * c + hi * dims.d..];
            matmul_into(
                dv,
                3 * c,
                head_cols_t(probs_b, dims, hi, r0, rows),
                dy,
                1.,
                false,
                Threads::Caller,
            );
        }
    }
}

impl CustomOp2 for AttentionBackward<'_> {
    fn name(&self) -> &'static str {
        "self-attention-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = self.dims;
        let (b, n, c) = (dims.b, dims.n, dims.c());
        if l1.shape().dims() != [b, n, 3 * c] || l2.shape().dims() != [b, n, c] {
            candle_core::bail!(
                "self_attention backward: qkv {:?} and gradient {:?} do not match the forward's (B, N, 3C) = {:?}",
                l1.shape(),
                l2.shape(),
                (b, n, 3 * c)
            );
        }
        let qkv = contiguous(s1, l1, "self_attention backward", "qkv")?;
        let dy = contiguous(s2, l2, "self_attention backward", "gradient")?;
        let mut dqkv = zeroed(b * n * 3 * c, 0f32);
        if dqkv.is_empty() {
            return Ok((CpuStorage::F32(dqkv), l1.shape().clone()));
        }
        let (rows, pr) = (dims.rows_per_task, dims.probs_row());
        let mut dlogits = zeroed(self.probs.len(), 0f32);
        // Two passes: dq of a query row needs only that row's dlogits, but dk and dv of a key
        // row sum over every query row, so they wait until all of dlogits is known.
        dqkv.par_chunks_mut(n * 3 * c)
            .zip(dlogits.par_chunks_mut(n * pr))
            .enumerate()
            .for_each(|(bi, (dqkv_b, dlogits_b))| {
                let (qkv_b, dy_b) = (&qkv[bi * n * 3 * c..], &dy[bi * n * c..]);
                let probs_b = &self.probs[bi * n * pr..];
                dqkv_b
                    .par_chunks_mut(rows * 3 * c)
                    .zip(dlogits_b.par_chunks_mut(rows * pr))
                    .enumerate()
                    .for_each(|(blk, (dqkv, dl))| {
                        self.query_rows(qkv_b, dy_b, probs_b, blk * rows, dl, dqkv)
                    });
            });
        dqkv.par_chunks_mut(n * 3 * c)
            .enumerate()
            .for_each(|(bi, dqkv_b)| {
                let (qkv_b, dy_b) = (&qkv[bi * n * 3 * c..], &dy[bi * n * c..]);
                let (probs_b, dlogits_b) = (&self.probs[bi * n * pr..], &dlogits[bi * n * pr..]);
                dqkv_b
                    .par_chunks_mut(rows * 3 * c)
                    .enumerate()
                    .for_each(|(blk, dqkv)| {
                        self.key_rows(qkv_b, dy_b, probs_b, dlogits_b, blk * rows, dqkv)
                    });
            });
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}
