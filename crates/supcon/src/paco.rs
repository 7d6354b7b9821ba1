//! Parametric contrastive loss (PaCo, Cui et al. 2021) in the GPaCo form the SPMix reference uses.
//!
//! Inputs:
//! - `features: (M, D)` = `[q; k; queue]`, rows l2-normalised (B queries, B keys, K queue keys),
//! - `labels: (M,)` = `[y_q; y_k; queue_labels]` (queue rows may hold [`crate::LabelledQueue::UNLABELLED`]),
//! - `centre_logits: (N, C)` = Z, the linear classifier's logits of the N anchors (the class centres are
//!   its weights), *not* divided by T.
//!
//! The anchors are the first N rows of `features`, N = rows of Z: N = B (`Z = logits_q`) with an
//! EMA key network as in PaCo, N = 2B (`Z = [logits_q; logits_k]`) with a shared encoder as in GPaCo
//! and the reference code. The anchors' labels must be class indices in `0..C`. Output: a scalar.
//! ```text
//! S    = F[:N] F^T / T                          (N, M)
//! A    = [ Z + log(prior) | S ]                 (N, C + M)
//! A   -= rowmax(A)                              (no gradient through the max)
//! L    = 1 except L[i, i] = 0                   (an anchor is not its own positive)
//! Pos  = [y_i == y_j] * L
//! W    = [ beta * onehot_s(y) | alpha * Pos ]   numerator weights
//! Dn   = [ 1 | gamma * L ]                      denominator weights
//! logp = A - log( sum_j exp(A_ij) Dn_ij + 1e-12 )
//! loss = mean_i( -sum_j W_ij logp_ij / sum_j W_ij )
//! ```
//! `onehot_s` is the one-hot label smoothed as GPaCo does: `1 - smooth` on the class,
//! `smooth / (C - 1)` elsewhere (with C = 1 there is nowhere to move mass: weight 1).
//! A row with `sum_j W_ij = 0` (only possible with beta = 0 and no positive) contributes 0 and still
//! counts in the mean, as [`crate::NoPositive::CountAsZero`].
//!
//! As in the reference, the row max includes the anchor's self-similarity 1/T. At very small T
//! (0.01) that term dominates, the other exponentials underflow and the 1e-12 floor keeps the log
//! finite: the loss stays finite but is then mostly set by that floor. Use T around 0.05-0.2.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use supcon::{PacoConfig, PacoLoss};
//! let dev = Device::Cpu;
//! let paco = PacoLoss::from_class_counts(PacoConfig::default(), &[6, 3, 1], &dev)?;
//! // B = 2 queries, 2 keys, a queue of 2 (EMA keys: N = 2 anchors).
//! let f = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 0.], [0., 1.], [0.6, 0.8], [0.8, 0.6]], &dev)?;
//! let y = Tensor::new(&[0u32, 2, 0, 2, 1, 0], &dev)?;
//! let z = Tensor::new(&[[2f32, 0., -1.], [0., 0., 1.]], &dev)?;
//! let loss = paco.forward(&f, &y, &z)?.to_scalar::<f32>()?;
//! assert!(loss.is_finite() && loss > 0.0);
//! # Ok::<(), supcon::SupconError>(())
//! ```

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Result, SupconError};
use crate::util::{
    check_class_range, check_float, div_guarded, eq_mask, labels_u32, log_prior, not_self_u8,
    one_hot,
};

/// Hyper-parameters of [`PacoLoss`]. Defaults are the SPMix/GPaCo values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacoConfig {
    /// Weight of the contrastive positives in the numerator (0.05).
    pub alpha: f64,
    /// Weight of the class-centre term in the numerator (1.0).
    pub beta: f64,
    /// Weight of the contrastive samples in the denominator (1.0).
    pub gamma: f64,
    /// Temperature T of the feature similarities (0.2); the centre logits are not divided by it.
    pub temperature: f64,
    /// Label smoothing of the centre term in [0, 1) (GPaCo's `smooth`, 0).
    pub smooth: f64,
}

impl Default for PacoConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            beta: 1.0,
            gamma: 1.0,
            temperature: 0.2,
            smooth: 0.0,
        }
    }
}

