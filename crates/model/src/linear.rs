//! `y = x Wᵀ + b` as one graph node on the CPU, so the backward is just its three products.
//!
//! Composed from candle ops, a linear layer on `(B, N, in)` is reshape -> matmul with a
//! transposed weight -> broadcast add -> reshape, and candle's backward gives every one of those
//! nodes its own zero-filled, then accumulated, gradient buffer (the weight's transposed). Here
//! the product is computed by candle's matmul (gemm) on detached tensors, and a custom op adds
//! the bias while taking the product over as its output and records the backward:
//! `dx = dy W`, `dW = dyᵀ x`, `db = sum(dy)` (gemms again).
//!
//! Shapes: `x` `(.., in)`, `weight` `(out, in)`, `bias` `(out,)` -> `(.., out)`. f32 or f64 on
//! the CPU; [`crate::layers::Linear`] composes candle ops elsewhere.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu)?;
//! let w = Tensor::new(&[[1f32, 0.], [1., 1.], [0., 2.]], &Device::Cpu)?;
//! let b = Tensor::new(&[0f32, 1., 2.], &Device::Cpu)?;
//! let y = model::linear::linear(&x, &w, &b)?;
//! assert_eq!(y.to_vec2::<f32>()?, [[1., 4., 6.]]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use candle_core::{WithDType, D};
use rayon::prelude::*;

/// `x Wᵀ + b` for `x` `(.., in)` on the CPU (f32 or f64), with gradients for all three.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let in_dim = x.dim(D::Minus1)?;
    let (out_dim, w_in) = weight.dims2()?;
    if w_in != in_dim || bias.dims() != [out_dim] {
        candle_core::bail!(
            "linear: input {:?}, weight {:?} and bias {:?} do not match",
            x.dims(),
            weight.dims(),
            bias.dims()
        );
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        candle_core::bail!("linear: f32/f64 CPU input required, got {:?}", x.dtype());
    }
    let x = x.contiguous()?;
    let product = x
        .detach()
        .reshape(((), in_dim))?
        .matmul(&weight.detach().t()?)?;
    x.apply_op3(
        weight,
        &bias.contiguous()?,
        AddBias {
            product: Mutex::new(Some(product)),
        },
    )
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("linear: {what} must be contiguous"),
    }
}

/// Args `(x, weight, bias)`; output `product + bias` shaped `(.., out)`. The product `x Wᵀ`
/// `(rows, out)` is computed before the op is applied and handed over here.
struct AddBias {
    product: Mutex<Option<Tensor>>,
}

fn add_bias<T: WithDType>(product: &[T], bias: &[T]) -> Vec<T> {
    let out = bias.len();
    let mut y = vec![T::zero(); product.len()];
    // About 16k elements per task.
    let rows = (16 * 1024 / out.max(1)).max(1);
    y.par_chunks_mut(rows * out)
        .zip(product.par_chunks(rows * out))
        .for_each(|(y, p)| {
            for (yr, pr) in y.chunks_mut(out).zip(p.chunks(out)) {
                for ((o, &v), &b) in yr.iter_mut().zip(pr).zip(bias) {
                    *o = v + b;
                }
            }
        });
    y
}

impl CustomOp3 for AddBias {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _: &CpuStorage,
        _: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let product = self
            .product
            .lock()
            .map_err(|_| candle_core::Error::Msg("linear: poisoned product".into()))?
            .take();
        let Some(product) = product else {
            candle_core::bail!("linear: the op was applied twice");
        };
        let (ps, pl) = product.storage_and_layout();
        let Storage::Cpu(p) = &*ps else {
            candle_core::bail!("linear: CPU product expected");
        };
        let y = match (p, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(add_bias(slice(p, pl, "product")?, slice(s3, l3, "bias")?))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(add_bias(slice(p, pl, "product")?, slice(s3, l3, "bias")?))
            }
            _ => candle_core::bail!(
                "linear: input {:?} and bias {:?} must be f32 or f64 alike",
                s1.dtype(),
                s3.dtype()
            ),
        };
        let mut dims = l1.shape().dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = l3.shape().elem_count();
        Ok((y, Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out_dim, in_dim) = weight.dims2()?;
        // Plain tensors: nothing below is recorded for a second-order backward.
        let g = grad.detach().contiguous()?.reshape(((), out_dim))?;
        let x2 = x.detach().reshape(((), in_dim))?;
        let dx = g.matmul(&weight.detach())?.reshape(x.dims())?;
        let dw = g.t()?.matmul(&x2)?;
        let db = g.sum(0)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}
