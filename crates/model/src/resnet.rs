//! ResNet-D trunk as timm's `resnet50d`: the stem and as many stages as `trunk_layers` has
//! entries (3 in the hybrid, 4 in the plain ResNet-50 of [`crate::resnet50`]).
//!
//! Shapes: images `(B, 3, H, W)` -> stage-3 map `(B, 4 * channels[2], g, g)` with
//! `g = grid_size(H)` (stride 16; full model: `(B, 3, 224, 224)` -> `(B, 1024, 14, 14)`); stage 4
//! (stride 2) -> `(B, 4 * channels[3], g', g')`, `g' = (g - 1) / 2 + 1` (full: `(B, 2048, 7, 7)`).
//!
//! Deep stem: conv3x3/2 `3->w`, BN, ReLU, conv3x3 `w->w`, BN, ReLU, conv3x3 `w->2w`, BN (`bn1`),
//! ReLU, max-pool 3x3/2 pad 1. Bottlenecks put the stride on the 3x3 conv; the shortcut is
//! AvgPool2d(2, stride, ceil_mode, count_include_pad=false) then 1x1 conv + BN ("avg-down").
//! Variable names are timm's (`conv1.0.weight`, `bn1.running_var`, `layer2.0.downsample.1.weight`, ..).

use candle_core::{DType, Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::layers::Conv2d;
use ops::avg_pool::avg_pool_2x2_ceil;
use ops::batch_norm::BatchNorm2d;
use ops::max_pool::stem_max_pool;
use ops::residual::add_relu;

/// Conv (no bias) followed by BatchNorm.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }

    /// `relu(bn(conv(x)))`, the ReLU fused into the BatchNorm.
    fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_relu_t(&self.conv.forward(x)?, train)
    }
}

/// Avg-down shortcut of the first block of a stage: `downsample.1` (conv) and `.2` (BN).
#[derive(Debug, Clone)]
struct Downsample {
    stride: usize,
    conv: Conv2d,
    bn: BatchNorm2d,
}

/// ResNet bottleneck (expansion 4): `(B, in, H, W)` -> `(B, 4 * planes, H / s, W / s)`.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    c1: ConvBn,
    c2: ConvBn,
    c3: ConvBn,
    downsample: Option<Downsample>,
}

impl Bottleneck {
    fn new(inplanes: usize, planes: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let out = 4 * planes;
        let cb = |cin, cout, k, s, p, i: usize| -> Result<ConvBn> {
            let bn_vb = vb.pp(format!("bn{i}"));
            Ok(ConvBn {
                conv: Conv2d::new(cin, cout, k, s, p, false, vb.pp(format!("conv{i}")))?,
                // timm's zero_init_last: the block starts as its shortcut.
                bn: if i == 3 {
                    BatchNorm2d::new_zero_weight(cout, bn_vb)?
                } else {
                    BatchNorm2d::new(cout, bn_vb)?
                },
            })
        };
        let downsample = if stride != 1 || inplanes != out {
            let d = vb.pp("downsample");
            Some(Downsample {
                stride,
                conv: Conv2d::new(inplanes, out, 1, 1, 0, false, d.pp("1"))?,
                bn: BatchNorm2d::new(out, d.pp("2"))?,
            })
        } else {
            None
        };
        Ok(Self {
            c1: cb(inplanes, planes, 1, 1, 0, 1)?,
            c2: cb(planes, planes, 3, stride, 1, 2)?,
            c3: cb(planes, out, 1, 1, 0, 3)?,
            downsample,
        })
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            None => x.clone(),
            Some(d) => {
                let p = match d.stride {
                    1 => x.clone(),
                    2 => avg_pool_2x2_ceil(x)?,
                    s => candle_core::bail!("avg-down shortcut: stride {s} unsupported"),
                };
                d.bn.forward_t(&d.conv.forward(&p)?, train)?
            }
        };
        let y = self.c1.forward_relu_t(x, train)?;
        let y = self.c2.forward_relu_t(&y, train)?;
        let y = self.c3.forward_t(&y, train)?;
        add_relu(&y, &shortcut)
    }
}

