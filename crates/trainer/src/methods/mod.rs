//! One training step per method. Each step takes the loader's [`dataset::loader::LoadedStep`] and returns
//! the loss (a scalar with its graph) plus what the loop needs afterwards; the loop owns backward,
//! clipping, the optimiser and the queue update.
//!
//! - [`ce`]: cross-entropy on one batch `(B, 3, S, S)` (instance or class-balanced sampler);
//! - [`paco`]: PaCo on the instance batch's query and key views, no mixing;
//! - [`spmix`]: SPMix (docs/method.md, steps 1-8): tokens of the instance and class-balanced batches
//!   mixed patch-wise with the lesion-aware ratio `(B, N)`, then PaCo;
//! - [`mislas`]: MiSLAS's two stages (mixup + CE, then classifier re-training with label-aware
//!   smoothing and BatchNorm shift on the class-balanced sampler);
//! - [`bcl`]: BCL (balanced contrastive loss with class prototypes + logit-compensated CE).

pub mod bcl;
pub mod ce;
pub mod keys;
pub mod mislas;
pub mod paco;
pub mod spmix;

use std::collections::HashMap;

use candle_core::{Device, Tensor, D};
use model::{ModelConfig, MomentumKeyNetwork, QueryNetwork};
use supcon::{LabelledQueue, PacoLoss};

use crate::config::{Config, KeyNetwork, MethodName};

/// The query network a run of `cfg` trains: with MiSLAS's learnable per-class logit scale when
/// the method is `mislas` and `mislas.logit_scale` is on, else the plain network.
pub fn query_network(cfg: &Config, device: &Device) -> model::Result<QueryNetwork> {
    if cfg.method.name == MethodName::Mislas && cfg.mislas.logit_scale {
        QueryNetwork::with_logit_scale(&cfg.model, device)
    } else {
        QueryNetwork::new(&cfg.model, device)
    }
}

/// The query network that a checkpoint's `tensors` (query network under `query.`) fill: with a
/// logit scale exactly when they hold one (so runs written before MiSLAS had it still evaluate,
/// predict and export).
pub fn query_network_for(
    model: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> model::Result<QueryNetwork> {
    let scale = format!(
        "{}{}",
        crate::checkpoint::QUERY_PREFIX,
        model::network::logit_scale_name(model.arch)
    );
    if tensors.contains_key(&scale) {
        QueryNetwork::with_logit_scale(model, device)
    } else {
        QueryNetwork::new(model, device)
    }
}

/// The networks and losses a step uses.
pub struct StepContext<'a> {
    pub cfg: &'a Config,
    pub device: &'a Device,
    pub query: &'a QueryNetwork,
    /// The momentum key network (`key_network = "ema"` with a contrastive method).
    pub key: Option<&'a MomentumKeyNetwork>,
    /// The queue of past keys (contrastive methods).
    pub queue: Option<&'a LabelledQueue>,
    pub paco: Option<&'a PacoLoss>,
    /// BCL's prototype head and loss (method `bcl`).
    pub bcl: Option<&'a bcl::BclState>,
    /// MiSLAS's stage split and stage-2 loss (method `mislas`).
    pub mislas: Option<&'a mislas::MislasState>,
    pub epoch: usize,
    pub step: usize,
}

/// What a step produced.
pub struct StepOutput {
    /// Scalar loss, with its graph.
    pub loss: Tensor,
    /// `(B, C)` logits of the (mixed) query images, for the training accuracy.
    pub logits: Tensor,
    /// `(B,)` u32 labels the logits are scored against.
    pub labels: Tensor,
    /// Keys `(B', D)` and labels `(B',)` to enqueue after the update.
    pub enqueue: Option<(Tensor, Tensor)>,
    /// The mixing ratios the step used (SPMix only), for tracing.
    pub ratios: Option<MixRatios>,
}

impl StepOutput {
    /// The output of a step that only trains against labels (nothing to enqueue, no mixing
    /// ratios): `loss` scalar, `logits` `(B, C)`, `labels` `(B,)` u32.
    pub fn supervised(loss: Tensor, logits: Tensor, labels: Tensor) -> Self {
        Self {
            loss,
            logits,
            labels,
            enqueue: None,
            ratios: None,
        }
    }
}

/// SPMix's per-view mixing ratios, each `(B, N)`: the foreground's share of every token.
#[derive(Debug, Clone)]
pub struct MixRatios {
    /// Ratio of the query views.
    pub query: Tensor,
    /// Ratio of the key views.
    pub key: Tensor,
}

/// Rows scaled to unit l2 norm: `(B, D)` -> `(B, D)`.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-12)?;
    x.broadcast_div(&norm)
}

/// PaCo on queries `q (B, D)` (normalised), keys `k (B, D)` (normalised), centre logits
/// `z (N, C)` (N = B with an EMA key network, 2B shared) and labels `y (B,)`, against the queue.
pub fn paco_loss(
    ctx: &StepContext,
    q: &Tensor,
    k: &Tensor,
    z: &Tensor,
    y: &Tensor,
) -> anyhow::Result<Tensor> {
    let queue = ctx
        .queue
        .ok_or_else(|| anyhow::anyhow!("contrastive method without a queue"))?;
    let paco = ctx
        .paco
        .ok_or_else(|| anyhow::anyhow!("contrastive method without a PaCo loss"))?;
    let f = Tensor::cat(&[q, k, queue.keys()], 0)?;
    let labels = Tensor::cat(&[y, y, queue.labels()], 0)?;
    Ok(paco.forward(&f, &labels, z)?)
}

/// Whether keys come from the momentum network.
pub fn uses_ema(cfg: &Config) -> bool {
    cfg.method.key_network == KeyNetwork::Ema
}
