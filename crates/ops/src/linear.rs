//! `y = x Wᵀ + b` as one graph node on the CPU, so the backward is just its three products.
//!
//! Composed from candle ops, a linear layer on `(B, N, in)` is reshape -> matmul with a
//! transposed weight -> broadcast add -> reshape, and candle's backward gives every one of those
//! nodes its own zero-filled, then accumulated, gradient buffer (the weight's transposed). Here
//! one custom op fills the output rows with the bias and accumulates the product `x Wᵀ` onto
//! them with one gemm ([`matmul_into`], the transpose is a strided view); its backward is
//! `dx = dy W`, `dW = dyᵀ x` (gemms on views again, no copies) and `db = sum(dy)` over rows.
//!
//! Shapes: `x` `(.., in)`, `weight` `(out, in)`, `bias` `(out,)` -> `(.., out)`. f32 or f64 on
//! the CPU; the model crate's `layers::Linear` composes candle ops elsewhere.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu)?;
//! let w = Tensor::new(&[[1f32, 0.], [1., 1.], [0., 2.]], &Device::Cpu)?;
//! let b = Tensor::new(&[0f32, 1., 2.], &Device::Cpu)?;
//! let y = ops::linear::linear(&x, &w, &b)?;
//! assert_eq!(y.to_vec2::<f32>()?, [[1., 4., 6.]]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_core::{WithDType, D};
use rayon::prelude::*;

use crate::buffer::zeroed;
use crate::cpu_slice::{float_slices, FloatSlices};
use crate::matmul::{matmul_into, GemmScalar, MatRef, Threads};

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
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear)
}

/// Rows per rayon task of the row-wise passes (bias fill, bias gradient) for rows of `width`
/// elements: about 16k elements, enough to amortise the split.
fn rows_per_task(width: usize) -> usize {
    (16 * 1024 / width.max(1)).max(1)
}

/// Rows, `in` and `out` of a call: `x` `(rows, in)`, `weight` `(out, in)`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    rows: usize,
    in_dim: usize,
    out: usize,
}

impl Dims {
    /// From the layouts of `x` `(.., in)` and `weight` `(out, in)`.
    fn new(x: &Layout, weight: &Layout) -> Result<Self> {
        let (out, in_dim) = weight.shape().dims2()?;
        let x = x.shape().dims();
        let rows = x[..x.len().saturating_sub(1)].iter().product();
        Ok(Self { rows, in_dim, out })
    }

    /// The output shape `(.., out)` for an input layout `(.., in)`.
    fn out_shape(x: &Layout, out: usize) -> Vec<usize> {
        let mut shape = x.shape().dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        shape
    }
}

/// `(rows, out)` rows of `bias`, plus `x (rows, in) · wᵀ` (gemm's own threading).
fn forward<T: GemmScalar>(x: &[T], w: &[T], bias: &[T], dims: Dims) -> Vec<T> {
    let Dims { rows, in_dim, out } = dims;
    let mut y = zeroed(rows * out, T::ZERO);
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(rows_per_task(out) * out).for_each(|y| {
        for row in y.chunks_mut(out) {
            row.copy_from_slice(bias);
        }
    });
    let x = MatRef::row_major(x, rows, in_dim);
    let w = MatRef::row_major(w, out, in_dim);
    matmul_into(&mut y, out, x, w.t(), T::ONE, true, Threads::Pool);
    y
}

/// Column sums of the row-major `(rows, out)` matrix `dy`. Fixed blocks of rows are summed
/// into partial vectors in parallel and the partials added in block order, so the result does
/// not depend on the thread count or scheduling; the inner loop runs along a row (vectorised).
fn column_sums<T: GemmScalar + WithDType>(dy: &[T], out: usize) -> Vec<T> {
    let partials: Vec<Vec<T>> = dy
        .par_chunks(rows_per_task(out) * out)
        .map(|block| {
            let mut acc = vec![T::ZERO; out];
            for row in block.chunks(out) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut sum = vec![T::ZERO; out];
    for p in &partials {
        for (a, &v) in sum.iter_mut().zip(p) {
            *a += v;
        }
    }
    sum
}

/// `dx = dy W` `(rows, in)`, `dW = dyᵀ x` `(out, in)` and `db` `(out,)`, packed in that order
/// into one buffer.
fn backward<T: GemmScalar + WithDType>(x: &[T], dy: &[T], w: &[T], dims: Dims) -> Vec<T> {
    let Dims { rows, in_dim, out } = dims;
    let mut packed = zeroed(rows * in_dim + out * in_dim + out, T::ZERO);
    let (dx, rest) = packed.split_at_mut(rows * in_dim);
    let (dw, db) = rest.split_at_mut(out * in_dim);
    let x = MatRef::row_major(x, rows, in_dim);
    let dy_m = MatRef::row_major(dy, rows, out);
    let w = MatRef::row_major(w, out, in_dim);
    matmul_into(dx, in_dim, dy_m, w, T::ONE, false, Threads::Pool);
    matmul_into(dw, in_dim, dy_m.t(), x, T::ONE, false, Threads::Pool);
    if out > 0 {
        db.copy_from_slice(&column_sums(dy, out));
    }
    packed
}

/// Args `(x, weight, bias)` -> `x Wᵀ + b` shaped `(.., out)`.
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
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
        let dims = Dims::new(l1, l2)?;
        let y = match float_slices(
            "linear",
            [(s1, l1, "input"), (s2, l2, "weight"), (s3, l3, "bias")],
        )? {
            FloatSlices::F32([x, w, b]) => CpuStorage::F32(forward(x, w, b, dims)),
            FloatSlices::F64([x, w, b]) => CpuStorage::F64(forward(x, w, b, dims)),
        };
        Ok((y, Shape::from(Dims::out_shape(l1, dims.out))))
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
        // One op, one buffer: the three gradients are views into it (no copies).
        let packed = x.apply_op3_no_bwd(&grad.contiguous()?, weight, &LinearBackward)?;
        let nx = x.elem_count();
        let dx = packed.narrow(0, 0, nx)?.reshape(x.dims())?;
        let dw = packed
            .narrow(0, nx, out_dim * in_dim)?
            .reshape((out_dim, in_dim))?;
        let db = packed.narrow(0, nx + out_dim * in_dim, out_dim)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Args `(x, dy, weight)` -> `dx`, `dW`, `db` flattened and packed into one `(len,)` buffer.
struct LinearBackward;

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "linear-backward"
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
        let dims = Dims::new(l1, l3)?;
        let Dims { rows, in_dim, out } = dims;
        if l2.shape().dims() != Dims::out_shape(l1, out).as_slice() {
            candle_core::bail!(
                "linear backward: gradient {:?} does not match input {:?} and weight {:?}",
                l2.shape(),
                l1.shape(),
                l3.shape()
            );
        }
        let packed = match float_slices(
            "linear backward",
            [(s1, l1, "input"), (s2, l2, "gradient"), (s3, l3, "weight")],
        )? {
            FloatSlices::F32([x, dy, w]) => CpuStorage::F32(backward(x, dy, w, dims)),
            FloatSlices::F64([x, dy, w]) => CpuStorage::F64(backward(x, dy, w, dims)),
        };
        Ok((packed, Shape::from(rows * in_dim + out * in_dim + out)))
    }
}
