//! MiSLAS (Zhong et al. CVPR 2021, "Improving Calibration for Long-Tailed Recognition"): two stages
//! in one run.
//!
//! - Stage 1 (the first `run.epochs - mislas.stage2_epochs` epochs): the whole network with
//!   cross-entropy on mixup images from the instance sampler: `lam ~ Beta(a, a)`, a seeded
//!   permutation `pi` of the batch, images `lam x + (1 - lam) x[pi]` `(B, 3, S, S)`, loss
//!   `lam CE(z, y) + (1 - lam) CE(z, y[pi])`.
//! - Stage 2 (the last `mislas.stage2_epochs` epochs): the class-balanced sampler, no mixup; the
//!   backbone's weights are frozen (its features are detached, so only the classifier gets
//!   gradients) and the classifier is re-trained with label-aware smoothing
//!   ([`supcon::LabelAwareSmoothing`], per-class epsilon between `smooth_tail` and `smooth_head`).
//!   Shift learning on BatchNorm: the backbone runs in training mode, so its BatchNorm layers
//!   normalise with the batch statistics and their running statistics move to the class-balanced
//!   data (the authors' `shift_bn`: `model.train()` under `no_grad`). The learning rate restarts a
//!   cosine from `optim.lr * mislas.stage2_lr_scale` (no warm-up) over the stage-2 steps.
//!
//! Learnable weight scaling (the authors' `LearnableWeightScaling`, `mislas.logit_scale`, on by
//! default): the network carries a per-class scale `s` `(C,)` of the logits, 1 at the start and
//! unused in stage 1 (no gradient), trained with the classifier in stage 2; evaluation, prediction
//! and the timm export (which folds `s` into the classifier's rows) use `s * (W f + b)`.
//!
//! Difference from the authors' code: the trainer's AdamW continues across the stages (the
//! authors start a new SGD with a lower learning rate for the classifier and the scale); `s`
//! has no weight decay (rank 1, like the biases).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use dataset::loader::LoadedStep as Step;
use dataset::sampler::derive_seed;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};
use supcon::{LabelAwareSmoothing, SmoothingShape};

use super::{StepContext, StepOutput};

/// Seed tag of the mixup draws (lambda and permutation).
const TAG_MIXUP: u64 = 0x004d_4958_5550;

/// The shape of the per-class smoothing between the two bounds (the authors' `shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// `sin(x pi / 2)` of the normalised class count x (the authors' default).
    Concave,
    /// `x`.
    Linear,
    /// `1 + sin(3 pi / 2 + x pi / 2)`.
    Convex,
}

/// `[mislas]`: stage lengths, mixup and label-aware smoothing; defaults are the authors'
/// ImageNet-LT configs (`stage1_mixup`: alpha 0.2; `stage2_mislas`: 10 epochs, 0.3 / 0.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MislasSection {
    /// Epochs of stage 2 (classifier re-training); stage 1 is the rest of `run.epochs`.
    pub stage2_epochs: usize,
    /// Mixup's Beta(a, a) parameter in stage 1 (0 = no mixup).
    pub mixup_alpha: f64,
    /// Smoothing of the most frequent class, in [0, 1].
    pub smooth_head: f64,
    /// Smoothing of the rarest class, in [0, 1].
    pub smooth_tail: f64,
    /// How the smoothing grows with the class count.
    pub smooth_shape: Shape,
    /// Stage 2's peak learning rate as a multiple of `optim.lr`.
    pub stage2_lr_scale: f64,
    /// Learnable weight scaling: a per-class scale of the logits trained in stage 2.
    pub logit_scale: bool,
}

impl Default for MislasSection {
    fn default() -> Self {
        Self {
            stage2_epochs: 10,
            mixup_alpha: 0.2,
            smooth_head: 0.3,
            smooth_tail: 0.0,
            smooth_shape: Shape::Concave,
            stage2_lr_scale: 1.0,
            logit_scale: true,
        }
    }
}

impl MislasSection {
    /// Range checks (the stage split only when the method is MiSLAS); the message names the key.
    pub fn validate(&self, is_mislas: bool, run_epochs: usize) -> std::result::Result<(), String> {
        if is_mislas && !(1..run_epochs).contains(&self.stage2_epochs) {
            return Err(format!(
                "mislas.stage2_epochs = {}: must be at least 1 and below run.epochs = {run_epochs} \
                 (stage 1 is run.epochs - mislas.stage2_epochs epochs)",
                self.stage2_epochs
            ));
        }
        if !(self.mixup_alpha.is_finite() && self.mixup_alpha >= 0.0) {
            return Err(format!(
                "mislas.mixup_alpha = {}: must be >= 0 (0 = no mixup)",
                self.mixup_alpha
            ));
        }
        for (k, v) in [
            ("mislas.smooth_head", self.smooth_head),
            ("mislas.smooth_tail", self.smooth_tail),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{k} = {v}: must be in [0, 1]"));
            }
        }
        if !(self.stage2_lr_scale.is_finite() && self.stage2_lr_scale > 0.0) {
            return Err(format!(
                "mislas.stage2_lr_scale = {}: must be a positive number",
                self.stage2_lr_scale
            ));
        }
        Ok(())
    }

    /// The supcon smoothing shape.
    pub fn shape(&self) -> SmoothingShape {
        match self.smooth_shape {
            Shape::Concave => SmoothingShape::Concave,
            Shape::Linear => SmoothingShape::Linear,
            Shape::Convex => SmoothingShape::Convex,
        }
    }
}

