//! Fig. 4: what SPMix's mixing does to a config's own images, built from the training's code paths.
//!
//! The SPMix loader of the config (its class-balanced and instance samplers, its augmentations and
//! the static saliency maps, seeded by `run.seed`) yields steps of epoch 1 exactly as training sees
//! them; the foreground batch is the class-balanced one (the instance one with
//! `mix.foreground = "instance"`), the background the other. For each step the ratio op of every
//! Table 2 variant ([`patchmix::mixing_ratio`]) runs on the whole batch's query-view saliency with
//! the seed training uses for that step ([`crate::methods::spmix::ratio_seed`]); the sheet keeps
//! the first `pairs` slots whose foreground is not a Many class (tail/head pairs) with their grids.
//!
//! Training mixes tokens, not pixels; [`mixed_illustration`] blends the two images patch by patch
//! with the same ratios to show which image each token mostly comes from.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use dataset::augment::Normalization;
use dataset::data_set::DataSet;
use dataset::loader::{LoadedBatch, LoadedStep, Loader, LoaderConfig, LoaderMode};
use dataset::{Group, IsicClass};
use image::{GrayImage, Rgb, RgbImage};
use patchmix::{RatioConfig, RatioMode};

use crate::config::{Config, Foreground};

/// One Table 2 variant: its ratio mode and the name the sheet gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub mode: RatioMode,
    pub title: &'static str,
}

/// The Table 2 rows, in the sheet's column order.
pub const VARIANTS: [Variant; 4] = [
    Variant {
        mode: RatioMode::LesionAware,
        title: "patch + saliency (SPMix)",
    },
    Variant {
        mode: RatioMode::SampleScalar,
        title: "saliency per sample",
    },
    Variant {
        mode: RatioMode::RandomPatch,
        title: "random per patch",
    },
    Variant {
        mode: RatioMode::ConstantSample,
        title: "plain token mixup",
    },
];

/// Most pairs one sheet draws: bounds the canvas (about 90 MB of RGB pixels for 224 px views of
/// 14 x 14 patches, the largest pictures the layout makes).
pub const MAX_PAIRS: usize = 8;

/// The view the sheet shows: the query view (its ratio is the query branch's); the number is the
/// view's part of the ratio seed ([`crate::methods::spmix::ratio_seed`]).
pub const VIEW: usize = 0;

/// One image of a pair as the training step saw it (after augmentation), for drawing.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index in the train split.
    pub index: usize,
    /// Image id.
    pub image: String,
    pub class: IsicClass,
    /// The augmented view, `S x S`, un-normalised to RGB bytes.
    pub rgb: RgbImage,
    /// Its saliency map, `S x S`, un-normalised to `[0, 255]` (255 = most salient).
    pub saliency: GrayImage,
}

/// A per-patch ratio grid `(rows, cols)` in row-major patch order (the ViT token order): the
/// foreground's share of each token.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioGrid {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` ratios.
    pub values: Vec<f32>,
}

impl RatioGrid {
    /// Ratio of patch `(row, col)`.
    pub fn at(&self, row: usize, col: usize) -> f32 {
        self.values[row * self.cols + col]
    }
}

/// One tail/head pair of the sheet.
#[derive(Debug, Clone)]
pub struct MixPair {
    /// 0-based epoch and step of the training step it comes from, and its slot in the batch.
    pub epoch: u64,
    pub step: usize,
    pub slot: usize,
    /// The image whose label the mixed sample carries.
    pub foreground: Sample,
    pub background: Sample,
    /// One grid per entry of [`VARIANTS`], in that order.
    pub grids: Vec<RatioGrid>,
}

/// Everything the sheet draws.
#[derive(Debug, Clone)]
pub struct MixSheet {
    pub pairs: Vec<MixPair>,
    /// The ratio parameters (`[mix]`: patch size, noise, floor, alpha).
    pub ratio: RatioConfig,
    /// `run.seed` the samplers, augmentations and ratio noise were seeded with.
    pub seed: u64,
    pub foreground: Foreground,
    /// Side of the augmented views in pixels (`model.image_size`).
    pub image_size: usize,
}

