//! The crate's error type.

use std::path::PathBuf;

/// Errors of the `model` crate. Messages name the file, key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The config file could not be read.
    #[error("cannot read model config {path}: {source}")]
    ConfigIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config text is not a valid `[model]` table.
    #[error("invalid model config {origin}: {message}")]
    ConfigParse { origin: String, message: String },
    /// A config value is out of range (the message names the key).
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// A weights or input file could not be read as safetensors.
    #[error("cannot read safetensors file {path}: {source}")]
    SafetensorsIo {
        path: PathBuf,
        source: candle_core::Error,
    },
    /// The tensors of a weights file do not fit the model; the report lists every missing,
    /// unexpected and mis-shaped tensor.
    #[error("weights {origin} do not fit the model:\n{report}")]
    WeightsMismatch { origin: String, report: String },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, ModelError>;