/// What a MiSLAS run holds besides the query network: the stage split and stage 2's loss.
pub struct MislasState {
    /// Epochs of stage 1 (`run.epochs - mislas.stage2_epochs`).
    pub stage1_epochs: usize,
    smoothing: LabelAwareSmoothing,
}

impl MislasState {
    /// From the config and the training class counts.
    pub fn new(
        section: &MislasSection,
        run_epochs: usize,
        class_counts: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let smoothing = LabelAwareSmoothing::from_class_counts(
            class_counts,
            section.smooth_head,
            section.smooth_tail,
            section.shape(),
            device,
        )?;
        tracing::info!(
            "MiSLAS: {} epochs of stage 1, {} of stage 2; label-aware smoothing per class {:?}",
            run_epochs - section.stage2_epochs,
            section.stage2_epochs,
            smoothing
                .epsilons()
                .iter()
                .map(|e| (e * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
        Ok(Self {
            stage1_epochs: run_epochs - section.stage2_epochs,
            smoothing,
        })
    }

    /// Whether epoch `epoch` (0-based) is in stage 2.
    pub fn in_stage2(&self, epoch: usize) -> bool {
        epoch >= self.stage1_epochs
    }
}

/// One MiSLAS step on the loader's single baseline batch (instance sampler in stage 1,
/// class-balanced in stage 2).
pub fn step(ctx: &StepContext, step: &Step) -> Result<StepOutput> {
    let state = ctx
        .mislas
        .context("method mislas without its stage state")?;
    let batch = step.single()?;
    let images = batch.single_view()?.images.to_device(ctx.device)?;
    let labels = batch.labels.to_device(ctx.device)?;
    if state.in_stage2(ctx.epoch) {
        // Frozen backbone, BatchNorm in training mode (shift learning), classifier and logit
        // scale trained.
        let f = ctx.query.encoder().forward_t(&images, true)?.detach();
        let logits = ctx.query.classify(&f)?;
        let loss = state.smoothing.forward(&logits, &labels)?;
        return Ok(StepOutput::supervised(loss, logits, labels));
    }
    let alpha = ctx.cfg.mislas.mixup_alpha;
    if alpha == 0.0 {
        let f = ctx.query.encoder().forward_t(&images, true)?;
        let logits = ctx.query.classify_unscaled(&f)?;
        let loss = supcon::cross_entropy(&logits, &labels)?;
        return Ok(StepOutput::supervised(loss, logits, labels));
    }
    let b = labels.dim(0)?;
    let (lam, perm) = mixup_draw(ctx, alpha, b)?;
    let perm = Tensor::from_vec(perm, b, ctx.device)?;
    let mixed = ((&images * lam)? + (images.index_select(&perm, 0)? * (1.0 - lam))?)?;
    let other = labels.index_select(&perm, 0)?;
    let f = ctx.query.encoder().forward_t(&mixed, true)?;
    let logits = ctx.query.classify_unscaled(&f)?;
    let loss = ((supcon::cross_entropy(&logits, &labels)? * lam)?
        + (supcon::cross_entropy(&logits, &other)? * (1.0 - lam))?)?;
    // Training accuracy against the label that dominates the mix.
    let scored = if lam >= 0.5 { labels } else { other };
    Ok(StepOutput::supervised(
        loss,
        logits,
        scored.to_dtype(DType::U32)?,
    ))
}

/// `lam ~ Beta(alpha, alpha)` and a permutation of `0..b`, seeded by (seed, epoch, step) so a
/// resumed run draws the same.
fn mixup_draw(ctx: &StepContext, alpha: f64, b: usize) -> Result<(f64, Vec<u32>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(&[
        ctx.cfg.run.seed,
        TAG_MIXUP,
        ctx.epoch as u64,
        ctx.step as u64,
    ]));
    let beta = rand_distr::Beta::new(alpha, alpha)
        .map_err(|e| anyhow::anyhow!("mislas.mixup_alpha = {alpha}: {e}"))?;
    let lam: f64 = beta.sample(&mut rng);
    if !lam.is_finite() {
        bail!("mixup drew lambda = {lam} (mislas.mixup_alpha = {alpha})");
    }
    let mut perm: Vec<u32> = (0..b as u32).collect();
    perm.shuffle(&mut rng);
    Ok((lam, perm))
}
