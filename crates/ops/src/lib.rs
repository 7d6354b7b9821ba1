//! Fused candle custom ops with hand-written backwards, written because candle 0.11 lacks fast
//! (or any) versions of them: each is one graph node on the CPU (rayon, gemm) where candle's
//! composed ops would be a dozen nodes, each a pass over memory with a zero-filled gradient
//! buffer. Other devices and dtypes fall back to candle's ops with the same maths, except the
//! stem max-pool, which has CUDA kernels of its own (feature `cuda`).
//!
//! Every op's module doc states its shapes. The helpers the ops share are public for the other
//! crates of the workspace that write custom ops (patchmix): [`cpu_slice::contiguous_range`],
//! [`buffer::output_buffer`] / [`buffer::zeroed`] and, with `cuda`, the NVRTC compile-once cache
//! `nvrtc::NvrtcModule`.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let a = Tensor::new(&[1f32, -2., 3.], &Device::Cpu)?;
//! let b = Tensor::new(&[-4f32, 1., 1.], &Device::Cpu)?;
//! let y = ops::residual::add_relu(&a, &b)?; // relu(a + b), one node, with backward
//! assert_eq!(y.to_vec1::<f32>()?, [0., 0., 4.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod activation;
pub mod attention;
pub mod avg_pool;
pub mod batch_norm;
pub mod buffer;
pub mod compare;
pub mod cpu_slice;
pub mod fast_math;
pub mod im2col;
pub mod layer_norm;
pub mod linear;
pub mod matmul;
pub mod max_pool;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod residual;
