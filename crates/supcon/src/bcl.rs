//! Balanced contrastive learning (BCL, Zhu et al. CVPR 2022), as the authors' code computes it
//! (FlamieZhu/Balanced-Contrastive-Learning: `loss/contrastive.py` `BalSCL`, `loss/logitadjust.py`
//! `LogitAdjust`, combined as in `main.py`: `alpha * ce + beta * scl`).
//!
//! Inputs of [`BalancedSupConLoss::forward`]:
//! - `features: (B, V, D)`: the contrastive branch's V views of B samples (V = 2 in BCL), rows
//!   l2-normalised (the loss does not normalise them),
//! - `labels: (B,)`: class indices in `0..C`,
//! - `prototypes: (C, D)`: one learnable prototype per class, l2-normalised. In BCL they are the
//!   classifier weights passed through the contrastive head's twin MLP
//!   (`normalize(head_fc(fc.weight^T))`), so the contrastive loss also trains the classifier side.
//!
//! Anchors are the `N = V*B` views stacked view-major; the contrast set is the views plus the C
//! prototypes ("class-complement": every class appears in every batch). With
//! `y' = [y; ...; y; 0..C]` (N + C labels), `n_c` = how often class c occurs in `y'`
//! (so `n_c >= 1`), and the anchor's own column masked:
//! ```text
//! S    = F_a [F_a; P]^T / T                            (N, N + C), minus a detached row max
//! Pos  = [y_i == y'_j] * [i != j]                      positives (always includes the own prototype)
//! W_ij = n_{y'_j} - Pos_ij                             class-averaging: each class's terms are averaged
//! logp = S - log( sum_{j != i} exp(S_ij) / W_ij )
//! loss = mean_i( -sum_j Pos_ij logp_ij / sum_j Pos_ij )
//! ```
//! (`- Pos_ij` removes the anchor itself from the size of its own class, as the reference does.)
//! The row max is taken over the columns other than the anchor's own (the reference includes its
//! `1/T`): the same loss, but nothing in the denominator underflows to 0 at small T.
//!
//! [`BclLoss`] adds the classifier branch: logit-compensated cross-entropy
//! `CE(logits + tau * log prior, y)` (the reference's `LogitAdjust`, `tau = 1`) on the logits `(B, C)`
//! of the classifier view, and returns `ce_weight * ce + scl_weight * scl` with the parts.
//! The classifier in BCL is a cosine classifier (`NormedLinear`, scale 30); that is the model's side.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use supcon::{BclConfig, BclLoss};
//! let dev = Device::Cpu;
//! let bcl = BclLoss::from_class_counts(BclConfig::default(), &[50, 20, 5], &dev)?;
//! // B = 2 samples, V = 2 views, D = 2; C = 3 prototypes.
//! let f = Tensor::new(&[[[1f32, 0.], [0.8, 0.6]], [[0., 1.], [0.6, 0.8]]], &dev)?;
//! let y = Tensor::new(&[0u32, 2], &dev)?;
//! let p = Tensor::new(&[[1f32, 0.], [0.6, -0.8], [0., 1.]], &dev)?;
//! let z = Tensor::new(&[[2f32, 0., -1.], [0., 0., 1.]], &dev)?;
//! let parts = bcl.forward(&f, &y, &p, &z)?;
//! assert!(parts.total.to_scalar::<f32>()?.is_finite());
//! # Ok::<(), supcon::SupconError>(())
//! ```

use candle_core::{Device, Tensor, D};

use crate::ce::LogitAdjustedCrossEntropy;
use crate::error::{Result, SupconError};
use crate::util::{check_class_range, check_float, eq_mask, labels_u32, not_self_u8, one_hot};

/// The balanced supervised contrastive loss (BCL's `BalSCL`). See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalancedSupConLoss {
    temperature: f64,
    num_classes: usize,
}

