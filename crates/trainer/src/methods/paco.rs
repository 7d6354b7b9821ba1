//! PaCo step without mixing: the instance batch's query view `(B, 3, S, S)` through the query
//! network (`q = l2norm(predictor(projector(f)))`, logits), its key view through the key network
//! (EMA, after the momentum update) or the query encoder (`shared`), then the PaCo loss over
//! `[q; k; queue]`.

use dataset::loader::LoadedStep as Step;

use super::{l2_normalize, paco_loss, uses_ema, StepContext, StepOutput};

/// One PaCo step on batch 0 (the instance batch) of a SPMix-mode step.
pub fn step(ctx: &StepContext, step: &Step) -> anyhow::Result<StepOutput> {
    let batch = &step.batches[0];
    let qi = batch.views[0].images.to_device(ctx.device)?;
    let ki = batch.views[1].images.to_device(ctx.device)?;
    let y = batch.labels.to_device(ctx.device)?;
    let fq = ctx.query.encoder().forward_t(&qi, true)?;
    let (q, logits) = ctx.query.heads_t(&fq, true)?;
    let q = l2_normalize(&q)?;
    if uses_ema(ctx.cfg) {
        let key = ctx
            .key
            .ok_or_else(|| anyhow::anyhow!("EMA key network missing"))?;
        key.ema_update(ctx.query, ctx.cfg.method.momentum)?;
        let k = l2_normalize(&key.keys_t(&ki, true)?)?;
        let loss = paco_loss(ctx, &q, &k, &logits, &y)?;
        Ok(StepOutput {
            loss,
            logits,
            labels: y.clone(),
            enqueue: Some((k, y)),
            ratios: None,
        })
    } else {
        let fk = ctx.query.encoder().forward_t(&ki, true)?;
        let k = l2_normalize(&candle_core::ModuleT::forward_t(
            ctx.query.projector(),
            &fk,
            true,
        )?)?;
        let logits_k = ctx.query.classify(&fk)?;
        let z = candle_core::Tensor::cat(&[&logits, &logits_k], 0)?;
        let loss = paco_loss(ctx, &q, &k, &z, &y)?;
        Ok(StepOutput {
            loss,
            logits,
            labels: y.clone(),
            enqueue: Some((k.detach(), y)),
            ratios: None,
        })
    }
}
