//! SPMix step (docs/method.md, steps 1-8).
//!
//! Foreground = the class-balanced batch (or the instance batch with `mix.foreground =
//! "instance"`), background = the other; the label is the foreground's. Per view v (query, key):
//! ratio `r_v (B, N)` from both images' saliency `(B, 1, S, S)` (lesion-aware, or the Table 2
//! ablation mode), tokens `E(x) (B, N, C)`, mixed `r (.) E(fg) + (1 - r) (.) E(bg)`. Query branch:
//! `encode` -> `q = l2norm(predictor(projector(f)))` `(B, D)`, logits `(B, C)`. Key branch: the
//! momentum network (EMA-updated first) on the key views mixed with their own ratio, or the query
//! encoder itself (`shared`, whose key logits join the anchors). Loss: PaCo over `[q; k; queue]`.

use candle_core::Tensor;
use dataset::loader::{LoadedStep as Step, ViewBatch};
use dataset::sampler::derive_seed;

use super::keys::key_branch;
use super::{l2_normalize, MixRatios, StepContext, StepOutput};
use crate::config::Foreground;

/// Seed tag of the ratio noise, so it never collides with the loader's streams.
const TAG_RATIO: u64 = 0x0053_504d_4958;

/// One SPMix step on a SPMix-mode loader step (instance and class-balanced batches, query and
/// key views each).
pub fn step(ctx: &StepContext, step: &Step) -> anyhow::Result<StepOutput> {
    let batches = step.spmix()?;
    let (fg, bg) = match ctx.cfg.mix.foreground {
        Foreground::Balanced => (batches.balanced, batches.instance),
        Foreground::Instance => (batches.instance, batches.balanced),
    };
    let (fg_views, bg_views) = (fg.view_pair()?, bg.view_pair()?);
    let y = fg.labels.to_device(ctx.device)?;
    let enc = ctx.query.encoder();

    let rq = ratio(ctx, fg_views.query, bg_views.query, View::Query)?;
    let tq = patchmix::patch_mix(
        &enc.embed_t(&fg_views.query.images.to_device(ctx.device)?, true)?,
        &enc.embed_t(&bg_views.query.images.to_device(ctx.device)?, true)?,
        &rq,
    )?;
    let fq = enc.encode(&tq)?;
    let (q, logits) = ctx.query.heads_t(&fq, true)?;
    let q = l2_normalize(&q)?;

    let rk = ratio(ctx, fg_views.key, bg_views.key, View::Key)?;
    let keys = key_branch(ctx, &q, &logits, &y, |embedder| {
        Ok(patchmix::patch_mix(
            &embedder.embed(&fg_views.key.images.to_device(ctx.device)?)?,
            &embedder.embed(&bg_views.key.images.to_device(ctx.device)?)?,
            &rk,
        )?)
    })?;
    Ok(StepOutput {
        loss: keys.loss,
        logits,
        labels: y.clone(),
        enqueue: Some((keys.keys, y)),
        ratios: Some(MixRatios { query: rq, key: rk }),
    })
}

/// Which view a ratio is drawn for (part of its noise seed).
#[derive(Debug, Clone, Copy)]
enum View {
    Query = 0,
    Key = 1,
}

/// `(B, N)` ratio of one view from the two batches' saliency `(B, 1, S, S)`; the noise seed
/// derives from (seed, epoch, step, view) so a resumed run draws the same noise.
fn ratio(ctx: &StepContext, fg: &ViewBatch, bg: &ViewBatch, view: View) -> anyhow::Result<Tensor> {
    let seed = ratio_seed(ctx.cfg.run.seed, ctx.epoch, ctx.step, view as usize);
    let sf = fg.saliency.to_device(ctx.device)?;
    let sb = bg.saliency.to_device(ctx.device)?;
    Ok(patchmix::mixing_ratio(
        ctx.cfg.mix.ratio_mode(),
        &sf,
        &sb,
        &ctx.cfg.mix.ratio_config(),
        seed,
    )?)
}

/// Seed of the ratio noise of view `view` (0 query, 1 key) in step `step` (0-based, within the
/// epoch) of epoch `epoch` (0-based) of a run seeded `run_seed`; `trainer visualize` draws with it.
pub fn ratio_seed(run_seed: u64, epoch: usize, step: usize, view: usize) -> u64 {
    derive_seed(&[run_seed, TAG_RATIO, epoch as u64, step as u64, view as u64])
}
