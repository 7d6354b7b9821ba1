//! How the parity tests of the ops and of the model compare a result with its reference.

use candle_core::{DType, Result, Tensor};

/// `max |got - want| / max |want|` over all elements, in f32 (the plain maximum difference
/// when `want` is all zeros). Errors if the shapes differ.
pub fn rel_err(got: &Tensor, want: &Tensor) -> Result<f32> {
    if got.dims() != want.dims() {
        candle_core::bail!(
            "rel_err: shape {:?} compared with {:?}",
            got.dims(),
            want.dims()
        );
    }
    let (got, want) = (got.to_dtype(DType::F32)?, want.to_dtype(DType::F32)?);
    let diff = (got - &want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(if scale == 0.0 { diff } else { diff / scale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn relative_to_the_largest_reference_magnitude() {
        let want = Tensor::new(&[2f32, -4.], &Device::Cpu).unwrap();
        let got = Tensor::new(&[2.5f32, -4.], &Device::Cpu).unwrap();
        assert_eq!(rel_err(&got, &want).unwrap(), 0.125);
        let zero = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(rel_err(&got, &zero).unwrap(), 4.0);
        let other = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(rel_err(&got, &other).is_err());
    }
}
