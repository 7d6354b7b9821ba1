//! `run.pretrained`: the weights a run starts from.
//!
//! With `model.arch = "hybrid"` (the paper's model) in either of two forms:
//!
//! 1. **timm's ImageNet `resnet50d`**: the file timm publishes as `model.safetensors` of
//!    `timm/resnet50d.ra2_in1k`, conventionally saved as
//!    `data/pretrained/resnet50d.ra2_in1k.safetensors` ([`RESNET50D_FILE`]). Its stem and first
//!    three stages fill the trunk (`patch_embed.backbone.*`); its `layer4.*` and `fc.*` are not
//!    used; the 1 x 1 projection, the transformer and the heads keep their random start. This is
//!    the paper's start (docs/method.md, "Model").
//! 2. **A whole hybrid encoder** under the model's own (timm-style) names, e.g. the query
//!    network of an earlier run: every encoder tensor must be there, the heads may be absent.
//!
//! The encoder form is tried first; when neither fits, the error shows why for both.
//!
//! With `model.arch = "resnet50"` the same `resnet50d` file initialises the **whole network**
//! (stem, four stages; [`PretrainedForm::ResNet50d`]), and so does a saved `resnet50` query
//! network; projector and predictor keep their start when absent, and a classifier `fc.*` of
//! another shape (ImageNet's 1000 classes) is reported as mismatched and keeps its start.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let query = model::QueryNetwork::new(&model::ModelConfig::full(), &candle_core::Device::Cpu)?;
//! let loaded = trainer::pretrained::load_pretrained(
//!     &query,
//!     "data/pretrained/resnet50d.ra2_in1k.safetensors".as_ref(),
//! )?;
//! assert_eq!(loaded.form, trainer::pretrained::PretrainedForm::ResNet50dTrunk);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use model::{Arch, LoadReport, ModelConfig, ModelError, QueryNetwork};

/// Where the README and `configs/spmix.toml` tell users to put timm's `resnet50d` weights.
pub const RESNET50D_FILE: &str = "data/pretrained/resnet50d.ra2_in1k.safetensors";

/// Which form a `run.pretrained` file had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PretrainedForm {
    /// A whole hybrid encoder (heads optional).
    HybridEncoder,
    /// timm's `resnet50d` state dict: the trunk only.
    ResNet50dTrunk,
    /// timm's `resnet50d` state dict (or a `resnet50` run's weights) into the whole
    /// `arch = "resnet50"` network.
    ResNet50d,
}

/// A successful load: the form the file had and what was set from it.
#[derive(Debug, Clone)]
pub struct PretrainedLoad {
    /// The form the file matched.
    pub form: PretrainedForm,
    /// Tensors loaded, kept (absent heads), ignored (`layer4.*`, `fc.*` of a resnet50d in the
    /// hybrid) and mismatched (a 1000-class `fc` in a `resnet50`).
    pub report: LoadReport,
}

/// Why a `run.pretrained` file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    /// The file could not be read as safetensors at all.
    #[error("run.pretrained: {0}")]
    Unreadable(Box<ModelError>),
    /// The file is a safetensors file but fits neither form; both reasons are given.
    #[error(
        "run.pretrained {path} fits neither accepted form.\n\
         As a whole hybrid encoder: {as_encoder}\n\
         As timm's resnet50d (model.safetensors of timm/resnet50d.ra2_in1k): {as_trunk}"
    )]
    NeitherForm {
        path: PathBuf,
        as_encoder: Box<ModelError>,
        as_trunk: Box<ModelError>,
    },
    /// The file does not fit `model.arch = "resnet50"`.
    #[error(
        "run.pretrained {path} does not fit model.arch = \"resnet50\" (expected timm's resnet50d \
         names and shapes, e.g. model.safetensors of timm/resnet50d.ra2_in1k, or a resnet50 \
         run's weights): {error}"
    )]
    NotResNet50d {
        path: PathBuf,
        error: Box<ModelError>,
    },
}

/// Loads `path` into `query`: for the hybrid as a whole hybrid encoder or else as timm's
/// `resnet50d` trunk, for `resnet50` as timm's `resnet50d` whole. A failed load changes no
/// variable.
pub fn load_pretrained(
    query: &QueryNetwork,
    path: &Path,
) -> Result<PretrainedLoad, PretrainedError> {
    if query.config().arch == Arch::Resnet50 {
        return match query.load_resnet50d(path) {
            Ok(report) => Ok(PretrainedLoad {
                form: PretrainedForm::ResNet50d,
                report,
            }),
            Err(e @ ModelError::SafetensorsIo { .. }) => {
                Err(PretrainedError::Unreadable(Box::new(e)))
            }
            Err(e) => Err(PretrainedError::NotResNet50d {
                path: path.to_path_buf(),
                error: Box::new(e),
            }),
        };
    }
    let as_encoder = match query.load_encoder(path) {
        Ok(report) => {
            return Ok(PretrainedLoad {
                form: PretrainedForm::HybridEncoder,
                report,
            })
        }
        // Unreadable for one form is unreadable for both: one message is enough.
        Err(e @ ModelError::SafetensorsIo { .. }) => {
            return Err(PretrainedError::Unreadable(Box::new(e)))
        }
        Err(e) => e,
    };
    match query.load_resnet_trunk(path) {
        Ok(report) => Ok(PretrainedLoad {
            form: PretrainedForm::ResNet50dTrunk,
            report,
        }),
        Err(as_trunk) => Err(PretrainedError::NeitherForm {
            path: path.to_path_buf(),
            as_encoder: Box::new(as_encoder),
            as_trunk: Box::new(as_trunk),
        }),
    }
}

/// The warning for a run without `run.pretrained` whose ResNet-D has timm `resnet50d`'s shape
/// (the paper's models, which start from ImageNet weights: the hybrid's trunk, or the whole
/// `resnet50`); `None` when pretrained weights are set or could not fit (a smaller trunk, as in
/// the CPU demo).
pub fn missing_pretrained_warning(model: &ModelConfig, pretrained: &Path) -> Option<String> {
    let full = match model.arch {
        Arch::Hybrid => ModelConfig::full(),
        Arch::Resnet50 => ModelConfig::resnet50(),
    };
    let resnet50d_shape = model.trunk_layers == full.trunk_layers
        && model.trunk_channels == full.trunk_channels
        && model.stem_width == full.stem_width;
    let what = match model.arch {
        Arch::Hybrid => "the ResNet-50-D trunk starts",
        Arch::Resnet50 => "the ResNet-50-D (model.arch = \"resnet50\") starts",
    };
    (pretrained.as_os_str().is_empty() && resnet50d_shape).then(|| {
        format!(
            "run.pretrained is empty: {what} from random weights, not from ImageNet as in the \
             paper. Save timm's resnet50d weights (model.safetensors of timm/resnet50d.ra2_in1k) \
             as {RESNET50D_FILE} and set run.pretrained = \"{RESNET50D_FILE}\" (README, \
             \"Pretrained trunk\")."
        )
    })
}
