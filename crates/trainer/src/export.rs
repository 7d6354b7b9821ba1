//! `trainer export`: a run's query encoder and classifier as a timm state dict, and the
//! preprocessing facts the model needs, so the model runs outside this project (docs/export.md).
//!
//! `model.safetensors` holds exactly the tensors of timm's `VisionTransformer` with a `HybridEmbed`
//! ResNet-D trunk (timm's `vit_small_resnet50d_s16_224` for the paper's sizes): `cls_token`,
//! `pos_embed`, `patch_embed.backbone.*` (stem and stages 1-3), `patch_embed.proj.*`, `blocks.*`,
//! `norm.*` and the classifier `head.*`, all `F32`, plus timm's `num_batches_tracked` (`I64`
//! scalars, 0: this project does not count BatchNorm updates and timm uses the count only when a
//! BatchNorm has `momentum=None`). The model crate names its variables as timm does, so no tensor
//! is renamed or reshaped. Left out: the projector and predictor (contrastive heads), the momentum
//! key network, the optimiser state and the PaCo/SPMix queue.
//!
//! `preprocess.json` ([`Preprocess`]) sits next to it: image size, evaluation resize, mean, std
//! (the ISIC statistics the model was trained with, not ImageNet's), class order and the model's
//! sizes, taken from the run's config through the same functions evaluation and `predict` use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use model::{ModelConfig, QueryNetwork};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Which;
use crate::config::Config;

/// File name of the preprocessing facts, written next to the exported weights.
pub const PREPROCESS_FILE: &str = "preprocess.json";
/// Version of the `preprocess.json` layout.
pub const PREPROCESS_SCHEMA_VERSION: u32 = 1;
/// timm's registered name of the paper's architecture.
pub const TIMM_ARCHITECTURE: &str = "vit_small_resnet50d_s16_224";
/// timm's registered name of the ResNet-50 backbone (`model.arch = "resnet50"`).
pub const TIMM_RESNET50: &str = "resnet50d";
/// Name prefixes of the query network that are not part of the exported classifier.
pub const CONTRASTIVE_HEAD_PREFIXES: [&str; 2] = ["projector.", "predictor."];

/// How an image becomes the model's input `(1, 3, image_size, image_size)`, what comes out, and
/// where the weights came from. Serialised as `preprocess.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// [`PREPROCESS_SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// Side of the square model input in pixels (the centre crop).
    pub image_size: usize,
    /// The shorter side is resized to this many pixels before the centre crop:
    /// `round(image_size * eval_resize_ratio)`.
    pub eval_resize: u32,
    /// `data.eval_resize_ratio` of the run (paper: 256 / 224).
    pub eval_resize_ratio: f64,
    /// timm's `crop_pct` of the same transform: `image_size / eval_resize`.
    pub crop_pct: f64,
    /// `bilinear`: an antialiased (PIL-style convolution) bilinear resampling.
    pub interpolation: String,
    /// How resize and crop are done; see docs/export.md for the exact Python equivalent.
    pub resize_method: String,
    /// Pixels are RGB bytes divided by 255, then `(x - mean) / std` per channel.
    pub mean: [f32; 3],
    /// See `mean`.
    pub std: [f32; 3],
    /// Class of each logit, in order.
    pub class_order: Vec<String>,
    /// What the model outputs: `logits` (softmax gives the class probabilities).
    pub output: String,
    /// timm's registered architecture when the sizes are the paper's, else `null` (build it from
    /// `model`; docs/export.md shows how).
    pub timm_model: Option<String>,
    /// The network's sizes (the run's `[model]`; projector sizes are not in the export).
    pub model: ModelConfig,
    /// The run and checkpoint the weights come from.
    pub source: ExportSource,
}

/// Provenance of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportSource {
    /// Run name (from `run.json`).
    pub run_name: String,
    /// `best` or `last`.
    pub checkpoint: String,
    /// Epochs finished when the checkpoint was written.
    pub epoch: usize,
    /// Optimiser steps done when the checkpoint was written.
    pub global_step: u64,
    /// Training method.
    pub method: String,
    /// Code revision that trained the run.
    pub git_revision: String,
}

/// The preprocessing of `cfg` exactly as evaluation applies it ([`crate::augment::augment_config`]).
pub fn preprocess_facts(cfg: &Config, source: ExportSource) -> Preprocess {
    let aug = crate::augment::augment_config(cfg);
    Preprocess {
        schema_version: PREPROCESS_SCHEMA_VERSION,
        image_size: cfg.model.image_size,
        eval_resize: aug.eval.resize,
        eval_resize_ratio: cfg.data.eval_resize_ratio,
        crop_pct: aug.eval.crop as f64 / aug.eval.resize as f64,
        interpolation: "bilinear".into(),
        resize_method:
            "one antialiased bilinear resampling of the source rectangle that \
                        `resize(shorter side = eval_resize)` then `centre_crop(image_size)` keeps \
                        (torchvision sizes: long side truncated, crop offsets rounded half to even)"
                .into(),
        mean: aug.normalization.mean,
        std: aug.normalization.std,
        class_order: dataset::IsicClass::ALL
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        output: "logits".into(),
        timm_model: timm_model_name(&cfg.model).map(str::to_string),
        model: cfg.model.clone(),
        source,
    }
}

/// Whether `m` has the sizes of timm's [`TIMM_ARCHITECTURE`] (any class count).
pub fn is_timm_architecture(m: &ModelConfig) -> bool {
    let full = ModelConfig::full();
    m.arch == full.arch
        && m.trunk_layers == full.trunk_layers
        && m.trunk_channels == full.trunk_channels
        && m.stem_width == full.stem_width
        && m.embed_dim == full.embed_dim
        && m.depth == full.depth
        && m.num_heads == full.num_heads
        && m.mlp_ratio == full.mlp_ratio
        && m.image_size == full.image_size
}

