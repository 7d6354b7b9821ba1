//! PaCo step without mixing: the instance batch's query view `(B, 3, S, S)` through the query
//! network (`q = l2norm(predictor(projector(f)))`, logits), its key view through the key branch
//! ([`super::keys`]), then the PaCo loss over `[q; k; queue]`.

use dataset::loader::LoadedStep as Step;

use super::keys::key_branch;
use super::{l2_normalize, StepContext, StepOutput};

/// One PaCo step on the instance batch of a SPMix-mode step.
pub fn step(ctx: &StepContext, step: &Step) -> anyhow::Result<StepOutput> {
    let batch = step.spmix()?.instance;
    let views = batch.view_pair()?;
    let qi = views.query.images.to_device(ctx.device)?;
    let ki = views.key.images.to_device(ctx.device)?;
    let y = batch.labels.to_device(ctx.device)?;
    let fq = ctx.query.encoder().forward_t(&qi, true)?;
    let (q, logits) = ctx.query.heads_t(&fq, true)?;
    let q = l2_normalize(&q)?;
    let keys = key_branch(ctx, &q, &logits, &y, |embedder| Ok(embedder.embed(&ki)?))?;
    Ok(StepOutput {
        loss: keys.loss,
        logits,
        labels: y.clone(),
        enqueue: Some((keys.keys, y)),
        ratios: None,
    })
}