impl PacoConfig {
    fn validate(&self) -> Result<()> {
        let checks: [(&'static str, f64, bool, &'static str); 5] = [
            (
                "alpha",
                self.alpha,
                self.alpha >= 0.0,
                "must be finite and >= 0",
            ),
            (
                "beta",
                self.beta,
                self.beta >= 0.0,
                "must be finite and >= 0",
            ),
            (
                "gamma",
                self.gamma,
                self.gamma >= 0.0,
                "must be finite and >= 0",
            ),
            (
                "temperature",
                self.temperature,
                self.temperature > 0.0,
                "must be finite and > 0",
            ),
            (
                "smooth",
                self.smooth,
                (0.0..1.0).contains(&self.smooth),
                "must be in [0, 1)",
            ),
        ];
        for (name, value, ok, reason) in checks {
            if !(value.is_finite() && ok) {
                return Err(SupconError::Config {
                    name,
                    value,
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// The PaCo/GPaCo loss with a fixed log-prior. See the module docs for the formula and shapes.
#[derive(Debug, Clone)]
pub struct PacoLoss {
    config: PacoConfig,
    /// `(1, C)` log class prior in f64 (exact for f64 inputs); cast to the features' dtype per call.
    log_prior: Tensor,
}

impl PacoLoss {
    /// Loss with the log-prior of the training class counts `n_c` (see [`crate::log_prior`]).
    pub fn from_class_counts(
        config: PacoConfig,
        class_counts: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let prior = log_prior(class_counts)?;
        let log_prior = Tensor::from_vec(prior, (1, class_counts.len()), device)?;
        Self::with_log_prior(config, &log_prior)
    }

    /// Loss with a given log-prior `(C,)` or `(1, C)`; all zeros turns the logit adjustment off.
    pub fn with_log_prior(config: PacoConfig, log_prior: &Tensor) -> Result<Self> {
        config.validate()?;
        check_float(log_prior, "log_prior")?;
        let c = log_prior.elem_count();
        if c == 0 || !(log_prior.rank() == 1 || (log_prior.rank() == 2 && log_prior.dim(0)? == 1)) {
            return Err(SupconError::Shape {
                what: "log_prior",
                expected: "(C,) or (1, C) with C >= 1".into(),
                got: log_prior.dims().to_vec(),
            });
        }
        Ok(Self {
            config,
            log_prior: log_prior.reshape((1, c))?.to_dtype(DType::F64)?,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &PacoConfig {
        &self.config
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.log_prior.elem_count()
    }

    /// The loss (scalar, dtype of `features`).
    ///
    /// `features: (M, D)` float, `labels: (M,)` integer, `centre_logits: (N, C)` same dtype as
    /// `features`, `1 <= N <= M`; the first N labels must be in `0..C`.
    pub fn forward(
        &self,
        features: &Tensor,
        labels: &Tensor,
        centre_logits: &Tensor,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        check_float(features, "features")?;
        check_float(centre_logits, "centre_logits")?;
        let (m, _d) = features.dims2().map_err(|_| SupconError::Shape {
            what: "features",
            expected: "(M, D) = [q; k; queue]".into(),
            got: features.dims().to_vec(),
        })?;
        let c = self.num_classes();
        let n = match centre_logits.dims() {
            &[n, cc] if cc == c && n >= 1 && n <= m => n,
            got => {
                return Err(SupconError::Shape {
                    what: "centre_logits",
                    expected: format!("(N, {c}) with 1 <= N <= M = {m}"),
                    got: got.to_vec(),
                })
            }
        };
        if centre_logits.dtype() != features.dtype() {
            return Err(SupconError::DType {
                what: "centre_logits",
                expected: "the dtype of features",
                got: centre_logits.dtype(),
            });
        }
        let labels = labels_u32(labels, "labels", m)?;
        let anchor_labels = labels.narrow(0, 0, n)?;
        check_class_range(&anchor_labels, "labels (anchor rows)", c)?;
        let device = features.device();
        let dtype = features.dtype();

        // Logits: centre part (N, C) and contrast part (N, M), shifted by one shared row max.
        let log_prior = self.log_prior.to_device(device)?.to_dtype(dtype)?;
        let centre = centre_logits.broadcast_add(&log_prior)?;
        let anchors = features.narrow(0, 0, n)?;
        let sim = (anchors.matmul(&features.t()?)? / cfg.temperature)?;
        let row_max = centre
            .detach()
            .max_keepdim(D::Minus1)?
            .maximum(&sim.detach().max_keepdim(D::Minus1)?)?;
        let centre = centre.broadcast_sub(&row_max)?;
        let sim = sim.broadcast_sub(&row_max)?;

        let not_self = not_self_u8(n, m, device)?.to_dtype(dtype)?;
        // Two halves instead of a (N, C + M) concatenation: same sums, no copy of the big part.
        let denominator = (centre.exp()?.sum_keepdim(D::Minus1)?
            + (sim.exp()? * &not_self)?.sum_keepdim(D::Minus1)? * cfg.gamma)?;
        let log_denominator = (denominator + 1e-12)?.log()?;

        let target = self.centre_weights(&anchor_labels, c, dtype)?;
        let positives = ((eq_mask(&anchor_labels, &labels, dtype)? * &not_self)? * cfg.alpha)?;
        let weight_sum = (target.sum(D::Minus1)? + positives.sum(D::Minus1)?)?;
        let weighted_log_prob = ((target * centre.broadcast_sub(&log_denominator)?)?
            .sum(D::Minus1)?
            + (positives * sim.broadcast_sub(&log_denominator)?)?.sum(D::Minus1)?)?;
        let per_anchor = div_guarded(&weighted_log_prob, &weight_sum)?;
        Ok(per_anchor.mean_all()?.neg()?)
    }

    /// `beta * onehot_s(y)`: `(N, C)` numerator weights of the centre term.
    fn centre_weights(&self, anchor_labels: &Tensor, c: usize, dtype: DType) -> Result<Tensor> {
        let one_hot = one_hot(anchor_labels, c, dtype)?;
        let smooth = self.config.smooth;
        let smoothed = if smooth == 0.0 || c == 1 {
            one_hot
        } else {
            // (1 - s) on the class, s / (C - 1) elsewhere.
            let off = smooth / (c - 1) as f64;
            one_hot.affine(1.0 - smooth - off, off)?
        };
        Ok((smoothed * self.config.beta)?)
    }
}
