//! The query network: encoder (Hybrid-ViT or ResNet-50, [`Encoder`]) + projector + predictor +
//! linear classifier, owning its [`VarMap`] so weights can be loaded, saved and handed to an
//! optimiser.
//!
//! Shapes: images `(B, 3, S, S)` -> tokens `(B, N, C)` -> features `(B, F)` (F = `feature_dim`:
//! 768 hybrid, 2048 ResNet-50); projector `(B, F)` -> `(B, proj_dim)`; predictor
//! `(B, proj_dim)` -> `(B, proj_dim)`; classifier `(B, F)` -> logits `(B, num_classes)`.
//! Variable names: the encoder's are timm's (see [`crate::vit`], [`crate::resnet50`]); heads are
//! `projector.*`, `predictor.*` and the classifier under timm's name for the arch (`head.*` for
//! the ViT, `fc.*` for the ResNet). A network built [`QueryNetwork::with_logit_scale`] also has
//! `<classifier>.logit_scale` `(num_classes,)` (MiSLAS's learnable weight scaling).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, ModuleT, Tensor, Var};
use candle_nn::{Init, VarMap};

use crate::config::{Arch, ModelConfig};
use crate::encoder::Encoder;
use crate::error::{ModelError, Result};
use crate::heads::{classifier_for, MlpHead};
use crate::init::InitLaws;
use crate::layers::{is_running_stat, Linear};
use crate::loading::{self, LoadOptions, LoadReport};

/// Name prefixes of the hybrid's heads (everything else is the encoder); see [`head_prefixes`].
pub const HEAD_PREFIXES: [&str; 3] = ["projector.", "predictor.", "head."];

/// Name prefixes of the heads of an `arch` (projector, predictor, classifier).
pub fn head_prefixes(arch: Arch) -> [&'static str; 3] {
    ["projector.", "predictor.", arch.classifier_prefix()]
}

/// Name of the per-class logit scale under the classifier's prefix (`head.logit_scale`,
/// `fc.logit_scale`).
pub const LOGIT_SCALE_NAME: &str = "logit_scale";

/// The full variable name of the per-class logit scale for `arch` (`head.logit_scale`,
/// `fc.logit_scale`).
pub fn logit_scale_name(arch: Arch) -> String {
    format!("{}{LOGIT_SCALE_NAME}", arch.classifier_prefix())
}

/// Encoder, projector, predictor and classifier with their variables.
pub struct QueryNetwork {
    varmap: VarMap,
    encoder: Encoder,
    projector: MlpHead,
    predictor: MlpHead,
    classifier: Linear,
    /// `(num_classes,)` per-class factor of the logits, when built with one.
    logit_scale: Option<Tensor>,
    cfg: ModelConfig,
    /// The law each variable was drawn from at construction (see [`crate::init`]).
    init_laws: InitLaws,
}

