//! BCL (Zhu et al. CVPR 2022, "Balanced Contrastive Learning for Long-Tailed Visual Recognition")
//! on the instance batch's two views.
//!
//! Both views `(B, 3, S, S)` go through the encoder in one batch of 2B (BatchNorm statistics over
//! both, as the authors concatenate their views) -> features `(2B, C_emb)`. Contrastive branch:
//! `l2norm(projector(f))` reshaped to `(B, 2, D)`. Class prototypes `(C, D)`:
//! `l2norm(prototype_head(W))` with `W (C, C_emb)` the classifier's weight and `prototype_head` a
//! twin of the projector with its own weights (the authors' `head_fc(fc.weight.T)`), so the
//! contrastive loss also shapes the classifier. Classifier branch: logits `(B, C)` of the first
//! view. Loss: `ce_weight * CE(logits + tau log prior) + scl_weight * BalSCL` ([`supcon::BclLoss`]),
//! the prior being the training set's class frequencies (the instance sampler's labels).
//!
//! Differences from the authors' code: the classifier is the model's linear head (theirs is a
//! cosine classifier with scale 30 by default, `--use-norm`); the CE logits come from the first
//! contrastive view (theirs from a third, weakly augmented view); the optimiser is the trainer's
//! AdamW with warm-up + cosine (theirs SGD).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use candle_core::{Device, ModuleT, Tensor, Var};
use candle_nn::VarMap;
use dataset::loader::LoadedStep as Step;
use dataset::sampler::derive_seed;
use model::{LoadOptions, MlpHead, QueryNetwork};
use serde::{Deserialize, Serialize};

use super::{l2_normalize, StepContext, StepOutput};

/// Seed tag of the prototype head's initial weights.
const TAG_PROTOTYPE_HEAD: u64 = 0x4243_4c50;

/// Checkpoint prefix of the prototype head's tensors.
pub const CHECKPOINT_PREFIX: &str = "bcl_head.";

/// `[bcl]`: BCL's loss weights; defaults are the authors' (`main.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BclSection {
    /// Weight of the logit-compensated cross-entropy (`--alpha`, 1.0).
    pub ce_weight: f64,
    /// Weight of the balanced supervised contrastive loss (`--beta`, 0.35).
    pub scl_weight: f64,
    /// Temperature of the contrastive loss (`--temp`, 0.07).
    pub temperature: f64,
    /// Scale of the log prior added to the logits in the CE (`LogitAdjust`'s tau, 1.0).
    pub tau: f64,
}

impl Default for BclSection {
    fn default() -> Self {
        let d = supcon::BclConfig::default();
        Self {
            ce_weight: d.ce_weight,
            scl_weight: d.scl_weight,
            temperature: d.temperature,
            tau: d.tau,
        }
    }
}

impl BclSection {
    /// The supcon loss parameters.
    pub fn loss(&self) -> supcon::BclConfig {
        supcon::BclConfig {
            ce_weight: self.ce_weight,
            scl_weight: self.scl_weight,
            temperature: self.temperature,
            tau: self.tau,
        }
    }

    /// Range checks; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (k, v, ok) in [
            ("bcl.ce_weight", self.ce_weight, self.ce_weight >= 0.0),
            ("bcl.scl_weight", self.scl_weight, self.scl_weight >= 0.0),
            ("bcl.temperature", self.temperature, self.temperature > 0.0),
            ("bcl.tau", self.tau, true),
        ] {
            if !(v.is_finite() && ok) {
                return Err(format!(
                    "{k} = {v}: must be finite (weights >= 0, temperature > 0)"
                ));
            }
        }
        Ok(())
    }
}

/// What a BCL run holds besides the query network: the prototype head and the loss.
pub struct BclState {
    head: MlpHead,
    varmap: VarMap,
    loss: supcon::BclLoss,
}

