//! The key branch of the contrastive methods (PaCo, SPMix), written once: keys `(B, D)` from the
//! momentum key network (EMA-updated first; keys and their tokens detached) or from the query
//! encoder itself (`key_network = "shared"`: gradients flow, and the key views' logits join the
//! anchors' centre logits, GPaCo's 2B anchors). The methods differ only in the key tokens they
//! feed in: PaCo embeds the key views, SPMix mixes two batches' key-view tokens.

use candle_core::{ModuleT, Tensor};
use model::{MomentumKeyNetwork, QueryNetwork};

use super::{l2_normalize, paco_loss, uses_ema, StepContext};

/// The network whose token embedding makes the key tokens.
pub enum KeyEmbedder<'a> {
    /// The momentum copy (its tokens are detached).
    Momentum(&'a MomentumKeyNetwork),
    /// The query encoder (with gradients).
    Query(&'a QueryNetwork),
}

impl KeyEmbedder<'_> {
    /// Patch tokens `(B, N, C)` of images `(B, 3, S, S)` in training mode.
    pub fn embed(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Momentum(key) => key.embed_t(images, true),
            Self::Query(query) => query.encoder().embed_t(images, true),
        }
    }
}

/// The PaCo loss and the keys to enqueue.
pub struct KeyBranch {
    /// Scalar loss, with its graph.
    pub loss: Tensor,
    /// Normalised keys `(B, D)` (detached) to enqueue with the foreground labels.
    pub keys: Tensor,
}

/// Runs the key branch: `key_tokens` gets the embedder of the configured key network and returns
/// key tokens `(B, N, C)`; `q` are the normalised queries `(B, D)`, `logits` the query logits
/// `(B, C)`, `y` the labels `(B,)`.
pub fn key_branch(
    ctx: &StepContext,
    q: &Tensor,
    logits: &Tensor,
    y: &Tensor,
    key_tokens: impl FnOnce(&KeyEmbedder) -> anyhow::Result<Tensor>,
) -> anyhow::Result<KeyBranch> {
    if uses_ema(ctx.cfg) {
        let key = ctx
            .key
            .ok_or_else(|| anyhow::anyhow!("EMA key network missing"))?;
        key.ema_update(ctx.query, ctx.cfg.method.momentum)?;
        let tokens = key_tokens(&KeyEmbedder::Momentum(key))?;
        let k = l2_normalize(&key.keys_from_tokens_t(&tokens, true)?)?;
        let loss = paco_loss(ctx, q, &k, logits, y)?;
        Ok(KeyBranch { loss, keys: k })
    } else {
        let tokens = key_tokens(&KeyEmbedder::Query(ctx.query))?;
        let fk = ctx.query.encoder().encode(&tokens)?;
        let k = l2_normalize(&ctx.query.projector().forward_t(&fk, true)?)?;
        let z = Tensor::cat(&[logits, &ctx.query.classify(&fk)?], 0)?;
        let loss = paco_loss(ctx, q, &k, &z, y)?;
        Ok(KeyBranch {
            loss,
            keys: k.detach(),
        })
    }
}
