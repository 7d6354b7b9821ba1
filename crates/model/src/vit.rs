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

use crate::config::ModelConfig;
use crate::layers::{pytorch_default_init, Conv2d, LayerNorm, Linear};
use crate::resnet::ResNetTrunk;
use ops::activation::{gelu_erf, softmax_last_dim};
use ops::attention::self_attention;

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

impl Block {
    /// The block's output for the cls token alone: `(B, N, C)` -> `(B, 1, C)`, equal to
    /// `forward(x).narrow(1, 0, 1)`.
    ///
    /// Only the cls row of the last block reaches the features, and every step of a block but
    /// attention acts on each token alone; attention needs keys and values of all tokens but
    /// the query of the cls token only. So the last block computes the qkv projection for all
    /// tokens and the rest (one query's attention, output projection, MLP) for one row, which
    /// skips about 70% of that block's work forward and backward (about 9% of the encoder's).
    fn forward_cls(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let h = self.attn.num_heads;
        let qkv = self
            .attn
            .qkv
            .forward(&self.norm1.forward(x)?)?
            .reshape((b, n, 3, h, c / h))?;
        let q = (qkv
            .narrow(1, 0, 1)?
            .narrow(2, 0, 1)?
            .reshape((b, h, 1, c / h))?
            * self.attn.scale)?;
        let kv = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous() // (B, heads, N, D)
        };
        let (k, v) = (kv(1)?, kv(2)?);
        let attn = softmax_last_dim(&q.matmul(&k.t()?)?)?; // (B, heads, 1, N)
        let y = attn.matmul(&v)?.reshape((b, 1, c))?; // (B, heads, 1, D) is (B, 1, C) in memory
        let x = (x.narrow(1, 0, 1)? + self.attn.proj.forward(&y)?)?;
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
        if cfg.arch != crate::config::Arch::Hybrid {
            candle_core::bail!(
                "HybridVit::new: config has arch = \"{}\", expected \"hybrid\"",
                cfg.arch.as_str()
            );
        }
        let pe = vb.pp("patch_embed");
        let trunk = ResNetTrunk::new(cfg, pe.pp("backbone"))?;
        // timm's HybridEmbed keeps PyTorch's default conv init for its projection.
        let proj = Conv2d::with_weight_init(
            cfg.trunk_out_channels(),
            cfg.embed_dim,
            1,
            1,
            0,
            true,
            pytorch_default_init(cfg.trunk_out_channels()),
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
        let Some((last, rest)) = self.blocks.split_last() else {
            candle_core::bail!("HybridVit::encode: the encoder has no blocks (depth = 0)");
        };
        for block in rest {
            x = block.forward(&x)?;
        }
        // Only the cls row goes on to the features: the last block computes just that row.
        self.norm.forward(&last.forward_cls(&x)?.squeeze(1)?)
    }

    /// Images `(B, 3, S, S)` -> features `(B, C)`: `encode(embed_t(images, train))`.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.encode(&self.embed_t(images, train)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn the_cls_only_last_block_equals_the_full_block_and_its_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = ModelConfig {
            embed_dim: 32,
            num_heads: 4,
            mlp_ratio: 3.0,
            ..ModelConfig::full()
        };
        let vm = VarMap::new();
        let block = Block::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 10, 32), &dev)?)?;
        let r = Tensor::randn(0f32, 1., (3, 1, 32), &dev)?;
        let full = block.forward(&x)?.narrow(1, 0, 1)?;
        let cls = block.forward_cls(&x)?;
        let g_full = (&full * &r)?.sum_all()?.backward()?;
        let g_cls = (&cls * &r)?.sum_all()?.backward()?;
        let max_diff = |u: &Tensor, v: &Tensor| -> Result<f32> {
            (u - v)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
        };
        assert!(max_diff(&full, &cls)? < 1e-5);
        let mut tensors = vec![x.as_tensor().clone()];
        tensors.extend(vm.all_vars().iter().map(|v| v.as_tensor().clone()));
        for t in &tensors {
            let (a, b) = (g_full.get(t).expect("grad"), g_cls.get(t).expect("grad"));
            assert!(
                max_diff(a, b)? < 1e-5,
                "gradient of a {:?} tensor differs",
                t.dims()
            );
        }
        Ok(())
    }
}