impl BalancedSupConLoss {
    /// `temperature` T > 0 (BCL: 0.07) and the number of classes C >= 1 (rows of the prototypes).
    pub fn new(temperature: f64, num_classes: usize) -> Result<Self> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(SupconError::Config {
                name: "temperature",
                value: temperature,
                reason: "must be finite and > 0",
            });
        }
        if num_classes == 0 {
            return Err(SupconError::Config {
                name: "num_classes",
                value: 0.0,
                reason: "must be >= 1",
            });
        }
        Ok(Self {
            temperature,
            num_classes,
        })
    }

    /// The temperature T.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The loss (scalar, dtype of `features`): `features: (B, V, D)`, `labels: (B,)` in `0..C`,
    /// `prototypes: (C, D)` of the same dtype.
    pub fn forward(
        &self,
        features: &Tensor,
        labels: &Tensor,
        prototypes: &Tensor,
    ) -> Result<Tensor> {
        check_float(features, "features")?;
        check_float(prototypes, "prototypes")?;
        let c = self.num_classes;
        let (b, v, d) = match features.dims() {
            &[b, v, d] if b >= 1 && v >= 1 && d >= 1 => (b, v, d),
            got => {
                return Err(SupconError::Shape {
                    what: "features",
                    expected: "(B, V, D) with B, V, D >= 1".into(),
                    got: got.to_vec(),
                })
            }
        };
        if prototypes.dims() != [c, d] {
            return Err(SupconError::Shape {
                what: "prototypes",
                expected: format!("({c}, {d}) = (C, D)"),
                got: prototypes.dims().to_vec(),
            });
        }
        if prototypes.dtype() != features.dtype() {
            return Err(SupconError::DType {
                what: "prototypes",
                expected: "the dtype of features",
                got: prototypes.dtype(),
            });
        }
        let labels = labels_u32(labels, "labels", b)?;
        check_class_range(&labels, "labels", c)?;
        let device = features.device();
        let dtype = features.dtype();
        let n = v * b;

        // View-major anchors (N, D), then the contrast set [anchors; prototypes] (N + C, D).
        let views: Vec<Tensor> = (0..v)
            .map(|i| features.narrow(1, i, 1)?.squeeze(1))
            .collect::<candle_core::Result<_>>()?;
        let anchors = Tensor::cat(&views, 0)?;
        let contrast = Tensor::cat(&[&anchors, prototypes], 0)?;
        let anchor_labels = labels.repeat(v)?;
        let classes = Tensor::arange(0u32, c as u32, device)?;
        let all_labels = Tensor::cat(&[&anchor_labels, &classes], 0)?;

        let sim = (anchors.matmul(&contrast.t()?)? / self.temperature)?;
        // Shift by the row max over the columns that enter the denominator. The reference includes
        // the anchor's own 1/T; the loss is the same (the shift cancels), but this way the largest
        // denominator term is exp(0) and nothing underflows to 0 at small T. The self column is
        // then set to 0 (it is masked everywhere; exp(1/T - max) could overflow).
        let not_self_mask = not_self_u8(n, n + c, device)?;
        let detached = sim.detach();
        let row_min = detached
            .min_keepdim(D::Minus1)?
            .broadcast_as(detached.shape())?;
        let shift = not_self_mask
            .where_cond(&detached, &row_min)?
            .max_keepdim(D::Minus1)?;
        let sim = not_self_mask.where_cond(&sim.broadcast_sub(&shift)?, &sim.zeros_like()?)?;

        let not_self = not_self_mask.to_dtype(dtype)?;
        let positives = (eq_mask(&anchor_labels, &all_labels, dtype)? * &not_self)?;
        // n_c per class over y' (C,), then per contrast column (1, N + C).
        let class_sizes = one_hot(&all_labels, c, dtype)?.sum(0)?;
        let column_sizes = class_sizes.index_select(&all_labels, 0)?.unsqueeze(0)?;
        let averaging = column_sizes.broadcast_sub(&positives)?;
        let denominator = ((sim.exp()? * &not_self)? / averaging)?.sum_keepdim(D::Minus1)?;
        let log_prob = sim.broadcast_sub(&denominator.log()?)?;
        // Every anchor has its own prototype as a positive: the count is >= 1.
        let per_anchor = ((&positives * log_prob)?.sum(D::Minus1)? / positives.sum(D::Minus1)?)?;
        Ok(per_anchor.mean_all()?.neg()?)
    }
}

