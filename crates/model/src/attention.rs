//! Multi-head self-attention core as one graph node on the CPU: fused qkv -> per-head
//! `softmax(q kᵀ * scale) v`, heads merged back.
//!
//! Composed from candle ops this is more than a dozen nodes (reshape, permute, three narrows and
//! copies, scale, transpose, two matmuls, softmax, transpose, reshape), and candle's backward
//! gives each a zero-filled, then accumulated, gradient buffer; the narrows' gradients are
//! zero-padded to the full qkv size. Here the forward runs candle's matmuls on detached tensors,
//! a custom op takes the result over (merging the heads) and records a backward that does the
//! five gemms and one softmax backward directly and assembles the qkv gradient once.
//!
//! Shapes: `qkv` `(B, N, 3C)` laid out as timm's (`3` outer, then heads, then head dim) ->
//! `(B, N, C)`. f32 on the CPU; [`crate::vit`] composes candle ops elsewhere.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! // One head of width 1, two tokens: q = k = 0, so attention averages v = [1, 3].
//! let qkv = Tensor::new(&[[[0f32, 0., 1.], [0., 0., 3.]]], &Device::Cpu)?;
//! let y = model::attention::self_attention(&qkv, 1, 1.0)?;
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [2., 2.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};

use crate::activation::{Softmax, SoftmaxBackward};

/// `(B, N, 3C)` -> `(B, N, C)`: softmax attention of `num_heads` heads, logits scaled by
/// `scale`, heads concatenated. f32 on the CPU, with a backward.
pub fn self_attention(qkv: &Tensor, num_heads: usize, scale: f64) -> Result<Tensor> {
    let (b, n, c3) = qkv.dims3()?;
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
    let (h, d) = (num_heads, c3 / (3 * num_heads));
    let qkv = qkv.contiguous()?;
    let heads = qkv
        .detach()
        .reshape((b, n, 3, h, d))?
        .permute((2, 0, 3, 1, 4))?;
    let q = (heads.get(0)?.contiguous()? * scale)?; // (B, H, N, D), scaled
    let k = heads.get(1)?.contiguous()?;
    let v = heads.get(2)?.contiguous()?;
    let probs = q.matmul(&k.t()?)?.apply_op1_no_bwd(&Softmax)?; // (B, H, N, N)
    let out = probs.matmul(&v)?; // (B, H, N, D)
    qkv.apply_op1(Attention {
        out: Mutex::new(Some(out)),
        saved: Saved {
            q,
            k,
            v,
            probs,
            scale,
        },
    })
}

/// What the backward needs (all detached, `(B, H, N, D)` or `(B, H, N, N)`).
struct Saved {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    scale: f64,
}

/// Arg `qkv` `(B, N, 3C)`; output the heads of `out` `(B, H, N, D)` merged to `(B, N, C)`.
struct Attention {
    out: Mutex<Option<Tensor>>,
    saved: Saved,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "self-attention"
    }

    fn cpu_fwd(&self, _: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, n, c3) = l.shape().dims3()?;
        let out = self
            .out
            .lock()
            .map_err(|_| candle_core::Error::Msg("self_attention: poisoned output".into()))?
            .take();
        let Some(out) = out else {
            candle_core::bail!("self_attention: the op was applied twice");
        };
        let (_, h, _, d) = out.dims4()?;
        let (st, lay) = out.storage_and_layout();
        let Storage::Cpu(cpu) = &*st else {
            candle_core::bail!("self_attention: CPU output expected");
        };
        let Some((start, end)) = lay.contiguous_offsets() else {
            candle_core::bail!("self_attention: contiguous output expected");
        };
        let src = &cpu.as_slice::<f32>()?[start..end];
        // (B, H, N, D) -> (B, N, H, D): one copy, row by row.
        let mut y = vec![0f32; b * n * c3 / 3];
        for bi in 0..b {
            for hi in 0..h {
                for ni in 0..n {
                    let s = ((bi * h + hi) * n + ni) * d;
                    let t = ((bi * n + ni) * h + hi) * d;
                    y[t..t + d].copy_from_slice(&src[s..s + d]);
                }
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((b, n, c3 / 3))))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let Saved {
            q,
            k,
            v,
            probs,
            scale,
        } = &self.saved;
        let (b, h, n, d) = q.dims4()?;
        let g = grad
            .detach()
            .reshape((b, n, h, d))?
            .transpose(1, 2)?
            .contiguous()?; // (B, H, N, D)
        let dv = probs.t()?.matmul(&g)?;
        let dprobs = g.matmul(&v.t()?)?.contiguous()?;
        let dlogits = probs.apply_op2_no_bwd(&dprobs, &SoftmaxBackward)?;
        let dq = (dlogits.matmul(k)? * *scale)?;
        let dk = dlogits.t()?.matmul(q)?;
        // (3, B, H, N, D) -> (B, N, 3, H, D) = qkv's layout.
        let dqkv = Tensor::stack(&[dq, dk, dv], 0)?
            .permute((1, 3, 0, 2, 4))?
            .contiguous()?
            .reshape(qkv.dims())?;
        Ok(Some(dqkv))
    }
}
