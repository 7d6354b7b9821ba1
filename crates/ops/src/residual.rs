//! The end of a ResNet bottleneck, `relu(branch + shortcut)`, as one CPU graph node.
//!
//! Composed from candle ops this is an add and a ReLU forward, and backward a comparison, a
//! dtype cast, a product and two zero-filled gradient buffers with their adds, each a full pass
//! over an activation. Here it is one pass each way: the backward passes `grad * (y > 0)` to both
//! inputs (the same tensor; candle accumulates it into each).
//!
//! Shapes: any, both inputs the same shape; f32 on the CPU (other devices and dtypes use the
//! composed candle ops).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let a = Tensor::new(&[1f32, -2., 3.], &Device::Cpu)?;
//! let b = Tensor::new(&[-4f32, 1., 1.], &Device::Cpu)?;
//! let y = ops::residual::add_relu(&a, &b)?;
//! assert_eq!(y.to_vec1::<f32>()?, [0., 0., 4.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;

/// Elements per parallel task: large enough that the task overhead is small.
const CHUNK: usize = 1 << 15;

/// `relu(a + b)` with a gradient for both inputs; `a` and `b` of the same shape.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        candle_core::bail!("add_relu: shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    if a.device().is_cpu() && a.dtype() == DType::F32 && b.dtype() == DType::F32 {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
    } else {
        (a + b)?.relu()
    }
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous(s1, l1, "add_relu", "first input")?;
        let b = contiguous(s2, l2, "add_relu", "second input")?;
        let mut y = zeroed(a.len(), 0f32);
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(y, (a, b))| {
                for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                    *o = (u + v).max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = res.apply_op2_no_bwd(&grad.contiguous()?, &ReluMask)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `grad * (y > 0)`, args `(y, grad)`.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous(s1, l1, "add_relu backward", "output")?;
        let g = contiguous(s2, l2, "add_relu backward", "gradient")?;
        if y.len() != g.len() {
            candle_core::bail!(
                "add_relu backward: gradient {:?} does not match output {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let mut d = zeroed(y.len(), 0f32);
        d.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(d, (y, g))| {
                for ((o, &yv), &gv) in d.iter_mut().zip(y).zip(g) {
                    *o = if yv > 0.0 { gv } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(d), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn output_and_gradients_match_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 40, 50), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 40, 50), &dev)?)?;
        let r = Tensor::randn(0f32, 1., (2, 3, 40, 50), &dev)?;
        let y = add_relu(&a, &b)?;
        let y0 = (a.as_tensor() + b.as_tensor())?.relu()?;
        let g = (&y * &r)?.sum_all()?.backward()?;
        let g0 = (&y0 * &r)?.sum_all()?.backward()?;
        let max_diff = |u: &Tensor, v: &Tensor| -> Result<f32> {
            (u - v)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
        };
        assert_eq!(max_diff(&y, &y0)?, 0.0);
        for v in [&a, &b] {
            let (gv, gv0) = (g.get(v).expect("grad"), g0.get(v).expect("grad"));
            assert_eq!(max_diff(gv, gv0)?, 0.0);
        }
        assert!(add_relu(&a, &r.narrow(3, 0, 10)?).is_err());
        Ok(())
    }
}
