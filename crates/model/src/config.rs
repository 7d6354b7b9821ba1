//! Model configuration: the `[model]` table of a TOML file.
//!
//! ```
//! let cfg = model::ModelConfig::from_toml_str(
//!     "[model]\ntrunk_layers = [3, 4, 6]\ntrunk_channels = [64, 128, 256]\nstem_width = 32\n\
//!      embed_dim = 768\ndepth = 8\nnum_heads = 8\nmlp_ratio = 3.0\nimage_size = 224\n\
//!      num_classes = 7\nproj_hidden = 4096\nproj_dim = 256\n",
//!     "example",
//! )
//! .unwrap();
//! assert_eq!(cfg, model::ModelConfig::full());
//! assert_eq!(cfg.grid_size(), 14);
//! assert_eq!(cfg.trunk_out_channels(), 1024);
//!
//! // The plain ResNet-50-D backbone: four stages, features 4 x 512 = 2048 wide.
//! let r = model::ModelConfig::resnet50();
//! assert_eq!((r.token_dim(), r.feature_dim(), r.grid_size()), (1024, 2048, 14));
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which backbone the encoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// The paper's Hybrid-ViT: ResNet-50-D stages 1-3 -> 1x1 projection -> ViT (the default).
    #[default]
    Hybrid,
    /// timm's plain `resnet50d`: all four stages, global average pool, linear classifier `fc`.
    /// The ViT keys (`embed_dim`, `depth`, `num_heads`, `mlp_ratio`) are not used.
    Resnet50,
}

impl Arch {
    /// The name in a config file (`"hybrid"`, `"resnet50"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Hybrid => "hybrid",
            Arch::Resnet50 => "resnet50",
        }
    }

    /// Number of ResNet-D stages the encoder has (3 in the hybrid's trunk, 4 in ResNet-50).
    pub fn num_stages(self) -> usize {
        match self {
            Arch::Hybrid => 3,
            Arch::Resnet50 => 4,
        }
    }

    /// Name prefix of the linear classifier's variables: timm's `head.` (ViT) or `fc.` (ResNet).
    pub fn classifier_prefix(self) -> &'static str {
        match self {
            Arch::Hybrid => "head.",
            Arch::Resnet50 => "fc.",
        }
    }
}

/// Sizes of the encoder and its heads. Every size is a value so tests can use a tiny model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The backbone: `"hybrid"` (default when the key is absent) or `"resnet50"`.
    #[serde(default)]
    pub arch: Arch,
    /// Bottleneck blocks in each ResNet-D stage: 3 entries for the hybrid (full: `[3, 4, 6]`),
    /// 4 for `resnet50` (full: `[3, 4, 6, 3]`).
    pub trunk_layers: Vec<usize>,
    /// Bottleneck width of each stage; a stage outputs 4x this many channels (hybrid full:
    /// `[64, 128, 256]`, resnet50 full: `[64, 128, 256, 512]`); as many entries as `trunk_layers`.
    pub trunk_channels: Vec<usize>,
    /// Width of the deep stem: convs `w, w, 2w` (full: 32).
    pub stem_width: usize,
    /// Token width C of the hybrid (full: 768); unused by `resnet50`.
    pub embed_dim: usize,
    /// Number of transformer blocks (full: 8); unused by `resnet50`.
    pub depth: usize,
    /// Attention heads; must divide `embed_dim` (full: 8); unused by `resnet50`.
    pub num_heads: usize,
    /// MLP hidden width = `floor(embed_dim * mlp_ratio)` (full: 3.0); unused by `resnet50`.
    pub mlp_ratio: f64,
    /// Square input side in pixels (full: 224 -> 14x14 = 196 tokens).
    pub image_size: usize,
    /// Classes of the linear classifier (full: 7).
    pub num_classes: usize,
    /// Hidden width of the projector and predictor MLPs (full: 4096).
    pub proj_hidden: usize,
    /// Output width of the projector and predictor (full: 256).
    pub proj_dim: usize,
}

#[derive(Deserialize)]
struct File {
    model: ModelConfig,
}

impl ModelConfig {
    /// The paper's model: ResNet-50-D stages 1-3, 768-wide ViT, 8 blocks, 8 heads, ratio 3.
    pub fn full() -> Self {
        Self {
            arch: Arch::Hybrid,
            trunk_layers: vec![3, 4, 6],
            trunk_channels: vec![64, 128, 256],
            stem_width: 32,
            embed_dim: 768,
            depth: 8,
            num_heads: 8,
            mlp_ratio: 3.0,
            image_size: 224,
            num_classes: 7,
            proj_hidden: 4096,
            proj_dim: 256,
        }
    }

