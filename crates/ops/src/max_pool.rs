//! The ResNet stem max-pool: kernel 3, stride 2, padding 1, as a candle custom op with a
//! correct backward (candle 0.11's `max_pool2d` backward spreads the gradient over the window
//! and refuses kernel != stride).
//!
//! Shapes: `(B, C, H, W)` -> `(B, C, (H - 1) / 2 + 1, (W - 1) / 2 + 1)`, f32.
//! The gradient of each output goes to the first maximum of its window in row-major order
//! (PyTorch's choice on ties; a NaN counts as the maximum). The backward uses no atomics (the CPU
//! scatters one plane per task, the CUDA kernel gathers per input element, both in the same
//! order), so it is deterministic.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::arange(0f32, 16., &Device::Cpu)?.reshape((1, 1, 4, 4))?;
//! let y = ops::max_pool::stem_max_pool(&x)?;
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [5., 7., 13., 15.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::buffer::zeroed;
use crate::cpu_slice::contiguous;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Output side for an input side `h`: `(h + 2 - 3) / 2 + 1`.
pub fn pooled_size(h: usize) -> usize {
    (h - 1) / 2 + 1
}

/// 3x3 / stride 2 / padding 1 max-pool with backward: `(B, C, H, W)` -> `(B, C, H', W')`.
pub fn stem_max_pool(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        candle_core::bail!("stem_max_pool: f32 input required, got {:?}", x.dtype());
    }
    x.dims4()?;
    x.contiguous()?.apply_op1(StemMaxPool)
}

struct StemMaxPool;
struct StemMaxPoolBackward;

/// The sizes of one pooling, `(B, C, H, W)` -> `(B, C, H', W')` with `ho` = H', `wo` = W'.
#[derive(Debug, Clone, Copy)]
struct PoolDims {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

impl PoolDims {
    /// The sizes for an input of layout `x` `(B, C, H, W)`.
    fn of_input(x: &Layout) -> Result<Self> {
        let (b, c, h, w) = x.shape().dims4()?;
        let (ho, wo) = (pooled_size(h), pooled_size(w));
        Ok(Self { b, c, h, w, ho, wo })
    }

    /// The sizes for the backward's input `x` and output gradient `grad`, which must have the
    /// pooled shape `(B, C, H', W')`.
    fn of_backward(x: &Layout, grad: &Layout) -> Result<Self> {
        let d = Self::of_input(x)?;
        if grad.shape().dims4()? != (d.b, d.c, d.ho, d.wo) {
            candle_core::bail!(
                "stem_max_pool backward: gradient shape {:?} does not match input {:?}",
                grad.shape(),
                x.shape()
            );
        }
        Ok(d)
    }
}

/// Flat index (within its plane) of the first maximum of output (oh, ow)'s window, if any.
#[inline]
fn argmax(plane: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for kh in 0..3 {
        let ih = (2 * oh + kh) as isize - 1;
        if ih < 0 || ih >= h as isize {
            continue;
        }
        for kw in 0..3 {
            let iw = (2 * ow + kw) as isize - 1;
            if iw < 0 || iw >= w as isize {
                continue;
            }
            let idx = ih as usize * w + iw as usize;
            let v = plane[idx];
            match best {
                Some((_, m)) if !(v > m || (v.is_nan() && !m.is_nan())) => {}
                _ => best = Some((idx, v)),
            }
        }
    }
    best.map(|(i, _)| i)
}

impl CustomOp1 for StemMaxPool {
    fn name(&self) -> &'static str {
        "stem-max-pool-3x3s2p1"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let PoolDims { b, c, h, w, ho, wo } = PoolDims::of_input(l)?;
        let x = contiguous(s, l, "stem_max_pool", "input")?;
        let mut out = zeroed(b * c * ho * wo, 0f32);
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, plane)| {
                for oh in 0..ho {
                    for ow in 0..wo {
                        // Every window holds at least its centre pixel, so argmax is Some.
                        let i = argmax(plane, h, w, oh, ow).expect("non-empty window");
                        o[oh * wo + ow] = plane[i];
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let PoolDims { b, c, h, w, ho, wo } = PoolDims::of_input(l)?;
        let out = cuda::forward(s, l, b * c, h, w, ho, wo)?;
        Ok((out, Shape::from((b, c, ho, wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &StemMaxPoolBackward)?;
        Ok(Some(g))
    }
}

impl CustomOp2 for StemMaxPoolBackward {
    fn name(&self) -> &'static str {
        "stem-max-pool-3x3s2p1-backward"
    }

    /// Inputs: x `(B, C, H, W)`, grad_out `(B, C, H', W')`; output grad_x `(B, C, H, W)`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let PoolDims { b, c, h, w, ho, wo } = PoolDims::of_backward(l1, l2)?;
        let x = contiguous(s1, l1, "stem_max_pool", "input")?;
        let gy = contiguous(s2, l2, "stem_max_pool", "gradient")?;
        let mut gx = zeroed(b * c * h * w, 0f32);
        // One task per plane; each output's gradient goes to its window's first maximum. The
        // outputs are visited in row-major order, the order in which the CUDA kernel (one thread
        // per input element) sums them, so both give the same bits.
        gx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(gy.par_chunks(ho * wo)))
            .for_each(|(gplane, (plane, gyp))| {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let i = argmax(plane, h, w, oh, ow).expect("non-empty window");
                        gplane[i] += gyp[oh * wo + ow];
                    }
                }
            });
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let PoolDims { b, c, h, w, ho, wo } = PoolDims::of_backward(l1, l2)?;
        let out = cuda::backward(s1, l1, s2, l2, b * c, h, w, ho, wo)?;
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    //! NVRTC-compiled kernels, one thread per output (forward) or per input (backward).
    use crate::cpu_slice::contiguous_range;
    use crate::nvrtc::NvrtcModule;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, Layout, Result};

