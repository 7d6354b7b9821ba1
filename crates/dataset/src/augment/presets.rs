//! View pipelines as serde config: an ordered list of steps and an output size, the SPMix query and
//! key presets, and the evaluation transform.
//!
//! A view maps a [`Pair`] (image (H, W, 3) u8 + map (H, W) u8) to a `size` x `size` pair. In TOML:
//! ```toml
//! [augment.query]
//! size = 224
//! steps = [
//!   { op = "random_resized_crop", scale = [0.08, 1.0], ratio = [0.75, 1.3333333] },
//!   { op = "horizontal_flip", p = 0.5 },
//! ]
//! ```

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::colour;
use super::geometry::{
    crop_resize, hflip, random_resized_crop_box, resize_centre_crop_box, CropBox,
};
use super::rand_augment::RandAugmentConfig;
use super::{Normalization, Pair};

/// One step of a view pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// torchvision `RandomResizedCrop(size, scale, ratio)`: crops an area fraction in `scale` with an
    /// aspect ratio (w/h) log-uniform in `ratio`, resized to the view size. Image and map.
    RandomResizedCrop { scale: [f32; 2], ratio: [f32; 2] },
    /// Mirrors image and map left-right with probability `p`.
    HorizontalFlip { p: f32 },
    /// torchvision `ColorJitter`: brightness, contrast and saturation factors uniform in
    /// [max(0, 1 - x), 1 + x], hue shift uniform in [-hue, hue] turns, in a random order; applied
    /// with probability `p` (default 1). Image only.
    ColorJitter {
        brightness: f32,
        contrast: f32,
        saturation: f32,
        hue: f32,
        #[serde(default = "one")]
        p: f32,
    },
    /// Turns the image grey (3 equal channels) with probability `p`. Image only.
    RandomGrayscale { p: f32 },
    /// With probability `p`, a Gaussian blur with sigma uniform in `sigma` (pixels). Image only.
    GaussianBlur { p: f32, sigma: [f32; 2] },
    /// RandAugment (see [`RandAugmentConfig`]); geometric ops move the map too.
    RandAugment {
        n: usize,
        m: f32,
        #[serde(default)]
        mstd: f32,
        #[serde(default = "half")]
        p: f32,
        #[serde(default = "isic_fill")]
        fill: [u8; 3],
    },
}

fn one() -> f32 {
    1.0
}
fn half() -> f32 {
    0.5
}
fn isic_fill() -> [u8; 3] {
    Normalization::isic().fill_colour()
}

/// Whether colour steps run. [`ColourOps::Skip`] draws the same random numbers but leaves colours
/// alone, so the geometry of a view can be checked against its colour-free twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourOps {
    Apply,
    Skip,
}

/// One augmented view: output `size` x `size` and the steps, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// Output side in pixels (224 in the paper).
    pub size: u32,
    /// Steps in order. Without a `random_resized_crop` the whole image is resized to `size` first.
    pub steps: Vec<Step>,
}

/// Names accepted by [`ViewConfig::preset`].
pub const PRESET_NAMES: [&str; 2] = ["query", "key"];

impl ViewConfig {
    /// The SPMix query view: RandomResizedCrop(size, 0.08-1) -> h-flip 0.5 ->
    /// ColorJitter(0.4, 0.4, 0.4, 0) -> RandAugment(n 2, m 10, mstd 0.5).
    pub fn query(size: u32) -> Self {
        let ra = RandAugmentConfig::default();
        ViewConfig {
            size,
            steps: vec![
                rrc(),
                Step::HorizontalFlip { p: 0.5 },
                jitter(),
                Step::RandAugment {
                    n: ra.n,
                    m: ra.m,
                    mstd: ra.mstd,
                    p: ra.p,
                    fill: ra.fill,
                },
            ],
        }
    }

    /// The SPMix key view: RandomResizedCrop(size, 0.08-1) -> ColorJitter(0.4, 0.4, 0.4, 0) ->
    /// RandomGrayscale 0.2 -> GaussianBlur(sigma 0.1-2) p 0.5 -> h-flip 0.5.
    pub fn key(size: u32) -> Self {
        ViewConfig {
            size,
            steps: vec![
                rrc(),
                jitter(),
                Step::RandomGrayscale { p: 0.2 },
                Step::GaussianBlur {
                    p: 0.5,
                    sigma: [0.1, 2.0],
                },
                Step::HorizontalFlip { p: 0.5 },
            ],
        }
    }