/// timm's registered name of a model with `m`'s sizes (any class count): [`TIMM_ARCHITECTURE`] or
/// [`TIMM_RESNET50`]; `None` for other sizes (the export still loads into timm's classes built
/// with these sizes, see docs/export.md).
pub fn timm_model_name(m: &ModelConfig) -> Option<&'static str> {
    let r = ModelConfig::resnet50();
    if is_timm_architecture(m) {
        Some(TIMM_ARCHITECTURE)
    } else if m.arch == r.arch
        && m.trunk_layers == r.trunk_layers
        && m.trunk_channels == r.trunk_channels
        && m.stem_width == r.stem_width
    {
        Some(TIMM_RESNET50)
    } else {
        None
    }
}

/// The exported state dict of `query`: every variable except the contrastive heads, as `F32` on
/// the CPU, plus an `I64` scalar `num_batches_tracked = 0` beside each BatchNorm's `running_mean`.
/// A per-class logit scale `s` (MiSLAS) is folded into the classifier, whose rows become
/// `s_k W_k` and `s_k b_k`, so timm's plain linear head gives the same logits.
pub fn timm_state_dict(query: &QueryNetwork) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = query.tensors()?;
    if let Some(scale_name) = query.logit_scale_name() {
        let scale = tensors
            .remove(&scale_name)
            .with_context(|| format!("the network has no {scale_name} tensor"))?;
        let prefix = query.config().arch.classifier_prefix();
        for part in ["weight", "bias"] {
            let name = format!("{prefix}{part}");
            let t = tensors
                .get(&name)
                .with_context(|| format!("the network has no {name} tensor"))?;
            let s = if t.rank() == 2 {
                scale.unsqueeze(1)?
            } else {
                scale.clone()
            };
            let folded = t.broadcast_mul(&s)?;
            tensors.insert(name, folded);
        }
    }
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        if CONTRASTIVE_HEAD_PREFIXES
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        if let Some(bn) = name.strip_suffix(".running_mean") {
            out.insert(
                format!("{bn}.num_batches_tracked"),
                Tensor::new(0i64, &Device::Cpu)?,
            );
        }
        let t = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        out.insert(name, t);
    }
    Ok(out)
}

/// What [`export_run`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The weights file.
    pub model_path: PathBuf,
    /// `preprocess.json` beside it.
    pub preprocess_path: PathBuf,
    /// Tensors in the weights file.
    pub tensors: usize,
    /// Values in the `F32` tensors (parameters and BatchNorm running statistics).
    pub elements: usize,
    /// The facts written to `preprocess.json`.
    pub preprocess: Preprocess,
}

/// `preprocess.json` in the folder of `model_path`.
pub fn preprocess_path_for(model_path: &Path) -> PathBuf {
    match model_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(PREPROCESS_FILE),
        _ => PathBuf::from(PREPROCESS_FILE),
    }
}

/// Exports the `which` checkpoint of the run in `run` to `out` (safetensors) and
/// `preprocess.json` beside it. Existing files are refused unless `overwrite`; both are checked
/// before anything is written. Each file is written atomically (temporary file, then rename); the
/// folder of `out` is created when missing.
pub fn export_run(run: &Path, which: Which, out: &Path, overwrite: bool) -> Result<ExportSummary> {
    let pp_path = preprocess_path_for(out);
    if out.file_name().and_then(|n| n.to_str()) == Some(PREPROCESS_FILE) {
        bail!(
            "--out {}: that name is taken by the preprocessing file written beside the weights; \
             choose e.g. model.safetensors",
            out.display()
        );
    }
    if !overwrite {
        for p in [out, pp_path.as_path()] {
            if p.exists() {
                bail!(
                    "{} exists; choose another --out or pass --force to replace it",
                    p.display()
                );
            }
        }
    }
    let (cfg, info, query, state, _) =
        crate::evaluate_run::load_run_network(run, which, Some(&Device::Cpu))?;
    let tensors = timm_state_dict(&query)?;
    let source = ExportSource {
        run_name: info.name.clone(),
        checkpoint: match which {
            Which::Best => "best",
            Which::Last => "last",
        }
        .into(),
        epoch: state.history.len(),
        global_step: state.global_step,
        method: info.method.clone(),
        git_revision: info.git_revision.clone(),
    };
    let preprocess = preprocess_facts(&cfg, source);
    let dir = pp_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let weights_tmp = saliency::output_file::temp_file_beside(&dir, ".tmp-export-", "")
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let map: std::collections::HashMap<&String, Tensor> =
        tensors.iter().map(|(k, t)| (k, t.clone())).collect();
    candle_core::safetensors::save(&map, weights_tmp.path())
        .with_context(|| format!("writing the weights for {}", out.display()))?;
    let mut json =
        serde_json::to_string_pretty(&preprocess).context("serialising preprocess.json")?;
    json.push('\n');
    weights_tmp
        .persist(out)
        .with_context(|| format!("renaming into {}", out.display()))?;
    crate::atomic_file::write_atomic(&pp_path, json.as_bytes())?;
    Ok(ExportSummary {
        model_path: out.to_path_buf(),
        preprocess_path: pp_path,
        tensors: tensors.len(),
        elements: tensors
            .values()
            .filter(|t| t.dtype() == DType::F32)
            .map(|t| t.elem_count())
            .sum(),
        preprocess,
    })
}
