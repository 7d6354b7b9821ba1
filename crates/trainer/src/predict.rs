//! `trainer predict` and `trainer eval --labels`: which files a command line names, and batched
//! class probabilities of image files with the evaluation transform (resize + centre crop,
//! docs/method.md step 10) at the run's evaluation batch size.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use dataset::augment::{AugmentConfig, Pair};
use dataset::prepare::DecodeLimits;
use model::QueryNetwork;

use crate::augment::augment_config;
use crate::config::Config;
use crate::evaluate::probabilities;

/// Extensions (any case) of the files `predict` takes from a folder. Named files are read
/// whatever their extension (the format is recognised by content).
pub const FOLDER_IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The image files of the command line, in order: a file as given; a folder as the files directly
/// inside it (not in sub-folders) whose extension is in [`FOLDER_IMAGE_EXTENSIONS`], sorted by
/// name, hidden files (`.name`) skipped. A path that does not exist, an unreadable folder or a
/// folder without such images is an error naming it.
pub fn collect_images(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let meta =
            std::fs::metadata(arg).with_context(|| format!("cannot read {}", arg.display()))?;
        if !meta.is_dir() {
            out.push(arg.clone());
            continue;
        }
        let mut found = Vec::new();
        let entries =
            std::fs::read_dir(arg).with_context(|| format!("cannot list {}", arg.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", arg.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_image = Path::new(name.as_ref())
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| {
                    FOLDER_IMAGE_EXTENSIONS
                        .iter()
                        .any(|x| x.eq_ignore_ascii_case(e))
                });
            // `metadata` follows links: a link to an image counts, a link to a folder does not.
            if is_image && !name.starts_with('.') && path.metadata().is_ok_and(|m| m.is_file()) {
                found.push(path);
            }
        }
        if found.is_empty() {
            bail!(
                "{} holds no image file (.jpg, .jpeg or .png; sub-folders are not searched)",
                arg.display()
            );
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// The model input of one decoded image: `(3, S, S)` planar, normalised, as a flat vector.
fn eval_input(img: image::RgbImage, aug: &AugmentConfig, size: usize) -> Result<Vec<f32>> {
    let (w, h) = img.dimensions();
    let pair = Pair::new(img, image::GrayImage::new(w, h)).map_err(anyhow::Error::msg)?;
    let view = aug.eval.apply(&pair);
    let mut x = vec![0f32; 3 * size * size];
    let mut saliency = vec![0f32; size * size];
    aug.normalization.write_chw(&view, &mut x, &mut saliency);
    Ok(x)
}

/// Class probabilities `[C]` of each file, in order, computed `cfg.eval.batch_size` images at a
/// time. A file that cannot be read or decoded under `limits` gets `Err(message naming the
/// file)` in its slot and does not stop the others; errors of the model fail the call.
pub fn predict_images(
    query: &QueryNetwork,
    files: &[PathBuf],
    cfg: &Config,
    device: &Device,
    limits: &DecodeLimits,
) -> Result<Vec<std::result::Result<Vec<f32>, String>>> {
    let aug = augment_config(cfg);
    let s = cfg.model.image_size;
    let batch = cfg.eval.batch_size.max(1);
    let mut out: Vec<std::result::Result<Vec<f32>, String>> = Vec::with_capacity(files.len());
    for chunk in files.chunks(batch) {
        let first = out.len();
        let mut inputs = Vec::with_capacity(chunk.len() * 3 * s * s);
        let mut slots = Vec::with_capacity(chunk.len());
        for (i, f) in chunk.iter().enumerate() {
            match dataset::data_set::decode_with_limits(f, limits) {
                Ok(img) => {
                    inputs.extend(eval_input(img.to_rgb8(), &aug, s)?);
                    slots.push(first + i);
                    out.push(Ok(Vec::new()));
                }
                // The decoder's errors name the file.
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        if slots.is_empty() {
            continue;
        }
        let x = Tensor::from_vec(inputs, (slots.len(), 3, s, s), device)?;
        let logits = query.classify(&query.encoder().forward_t(&x, false)?)?;
        for (slot, p) in slots.into_iter().zip(probabilities(&logits)?) {
            out[slot] = Ok(p);
        }
    }
    Ok(out)
}