    /// A preset by name (`query` or `key`, see [`PRESET_NAMES`]).
    pub fn preset(name: &str, size: u32) -> Result<Self, String> {
        match name {
            "query" => Ok(Self::query(size)),
            "key" => Ok(Self::key(size)),
            _ => Err(format!(
                "unknown augmentation preset {name:?}; expected one of {PRESET_NAMES:?}"
            )),
        }
    }

    /// Checks every step's ranges; the message names the step and key.
    pub fn validate(&self) -> Result<(), String> {
        if self.size == 0 {
            return Err("view size must be > 0".into());
        }
        let prob = |name: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{name}.p = {p} is not in [0, 1]"))
            }
        };
        for s in &self.steps {
            match s {
                Step::RandomResizedCrop { scale, ratio } => {
                    if !(scale[0] > 0.0 && scale[0] <= scale[1] && scale[1] <= 1.0) {
                        return Err(format!(
                            "random_resized_crop.scale = {scale:?} must satisfy 0 < lo <= hi <= 1"
                        ));
                    }
                    if !(ratio[0] > 0.0 && ratio[0] <= ratio[1]) {
                        return Err(format!(
                            "random_resized_crop.ratio = {ratio:?} must satisfy 0 < lo <= hi"
                        ));
                    }
                }
                Step::HorizontalFlip { p } => prob("horizontal_flip", *p)?,
                Step::ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                    p,
                } => {
                    prob("color_jitter", *p)?;
                    for (k, v) in [
                        ("brightness", brightness),
                        ("contrast", contrast),
                        ("saturation", saturation),
                    ] {
                        if !(*v >= 0.0 && v.is_finite()) {
                            return Err(format!("color_jitter.{k} = {v} must be >= 0"));
                        }
                    }
                    if !(0.0..=0.5).contains(hue) {
                        return Err(format!("color_jitter.hue = {hue} is not in [0, 0.5]"));
                    }
                }
                Step::RandomGrayscale { p } => prob("random_grayscale", *p)?,
                Step::GaussianBlur { p, sigma } => {
                    prob("gaussian_blur", *p)?;
                    if !(sigma[0] > 0.0 && sigma[0] <= sigma[1]) {
                        return Err(format!(
                            "gaussian_blur.sigma = {sigma:?} must satisfy 0 < lo <= hi"
                        ));
                    }
                }
                Step::RandAugment { .. } => self
                    .rand_augment_of(s)
                    .expect("is RandAugment")
                    .validate()?,
            }
        }
        Ok(())
    }

    fn rand_augment_of(&self, s: &Step) -> Option<RandAugmentConfig> {
        match *s {
            Step::RandAugment {
                n,
                m,
                mstd,
                p,
                fill,
            } => Some(RandAugmentConfig {
                n,
                m,
                mstd,
                p,
                fill,
            }),
            _ => None,
        }
    }

    /// Applies the view to `pair`: a `size` x `size` pair. Randomness comes only from `rng`, so a
    /// sample's view is fixed by the RNG's seed.
    pub fn apply(&self, pair: &Pair, rng: &mut impl Rng) -> Pair {
        self.apply_with(pair, rng, ColourOps::Apply)
    }

    /// [`apply`](Self::apply) with colour steps optionally skipped (same random draws).
    pub fn apply_with(&self, pair: &Pair, rng: &mut impl Rng, colour_ops: ColourOps) -> Pair {
        let colour = colour_ops == ColourOps::Apply;
        let size = self.size;
        let has_crop = self
            .steps
            .iter()
            .any(|s| matches!(s, Step::RandomResizedCrop { .. }));
        let mut cur = if has_crop {
            None
        } else {
            let (w, h) = pair.image.dimensions();
            Some(crop_resize(pair, full(w, h), size, size))
        };
        for s in &self.steps {
            // The first crop reads the caller's pair directly (no copy of the full-size image).
            let src = cur.as_ref().unwrap_or(pair);
            match s {
                Step::RandomResizedCrop { scale, ratio } => {
                    let (w, h) = src.image.dimensions();
                    let b = random_resized_crop_box(w, h, *scale, *ratio, rng);
                    cur = Some(crop_resize(src, b, size, size));
                }
                Step::HorizontalFlip { p } => {
                    if rng.random::<f32>() < *p {
                        let mut next = cur.take().unwrap_or_else(|| pair.clone());
                        hflip(&mut next);
                        cur = Some(next);
                    }
                }
                Step::ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                    p,
                } => {
                    let run = rng.random::<f32>() < *p;
                    let f = |rng: &mut _, x: f32| factor(rng, x);
                    let (b, c, s) = (f(rng, *brightness), f(rng, *contrast), f(rng, *saturation));
                    let hs = if *hue > 0.0 {
                        rng.random_range(-*hue..=*hue)
                    } else {
                        0.0
                    };
                    let mut order = [0usize, 1, 2, 3];
                    order.shuffle(rng);
                    if run && colour {
                        let img = &mut cur.get_or_insert_with(|| pair.clone()).image;
                        for o in order {
                            match o {
                                0 if *brightness > 0.0 => colour::brightness(img, b),
                                1 if *contrast > 0.0 => colour::contrast(img, c),
                                2 if *saturation > 0.0 => colour::saturation(img, s),
                                3 if *hue > 0.0 => colour::hue(img, hs),
                                _ => {}
                            }
                        }
                    }
                }
                Step::RandomGrayscale { p } => {
                    if rng.random::<f32>() < *p && colour {
                        colour::grayscale(&mut cur.get_or_insert_with(|| pair.clone()).image);
                    }
                }
                Step::GaussianBlur { p, sigma } => {
                    let run = rng.random::<f32>() < *p;
                    let sd = rng.random_range(sigma[0]..=sigma[1]);
                    if run && colour {
                        colour::gaussian_blur(
                            &mut cur.get_or_insert_with(|| pair.clone()).image,
                            sd,
                        );
                    }
                }
                Step::RandAugment { .. } => {
                    let ra = self.rand_augment_of(s).expect("is RandAugment");
                    ra.apply(cur.get_or_insert_with(|| pair.clone()), rng, colour);
                }
            }
        }
        let out = cur.unwrap_or_else(|| pair.clone());
        if out.image.dimensions() == (size, size) {
            out
        } else {
            let (w, h) = out.image.dimensions();
            crop_resize(&out, full(w, h), size, size)
        }
    }
}

