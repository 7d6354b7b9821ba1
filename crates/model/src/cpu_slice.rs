//! The one helper every CPU custom op of this crate needs: a storage's elements as a slice.

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// The elements `[start, end)` of a contiguous layout over `s`, or the error
/// "`{what}` must be contiguous" (`what` names the op and the argument, e.g. "layer_norm: input").
pub(crate) fn contiguous_as<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// [`contiguous_as`] for f32, the dtype of the fused ops.
pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    contiguous_as(s, l, what)
}
