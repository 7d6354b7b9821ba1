//! Projection heads and the linear classifier.
//!
//! - [`MlpHead`]: `(B, dims[0])` -> `(B, dims[last])`; per layer Linear (no bias), BatchNorm1d,
//!   ReLU, except the last layer: Linear, BatchNorm1d without affine, no ReLU (MoCo v3's
//!   `_build_mlp`). Names `{prefix}.{3i}.weight` (Linear) and `{prefix}.{3i+1}.*` (BN), as an
//!   `nn.Sequential` numbers them. Projector: `[768, 4096, 4096, 256]`, predictor: `[256, 4096, 256]`.
//! - [`classifier`]: Linear with bias `(B, C)` -> `(B, classes)`, timm's `head.*`;
//!   [`classifier_for`] picks the classifier of a config's arch (ResNet-50: timm's `fc.*`).

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, Init, VarBuilder};

use crate::config::{Arch, ModelConfig};
use crate::layers::{pytorch_default_init, Linear};
use ops::batch_norm::batch_norm;

/// MLP head of Linear/BatchNorm1d/ReLU layers: `(B, dims[0])` -> `(B, dims[last])`.
#[derive(Debug, Clone)]
pub struct MlpHead {
    layers: Vec<(Linear, BatchNorm)>,
}

impl MlpHead {
    /// Builds a head with `dims.len() - 1` layers (at least one) under `vb`.
    pub fn new(dims: &[usize], vb: VarBuilder) -> Result<Self> {
        if dims.len() < 2 {
            candle_core::bail!("MlpHead needs at least two sizes, got {dims:?}");
        }
        let n = dims.len() - 1;
        let layers = (0..n)
            .map(|i| {
                let lin = Linear::new(
                    dims[i],
                    dims[i + 1],
                    false,
                    pytorch_default_init(dims[i]),
                    vb.pp(3 * i),
                )?;
                let bn = batch_norm(dims[i + 1], i + 1 < n, vb.pp(3 * i + 1))?;
                Ok((lin, bn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// The projector `[embed_dim, hidden, hidden, out]`.
    pub fn projector(embed_dim: usize, hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Self::new(&[embed_dim, hidden, hidden, out], vb)
    }

    /// The predictor `[dim, hidden, dim]`.
    pub fn predictor(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Self::new(&[dim, hidden, dim], vb)
    }
}

impl ModuleT for MlpHead {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = self.layers.len();
        let mut x = x.clone();
        for (i, (lin, bn)) in self.layers.iter().enumerate() {
            x = bn.forward_t(&lin.forward(&x)?, train)?;
            if i + 1 < n {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// Linear classifier `(B, in)` -> `(B, classes)` with bias, timm's ViT head init
/// (normal std 0.02 in place of trunc-normal, zero bias).
pub fn classifier(in_dim: usize, classes: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(
        in_dim,
        classes,
        true,
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
        vb,
    )
}

/// The linear classifier `(B, feature_dim)` -> `(B, num_classes)` of `cfg.arch`, under the
/// variable builder's root: the hybrid's `head.*` ([`classifier`]'s init), ResNet-50's `fc.*`
/// with PyTorch's default `nn.Linear` init (what timm's ResNet keeps).
pub fn classifier_for(cfg: &ModelConfig, vb: VarBuilder) -> Result<Linear> {
    let (f, k) = (cfg.feature_dim(), cfg.num_classes);
    match cfg.arch {
        Arch::Hybrid => classifier(f, k, vb.pp("head")),
        Arch::Resnet50 => Linear::pytorch_default(f, k, vb.pp("fc")),
    }
}