    const SRC: &str = r#"
__device__ __forceinline__ int argmax3x3(const float* p, int h, int w, int oh, int ow) {
    int best = -1; float m = 0.0f;
    for (int kh = 0; kh < 3; ++kh) {
        int ih = 2 * oh + kh - 1;
        if (ih < 0 || ih >= h) continue;
        for (int kw = 0; kw < 3; ++kw) {
            int iw = 2 * ow + kw - 1;
            if (iw < 0 || iw >= w) continue;
            int idx = ih * w + iw;
            float v = p[idx];
            if (best < 0 || v > m || (isnan(v) && !isnan(m))) { best = idx; m = v; }
        }
    }
    return best;
}
extern "C" __global__ void stem_max_pool_fwd(const float* x, float* y, int planes, int h, int w, int ho, int wo) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)planes * ho * wo;
    if (i >= total) return;
    int ow = (int)(i % wo); int oh = (int)((i / wo) % ho); long long p = i / ((long long)wo * ho);
    const float* xp = x + p * h * w;
    y[i] = xp[argmax3x3(xp, h, w, oh, ow)];
}
extern "C" __global__ void stem_max_pool_bwd(const float* x, const float* gy, float* gx, int planes, int h, int w, int ho, int wo) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)planes * h * w;
    if (i >= total) return;
    int iw = (int)(i % w); int ih = (int)((i / w) % h); long long p = i / ((long long)w * h);
    const float* xp = x + p * h * w;
    const float* gp = gy + p * ho * wo;
    int me = ih * w + iw;
    int oh_lo = ih >= 1 ? ih / 2 : 0; int oh_hi = min((ih + 1) / 2, ho - 1);
    int ow_lo = iw >= 1 ? iw / 2 : 0; int ow_hi = min((iw + 1) / 2, wo - 1);
    float acc = 0.0f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
        for (int ow = ow_lo; ow <= ow_hi; ++ow)
            if (argmax3x3(xp, h, w, oh, ow) == me) acc += gp[oh * wo + ow];
    gx[i] = acc;
}
"#;

    static KERNELS: NvrtcModule = NvrtcModule::new("ops_stem_max_pool", SRC);

    fn contiguous_view<'a>(
        s: &'a CudaStorage,
        l: &Layout,
        tensor: &'static str,
    ) -> Result<CudaView<'a, f32>> {
        let range = contiguous_range("stem_max_pool", tensor, l)?;
        Ok(s.as_cuda_slice::<f32>()?.slice(range))
    }

    pub(super) fn forward(
        s: &CudaStorage,
        l: &Layout,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Result<CudaStorage> {
        let dev = s.device().clone();
        let x = contiguous_view(s, l, "input")?;
        let n = planes * ho * wo;
        let func = KERNELS.function(&dev, "stem_max_pool_fwd")?;
        // SAFETY: every element is written by the kernel.
        let y = unsafe { dev.alloc::<f32>(n)? };
        let (pl, h, w, ho, wo) = (planes as i32, h as i32, w as i32, ho as i32, wo as i32);
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&x).arg(&y).arg(&pl).arg(&h).arg(&w).arg(&ho).arg(&wo);
        // SAFETY: arguments match the kernel signature; bounds are checked in the kernel.
        unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(y, dev))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Result<CudaStorage> {
        let dev = s1.device().clone();
        let x = contiguous_view(s1, l1, "input")?;
        let gy = contiguous_view(s2, l2, "gradient")?;
        let n = planes * h * w;
        let func = KERNELS.function(&dev, "stem_max_pool_bwd")?;
        // SAFETY: every element is written by the kernel.
        let gx = unsafe { dev.alloc::<f32>(n)? };
        let (pl, h, w, ho, wo) = (planes as i32, h as i32, w as i32, ho as i32, wo as i32);
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&x)
            .arg(&gy)
            .arg(&gx)
            .arg(&pl)
            .arg(&h)
            .arg(&w)
            .arg(&ho)
            .arg(&wo);
        // SAFETY: arguments match the kernel signature; bounds are checked in the kernel.
        unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(gx, dev))
    }
}
