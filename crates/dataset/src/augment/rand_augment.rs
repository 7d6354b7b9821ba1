//! RandAugment as the SPMix reference uses it: the PaCo code base's copy of timm's
//! `rand_augment_transform("rand-n{n}-m{m}-mstd{mstd}")`.
//!
//! Each application draws `n` ops uniformly with replacement from [`RandAugmentOp::ALL`] (timm's
//! op list without AutoContrast, Posterize at TPU levels); each op runs with probability `p`
//! (0.5) at a magnitude drawn from N(m, mstd) clipped to [0, 10]. Geometric ops (Rotate, ShearX/Y,
//! TranslateX/YRel) move the image and its saliency map with the same parameters and fill
//! uncovered image pixels with the data set's mean colour (map: 0); colour ops touch the image only.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::colour;
use super::geometry::{warp_affine, Affine};
use super::Pair;

/// timm's `_MAX_LEVEL`: magnitudes live in [0, 10].
pub const MAX_LEVEL: f32 = 10.0;

/// One RandAugment op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RandAugmentOp {
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateXRel,
    TranslateYRel,
}

impl RandAugmentOp {
    /// The reference's op list, in timm's order (`_RAND_TRANSFORMS` without AutoContrast).
    pub const ALL: [RandAugmentOp; 14] = [
        RandAugmentOp::Equalize,
        RandAugmentOp::Invert,
        RandAugmentOp::Rotate,
        RandAugmentOp::Posterize,
        RandAugmentOp::Solarize,
        RandAugmentOp::SolarizeAdd,
        RandAugmentOp::Color,
        RandAugmentOp::Contrast,
        RandAugmentOp::Brightness,
        RandAugmentOp::Sharpness,
        RandAugmentOp::ShearX,
        RandAugmentOp::ShearY,
        RandAugmentOp::TranslateXRel,
        RandAugmentOp::TranslateYRel,
    ];

    /// Whether the op moves pixels (and therefore the saliency map).
    pub fn is_geometric(self) -> bool {
        matches!(
            self,
            RandAugmentOp::Rotate
                | RandAugmentOp::ShearX
                | RandAugmentOp::ShearY
                | RandAugmentOp::TranslateXRel
                | RandAugmentOp::TranslateYRel
        )
    }

    /// Applies the op at `level` in [0, 10]; `negate` flips the sign of rotate/shear/translate
    /// (timm's `_randomly_negate`, drawn by the caller so every op consumes the same draws).
    pub fn apply(self, pair: &mut Pair, level: f32, negate: bool, fill: [u8; 3]) {
        let sign = if negate { -1.0 } else { 1.0 };
        let (w, h) = pair.image.dimensions();
        let img = &mut pair.image;
        match self {
            RandAugmentOp::Equalize => colour::equalize(img),
            RandAugmentOp::Invert => colour::invert(img),
            RandAugmentOp::Posterize => colour::posterize(img, (level / MAX_LEVEL * 4.0) as u32),
            RandAugmentOp::Solarize => colour::solarize(img, (level / MAX_LEVEL * 256.0) as u32),
            RandAugmentOp::SolarizeAdd => {
                colour::solarize_add(img, (level / MAX_LEVEL * 110.0) as i32, 128)
            }
            RandAugmentOp::Color => colour::saturation(img, enhance_factor(level)),
            RandAugmentOp::Contrast => colour::contrast(img, enhance_factor(level)),
            RandAugmentOp::Brightness => colour::brightness(img, enhance_factor(level)),
            RandAugmentOp::Sharpness => colour::sharpness(img, enhance_factor(level)),
            RandAugmentOp::Rotate => {
                let deg = sign * level / MAX_LEVEL * 30.0;
                *pair = warp_affine(pair, Affine::rotate(deg, w, h), fill);
            }
            RandAugmentOp::ShearX => {
                let f = sign * level / MAX_LEVEL * 0.3;
                *pair = warp_affine(pair, Affine::shear_x(f), fill);
            }
            RandAugmentOp::ShearY => {
                let f = sign * level / MAX_LEVEL * 0.3;
                *pair = warp_affine(pair, Affine::shear_y(f), fill);
            }
            RandAugmentOp::TranslateXRel => {
                let px = sign * level / MAX_LEVEL * 0.45 * w as f32;
                *pair = warp_affine(pair, Affine::translate_x(px), fill);
            }
            RandAugmentOp::TranslateYRel => {
                let px = sign * level / MAX_LEVEL * 0.45 * h as f32;
                *pair = warp_affine(pair, Affine::translate_y(px), fill);
            }
        }
    }
}

/// timm's `_enhance_level_to_arg`: factor in [0.1, 1.9].
fn enhance_factor(level: f32) -> f32 {
    level / MAX_LEVEL * 1.8 + 0.1
}

/// RandAugment settings (`rand-n2-m10-mstd0.5` in timm's notation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandAugmentConfig {
    /// Ops per application (timm `n`).
    pub n: usize,
    /// Mean magnitude in [0, 10] (timm `m`).
    pub m: f32,
    /// Standard deviation of the magnitude (timm `mstd`); 0 keeps it fixed.
    #[serde(default)]
    pub mstd: f32,
    /// Probability that each drawn op runs (timm: 0.5).
    #[serde(default = "half")]
    pub p: f32,
    /// Fill colour of uncovered pixels after a geometric op, RGB 0..255: the data set's mean colour
    /// (ISIC: round(255 * (0.765, 0.545, 0.569)) = (195, 139, 145)).
    #[serde(default = "isic_fill")]
    pub fill: [u8; 3],
}

fn half() -> f32 {
    0.5
}

fn isic_fill() -> [u8; 3] {
    super::Normalization::isic().fill_colour()
}

impl Default for RandAugmentConfig {
    /// The reference's `rand-n2-m10-mstd0.5` with ISIC fill.
    fn default() -> Self {
        RandAugmentConfig {
            n: 2,
            m: 10.0,
            mstd: 0.5,
            p: 0.5,
            fill: isic_fill(),
        }
    }
}

impl RandAugmentConfig {
    /// Draws and applies `n` ops to `pair`. The draws per op are, in order: op index, run (p),
    /// magnitude, sign — always all four, so the stream of draws does not depend on the image.
    pub fn apply(&self, pair: &mut Pair, rng: &mut impl Rng, colour_ops: bool) {
        for _ in 0..self.n {
            let op = RandAugmentOp::ALL[rng.random_range(0..RandAugmentOp::ALL.len())];
            let run = rng.random::<f32>() < self.p;
            let level = if self.mstd > 0.0 {
                // Normal::new fails only for a non-finite std, excluded by `validate`.
                let normal = Normal::new(self.m, self.mstd).expect("finite mstd");
                normal.sample(rng)
            } else {
                self.m
            }
            .clamp(0.0, MAX_LEVEL);
            let negate = rng.random::<f32>() < 0.5;
            if run && (colour_ops || op.is_geometric()) {
                op.apply(pair, level, negate, self.fill);
            }
        }
    }

    /// Checks ranges; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=MAX_LEVEL).contains(&self.m) {
            return Err(format!("rand_augment.m = {} is not in [0, 10]", self.m));
        }
        if !(self.mstd >= 0.0 && self.mstd.is_finite()) {
            return Err(format!("rand_augment.mstd = {} must be >= 0", self.mstd));
        }
        if !(0.0..=1.0).contains(&self.p) {
            return Err(format!("rand_augment.p = {} is not in [0, 1]", self.p));
        }
        Ok(())
    }
}
