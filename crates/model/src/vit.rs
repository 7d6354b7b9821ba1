//! Hybrid Vision Transformer (timm's `VisionTransformer` with a `HybridEmbed` of a ResNet-D trunk).
//!
//! Shapes, with N = grid_size^2 tokens of width C (full: N = 196, C = 768):
//! - [`HybridVit::embed_t`] maps images `(B, 3, H, W)` -> tokens `(B, N, C)` (trunk, 1x1 conv, flatten);
//! - [`HybridVit::encode`] maps tokens `(B, N, C)` -> features `(B, C)` (cls token, position
//!   embedding `(1, N + 1, C)`, pre-norm blocks, final LayerNorm, cls row);
//! - [`HybridVit::forward_t`] does both.
//!
//! The seam between `embed_t` and `encode` is where SPMix mixes tokens of two images.
//! Variable names are timm's: `patch_embed.backbone.*`, `patch_embed.proj.{weight,bias}`,
//! `cls_token`, `pos_embed`, `blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
//! `norm.*`.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::activation::{gelu_erf, softmax_last_dim};
use crate::attention::self_attention;
use crate::config::ModelConfig;
use crate::layers::{Conv2d, LayerNorm, Linear};
use crate::resnet::ResNetTrunk;

/// timm's LayerNorm eps for ViTs.
const LN_EPS: f64 = 1e-6;

fn trunc_normal_002() -> Init {
    // timm uses trunc_normal(std=0.02); at 2 std the truncation changes almost nothing.
    Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    }
}

/// Multi-head self-attention with a fused qkv projection: `(B, N, C)` -> `(B, N, C)`.
#[derive(Debug, Clone)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    scale: f64,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: Linear::new(dim, 3 * dim, true, trunc_normal_002(), vb.pp("qkv"))?,
            proj: Linear::new(dim, dim, true, trunc_normal_002(), vb.pp("proj"))?,
            num_heads,
            scale: ((dim / num_heads) as f64).powf(-0.5),
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let h = self.num_heads;
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let y = self_attention(&self.qkv.forward(x)?, h, self.scale)?;
            return self.proj.forward(&y);
        }
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, h, c / h))?
            .permute((2, 0, 3, 1, 4))?; // (3, B, heads, N, D)
        let q = (qkv.get(0)?.contiguous()? * self.scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = q.matmul(&k.t()?)?;
        let attn = softmax_last_dim(&attn)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.proj.forward(&y)
    }
}

/// Pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`, exact-erf GELU.
#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (d, hid) = (cfg.embed_dim, cfg.mlp_hidden());
        let mlp = vb.pp("mlp");
        Ok(Self {
            norm1: LayerNorm::new(d, LN_EPS, vb.pp("norm1"))?,
            attn: Attention::new(d, cfg.num_heads, vb.pp("attn"))?,
            norm2: LayerNorm::new(d, LN_EPS, vb.pp("norm2"))?,
            fc1: Linear::new(d, hid, true, trunc_normal_002(), mlp.pp("fc1"))?,
            fc2: Linear::new(hid, d, true, trunc_normal_002(), mlp.pp("fc2"))?,
        })
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        let m = gelu_erf(&self.fc1.forward(&self.norm2.forward(&x)?)?)?;
        x + self.fc2.forward(&m)?
    }
}

/// The Hybrid-ViT encoder: ResNet-D trunk -> 1x1 projection -> tokens -> ViT -> cls feature.
#[derive(Debug, Clone)]
pub struct HybridVit {
    trunk: ResNetTrunk,
    proj: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    cfg: ModelConfig,
}

impl HybridVit {
    /// Builds the encoder under `vb` with timm's names (pass the VarBuilder's root).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let pe = vb.pp("patch_embed");
        let trunk = ResNetTrunk::new(cfg, pe.pp("backbone"))?;
        let proj = Conv2d::new(
            cfg.trunk_out_channels(),
            cfg.embed_dim,
            1,
            1,
            0,
            true,
            pe.pp("proj"),
        )?;
        let d = cfg.embed_dim;
        let cls_token = vb.get_with_hints(
            (1, 1, d),
            "cls_token",
            Init::Randn {
                mean: 0.0,
                stdev: 1e-6,
            },
        )?;
        let pos_embed = vb.get_with_hints(
            (1, cfg.num_patches() + 1, d),
            "pos_embed",
            trunc_normal_002(),
        )?;
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg, vb.pp("blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::new(d, LN_EPS, vb.pp("norm"))?;
        Ok(Self {
            trunk,
            proj,
            cls_token,
            pos_embed,
            blocks,
            norm,
            cfg: cfg.clone(),
        })
    }

    /// The device of the weights.
    pub fn device(&self) -> &candle_core::Device {
        self.cls_token.device()
    }

    /// The config the encoder was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The CNN trunk alone: `(B, 3, H, W)` -> `(B, 4 * channels[2], g, g)`.
    pub fn trunk(&self) -> &ResNetTrunk {
        &self.trunk
    }

    /// Images `(B, 3, S, S)` (S = `image_size`) -> patch tokens `(B, N, C)`. `train` selects
    /// batch statistics (and running-stat updates) in the trunk's BatchNorms.
    pub fn embed_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let (_, c, h, w) = images.dims4()?;
        let s = self.cfg.image_size;
        if c != 3 || h != s || w != s {
            candle_core::bail!(
                "HybridVit::embed_t: expected images (B, 3, {s}, {s}), got {:?}",
                images.dims()
            );
        }
        let f = self.trunk.forward_t(images, train)?;
        // (B, C, N) -> (B, N, C), as timm's flatten(2).transpose(1, 2).
        self.proj
            .forward_flat_1x1(&f)?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Tokens `(B, N, C)` -> cls feature after the final norm `(B, C)`.
    pub fn encode(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, n, c) = tokens.dims3()?;
        if n != self.cfg.num_patches() || c != self.cfg.embed_dim {
            candle_core::bail!(
                "HybridVit::encode: expected tokens (B, {}, {}), got {:?}",
                self.cfg.num_patches(),
                self.cfg.embed_dim,
                tokens.dims()
            );
        }
        let cls = self.cls_token.broadcast_as((b, 1, c))?;
        let mut x = Tensor::cat(&[&cls, tokens], 1)?.broadcast_add(&self.pos_embed)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)
    }

    /// Images `(B, 3, S, S)` -> features `(B, C)`: `encode(embed_t(images, train))`.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.encode(&self.embed_t(images, train)?)
    }
}
