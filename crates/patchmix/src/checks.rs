//! The argument checks the mixing and ratio ops share (both the CPU and the CUDA paths).

use crate::error::{PatchMixError, Result};
use candle_core::{DType, Layout};

/// Accepts the dtypes the ops support: f32, bf16, f16 (and f64, CPU only).
pub(crate) fn check_dtype(op: &'static str, tensor: &'static str, dt: DType) -> Result<()> {
    match dt {
        DType::F32 | DType::BF16 | DType::F16 | DType::F64 => Ok(()),
        got => Err(PatchMixError::DType {
            op,
            tensor,
            got,
            expected: "f32, bf16, f16 (or f64 on the CPU)".into(),
        }),
    }
}

/// The error for inputs of unsupported or differing dtypes `a`, `b`, `c`.
pub(crate) fn dtype_error(op: &'static str, a: DType, b: DType, c: DType) -> PatchMixError {
    PatchMixError::DType {
        op,
        tensor: "fg/bg/third input",
        got: a,
        expected: format!(
            "one of f32, bf16, f16, f64 shared by all inputs (got {a:?}, {b:?}, {c:?})"
        ),
    }
}

/// Contiguous `[start, end)` of a layout ([`ops::cpu_slice::contiguous_range`]), or the op's
/// [`PatchMixError::NotContiguous`].
pub(crate) fn contiguous_range(
    op: &'static str,
    tensor: &'static str,
    l: &Layout,
) -> Result<(usize, usize)> {
    let range = ops::cpu_slice::contiguous_range(op, tensor, l)?;
    Ok((range.start, range.end))
}