impl QueryNetwork {
    /// Builds the network with random (timm-style) initial weights, f32, on `device`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        Self::build(cfg, device, false)
    }

    /// [`Self::new`] plus a learnable per-class scale of the logits, `(num_classes,)` initialised
    /// to 1, so that [`Self::classify`] is `s * (W f + b)`: MiSLAS's learnable weight scaling
    /// (the authors' `LearnableWeightScaling`, trained with the classifier in their stage 2).
    /// Stored as `<classifier prefix>logit_scale`; a timm export folds it into the classifier.
    pub fn with_logit_scale(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        Self::build(cfg, device, true)
    }

    fn build(cfg: &ModelConfig, device: &Device, with_logit_scale: bool) -> Result<Self> {
        cfg.validate()?;
        let varmap = VarMap::new();
        let (vb, laws) = crate::init::recording_builder(&varmap, device);
        let encoder = Encoder::new(cfg, vb.clone())?;
        let projector = MlpHead::projector(
            cfg.feature_dim(),
            cfg.proj_hidden,
            cfg.proj_dim,
            vb.pp("projector"),
        )?;
        let predictor = MlpHead::predictor(cfg.proj_dim, cfg.proj_hidden, vb.pp("predictor"))?;
        let classifier = classifier_for(cfg, vb.clone())?;
        let logit_scale = if with_logit_scale {
            let prefix = cfg.arch.classifier_prefix().trim_end_matches('.');
            Some(vb.pp(prefix).get_with_hints(
                cfg.num_classes,
                LOGIT_SCALE_NAME,
                Init::Const(1.0),
            )?)
        } else {
            None
        };
        let init_laws = laws.lock().expect("init-law table poisoned").clone();
        Ok(Self {
            init_laws,
            varmap,
            encoder,
            projector,
            predictor,
            classifier,
            logit_scale,
            cfg: cfg.clone(),
        })
    }

    /// Every variable's initial-value law, by name (running statistics included, as constants).
    pub fn init_laws(&self) -> &InitLaws {
        &self.init_laws
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// All variables, running statistics included (what a checkpoint saves).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The encoder (`embed_t`, `encode_t`, `forward_t`).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The projector `(B, F)` -> `(B, proj_dim)`.
    pub fn projector(&self) -> &MlpHead {
        &self.projector
    }

    /// The predictor `(B, proj_dim)` -> `(B, proj_dim)`.
    pub fn predictor(&self) -> &MlpHead {
        &self.predictor
    }

    /// Logits `(B, num_classes)` of features `(B, F)`, times the per-class logit scale when the
    /// network has one.
    pub fn classify(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        let logits = self.classifier.forward(features)?;
        match &self.logit_scale {
            Some(scale) => logits.broadcast_mul(scale),
            None => Ok(logits),
        }
    }

    /// The linear classifier's logits `(B, num_classes)` of features `(B, F)` without the logit
    /// scale (which then gets no gradient): MiSLAS's stage 1, where the scale is not trained.
    pub fn classify_unscaled(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        self.classifier.forward(features)
    }

    /// The full name of the logit-scale variable (`head.logit_scale`, `fc.logit_scale`), present
    /// when the network was built [`Self::with_logit_scale`].
    pub fn logit_scale_name(&self) -> Option<String> {
        self.logit_scale
            .as_ref()
            .map(|_| logit_scale_name(self.cfg.arch))
    }

    /// `(q, logits)`: predictor(projector(features)) `(B, proj_dim)` (not normalised) and the
    /// classifier's logits `(B, num_classes)`.
    pub fn heads_t(&self, features: &Tensor, train: bool) -> candle_core::Result<(Tensor, Tensor)> {
        let p = self.projector.forward_t(features, train)?;
        let q = self.predictor.forward_t(&p, train)?;
        Ok((q, self.classify(features)?))
    }

    /// Trainable variables sorted by name (BatchNorm running statistics excluded).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        named_trainable(&self.varmap)
    }

    /// A copy of every variable (running statistics included) as a name -> tensor map, for
    /// checkpoints; later training steps do not change the copy.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        Ok(tensor_map(&self.varmap)?)
    }

    /// Loads a timm-named safetensors file (see [`loading::load_safetensors`]).
    pub fn load_safetensors(
        &self,
        path: impl AsRef<Path>,
        opts: &LoadOptions,
    ) -> Result<LoadReport> {
        loading::load_safetensors(&self.varmap, path, opts)
    }

    /// Loads an encoder-only timm state dict: the heads may be absent (they keep their values).
    pub fn load_encoder(&self, path: impl AsRef<Path>) -> Result<LoadReport> {
        let opts = LoadOptions {
            optional_prefixes: head_prefixes(self.cfg.arch)
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..LoadOptions::default()
        };
        self.load_safetensors(path, &opts)
    }

    /// Loads a plain timm `resnet50d` state dict into the hybrid's trunk (layer4 and fc
    /// ignored). An error for `arch = "resnet50"`, which loads the file whole
    /// ([`Self::load_resnet50d`]).
    pub fn load_resnet_trunk(&self, path: impl AsRef<Path>) -> Result<LoadReport> {
        if self.cfg.arch != Arch::Hybrid {
            return Err(ModelError::InvalidConfig(format!(
                "load_resnet_trunk: arch = \"{}\" has no hybrid trunk; load the resnet50d file \
                 whole with load_resnet50d",
                self.cfg.arch.as_str()
            )));
        }
        loading::load_resnet_trunk(&self.varmap, path)
    }

    /// Loads a timm `resnet50d` state dict (or a saved `resnet50` query network) into the whole
    /// `arch = "resnet50"` network (see [`loading::load_resnet50d`]): every backbone tensor must
    /// fit; projector and predictor may be absent; a classifier `fc.*` of another shape (the
    /// 1000 ImageNet classes) is reported in [`LoadReport::mismatched`] and not loaded.
    pub fn load_resnet50d(&self, path: impl AsRef<Path>) -> Result<LoadReport> {
        if self.cfg.arch != Arch::Resnet50 {
            return Err(ModelError::InvalidConfig(format!(
                "load_resnet50d: arch = \"{}\" is not the plain ResNet-50; the hybrid takes a \
                 resnet50d file into its trunk with load_resnet_trunk",
                self.cfg.arch.as_str()
            )));
        }
        loading::load_resnet50d(&self.varmap, path)
    }

    /// Saves every variable (running statistics included) as safetensors.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        Ok(candle_core::safetensors::save(&self.tensors()?, path)?)
    }
}

pub(crate) fn named_trainable(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut v: Vec<(String, Var)> = data
        .iter()
        .filter(|(n, _)| !is_running_stat(n))
        .map(|(n, var)| (n.clone(), var.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Copies (not views: variables are updated in place) of every variable.
pub(crate) fn tensor_map(varmap: &VarMap) -> candle_core::Result<HashMap<String, Tensor>> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    data.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_detached_tensor().copy()?)))
        .collect()
}
