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
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Sizes of the Hybrid-ViT and its heads. Every size is a value so tests can use a tiny model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Bottleneck blocks in each of the three ResNet-D stages (full: `[3, 4, 6]`).
    pub trunk_layers: [usize; 3],
    /// Bottleneck width of each stage; a stage outputs 4x this many channels (full: `[64, 128, 256]`).
    pub trunk_channels: [usize; 3],
    /// Width of the deep stem: convs `w, w, 2w` (full: 32).
    pub stem_width: usize,
    /// Token width C (full: 768).
    pub embed_dim: usize,
    /// Number of transformer blocks (full: 8).
    pub depth: usize,
    /// Attention heads; must divide `embed_dim` (full: 8).
    pub num_heads: usize,
    /// MLP hidden width = `floor(embed_dim * mlp_ratio)` (full: 3.0).
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
            trunk_layers: [3, 4, 6],
            trunk_channels: [64, 128, 256],
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

    /// Parses the `[model]` table of a TOML document (other tables are ignored, unknown keys
    /// inside `[model]` are errors) and validates it. `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let file: File = toml::from_str(text).map_err(|e| ModelError::ConfigParse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
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
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("num_classes", self.num_classes),
            ("proj_hidden", self.proj_hidden),
            ("proj_dim", self.proj_dim),
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
        if self.image_size < 2 {
            return bad(format!("image_size = {}: too small", self.image_size));
        }
        Ok(())
    }

    /// Hidden width of the transformer MLP, `int(embed_dim * mlp_ratio)` as timm computes it.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Channels out of the trunk (4 x the last stage width; full: 1024).
    pub fn trunk_out_channels(&self) -> usize {
        4 * self.trunk_channels[2]
    }

    /// Side of the token grid: the image side after the four stride-2 steps of the trunk
    /// (stem conv, max-pool, stages 2 and 3), each `(h - 1) / 2 + 1` (full: 224 -> 14).
    pub fn grid_size(&self) -> usize {
        (0..4).fold(self.image_size, |h, _| (h - 1) / 2 + 1)
    }

    /// Number of patch tokens N = grid_size^2 (full: 196).
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }
}