/// Deep-stem ResNet-D with `trunk_layers.len()` stages: `(B, 3, H, W)` -> the last stage's map
/// (`(B, 4 * channels[2], g, g)` for the hybrid's three stages).
#[derive(Debug, Clone)]
pub struct ResNetTrunk {
    stem: [ConvBn; 2],
    stem_conv3: Conv2d,
    bn1: BatchNorm2d,
    stages: Vec<Vec<Bottleneck>>,
}

impl ResNetTrunk {
    /// Builds the stem and one stage per entry of `cfg.trunk_layers` under `vb` (timm names, e.g.
    /// `vb.pp("patch_embed").pp("backbone")` in the hybrid, the root in the plain ResNet-50).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let sw = cfg.stem_width;
        let c1 = vb.pp("conv1");
        let stem = [
            ConvBn {
                conv: Conv2d::new(3, sw, 3, 2, 1, false, c1.pp("0"))?,
                bn: BatchNorm2d::new(sw, c1.pp("1"))?,
            },
            ConvBn {
                conv: Conv2d::new(sw, sw, 3, 1, 1, false, c1.pp("3"))?,
                bn: BatchNorm2d::new(sw, c1.pp("4"))?,
            },
        ];
        let stem_conv3 = Conv2d::new(sw, 2 * sw, 3, 1, 1, false, c1.pp("6"))?;
        let bn1 = BatchNorm2d::new(2 * sw, vb.pp("bn1"))?;
        let mut inplanes = 2 * sw;
        let mut stages = Vec::with_capacity(cfg.trunk_layers.len());
        for (i, (&n, &planes)) in cfg.trunk_layers.iter().zip(&cfg.trunk_channels).enumerate() {
            let lvb = vb.pp(format!("layer{}", i + 1));
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(n);
            for j in 0..n {
                let s = if j == 0 { stride } else { 1 };
                blocks.push(Bottleneck::new(inplanes, planes, s, lvb.pp(j))?);
                inplanes = 4 * planes;
            }
            stages.push(blocks);
        }
        Ok(Self {
            stem,
            stem_conv3,
            bn1,
            stages,
        })
    }
}

impl ResNetTrunk {
    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    /// Images `(B, 3, H, W)` through the stem and stages `0..n` (0-based; `n` at most
    /// [`Self::num_stages`]): `n = 3` gives the stage-3 map `(B, 4 * channels[2], g, g)`.
    pub fn forward_to_stage_t(&self, x: &Tensor, n: usize, train: bool) -> Result<Tensor> {
        if x.dtype() != DType::F32 {
            candle_core::bail!("ResNetTrunk: f32 images required, got {:?}", x.dtype());
        }
        let mut y = self.stem[0].forward_relu_t(x, train)?;
        y = self.stem[1].forward_relu_t(&y, train)?;
        y = self
            .bn1
            .forward_relu_t(&self.stem_conv3.forward(&y)?, train)?;
        y = stem_max_pool(&y)?;
        self.forward_stages_t(&y, 0..n, train)
    }

    /// A map through the stages `range` (0-based) alone, e.g. `3..4` = stage 4 of ResNet-50.
    pub fn forward_stages_t(
        &self,
        x: &Tensor,
        range: std::ops::Range<usize>,
        train: bool,
    ) -> Result<Tensor> {
        let Some(stages) = self.stages.get(range.clone()) else {
            candle_core::bail!(
                "ResNetTrunk: stages {range:?} asked of a trunk with {} stages",
                self.stages.len()
            );
        };
        let mut y = x.clone();
        for block in stages.iter().flatten() {
            y = block.forward_t(&y, train)?;
        }
        Ok(y)
    }
}

impl ModuleT for ResNetTrunk {
    /// Images through the stem and every stage.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_to_stage_t(x, self.stages.len(), train)
    }
}