/// Hyper-parameters of [`BclLoss`]; defaults are the authors' (`main.py`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BclConfig {
    /// Weight of the logit-compensated cross-entropy (`--alpha`, 1.0).
    pub ce_weight: f64,
    /// Weight of the balanced contrastive loss (`--beta`, 0.35).
    pub scl_weight: f64,
    /// Temperature of the contrastive loss (`--temp`, 0.07).
    pub temperature: f64,
    /// Scale of the log prior added to the logits (`LogitAdjust`'s `tau`, 1.0).
    pub tau: f64,
}

impl Default for BclConfig {
    fn default() -> Self {
        Self {
            ce_weight: 1.0,
            scl_weight: 0.35,
            temperature: 0.07,
            tau: 1.0,
        }
    }
}

/// The two parts of the BCL objective and their weighted sum (scalars of the input dtype).
#[derive(Debug, Clone)]
pub struct BclParts {
    /// `ce_weight * ce + scl_weight * scl`: what to back-propagate.
    pub total: Tensor,
    /// The logit-compensated cross-entropy of the classifier view.
    pub ce: Tensor,
    /// The balanced supervised contrastive loss.
    pub scl: Tensor,
}

/// BCL's training objective: logit-compensated CE + balanced supervised contrastive loss.
#[derive(Debug, Clone)]
pub struct BclLoss {
    config: BclConfig,
    contrastive: BalancedSupConLoss,
    classifier: LogitAdjustedCrossEntropy,
}

impl BclLoss {
    /// From the training class counts `n_c` (the prior of the logit compensation; C = its length).
    /// A class without training samples gets `log(1e-9)` (see [`crate::log_prior`]) where the
    /// reference would produce `-inf` and a NaN loss.
    pub fn from_class_counts(
        config: BclConfig,
        class_counts: &[usize],
        device: &Device,
    ) -> Result<Self> {
        for (name, value) in [
            ("ce_weight", config.ce_weight),
            ("scl_weight", config.scl_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SupconError::Config {
                    name,
                    value,
                    reason: "must be finite and >= 0",
                });
            }
        }
        Ok(Self {
            config,
            contrastive: BalancedSupConLoss::new(config.temperature, class_counts.len())?,
            classifier: LogitAdjustedCrossEntropy::from_class_counts(
                class_counts,
                config.tau,
                device,
            )?,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &BclConfig {
        &self.config
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.contrastive.num_classes()
    }

    /// `features: (B, V, D)` contrastive views, `labels: (B,)` in `0..C`, `prototypes: (C, D)`,
    /// `logits: (B, C)` of the classifier view (not logit-adjusted; the adjustment is added here).
    pub fn forward(
        &self,
        features: &Tensor,
        labels: &Tensor,
        prototypes: &Tensor,
        logits: &Tensor,
    ) -> Result<BclParts> {
        // The contrastive part validates features, labels and prototypes first.
        let scl = self.contrastive.forward(features, labels, prototypes)?;
        let b = features.dim(0)?;
        if logits.rank() != 2 || logits.dim(0)? != b {
            return Err(SupconError::Shape {
                what: "logits",
                expected: format!("({b}, {}) = (B, C)", self.num_classes()),
                got: logits.dims().to_vec(),
            });
        }
        let ce = self.classifier.forward(logits, labels)?;
        let total = ((&ce * self.config.ce_weight)? + (&scl * self.config.scl_weight)?)?;
        Ok(BclParts { total, ce, scl })
    }
}
