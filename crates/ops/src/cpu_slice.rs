//! What every custom op needs before it reads its inputs: the one contiguous run of a layout
//! ([`contiguous_range`], any device), and on the CPU a storage's elements as a slice.
//!
//! The public functions of the ops make their inputs contiguous first, so a strided layout here
//! means a caller applied the raw custom op (`apply_op*`) to a strided tensor.

use candle_core::{CpuStorage, Layout, Result, WithDType};
use std::ops::Range;

/// A custom op met a strided (non-contiguous) input: the error of [`contiguous_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op}: tensor `{tensor}` is not contiguous; call `.contiguous()` first")]
pub struct NotContiguous {
    /// The op, e.g. "layer_norm" or "patchmix-fwd".
    pub op: &'static str,
    /// The argument, e.g. "input" or "fg".
    pub tensor: &'static str,
}

impl From<NotContiguous> for candle_core::Error {
    fn from(e: NotContiguous) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// The element range `[start, end)` of a contiguous layout (offsets into its storage), or
/// [`NotContiguous`] naming `op` and `tensor`.
pub fn contiguous_range(
    op: &'static str,
    tensor: &'static str,
    l: &Layout,
) -> std::result::Result<Range<usize>, NotContiguous> {
    l.contiguous_offsets()
        .map(|(start, end)| start..end)
        .ok_or(NotContiguous { op, tensor })
}

/// The elements of a contiguous layout over `s` as `T`, or an error naming `op` and `tensor`
/// (strided layout, or a storage of another dtype).
pub(crate) fn contiguous_as<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
    tensor: &'static str,
) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    let range = contiguous_range(op, tensor, l)?;
    Ok(&data[range])
}

/// [`contiguous_as`] for f32, the dtype of the fused ops.
pub(crate) fn contiguous<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
    tensor: &'static str,
) -> Result<&'a [f32]> {
    contiguous_as(s, l, op, tensor)
}

/// The contiguous elements of `N` storages that share one float dtype.
pub(crate) enum FloatSlices<'a, const N: usize> {
    F32([&'a [f32]; N]),
    F64([&'a [f64]; N]),
}

/// `args`: `(storage, layout, argument name)` of op `op` (the names say which argument is at
/// fault in errors, e.g. "input"). All f32 or all f64, each contiguous, or an error naming them.
pub(crate) fn float_slices<'a, const N: usize>(
    op: &'static str,
    args: [(&'a CpuStorage, &Layout, &'static str); N],
) -> Result<FloatSlices<'a, N>> {
    use candle_core::backend::BackendStorage;
    let all = |dtype| args.iter().all(|(s, _, _)| s.dtype() == dtype);
    if all(candle_core::DType::F32) {
        let mut out = [&[][..]; N];
        for (o, (s, l, tensor)) in out.iter_mut().zip(args) {
            *o = contiguous_as(s, l, op, tensor)?;
        }
        Ok(FloatSlices::F32(out))
    } else if all(candle_core::DType::F64) {
        let mut out = [&[][..]; N];
        for (o, (s, l, tensor)) in out.iter_mut().zip(args) {
            *o = contiguous_as(s, l, op, tensor)?;
        }
        Ok(FloatSlices::F64(out))
    } else {
        let got: Vec<String> = args
            .iter()
            .map(|(s, _, tensor)| format!("{tensor} {:?}", s.dtype()))
            .collect();
        candle_core::bail!("{op}: {}: must be all f32 or all f64", got.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn a_strided_layout_is_refused_with_op_and_tensor_named() {
        let t = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(contiguous_range("op", "x", t.layout()), Ok(0..6));
        let tt = t.t().unwrap();
        let err = contiguous_range("op", "x", tt.layout()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "op: tensor `x` is not contiguous; call `.contiguous()` first"
        );
        let narrow = t.narrow(0, 1, 1).unwrap();
        assert_eq!(contiguous_range("op", "x", narrow.layout()), Ok(3..6));
    }
}
