//! SPMix step (docs/method.md, steps 1-8).
//!
//! Foreground = the class-balanced batch (or the instance batch with `mix.foreground =
//! "instance"`), background = the other; the label is the foreground's. Per view v (query, key):
//! ratio `r_v (B, N)` from both images' saliency `(B, 1, S, S)` (lesion-aware, or the Table 2
//! ablation mode), tokens `E(x) (B, N, C)`, mixed `r (.) E(fg) + (1 - r) (.) E(bg)`. Query branch:
//! `encode` -> `q = l2norm(predictor(projector(f)))` `(B, D)`, logits `(B, C)`. Key branch: the
//! momentum network (EMA-updated first) on the key views mixed with their own ratio, or the query
//! encoder itself (`shared`, whose key logits join the anchors). Loss: PaCo over `[q; k; queue]`.

use candle_core::{ModuleT, Tensor};
use dataset::loader::{LoadedBatch, LoadedStep as Step};
use dataset::sampler::derive_seed;

use super::{l2_normalize, paco_loss, uses_ema, MixRatios, StepContext, StepOutput};
use crate::config::Foreground;

/// Seed tag of the ratio noise, so it never collides with the loader's streams.
const TAG_RATIO: u64 = 0x0053_504d_4958;

/// One SPMix step on a SPMix-mode loader step (`[instance, class-balanced]` x `[query, key]`).
pub fn step(ctx: &StepContext, step: &Step) -> anyhow::Result<StepOutput> {
    let (inst, bal) = (&step.batches[0], &step.batches[1]);
    let (fg, bg) = match ctx.cfg.mix.foreground {
        Foreground::Balanced => (bal, inst),
        Foreground::Instance => (inst, bal),
    };
    let y = fg.labels.to_device(ctx.device)?;
    let enc = ctx.query.encoder();

    let rq = ratio(ctx, fg, bg, 0)?;
    let tq = patchmix::patch_mix(
        &enc.embed_t(&images(ctx, fg, 0)?, true)?,
        &enc.embed_t(&images(ctx, bg, 0)?, true)?,
        &rq,
    )?;
    let fq = enc.encode_t(&tq, true)?;
    let (q, logits) = ctx.query.heads_t(&fq, true)?;
    let q = l2_normalize(&q)?;

    let rk = ratio(ctx, fg, bg, 1)?;
    if uses_ema(ctx.cfg) {
        let key = ctx
            .key
            .ok_or_else(|| anyhow::anyhow!("EMA key network missing"))?;
        key.ema_update(ctx.query, ctx.cfg.method.momentum)?;
        let tk = patchmix::patch_mix(
            &key.embed_t(&images(ctx, fg, 1)?, true)?,
            &key.embed_t(&images(ctx, bg, 1)?, true)?,
            &rk,
        )?;
        let k = l2_normalize(&key.keys_from_tokens_t(&tk, true)?)?;
        let loss = paco_loss(ctx, &q, &k, &logits, &y)?;
        Ok(StepOutput {
            loss,
            logits,
            labels: y.clone(),
            enqueue: Some((k, y)),
            ratios: Some(MixRatios { query: rq, key: rk }),
        })
    } else {
        let tk = patchmix::patch_mix(
            &enc.embed_t(&images(ctx, fg, 1)?, true)?,
            &enc.embed_t(&images(ctx, bg, 1)?, true)?,
            &rk,
        )?;
        let fk = enc.encode_t(&tk, true)?;
        let k = l2_normalize(&ctx.query.projector().forward_t(&fk, true)?)?;
        let z = Tensor::cat(&[&logits, &ctx.query.classify(&fk)?], 0)?;
        let loss = paco_loss(ctx, &q, &k, &z, &y)?;
        Ok(StepOutput {
            loss,
            logits,
            labels: y.clone(),
            enqueue: Some((k.detach(), y)),
            ratios: Some(MixRatios { query: rq, key: rk }),
        })
    }
}

fn images(ctx: &StepContext, b: &LoadedBatch, view: usize) -> anyhow::Result<Tensor> {
    Ok(b.views[view].images.to_device(ctx.device)?)
}

/// `(B, N)` ratio of view `view` from the two batches' saliency; the noise seed derives from
/// (seed, epoch, step, view) so a resumed run draws the same noise.
fn ratio(
    ctx: &StepContext,
    fg: &LoadedBatch,
    bg: &LoadedBatch,
    view: usize,
) -> anyhow::Result<Tensor> {
    let seed = derive_seed(&[
        ctx.cfg.run.seed,
        TAG_RATIO,
        ctx.epoch as u64,
        ctx.step as u64,
        view as u64,
    ]);
    let sf = fg.views[view].saliency.to_device(ctx.device)?;
    let sb = bg.views[view].saliency.to_device(ctx.device)?;
    Ok(patchmix::mixing_ratio(
        ctx.cfg.mix.ratio_mode(),
        &sf,
        &sb,
        &ctx.cfg.mix.ratio_config(),
        seed,
    )?)
}