/// The SPMix-mode loader over `train` with the config's augmentations and sampler settings (as
/// the trainer builds it for an SPMix run), seeded by `run.seed`.
pub fn spmix_loader(cfg: &Config, train: Arc<DataSet>) -> Result<Loader> {
    Ok(Loader::new(
        train,
        LoaderMode::Spmix,
        crate::augment::augment_config(cfg),
        LoaderConfig {
            batch_size: cfg.run.batch_size,
            threads: cfg.data.workers,
            prefetch: 1,
            with_saliency: true,
            class_weight_exponent: cfg.method.class_weight_exponent,
            ..LoaderConfig::default()
        },
        cfg.run.seed,
    )?)
}

/// (foreground, background) batches of an SPMix-mode step, as [`crate::methods::spmix::step`]
/// picks them.
pub fn foreground_background<'a>(
    cfg: &Config,
    step: &'a LoadedStep,
) -> Result<(&'a LoadedBatch, &'a LoadedBatch)> {
    let batches = step.spmix()?;
    Ok(match cfg.mix.foreground {
        Foreground::Balanced => (batches.balanced, batches.instance),
        Foreground::Instance => (batches.instance, batches.balanced),
    })
}

/// Saliency `(B, 1, S, S)` of the query view of a batch.
pub fn view_saliency(batch: &LoadedBatch) -> Result<&Tensor> {
    Ok(&batch.view_pair()?.query.saliency)
}

/// The `(B, N)` ratios of every variant for one step, with the step's training seed.
pub fn step_ratios(cfg: &Config, step: &LoadedStep) -> Result<Vec<Tensor>> {
    let (fg, bg) = foreground_background(cfg, step)?;
    let seed =
        crate::methods::spmix::ratio_seed(cfg.run.seed, step.epoch as usize, step.step, VIEW);
    VARIANTS
        .iter()
        .map(|v| {
            patchmix::mixing_ratio(
                v.mode,
                view_saliency(fg)?,
                view_saliency(bg)?,
                &cfg.mix.ratio_config(),
                seed,
            )
            .with_context(|| format!("the {} ratio", v.title))
        })
        .collect()
}

/// Builds the sheet: the first `pairs` tail/head pairs of epoch 1 of `cfg`'s SPMix loader (see the
/// module doc). The split must be prepared ([`crate::ensure_split::ensure_split`]).
pub fn build(cfg: &Config, pairs: usize) -> Result<MixSheet> {
    if !(1..=MAX_PAIRS).contains(&pairs) {
        bail!("--pairs must lie in 1..={MAX_PAIRS}, got {pairs}");
    }
    let split = &cfg.data.split_dir;
    let train = Arc::new(
        DataSet::open(split, "train")
            .with_context(|| format!("opening {}/train.csv", split.display()))?,
    );
    let loader = spmix_loader(cfg, Arc::clone(&train))?;
    let norm = crate::augment::augment_config(cfg).normalization;
    let groups = crate::evaluate::paper_groups();
    let size = cfg.model.image_size;
    let patch = cfg.mix.patch_size;
    let (rows, cols) = (size / patch.max(1), size / patch.max(1));
    if rows == 0 {
        bail!(
            "model.image_size {size} is smaller than mix.patch_size {patch}: no whole patch to mix"
        );
    }
    let epoch = 0u64;
    let mut out = Vec::new();
    for s in 0..loader.steps_per_epoch() {
        let step = loader
            .load_step(epoch, s)
            .with_context(|| format!("loading epoch 1 step {s}"))?;
        let (fg, bg) = foreground_background(cfg, &step)?;
        let fg_labels = fg.labels.to_vec1::<u32>()?;
        let ratios = step_ratios(cfg, &step)?
            .iter()
            .map(|r| Ok(r.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?))
            .collect::<Result<Vec<_>>>()?;
        for (slot, &label) in fg_labels.iter().enumerate() {
            if groups[label as usize] == Group::Many {
                continue;
            }
            let grids = ratios
                .iter()
                .map(|r| {
                    let values = r[slot].clone();
                    if values.len() != rows * cols {
                        bail!(
                            "the ratio has {} patches, expected {rows} x {cols} \
                             (image_size {size} / mix.patch_size {patch})",
                            values.len()
                        );
                    }
                    Ok(RatioGrid { rows, cols, values })
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(MixPair {
                epoch,
                step: s,
                slot,
                foreground: sample(&train, fg, slot, &norm)?,
                background: sample(&train, bg, slot, &norm)?,
                grids,
            });
            if out.len() == pairs {
                return Ok(MixSheet {
                    pairs: out,
                    ratio: cfg.mix.ratio_config(),
                    seed: cfg.run.seed,
                    foreground: cfg.mix.foreground,
                    image_size: size,
                });
            }
        }
    }
    bail!(
        "epoch 1 has only {} foreground images outside the Many group; ask for fewer --pairs",
        out.len()
    )
}

/// Slot `slot` of `batch`'s [`VIEW`], un-normalised for drawing.
fn sample(
    data: &DataSet,
    batch: &LoadedBatch,
    slot: usize,
    norm: &Normalization,
) -> Result<Sample> {
    let index = batch.indices[slot];
    let item = data.item(index);
    let view = batch.view_pair()?.query;
    let img = view.images.get(slot)?; // (3, S, S)
    let (_, h, w) = img.dims3()?;
    let px = img.flatten_all()?.to_vec1::<f32>()?;
    let hw = h * w;
    let byte = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    let rgb = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        Rgb(std::array::from_fn(|c| {
            byte(px[c * hw + i] * norm.std[c] + norm.mean[c])
        }))
    });
    let sal = view.saliency.get(slot)?.flatten_all()?.to_vec1::<f32>()?;
    let saliency = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let v = sal[y as usize * w + x as usize];
        image::Luma([byte(v * norm.saliency_std + norm.saliency_mean)])
    });
    Ok(Sample {
        index,
        image: item.image.clone(),
        class: IsicClass::from_label(item.label)
            .with_context(|| format!("train image {} has label {}", item.image, item.label))?,
        rgb,
        saliency,
    })
}

