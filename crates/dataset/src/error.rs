//! The crate's error type. Every variant names the file (and row or key) at fault.

use std::path::PathBuf;

/// Errors from reading, splitting, generating and loading data.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: row {row}: {message}")]
    Csv {
        path: PathBuf,
        /// 1-based line number in the file (the header is line 1).
        row: u64,
        message: String,
    },
    #[error("{path}: unexpected header {found:?}; expected {expected:?}")]
    Header {
        path: PathBuf,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    #[error("{0}")]
    Layout(String),
    #[error("{count} image file(s) listed in {csv} are missing, e.g. {}", first.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    MissingImages {
        csv: PathBuf,
        count: usize,
        first: Vec<PathBuf>,
    },
    #[error("{count} image(s) could not be decoded: {}", first.join("; "))]
    CorruptImages { count: usize, first: Vec<String> },
    #[error("class {class} has {available} images ({lesions} lesions) but the split asks for {requested} (val {val} + test {test}) and leaves none for training")]
    ClassTooSmall {
        class: String,
        available: usize,
        lesions: usize,
        requested: usize,
        val: usize,
        test: usize,
    },
    #[error("{path} already holds a split (train.csv / split.json); pass --force to replace it")]
    OutputExists { path: PathBuf },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl DatasetError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