    /// timm's `resnet50d` (stages `[3, 4, 6, 3]`, widths `[64, 128, 256, 512]`, stem 32) with the
    /// paper's image size, classes and heads; the ViT keys keep [`Self::full`]'s (unused) values.
    pub fn resnet50() -> Self {
        Self {
            arch: Arch::Resnet50,
            trunk_layers: vec![3, 4, 6, 3],
            trunk_channels: vec![64, 128, 256, 512],
            ..Self::full()
        }
    }

    /// Parses the `[model]` table of a TOML document (other tables are ignored, unknown keys
    /// inside `[model]` are errors) and validates it. `origin` names the source in errors.
    /// With `arch = "resnet50"` the unused transformer keys may be left out.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let parse_err = |message: String| ModelError::ConfigParse {
            origin: origin.to_string(),
            message,
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        if let Some(toml::Value::Table(model)) = doc.get_mut("model") {
            if model.get("arch").and_then(|v| v.as_str()) == Some(Arch::Resnet50.as_str()) {
                let full = toml::Table::try_from(Self::full()).expect("the config serialises");
                for key in ["embed_dim", "depth", "num_heads", "mlp_ratio"] {
                    if !model.contains_key(key) {
                        model.insert(key.to_string(), full[key].clone());
                    }
                }
            }
        }
        let file: File = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        file.model.validate()?;
        Ok(file.model)
    }

    /// Reads and validates the `[model]` table of a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::ConfigIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks that every size is usable; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        let stages = self.arch.num_stages();
        for (key, list) in [
            ("trunk_layers", &self.trunk_layers),
            ("trunk_channels", &self.trunk_channels),
        ] {
            if list.len() != stages {
                return bad(format!(
                    "{key} = {list:?}: arch = \"{}\" has {stages} ResNet stages, so {key} needs \
                     {stages} entries",
                    self.arch.as_str()
                ));
            }
        }
        if self.trunk_layers.contains(&0) {
            return bad(format!(
                "trunk_layers = {:?}: every stage needs at least one block",
                self.trunk_layers
            ));
        }
        if self.trunk_channels.contains(&0) {
            return bad(format!(
                "trunk_channels = {:?}: must be positive",
                self.trunk_channels
            ));
        }
        for (key, v) in [
            ("stem_width", self.stem_width),
            ("num_classes", self.num_classes),
            ("proj_hidden", self.proj_hidden),
            ("proj_dim", self.proj_dim),
        ] {
            if v == 0 {
                return bad(format!("{key} = 0: must be positive"));
            }
        }
        if self.image_size < 2 {
            return bad(format!("image_size = {}: too small", self.image_size));
        }
        if self.arch == Arch::Resnet50 {
            // The transformer keys are not used: whatever they hold cannot break the model.
            return Ok(());
        }
        for (key, v) in [
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return bad(format!("{key} = 0: must be positive"));
            }
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad(format!(
                "num_heads = {} does not divide embed_dim = {}",
                self.num_heads, self.embed_dim
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) || self.mlp_hidden() == 0 {
            return bad(format!("mlp_ratio = {}: must be positive", self.mlp_ratio));
        }
        Ok(())
    }

    /// Hidden width of the transformer MLP, `int(embed_dim * mlp_ratio)` as timm computes it.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Channels out of stage 3 (4 x its width; full: 1024): the hybrid trunk's output, and the
    /// token width of `resnet50`.
    pub fn trunk_out_channels(&self) -> usize {
        4 * self.trunk_channels[2]
    }

    /// Width of the tokens `(B, N, C)` the encoder's `embed_t` returns (and SPMix mixes):
    /// `embed_dim` for the hybrid, stage 3's channels for `resnet50` (full: 768 / 1024).
    pub fn token_dim(&self) -> usize {
        match self.arch {
            Arch::Hybrid => self.embed_dim,
            Arch::Resnet50 => self.trunk_out_channels(),
        }
    }

    /// Width of the features `(B, C)` the encoder returns, the input of the projector and the
    /// classifier: `embed_dim` for the hybrid, stage 4's channels for `resnet50` (full: 768 / 2048).
    pub fn feature_dim(&self) -> usize {
        match self.arch {
            Arch::Hybrid => self.embed_dim,
            Arch::Resnet50 => 4 * self.trunk_channels[3],
        }
    }

    /// Side of the token grid: the image side after the four stride-2 steps up to stage 3
    /// (stem conv, max-pool, stages 2 and 3), each `(h - 1) / 2 + 1` (full: 224 -> 14); the same
    /// for both archs (stride 16).
    pub fn grid_size(&self) -> usize {
        (0..4).fold(self.image_size, |h, _| (h - 1) / 2 + 1)
    }

    /// Number of patch tokens N = grid_size^2 (full: 196).
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }
}
