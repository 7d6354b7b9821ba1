//! Plain ResNet-50-D backbone (timm's `resnet50d`: deep stem, avg-down shortcuts, four stages,
//! global average pool), split at the same seam as the Hybrid-ViT so SPMix can mix it.
//!
//! Shapes, with stage-3 width `C3 = 4 * channels[2]`, stage-4 width `C4 = 4 * channels[3]` and
//! the stride-16 grid `g = grid_size` (full: `C3 = 1024`, `C4 = 2048`, `g = 14`, N = 196):
//! - [`ResNet50::embed_t`]: images `(B, 3, S, S)` -> stem + stages 1-3 -> map `(B, C3, g, g)`
//!   -> tokens `(B, N = g * g, C3)` (row-major over the grid, as the hybrid's tokens);
//! - [`ResNet50::encode_t`]: tokens `(B, N, C3)` -> map `(B, C3, g, g)` -> stage 4
//!   `(B, C4, g', g')` -> global average pool -> features `(B, C4)`;
//! - [`ResNet50::forward_t`]: both, without the round trip through tokens.
//!
//! Token n is the stage-3 feature vector of grid cell `(n / g, n % g)`, i.e. of the 16 x 16-pixel
//! patch at that cell (stride 16): the hybrid's tokens are this map after a 1x1 projection. So
//! SPMix's token mix `r (.) E(fg) + (1 - r) (.) E(bg)` on this encoder mixes the two images'
//! stage-3 feature maps patch by patch with the same `(B, N)` ratio, and stage 4 (in place of the
//! transformer) sees the mixed map. Unlike attention, stage 4's 3x3 convolutions mix
//! neighbouring patches only, so the information of a patch spreads over its neighbourhood rather
//! than over all tokens.
//!
//! Variable names are timm's `resnet50d` ones at the root (`conv1.0.weight`, `bn1.*`,
//! `layer4.2.conv3.weight`, ..); the classifier `fc.*` is built by [`crate::QueryNetwork`].

use candle_core::{Device, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Arch, ModelConfig};
use crate::resnet::ResNetTrunk;

/// Stages before the mixing seam (stem + stages 1-3: stride 16).
const STAGES_BEFORE_SEAM: usize = 3;

/// The ResNet-50-D encoder: images -> stage-3 tokens -> stage 4 -> pooled features.
#[derive(Debug, Clone)]
pub struct ResNet50 {
    trunk: ResNetTrunk,
    cfg: ModelConfig,
    device: Device,
}

impl ResNet50 {
    /// Builds the four-stage trunk under `vb` (the VarBuilder's root: timm's names).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if cfg.arch != Arch::Resnet50 {
            candle_core::bail!(
                "ResNet50::new: config has arch = \"{}\", expected \"resnet50\"",
                cfg.arch.as_str()
            );
        }
        Ok(Self {
            device: vb.device().clone(),
            trunk: ResNetTrunk::new(cfg, vb)?,
            cfg: cfg.clone(),
        })
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The config the encoder was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Stem and all four stages: `(B, 3, H, W)` -> `(B, C4, g', g')` (before pooling).
    pub fn trunk(&self) -> &ResNetTrunk {
        &self.trunk
    }

    /// Images `(B, 3, S, S)` (S = `image_size`) -> stage-3 tokens `(B, N, C3)`. `train`
    /// selects batch statistics (and running-stat updates) in the BatchNorms.
    pub fn embed_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.check_images(images, "embed_t")?;
        let map = self
            .trunk
            .forward_to_stage_t(images, STAGES_BEFORE_SEAM, train)?;
        let (b, c, h, w) = map.dims4()?;
        // (B, C, g, g) -> (B, C, N) -> (B, N, C): the layout of the hybrid's tokens.
        map.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()
    }

    /// Tokens `(B, N, C3)` (possibly mixed) -> pooled stage-4 features `(B, C4)`; `train` as in
    /// [`Self::embed_t`] (stage 4 has BatchNorms).
    pub fn encode_t(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let (b, n, c) = tokens.dims3()?;
        let (g, c3) = (self.cfg.grid_size(), self.cfg.token_dim());
        if n != g * g || c != c3 {
            candle_core::bail!(
                "ResNet50::encode_t: expected tokens (B, {}, {c3}), got {:?}",
                g * g,
                tokens.dims()
            );
        }
        let map = tokens.transpose(1, 2)?.reshape((b, c, g, g))?;
        let y =
            self.trunk
                .forward_stages_t(&map, STAGES_BEFORE_SEAM..STAGES_BEFORE_SEAM + 1, train)?;
        global_avg_pool(&y)
    }

    /// Images `(B, 3, S, S)` -> features `(B, C4)`, equal to `encode_t(embed_t(images))`
    /// without the token round trip.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.check_images(images, "forward_t")?;
        global_avg_pool(&self.trunk.forward_t(images, train)?)
    }

    fn check_images(&self, images: &Tensor, what: &str) -> Result<()> {
        let (_, c, h, w) = images.dims4()?;
        let s = self.cfg.image_size;
        if c != 3 || h != s || w != s {
            candle_core::bail!(
                "ResNet50::{what}: expected images (B, 3, {s}, {s}), got {:?}",
                images.dims()
            );
        }
        Ok(())
    }
}

/// timm's `SelectAdaptivePool2d('avg', flatten=True)`: `(B, C, H, W)` -> `(B, C)` mean over H, W.
fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.mean(2)
}