fn full(w: u32, h: u32) -> CropBox {
    CropBox {
        left: 0.0,
        top: 0.0,
        width: w as f64,
        height: h as f64,
    }
}

/// A ColorJitter factor uniform in [max(0, 1 - x), 1 + x] (always drawn, to keep the stream fixed).
fn factor(rng: &mut impl Rng, x: f32) -> f32 {
    rng.random_range((1.0 - x).max(0.0)..=1.0 + x)
}

fn rrc() -> Step {
    Step::RandomResizedCrop {
        scale: [0.08, 1.0],
        ratio: [3.0 / 4.0, 4.0 / 3.0],
    }
}

fn jitter() -> Step {
    Step::ColorJitter {
        brightness: 0.4,
        contrast: 0.4,
        saturation: 0.4,
        hue: 0.0,
        p: 1.0,
    }
}

/// The evaluation transform: resize the shorter side to `resize`, centre-crop `crop` x `crop`
/// (paper: 256 and 224), done as one resampling of the matching source rectangle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    pub resize: u32,
    pub crop: u32,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            resize: 256,
            crop: 224,
        }
    }
}

impl EvalConfig {
    /// Deterministic `crop` x `crop` pair.
    pub fn apply(&self, pair: &Pair) -> Pair {
        let (w, h) = pair.image.dimensions();
        let b = resize_centre_crop_box(w, h, self.resize, self.crop);
        crop_resize(pair, b, self.crop, self.crop)
    }

    /// `resize >= crop > 0`.
    pub fn validate(&self) -> Result<(), String> {
        if self.crop == 0 || self.resize < self.crop {
            return Err(format!(
                "eval: need resize >= crop > 0, got resize {} crop {}",
                self.resize, self.crop
            ));
        }
        Ok(())
    }
}

/// All augmentation settings the loader needs: the query and key views (SPMix), the view used in
/// baseline mode, the evaluation transform and the normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub query: ViewConfig,
    pub key: ViewConfig,
    /// The single view of baseline (one-view) training; the query preset by default.
    pub baseline: ViewConfig,
    pub eval: EvalConfig,
    pub normalization: Normalization,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            query: ViewConfig::query(224),
            key: ViewConfig::key(224),
            baseline: ViewConfig::query(224),
            eval: EvalConfig::default(),
            normalization: Normalization::isic(),
        }
    }
}

impl AugmentConfig {
    /// Validates every part; the message says which (`query: ...`).
    pub fn validate(&self) -> Result<(), String> {
        self.query.validate().map_err(|e| format!("query: {e}"))?;
        self.key.validate().map_err(|e| format!("key: {e}"))?;
        self.baseline
            .validate()
            .map_err(|e| format!("baseline: {e}"))?;
        self.eval.validate().map_err(|e| format!("eval: {e}"))?;
        self.normalization
            .validate()
            .map_err(|e| format!("normalization: {e}"))
    }
}
