//! The loader's augmentation settings a config asks for (training views and the evaluation
//! transform); used by training and by evaluation alike.

use dataset::augment::{AugmentConfig, Normalization, Step, ViewConfig};

use crate::config::{AugmentSection, Config};

/// The loader's augmentation settings for a config: query/key/baseline views at the model's
/// image size, evaluation resize `round(size * eval_resize_ratio)` then centre crop `size`.
/// The training views follow `[augment]` (crop scale, RandAugment on or off).
pub fn augment_config(cfg: &Config) -> AugmentConfig {
    let s = cfg.model.image_size as u32;
    let train_view = |v: ViewConfig| tune_view(v, &cfg.augment);
    AugmentConfig {
        query: train_view(ViewConfig::query(s)),
        key: train_view(ViewConfig::key(s)),
        baseline: train_view(ViewConfig::query(s)),
        eval: dataset::augment::EvalConfig {
            resize: ((s as f64) * cfg.data.eval_resize_ratio).round() as u32,
            crop: s,
        },
        normalization: Normalization::isic(),
    }
}

/// A preset view with `[augment]` applied: its RandomResizedCrop scale replaced and, when
/// `rand_augment` is off, its RandAugment step dropped.
fn tune_view(mut v: ViewConfig, a: &AugmentSection) -> ViewConfig {
    v.steps
        .retain(|s| a.rand_augment || !matches!(s, Step::RandAugment { .. }));
    for s in &mut v.steps {
        if let Step::RandomResizedCrop { scale, .. } = s {
            *scale = a.crop_scale;
        }
    }
    v
}