/// The mixed sample as pixels: in patch `(r, c)` (side `patch` px) every pixel is
/// `ratio * fg + (1 - ratio) * bg`; pixels past the last whole patch (which the tokeniser drops)
/// are mid-grey. `fg` and `bg` are the same size.
pub fn mixed_illustration(
    fg: &RgbImage,
    bg: &RgbImage,
    grid: &RatioGrid,
    patch: usize,
) -> RgbImage {
    RgbImage::from_fn(fg.width(), fg.height(), |x, y| {
        let (r, c) = (y as usize / patch, x as usize / patch);
        if r >= grid.rows || c >= grid.cols {
            return Rgb([128, 128, 128]);
        }
        let t = grid.at(r, c);
        let (a, b) = (fg.get_pixel(x, y), bg.get_pixel(x, y));
        Rgb(std::array::from_fn(|k| {
            (t * a[k] as f32 + (1.0 - t) * b[k] as f32)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_illustration_blends_each_patch_with_its_ratio() {
        let fg = RgbImage::from_pixel(5, 4, Rgb([200, 100, 0]));
        let bg = RgbImage::from_pixel(5, 4, Rgb([0, 100, 200]));
        let grid = RatioGrid {
            rows: 2,
            cols: 2,
            values: vec![1.0, 0.5, 0.25, 0.0],
        };
        let m = mixed_illustration(&fg, &bg, &grid, 2);
        assert_eq!(m.get_pixel(0, 0).0, [200, 100, 0]);
        assert_eq!(m.get_pixel(3, 1).0, [100, 100, 100]);
        assert_eq!(m.get_pixel(1, 2).0, [50, 100, 150]);
        assert_eq!(m.get_pixel(2, 3).0, [0, 100, 200]);
        // Column 4 lies past the last whole patch.
        assert_eq!(m.get_pixel(4, 0).0, [128, 128, 128]);
    }

    #[test]
    fn variants_are_the_four_table_2_modes() {
        let modes: Vec<RatioMode> = VARIANTS.iter().map(|v| v.mode).collect();
        assert_eq!(
            modes,
            [
                RatioMode::LesionAware,
                RatioMode::SampleScalar,
                RatioMode::RandomPatch,
                RatioMode::ConstantSample
            ]
        );
    }
}
