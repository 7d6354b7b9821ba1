//! ISIC2018 skin-lesion data for SPMix: reading the official layouts (ISIC2018 Task 3 and HAM10000),
//! deterministic lesion-aware splits, a synthetic data set in the ISIC layout, joint image+saliency
//! augmentation, samplers and a parallel batch loader.

pub mod classes;
pub mod error;
pub mod image_id;
pub mod index;
pub mod map_cache;
pub mod prepare;
pub mod split;
pub mod split_files;
pub mod synth;

pub mod augment;
pub mod data_set;
pub mod loaded_step;
pub mod loader;
pub mod sampler;
pub mod split_check;

pub use classes::{Group, IsicClass, NUM_CLASSES};
pub use error::{DatasetError, Result};
pub use split_files::{read_split_csv, saliency_path, SplitManifest, SplitRow};
