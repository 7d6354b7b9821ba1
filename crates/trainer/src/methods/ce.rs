//! Cross-entropy step (methods `ce` and `ce-resample`; the sampler is the loader's business):
//! images `(B, 3, S, S)` -> features `(B, C_emb)` -> logits `(B, C)` -> mean cross-entropy.

use dataset::loader::LoadedStep as Step;

use super::{StepContext, StepOutput};

/// One cross-entropy step on the loader's single baseline batch.
pub fn step(ctx: &StepContext, step: &Step) -> anyhow::Result<StepOutput> {
    let batch = step.single()?;
    let images = batch.single_view()?.images.to_device(ctx.device)?;
    let labels = batch.labels.to_device(ctx.device)?;
    let f = ctx.query.encoder().forward_t(&images, true)?;
    let logits = ctx.query.classify(&f)?;
    let loss = supcon::cross_entropy(&logits, &labels)?;
    Ok(StepOutput::supervised(loss, logits, labels))
}
