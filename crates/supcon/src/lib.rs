//! Supervised contrastive losses for candle, with backward through candle's autograd.
//!
//! - [`SupConLoss`]: SupCon (Khosla et al. 2020), as SupContrast's `SupConLoss`; features `(B, V, D)`.
//! - [`PacoLoss`]: PaCo in the GPaCo form (class-centre logits + contrast over `[q; k; queue]`,
//!   logit-adjusted by the class prior); features `(M, D)`, centre logits `(N, C)`.
//! - [`LabelledQueue`]: ring buffer of K keys `(K, D)` with their labels, checkpointable.
//! - [`cross_entropy`], [`LogitAdjustedCrossEntropy`] (balanced softmax at `tau = 1`) for baselines.
//! - [`BclLoss`]: BCL (Zhu et al. 2022): [`BalancedSupConLoss`] over views `(B, V, D)` and class
//!   prototypes `(C, D)` (class-averaging, class-complement) + logit-compensated CE on `(B, C)`.
//! - [`LabelAwareSmoothing`]: MiSLAS's (Zhong et al. 2021) per-class label smoothing of CE on `(N, C)`.
//!
//! Every loss returns a scalar tensor of the input float dtype, built only from ops that have a
//! backward (no fused softmax), with stop-gradient on the row-max shifts. Labels are integer tensors
//! (u32, i64 or u8; used as u32). Parity with the PyTorch reference formulations is tested on
//! fixtures written by `scripts/make_fixtures.py`.
//!
//! One PaCo step with a shared encoder (N = 2B anchors):
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use supcon::{LabelledQueue, PacoConfig, PacoLoss, QueueInit};
//! let (dev, b, d, c) = (Device::Cpu, 4, 8, 3);
//! let paco = PacoLoss::from_class_counts(PacoConfig::default(), &[50, 20, 5], &dev)?;
//! let mut queue = LabelledQueue::new(16, d, QueueInit::Unlabelled, 0, DType::F32, &dev)?;
//! let unit = |t: Tensor| t.broadcast_div(&t.sqr()?.sum_keepdim(1)?.sqrt()?);
//! let (q, k) = (unit(Tensor::randn(0f32, 1., (b, d), &dev)?)?, unit(Tensor::randn(0f32, 1., (b, d), &dev)?)?);
//! let y = Tensor::new(&[0u32, 1, 2, 0], &dev)?;
//! let z = Tensor::randn(0f32, 1., (2 * b, c), &dev)?; // [logits_q; logits_k]
//! let f = Tensor::cat(&[&q, &k, queue.keys()], 0)?;
//! let labels = Tensor::cat(&[&y, &y, queue.labels()], 0)?;
//! let loss = paco.forward(&f, &labels, &z)?;
//! queue.enqueue(&k, &y)?;
//! assert!(loss.to_scalar::<f32>()?.is_finite());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bcl;
mod ce;
mod error;
mod label_aware_smoothing;
mod paco;
mod queue;
mod supcon;
mod util;

pub use bcl::{BalancedSupConLoss, BclConfig, BclLoss, BclParts};
pub use ce::{cross_entropy, log_softmax, LogitAdjustedCrossEntropy};
pub use error::{Result, SupconError};
pub use label_aware_smoothing::{LabelAwareSmoothing, SmoothingShape};
pub use paco::{PacoConfig, PacoLoss};
pub use queue::{LabelledQueue, QueueInit};
pub use supcon::{ContrastMode, NoPositive, SupConLoss};
pub use util::log_prior;
