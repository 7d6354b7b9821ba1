//! Cross-entropy and logit-adjusted cross-entropy for the baselines.
//!
//! `logits: (N, C)` float, `labels: (N,)` integer class indices in `0..C`; output: the mean over the
//! N rows, a scalar. The log-softmax is composed from ops with a backward (candle-nn's fused
//! softmax has none), shifted by a detached row max.
//!
//! Logit adjustment (Menon et al. 2021) adds `tau * log(prior)` to the logits before the softmax;
//! `tau = 1` is the balanced softmax (Ren et al. 2020). At inference the plain logits are used.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let z = Tensor::new(&[[0f32, 0.]], &Device::Cpu)?;
//! let y = Tensor::new(&[1u32], &Device::Cpu)?;
//! let ce = supcon::cross_entropy(&z, &y)?.to_scalar::<f32>()?;
//! assert!((ce - 2f32.ln()).abs() < 1e-6);
//! # Ok::<(), supcon::SupconError>(())
//! ```

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Result, SupconError};
use crate::util::{check_class_range, check_float, labels_u32, log_prior, one_hot};

/// `(N, C)` log-softmax over the last dimension, differentiable (detached max shift).
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    check_float(logits, "logits")?;
    let shifted = logits.broadcast_sub(&logits.detach().max_keepdim(D::Minus1)?)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// Mean cross-entropy of `logits: (N, C)` against `labels: (N,)` in `0..C`. Scalar.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (n, c) = logits.dims2().map_err(|_| SupconError::Shape {
        what: "logits",
        expected: "(N, C)".into(),
        got: logits.dims().to_vec(),
    })?;
    if n == 0 || c == 0 {
        return Err(SupconError::Shape {
            what: "logits",
            expected: "(N, C) with N, C >= 1".into(),
            got: logits.dims().to_vec(),
        });
    }
    let labels = labels_u32(labels, "labels", n)?;
    check_class_range(&labels, "labels", c)?;
    let log_prob = log_softmax(logits)?;
    let picked = (one_hot(&labels, c, logits.dtype())? * log_prob)?.sum(D::Minus1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// Cross-entropy of `logits + tau * log(prior)`: logit adjustment; `tau = 1` is the balanced softmax.
#[derive(Debug, Clone)]
pub struct LogitAdjustedCrossEntropy {
    /// `(1, C)` `tau * log(prior)` in f64; cast to the logits' dtype per call.
    adjustment: Tensor,
}

impl LogitAdjustedCrossEntropy {
    /// From the training class counts `n_c` (prior `n_c / sum n`, see [`crate::log_prior`]).
    pub fn from_class_counts(class_counts: &[usize], tau: f64, device: &Device) -> Result<Self> {
        let prior = log_prior(class_counts)?;
        let log_prior = Tensor::from_vec(prior, (1, class_counts.len()), device)?;
        Self::with_log_prior(&log_prior, tau)
    }

    /// From a log-prior `(C,)` or `(1, C)`.
    pub fn with_log_prior(log_prior: &Tensor, tau: f64) -> Result<Self> {
        check_float(log_prior, "log_prior")?;
        if !tau.is_finite() {
            return Err(SupconError::Config {
                name: "tau",
                value: tau,
                reason: "must be finite",
            });
        }
        let c = log_prior.elem_count();
        if c == 0 || !(log_prior.rank() == 1 || (log_prior.rank() == 2 && log_prior.dim(0)? == 1)) {
            return Err(SupconError::Shape {
                what: "log_prior",
                expected: "(C,) or (1, C) with C >= 1".into(),
                got: log_prior.dims().to_vec(),
            });
        }
        let adjustment = (log_prior.reshape((1, c))?.to_dtype(DType::F64)? * tau)?;
        Ok(Self { adjustment })
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.adjustment.elem_count()
    }

    /// Mean adjusted cross-entropy of `logits: (N, C)` against `labels: (N,)`. Scalar.
    pub fn forward(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        check_float(logits, "logits")?;
        let c = self.num_classes();
        if logits.rank() != 2 || logits.dim(1)? != c {
            return Err(SupconError::Shape {
                what: "logits",
                expected: format!("(N, {c})"),
                got: logits.dims().to_vec(),
            });
        }
        let adjustment = self
            .adjustment
            .to_device(logits.device())?
            .to_dtype(logits.dtype())?;
        cross_entropy(&logits.broadcast_add(&adjustment)?, labels)
    }
}
