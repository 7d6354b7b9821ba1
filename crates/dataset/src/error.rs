//! The crate's error type. Every variant names the file (and row or key) at fault.
//!
//! Messages include the underlying OS or parser message themselves and do not also expose it as
//! `source()`, so a binary printing the whole chain (`{:#}`) shows it once.

use std::path::PathBuf;

/// Errors from reading, splitting, generating and loading data.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// The OS error (shown in the message, deliberately not a `source()`).
        error: std::io::Error,
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
    #[error("{path}: {error}")]
    Json {
        path: PathBuf,
        /// The parser's error (shown in the message, deliberately not a `source()`).
        error: serde_json::Error,
    },
    /// An image file could not be decoded under the limits (see `saliency::decode`).
    #[error(transparent)]
    Decode(#[from] saliency::SaliencyError),
    #[error("{path}: row {row}: image id {id:?} cannot name a file: {reason} (ids are file-name stems: A-Z a-z 0-9 . _ -)")]
    UnsafeImageId {
        path: PathBuf,
        row: u64,
        id: String,
        reason: &'static str,
    },
    #[error("{path}: row {row}: path {found} leaves the split folder {root} (relative paths must stay inside it)")]
    PathOutsideRoot {
        path: PathBuf,
        row: u64,
        found: String,
        root: PathBuf,
    },
    #[error("{path}: no images (the file has a header but no rows)")]
    NoImages { path: PathBuf },
    #[error("the {split} split would be empty ({protocol}; images per class: train {train:?}, val {val:?}, test {test:?})")]
    EmptySplit {
        split: &'static str,
        protocol: String,
        train: Vec<usize>,
        val: Vec<usize>,
        test: Vec<usize>,
    },
    #[error("class {class} would have no training images (train {train}, val {val}, test {test}; {total} images in the source)")]
    EmptyClass {
        class: String,
        train: usize,
        val: usize,
        test: usize,
        total: usize,
    },
    #[error("{split}.csv row {row} (image {image}): {message}")]
    SplitFile {
        split: String,
        row: u64,
        image: String,
        message: String,
    },
}

impl DatasetError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
