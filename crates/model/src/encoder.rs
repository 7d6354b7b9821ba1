//! The encoder of either backbone behind one interface, so the training methods run unchanged on
//! both: `embed_t` (images -> tokens, where SPMix mixes), `encode_t` (tokens -> features) and
//! `forward_t` (both).
//!
//! | `model.arch` | tokens `(B, N, C)`                        | features `(B, F)`                   |
//! |--------------|-------------------------------------------|-------------------------------------|
//! | `hybrid`     | stage-3 map -> 1x1 projection, C = 768    | ViT cls feature, F = 768            |
//! | `resnet50`   | stage-3 map flattened, C = 1024           | stage 4 + average pool, F = 2048    |
//!
//! In both, token n belongs to the 16 x 16-pixel patch at grid cell `(n / g, n % g)` (N = 196 at
//! 224 px), so SPMix's patch-wise ratio `(B, N)` means the same patches on either backbone.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Arch, ModelConfig};
use crate::resnet::ResNetTrunk;
use crate::resnet50::ResNet50;
use crate::vit::HybridVit;

/// The encoder of a [`crate::QueryNetwork`] or [`crate::MomentumKeyNetwork`].
#[derive(Debug, Clone)]
pub enum Encoder {
    /// The paper's Hybrid-ViT (`model.arch = "hybrid"`).
    Hybrid(HybridVit),
    /// timm's plain `resnet50d` (`model.arch = "resnet50"`).
    ResNet(ResNet50),
}

impl Encoder {
    /// Builds the encoder `cfg.arch` names under `vb` (the VarBuilder's root: timm's names).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg.arch {
            Arch::Hybrid => Self::Hybrid(HybridVit::new(cfg, vb)?),
            Arch::Resnet50 => Self::ResNet(ResNet50::new(cfg, vb)?),
        })
    }

    /// The config the encoder was built with.
    pub fn config(&self) -> &ModelConfig {
        match self {
            Self::Hybrid(e) => e.config(),
            Self::ResNet(e) => e.config(),
        }
    }

    /// The ResNet-D trunk: stem + stages 1-3 of the hybrid (`(B, 3, S, S)` -> `(B, C3, g, g)`),
    /// stem + stages 1-4 of ResNet-50 (`(B, 3, S, S)` -> `(B, C4, g', g')`).
    pub fn trunk(&self) -> &ResNetTrunk {
        match self {
            Self::Hybrid(e) => e.trunk(),
            Self::ResNet(e) => e.trunk(),
        }
    }

    /// Images `(B, 3, S, S)` -> tokens `(B, N, C)` (`C` = `cfg.token_dim()`); `train` selects
    /// batch statistics in the BatchNorms.
    pub fn embed_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Hybrid(e) => e.embed_t(images, train),
            Self::ResNet(e) => e.embed_t(images, train),
        }
    }

    /// Tokens `(B, N, C)` (possibly mixed) -> features `(B, F)` (`F` = `cfg.feature_dim()`);
    /// `train` selects batch statistics in ResNet-50's stage 4 (the hybrid's transformer has no
    /// BatchNorm and ignores it).
    pub fn encode_t(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Hybrid(e) => e.encode(tokens),
            Self::ResNet(e) => e.encode_t(tokens, train),
        }
    }

    /// Images `(B, 3, S, S)` -> features `(B, F)`, equal to `encode_t(embed_t(images))`.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Hybrid(e) => e.forward_t(images, train),
            Self::ResNet(e) => e.forward_t(images, train),
        }
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        match self {
            Self::Hybrid(e) => e.device(),
            Self::ResNet(e) => e.device(),
        }
    }
}
