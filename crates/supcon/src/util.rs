//! Shared checks and mask builders. Masks carry no gradient; everything that touches a feature or a
//! logit uses only candle ops that have a backward (matmul, affine, exp, log, sums, broadcasts, cat).

use candle_core::{DType, Device, Tensor};

use crate::error::{Result, SupconError};

/// Fails unless `t` is f16/bf16/f32/f64.
pub(crate) fn check_float(t: &Tensor, what: &'static str) -> Result<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(SupconError::DType {
            what,
            expected: "a float dtype",
            got: t.dtype(),
        })
    }
}

/// Labels as a 1-D `U32` tensor of length `len`. Integer dtypes are accepted; `I64` is cast, so
/// `-1` becomes `u32::MAX` (the queue's "unlabelled" value).
pub(crate) fn labels_u32(t: &Tensor, what: &'static str, len: usize) -> Result<Tensor> {
    if t.rank() != 1 || t.dim(0)? != len {
        return Err(SupconError::Shape {
            what,
            expected: format!("({len},)"),
            got: t.dims().to_vec(),
        });
    }
    match t.dtype() {
        DType::U32 => Ok(t.clone()),
        DType::U8 | DType::I64 => Ok(t.to_dtype(DType::U32)?),
        other => Err(SupconError::DType {
            what,
            expected: "an integer dtype (u32, i64 or u8)",
            got: other,
        }),
    }
}

/// Fails if any label is outside `0..num_classes`, naming the first offending row.
pub(crate) fn check_class_range(
    labels: &Tensor,
    what: &'static str,
    num_classes: usize,
) -> Result<()> {
    if labels.dim(0)? == 0 {
        return Ok(());
    }
    // One device->host scalar per call; the row is looked up only on failure.
    let max = labels.max(0)?.to_scalar::<u32>()?;
    if (max as usize) < num_classes {
        return Ok(());
    }
    let host = labels.to_vec1::<u32>()?;
    let (row, &label) = host
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
        .expect("max label is out of range, so some row is");
    Err(SupconError::LabelOutOfRange {
        what,
        row,
        label,
        num_classes,
    })
}

/// `(len(a), len(b))` float mask, 1 where `a[i] == b[j]`.
pub(crate) fn eq_mask(a: &Tensor, b: &Tensor, dtype: DType) -> Result<Tensor> {
    Ok(a.unsqueeze(1)?
        .broadcast_eq(&b.unsqueeze(0)?)?
        .to_dtype(dtype)?)
}

/// `(n, m)` u8 mask, 0 on the diagonal `i == j` (an anchor is not its own contrast) and 1 elsewhere.
pub(crate) fn not_self_u8(n: usize, m: usize, device: &Device) -> Result<Tensor> {
    let rows = Tensor::arange(0u32, n as u32, device)?.unsqueeze(1)?;
    let cols = Tensor::arange(0u32, m as u32, device)?.unsqueeze(0)?;
    Ok(rows.broadcast_ne(&cols)?)
}

/// `(n, num_classes)` float one-hot of class-index labels.
pub(crate) fn one_hot(labels: &Tensor, num_classes: usize, dtype: DType) -> Result<Tensor> {
    let classes = Tensor::arange(0u32, num_classes as u32, labels.device())?;
    eq_mask(labels, &classes, dtype)
}

/// `x / where(w < 1e-6, 1, w)`: SupContrast's guard for rows whose weights sum to zero (such a row
/// then contributes `0 / 1 = 0`).
pub(crate) fn div_guarded(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let ones = w.ones_like()?;
    let safe = w.lt(1e-6)?.where_cond(&ones, w)?;
    Ok(x.div(&safe)?)
}

/// Natural log of the class prior `n_c / sum n`, plus 1e-9 inside the log as GPaCo does, so a class
/// with no training sample gets about -20.7 instead of -inf. Returns `(C,)` values.
///
/// Errors if `class_counts` is empty or sums to zero.
pub fn log_prior(class_counts: &[usize]) -> Result<Vec<f64>> {
    let total: usize = class_counts.iter().sum();
    if class_counts.is_empty() || total == 0 {
        return Err(SupconError::Config {
            name: "class_counts",
            value: total as f64,
            reason: "needs at least one class and one training sample",
        });
    }
    Ok(class_counts
        .iter()
        .map(|&n| (n as f64 / total as f64 + 1e-9).ln())
        .collect())
}