impl BclState {
    /// The prototype head (a twin of the projector, `[embed_dim, proj_hidden, proj_hidden,
    /// proj_dim]`) with seeded initial weights, and the loss with the training class counts.
    pub fn new(
        query: &QueryNetwork,
        section: &BclSection,
        class_counts: &[usize],
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let m = query.config();
        let varmap = VarMap::new();
        let (vb, laws) = model::init::recording_builder(&varmap, device);
        let head = MlpHead::projector(m.feature_dim(), m.proj_hidden, m.proj_dim, vb)?;
        // Laws under the names the variables carry in the optimiser and the checkpoint.
        let laws: model::InitLaws = laws
            .lock()
            .expect("init-law table poisoned")
            .iter()
            .map(|(k, law)| (format!("{CHECKPOINT_PREFIX}{k}"), *law))
            .collect();
        let state = Self {
            head,
            varmap,
            loss: supcon::BclLoss::from_class_counts(section.loss(), class_counts, device)?,
        };
        crate::init::seeded_init_vars(
            &laws,
            &state.trainable_vars(),
            derive_seed(&[seed, TAG_PROTOTYPE_HEAD]),
        )?;
        Ok(state)
    }

    /// The head's trainable variables as `bcl_head.<name>`, sorted (running statistics excluded).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("VarMap lock poisoned");
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| !model::layers::is_running_stat(n))
            .map(|(n, var)| (format!("{CHECKPOINT_PREFIX}{n}"), var.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Copies of every head tensor (running statistics included) as `bcl_head.<name>`.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let data = self.varmap.data().lock().expect("VarMap lock poisoned");
        data.iter()
            .map(|(n, v)| {
                Ok((
                    format!("{CHECKPOINT_PREFIX}{n}"),
                    v.as_detached_tensor().copy()?,
                ))
            })
            .collect()
    }

    /// Loads the head from a checkpoint's `bcl_head.*` tensors; every tensor must be there.
    pub fn load(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        let map: BTreeMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix(CHECKPOINT_PREFIX)
                    .map(|n| (n.to_string(), t.clone()))
            })
            .collect();
        model::loading::load_tensors(&self.varmap, &map, &LoadOptions::default(), origin)
            .with_context(|| format!("{origin}: BCL prototype head"))?;
        Ok(())
    }

    /// Prototypes `(C, proj_dim)`, l2-normalised, from the classifier weight `(C, F)`.
    fn prototypes(&self, query: &QueryNetwork) -> Result<Tensor> {
        let weight = classifier_weight(query)?;
        Ok(l2_normalize(&self.head.forward_t(&weight, true)?)?)
    }
}

/// The classifier's weight `(C, F)` (timm's `head.weight` / ResNet-50's `fc.weight`), with its
/// gradient path.
fn classifier_weight(query: &QueryNetwork) -> Result<Tensor> {
    // timm's name for the arch's classifier: `head.weight` (ViT), `fc.weight` (ResNet-50).
    let name = format!("{}weight", query.config().arch.classifier_prefix());
    let data = query.varmap().data().lock().expect("VarMap lock poisoned");
    let var = data
        .get(&name)
        .with_context(|| format!("the query network has no {name}"))?;
    Ok(var.as_tensor().clone())
}

/// One BCL step on batch 0 (the instance batch, query and key views) of a SPMix-mode step.
pub fn step(ctx: &StepContext, step: &Step) -> Result<StepOutput> {
    let bcl = ctx
        .bcl
        .context("method bcl without its prototype head and loss")?;
    let batch = step.spmix()?.instance;
    let views = batch.view_pair()?;
    let b = batch.labels.dim(0)?;
    let images =
        Tensor::cat(&[&views.query.images, &views.key.images], 0)?.to_device(ctx.device)?;
    let y = batch.labels.to_device(ctx.device)?;
    let f = ctx.query.encoder().forward_t(&images, true)?;
    let z = l2_normalize(&ctx.query.projector().forward_t(&f, true)?)?;
    let d = z.dim(1)?;
    // (2B, D) view-major -> (B, 2, D).
    let features = z.reshape((2, b, d))?.transpose(0, 1)?.contiguous()?;
    let logits = ctx.query.classify(&f.narrow(0, 0, b)?)?;
    let prototypes = bcl.prototypes(ctx.query)?;
    let parts = bcl.loss.forward(&features, &y, &prototypes, &logits)?;
    Ok(StepOutput::supervised(parts.total, logits, y))
}
