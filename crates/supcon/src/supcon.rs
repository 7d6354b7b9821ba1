//! Supervised contrastive loss (Khosla et al. 2020), as SupContrast's reference `SupConLoss` computes it.
//!
//! Input `features: (B, V, D)`, B samples with V views each, rows l2-normalised (the loss does not
//! normalise them); `labels: (B,)` integer classes, or `None` for the unsupervised SimCLR case (the
//! only positive of a view is the other views of the same sample). Output: a scalar.
//!
//! The contrast set is the `V*B` views stacked view-major (`cat(unbind(features, 1))`). Anchors are
//! all of them ([`ContrastMode::All`]) or the first view of each sample ([`ContrastMode::One`]).
//! For anchor i, with P(i) its positives (same label, not itself) and A(i) every view but itself:
//! ```text
//! l_i  = -(T / T_base) * 1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / T) / sum_{a in A(i)} exp(s_ia / T) )
//! loss = mean over anchors of l_i
//! ```
//! Anchors without a positive (a class with a single sample and V = 1) are handled as
//! [`NoPositive`] says; the default follows current SupContrast (loss 0, still counted in the mean).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use supcon::{ContrastMode, SupConLoss};
//! // Two samples of class 0, two views each; views of one sample identical, samples orthogonal.
//! let f = Tensor::new(&[[[1f32, 0.], [1., 0.]], [[0., 1.], [0., 1.]]], &Device::Cpu)?;
//! let y = Tensor::new(&[0u32, 0], &Device::Cpu)?;
//! let loss = SupConLoss::new(1.0, 1.0, ContrastMode::All)?.forward(&f, Some(&y))?;
//! // Each anchor: positives at cos 1, 0, 0 against a denominator e + 2: -mean(1, 0, 0) + ln(e + 2).
//! let expected = (std::f32::consts::E + 2.0).ln() - 1.0 / 3.0;
//! assert!((loss.to_scalar::<f32>()? - expected).abs() < 1e-6);
//! # Ok::<(), supcon::SupconError>(())
//! ```

use candle_core::{Tensor, D};

use crate::error::{Result, SupconError};
use crate::util::{check_float, div_guarded, eq_mask, labels_u32, not_self_u8};

/// Which views act as anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContrastMode {
    /// Every view of every sample is an anchor (`V*B` anchors). SupContrast's default.
    #[default]
    All,
    /// Only the first view of each sample (`B` anchors); all views are still contrasted.
    One,
}

/// What an anchor without any positive contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoPositive {
    /// Its loss is 0 and it still counts in the mean over anchors: current SupContrast, which divides
    /// by `where(|P(i)| < 1e-6, 1, |P(i)|)`. (The original code divided by zero and returned NaN.)
    #[default]
    CountAsZero,
    /// It is left out of the mean: the loss is the mean over anchors that have a positive (0 if none has).
    Exclude,
}

/// Supervised contrastive loss. See the module docs for the formula and shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupConLoss {
    temperature: f64,
    base_temperature: f64,
    mode: ContrastMode,
    no_positive: NoPositive,
}

impl Default for SupConLoss {
    /// SupContrast's defaults: T = T_base = 0.07, all views as anchors, no-positive anchors count as 0.
    fn default() -> Self {
        Self {
            temperature: 0.07,
            base_temperature: 0.07,
            mode: ContrastMode::All,
            no_positive: NoPositive::CountAsZero,
        }
    }
}

impl SupConLoss {
    /// `temperature` T and `base_temperature` T_base must be finite and positive; the loss is scaled
    /// by `T / T_base`.
    pub fn new(temperature: f64, base_temperature: f64, mode: ContrastMode) -> Result<Self> {
        for (name, value) in [
            ("temperature", temperature),
            ("base_temperature", base_temperature),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(SupconError::Config {
                    name,
                    value,
                    reason: "must be finite and > 0",
                });
            }
        }
        Ok(Self {
            temperature,
            base_temperature,
            mode,
            no_positive: NoPositive::CountAsZero,
        })
    }

    /// Sets how anchors without a positive are treated.
    pub fn with_no_positive(mut self, no_positive: NoPositive) -> Self {
        self.no_positive = no_positive;
        self
    }

    /// Temperature T.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Anchor mode.
    pub fn mode(&self) -> ContrastMode {
        self.mode
    }

    /// The loss (scalar, dtype of `features`).
    ///
    /// `features: (B, V, D)` float, rows l2-normalised, `B * V >= 2`; `labels: (B,)` integer
    /// (u32, i64 or u8) or `None` for SimCLR.
    pub fn forward(&self, features: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        check_float(features, "features")?;
        let (b, v, d) = features.dims3().map_err(|_| SupconError::Shape {
            what: "features",
            expected: "(B, V, D)".into(),
            got: features.dims().to_vec(),
        })?;
        if b * v < 2 {
            return Err(SupconError::Shape {
                what: "features",
                expected: "(B, V, D) with B * V >= 2 (an anchor needs something to contrast with)"
                    .into(),
                got: features.dims().to_vec(),
            });
        }
        let device = features.device();
        let dtype = features.dtype();
        let labels = match labels {
            Some(l) => labels_u32(l, "labels", b)?,
            // SimCLR: each sample is its own class.
            None => Tensor::arange(0u32, b as u32, device)?,
        };

        // View-major contrast set: row `view * B + sample`.
        let contrast = features.transpose(0, 1)?.reshape((v * b, d))?;
        let contrast_labels = Tensor::cat(&vec![&labels; v], 0)?;
        let (anchor, anchor_labels) = match self.mode {
            ContrastMode::All => (contrast.clone(), contrast_labels.clone()),
            ContrastMode::One => (features.narrow(1, 0, 1)?.squeeze(1)?, labels.clone()),
        };
        let n_anchor = anchor.dim(0)?;

        let logits = (anchor.matmul(&contrast.t()?)? / self.temperature)?;
        let not_self = not_self_u8(n_anchor, v * b, device)?;
        // Shift by the row max over the contrasts only (not the anchor itself). The loss does not
        // depend on the shift, and leaving out the self term (always the largest, 1/T) keeps the
        // denominator >= 1 instead of underflowing to 0 in f32 at small T.
        let neg_inf = Tensor::full(f64::NEG_INFINITY, logits.shape(), device)?.to_dtype(dtype)?;
        let row_max = not_self
            .where_cond(&logits.detach(), &neg_inf)?
            .max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&row_max)?;
        // Mask before the exp: the self term, up to 2/T above the shift, overflows f32 at small T
        // and `inf * 0` would be NaN.
        let log_denominator = not_self
            .where_cond(&shifted, &neg_inf)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?;
        let not_self = not_self.to_dtype(dtype)?;
        let log_prob = shifted.broadcast_sub(&log_denominator)?;

        let positives = (eq_mask(&anchor_labels, &contrast_labels, dtype)? * &not_self)?;
        let n_positive = positives.sum(D::Minus1)?;
        let mean_log_prob_pos = div_guarded(&(positives * log_prob)?.sum(D::Minus1)?, &n_positive)?;
        let per_anchor = (mean_log_prob_pos * (-self.temperature / self.base_temperature))?;
        let loss = match self.no_positive {
            NoPositive::CountAsZero => per_anchor.mean_all()?,
            NoPositive::Exclude => {
                let has_positive = n_positive.ge(0.5)?.to_dtype(dtype)?;
                let count = has_positive.sum_all()?.maximum(1.0)?;
                (per_anchor * has_positive)?.sum_all()?.div(&count)?
            }
        };
        Ok(loss)
    }
}
