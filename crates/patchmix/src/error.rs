//! The crate's error type.

use candle_core::DType;

/// Errors from the ratio and mixing ops. Every message names the tensor or parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum PatchMixError {
    /// A tensor has the wrong rank or size.
    #[error("{op}: tensor `{tensor}` has shape {got:?}, expected {expected}")]
    Shape {
        op: &'static str,
        tensor: &'static str,
        got: Vec<usize>,
        expected: String,
    },
    /// A tensor has a dtype the op does not support, or differs from its partner's.
    #[error("{op}: tensor `{tensor}` has dtype {got:?}, expected {expected}")]
    DType {
        op: &'static str,
        tensor: &'static str,
        got: DType,
        expected: String,
    },
    /// The custom op was applied directly to a strided (non-contiguous) tensor. The public
    /// functions make their inputs contiguous first; `apply_op*` callers must do the same.
    #[error(transparent)]
    NotContiguous(#[from] ops::cpu_slice::NotContiguous),
    /// The tensors live on different devices.
    #[error("{op}: tensor `{tensor}` is on {got:?} but `{other}` is on {expected:?}")]
    Device {
        op: &'static str,
        tensor: &'static str,
        other: &'static str,
        got: candle_core::DeviceLocation,
        expected: candle_core::DeviceLocation,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    Param {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    /// No CUDA device could be opened (no GPU, no driver, or the crate was built without `cuda`).
    #[error("no CUDA device {ordinal} available: {reason}")]
    NoCudaDevice { ordinal: usize, reason: String },
    /// A CUDA kernel failed to compile (NVRTC) or launch.
    #[error("CUDA kernel `{kernel}`: {reason}")]
    Cuda { kernel: String, reason: String },
    /// An error from a candle tensor op.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<PatchMixError> for candle_core::Error {
    fn from(e: PatchMixError) -> Self {
        match e {
            PatchMixError::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        }
    }
}

impl PatchMixError {
    /// A [`PatchMixError::Param`] error for parameter `name` set to `value`.
    pub(crate) fn param(
        name: &'static str,
        value: impl std::fmt::Display,
        reason: &'static str,
    ) -> Self {
        PatchMixError::Param {
            name,
            value: value.to_string(),
            reason,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, PatchMixError>;

/// The error a CUDA tensor meets when this crate was built without its `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub(crate) fn no_cuda_feature() -> PatchMixError {
    PatchMixError::NoCudaDevice {
        ordinal: 0,
        reason: "patchmix was built without its `cuda` feature; rebuild with `--features cuda`"
            .into(),
    }
}
