//! Inference and evaluation with the query network: images `(B, 3, S, S)` (resize + centre crop,
//! docs/method.md step 10) -> logits `(B, C)` -> softmax probabilities; metrics from the argmax.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use candle_core::{Device, Tensor};
use dataset::augment::Pair;
use dataset::data_set::DataSet;
use dataset::loader::{Loader, LoaderConfig, LoaderMode};
use model::QueryNetwork;

use crate::augment::augment_config;
use crate::config::Config;
use crate::metrics::{self, EvalMetrics};

/// Softmax of `(B, C)` logits, rows as vectors.
pub fn probabilities(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let p = candle_nn::ops::softmax(&logits.to_dtype(candle_core::DType::F32)?, 1)?;
    Ok(p.to_vec2::<f32>()?)
}

/// The paper's groups (Many = NV; Medium = MEL, BKL, BCC; Few = AKIEC, VASC, DF): those of
/// ISIC2018's class counts. A small or synthetic split's own counts can group differently (at the
/// demo's scale every class but NV would be Medium), so reports always use these.
pub fn paper_groups() -> [dataset::Group; dataset::NUM_CLASSES] {
    dataset::classes::groups_from_counts(&dataset::IsicClass::ALL.map(|c| c.isic2018_count()))
}

/// Predictions of a whole data set, in data set order.
pub struct SplitPredictions {
    /// Image ids.
    pub images: Vec<String>,
    /// True labels.
    pub labels: Vec<usize>,
    /// `(n, C)` class probabilities.
    pub probabilities: Vec<Vec<f32>>,
}

impl SplitPredictions {
    /// Metrics of the argmax predictions and the per-class and macro AUCs of the probabilities,
    /// with the paper's Many/Medium/Few groups.
    pub fn metrics(&self, _data: &DataSet) -> EvalMetrics {
        let names: Vec<String> = dataset::IsicClass::ALL
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        metrics::evaluate_probabilities(&self.labels, &self.probabilities, &names, &paper_groups())
    }
}

/// Runs the query network (eval mode) over `data` with the evaluation transform.
pub fn predict_split(
    query: &QueryNetwork,
    data: Arc<DataSet>,
    cfg: &Config,
    device: &Device,
) -> Result<SplitPredictions> {
    let loader = Loader::new(
        Arc::clone(&data),
        LoaderMode::Eval,
        augment_config(cfg),
        LoaderConfig {
            batch_size: cfg.eval.batch_size,
            threads: cfg.data.workers,
            prefetch: cfg.data.prefetch,
            with_saliency: false,
            ..LoaderConfig::default()
        },
        cfg.run.seed,
    )?;
    let mut labels = Vec::with_capacity(data.len());
    let mut probs = Vec::with_capacity(data.len());
    let mut images = Vec::with_capacity(data.len());
    for step in loader.epoch(0) {
        let step = step?;
        let b = step.single()?;
        let x = b.single_view()?.images.to_device(device)?;
        let logits = query.classify(&query.encoder().forward_t(&x, false)?)?;
        probs.extend(probabilities(&logits)?);
        labels.extend(b.labels.to_vec1::<u32>()?.into_iter().map(|l| l as usize));
        images.extend(b.indices.iter().map(|&i| data.item(i).image.clone()));
    }
    Ok(SplitPredictions {
        images,
        labels,
        probabilities: probs,
    })
}

/// Class probabilities of image files (any size; resized and centre-cropped as in evaluation),
/// one entry per file, in order. An image that cannot be read or decoded under `limits` gives
/// `Err(message naming the file)` in its slot and does not stop the others; errors of the model
/// itself fail the call.
pub fn predict_files(
    query: &QueryNetwork,
    files: &[impl AsRef<Path>],
    cfg: &Config,
    device: &Device,
    limits: &dataset::prepare::DecodeLimits,
) -> Result<Vec<std::result::Result<Vec<f32>, String>>> {
    let aug = augment_config(cfg);
    let s = cfg.model.image_size;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let f = f.as_ref();
        let img = match dataset::data_set::decode_with_limits(f, limits) {
            Ok(img) => img.to_rgb8(),
            Err(e) => {
                out.push(Err(e.to_string()));
                continue;
            }
        };
        let (w, h) = img.dimensions();
        let pair = Pair::new(img, image::GrayImage::new(w, h)).map_err(anyhow::Error::msg)?;
        let view = aug.eval.apply(&pair);
        let mut x = vec![0f32; 3 * s * s];
        let mut sal = vec![0f32; s * s];
        aug.normalization.write_chw(&view, &mut x, &mut sal);
        let x = Tensor::from_vec(x, (1, 3, s, s), device)?;
        let logits = query.classify(&query.encoder().forward_t(&x, false)?)?;
        out.extend(probabilities(&logits)?.into_iter().map(Ok));
    }
    Ok(out)
}
