//! Label-aware smoothing (MiSLAS, Zhong et al. CVPR 2021), as the authors' `LabelAwareSmoothing`
//! (dvlab-research/MiSLAS, `methods.py`) computes it.
//!
//! Each class c gets its own smoothing `eps_c` from its training count `n_c`: frequent (over-confident)
//! classes are smoothed more. With `x_c = (n_c - n_K) / (n_1 - n_K)` in [0, 1] (`n_1` the largest,
//! `n_K` the smallest count), `h` = `smooth_head`, `t` = `smooth_tail`:
//! ```text
//! concave: eps_c = t + (h - t) * sin(x_c * pi / 2)
//! linear:  eps_c = t + (h - t) * x_c
//! convex:  eps_c = h + (h - t) * sin(3 pi / 2 + x_c * pi / 2)
//! exp(p):  eps_c = t + (h - t) * x_c^p
//! ```
//! (every shape gives `t` at the rarest class and `h` at the most frequent). The loss on
//! `logits: (N, C)`, `labels: (N,)` in `0..C`, with `logp = log_softmax(logits)`:
//! ```text
//! loss = mean_i( (1 - eps_{y_i}) * (-logp_{i, y_i}) + eps_{y_i} * mean_c(-logp_{i, c}) )
//! ```
//! If every class has the same count the reference divides 0 by 0 (NaN); here every class is then
//! the most frequent one and gets `h`.
//!
//! The rest of MiSLAS is the trainer's: stage 1 trains the whole network with mixup
//! (`lam ~ Beta(a, a)`, `x = lam x_i + (1 - lam) x_j`, loss `lam L(y_i) + (1 - lam) L(y_j)`) on the
//! instance-balanced sampler; stage 2 freezes the backbone's weights and re-trains the classifier with
//! this loss on the class-balanced sampler, together with a learnable per-class logit scale
//! (`LearnableWeightScaling`, `(1, C)` initialised to 1) and "shift learning on BatchNorm": the
//! backbone runs in train mode under no-grad, so only the BatchNorm running statistics move to the
//! class-balanced data.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use supcon::{LabelAwareSmoothing, SmoothingShape};
//! let las = LabelAwareSmoothing::from_class_counts(&[100, 10, 1], 0.3, 0.0, SmoothingShape::Linear, &Device::Cpu)?;
//! assert_eq!(las.epsilons()[0], 0.3);
//! assert_eq!(las.epsilons()[2], 0.0);
//! let z = Tensor::new(&[[2f32, 0., -1.]], &Device::Cpu)?;
//! let loss = las.forward(&z, &Tensor::new(&[1u32], &Device::Cpu)?)?;
//! assert!(loss.to_scalar::<f32>()? > 0.0);
//! # Ok::<(), supcon::SupconError>(())
//! ```

use candle_core::{Device, Tensor, D};

use crate::ce::log_softmax;
use crate::error::{Result, SupconError};
use crate::util::{check_class_range, check_float, labels_u32, one_hot};

/// How the smoothing grows from the rarest to the most frequent class (the authors' `shape`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SmoothingShape {
    /// `sin(x pi / 2)`: rises fast from the tail (the authors' default).
    #[default]
    Concave,
    /// `x`.
    Linear,
    /// `1 + sin(3 pi / 2 + x pi / 2)`: rises slowly from the tail.
    Convex,
    /// `x^power`, `power > 0`.
    Exp {
        /// The exponent.
        power: f64,
    },
}

/// The label-aware smoothing cross-entropy. See the module docs.
#[derive(Debug, Clone)]
pub struct LabelAwareSmoothing {
    /// `eps_c` per class, `(C,)`.
    epsilons: Vec<f64>,
    /// The same as a `(C,)` f64 tensor on the loss's device; cast to the logits' dtype per call.
    epsilon_table: Tensor,
}

impl LabelAwareSmoothing {
    /// From the training class counts `n_c` (C = its length) and the bounds `smooth_head`
    /// (most frequent class, MiSLAS: 0.3 for CIFAR/ImageNet-LT) and `smooth_tail` (rarest, 0.0),
    /// each in [0, 1].
    pub fn from_class_counts(
        class_counts: &[usize],
        smooth_head: f64,
        smooth_tail: f64,
        shape: SmoothingShape,
        device: &Device,
    ) -> Result<Self> {
        for (name, value) in [("smooth_head", smooth_head), ("smooth_tail", smooth_tail)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SupconError::Config {
                    name,
                    value,
                    reason: "must be in [0, 1]",
                });
            }
        }
        if let SmoothingShape::Exp { power } = shape {
            if !(power.is_finite() && power > 0.0) {
                return Err(SupconError::Config {
                    name: "power",
                    value: power,
                    reason: "must be finite and > 0",
                });
            }
        }
        let (Some(&n_1), Some(&n_k)) = (class_counts.iter().max(), class_counts.iter().min())
        else {
            return Err(SupconError::Config {
                name: "class_counts",
                value: 0.0,
                reason: "needs at least one class",
            });
        };
        let (h, t) = (smooth_head, smooth_tail);
        let half_pi = std::f64::consts::FRAC_PI_2;
        let epsilons = class_counts
            .iter()
            .map(|&n| {
                if n_1 == n_k {
                    return h;
                }
                let x = (n - n_k) as f64 / (n_1 - n_k) as f64;
                match shape {
                    SmoothingShape::Concave => t + (h - t) * (x * half_pi).sin(),
                    SmoothingShape::Linear => t + (h - t) * x,
                    SmoothingShape::Convex => h + (h - t) * (3.0 * half_pi + x * half_pi).sin(),
                    SmoothingShape::Exp { power } => t + (h - t) * x.powf(power),
                }
            })
            .collect::<Vec<f64>>();
        let epsilon_table = Tensor::from_slice(&epsilons, epsilons.len(), device)?;
        Ok(Self {
            epsilons,
            epsilon_table,
        })
    }

    /// The per-class smoothing `eps_c`, `(C,)`.
    pub fn epsilons(&self) -> &[f64] {
        &self.epsilons
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.epsilons.len()
    }

    /// Mean smoothed cross-entropy of `logits: (N, C)` against `labels: (N,)` in `0..C`. Scalar of
    /// the logits' dtype.
    pub fn forward(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        check_float(logits, "logits")?;
        let c = self.num_classes();
        let n = match logits.dims() {
            &[n, cc] if cc == c && n >= 1 => n,
            got => {
                return Err(SupconError::Shape {
                    what: "logits",
                    expected: format!("(N, {c}) with N >= 1"),
                    got: got.to_vec(),
                })
            }
        };
        let labels = labels_u32(labels, "labels", n)?;
        check_class_range(&labels, "labels", c)?;
        let dtype = logits.dtype();
        let eps = self
            .epsilon_table
            .to_device(logits.device())?
            .to_dtype(dtype)?
            .index_select(&labels, 0)?;
        let log_prob = log_softmax(logits)?;
        let nll = (one_hot(&labels, c, dtype)? * &log_prob)?
            .sum(D::Minus1)?
            .neg()?;
        let uniform = log_prob.mean(D::Minus1)?.neg()?;
        let per_row = ((eps.affine(-1.0, 1.0)? * nll)? + (eps * uniform)?)?;
        Ok(per_row.mean_all()?)
    }
}
