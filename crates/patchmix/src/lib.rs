//! Lesion-aware mixup ratios and patch-wise token mixing (SPMix steps 4-6) as fused candle
//! custom ops, with backward, on the CPU (rayon) and on CUDA (feature `cuda`).
//!
//! - [`lesion_aware_ratio`]: saliency (B, 1, H, W) of the foreground and background images ->
//!   per-patch mixing ratio (B, N) in [floor, alpha], N = (H/P) (W/P). Ablations:
//!   [`sample_scalar_ratio`], [`random_patch_ratio`], [`random_sample_ratio`],
//!   [`constant_ratio`], or [`mixing_ratio`] with a [`RatioMode`].
//! - [`patch_mix`]: tokens fg, bg (B, N, C) and ratio (B, N) -> `r fg + (1 - r) bg` (B, N, C),
//!   differentiable in all three inputs; the backward is one fused pass ([`patch_mix_backward`]).
//!
//! Dtypes f32, bf16, f16 (arithmetic in f32) on both devices; f64 on the CPU. Seeded noise comes
//! from a counter-based hash ([`noise`]), so CPU and CUDA draw the same numbers.
//!
//! Modules depend on each other in one direction (a DAG): `ratio` and `mix` (the ops and their
//! CPU kernels) call `cuda` (their CUDA launches); all three use `checks` (shared argument
//! checks) and `error`; `ratio`, `cuda` and `reference` read `ratio_config`; `ratio` and
//! `reference` draw from `noise`; nothing calls back up. Slices, buffers and the NVRTC cache are
//! the `ops` crate's.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use patchmix::{lesion_aware_ratio, patch_mix, RatioConfig};
//! let dev = Device::Cpu;
//! let (b, n, c) = (2, 4, 8); // 32 x 32 saliency, 16 px patches -> N = 4
//! let sal_fg = Tensor::rand(0f32, 1., (b, 1, 32, 32), &dev)?;
//! let sal_bg = Tensor::rand(0f32, 1., (b, 1, 32, 32), &dev)?;
//! let ratio = lesion_aware_ratio(&sal_fg, &sal_bg, &RatioConfig::default(), 42)?; // (B, N)
//! let fg = Tensor::ones((b, n, c), DType::F32, &dev)?;
//! let bg = Tensor::zeros((b, n, c), DType::F32, &dev)?;
//! let mixed = patch_mix(&fg, &bg, &ratio)?; // (B, N, C); here every token equals its ratio
//! assert_eq!(mixed.dims(), &[b, n, c]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checks;
#[cfg(feature = "cuda")]
pub mod cuda;
mod elem;
mod error;
mod mix;
pub mod noise;
mod ratio;
mod ratio_config;
pub mod reference;

pub use error::{PatchMixError, Result};
pub use mix::{patch_mix, patch_mix_backward, PatchMix, PatchMixBackward};
pub use ratio::{
    constant_ratio, lesion_aware_ratio, mixing_ratio, random_patch_ratio, random_sample_ratio,
    sample_scalar_ratio, LesionRatio, RatioMode,
};
pub use ratio_config::RatioConfig;

/// Opens CUDA device `ordinal`, or returns [`PatchMixError::NoCudaDevice`] saying why not
/// (no GPU or driver, or this crate built without its `cuda` feature).
pub fn cuda_device(ordinal: usize) -> Result<candle_core::Device> {
    #[cfg(feature = "cuda")]
    {
        cuda::cuda_device(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(PatchMixError::NoCudaDevice {
            ordinal,
            reason: "patchmix was built without its `cuda` feature; rebuild with `--features cuda`"
                .into(),
        })
    }
}
