//! Errors of reading, layering, overriding and validating a configuration.

use std::path::PathBuf;

/// Errors of reading, overriding and validating a configuration; each names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {error}")]
    Io {
        path: PathBuf,
        /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
        error: std::io::Error,
    },
    #[error("{origin}: malformed TOML: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: unknown key `{key}`{suggestion}")]
    UnknownKey {
        origin: String,
        key: String,
        suggestion: String,
    },
    #[error("--set {arg:?}: {reason}")]
    BadOverride { arg: String, reason: String },
    #[error("{origin}: {message}")]
    Extends { origin: String, message: String },
    #[error("{origin}: invalid value: {message}")]
    Invalid { origin: String, message: String },
}

/// A result with [`ConfigError`].
pub type Result<T> = std::result::Result<T, ConfigError>;
