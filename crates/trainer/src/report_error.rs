//! The errors of the report, predictions and plot writers and readers (one type, so that
//! `report.rs` and `plots.rs` need not import each other).

use std::path::PathBuf;

use crate::atomic_file::WriteError;

/// Errors of the report writers and readers; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{path}: {images} image names but {rows} probability rows")]
    RowCountMismatch {
        path: PathBuf,
        images: usize,
        rows: usize,
    },
    #[error("{path}: row {row} (image {image:?}) has {got} probabilities, expected {expected} (one per class)")]
    RowWidthMismatch {
        path: PathBuf,
        row: usize,
        image: String,
        got: usize,
        expected: usize,
    },
    #[error("{path}: image name {image:?} (row {row}) contains a comma, quote or line break")]
    BadImageName {
        path: PathBuf,
        row: usize,
        image: String,
    },
    #[error("{path}: bad header {header:?}: expected `image` then at least one class column")]
    BadHeader { path: PathBuf, header: String },
    #[error("{path}: line {line}: {message}")]
    BadRow {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: confusion matrix is {rows}x{cols} but there are {classes} class names")]
    ConfusionShape {
        path: PathBuf,
        rows: usize,
        cols: usize,
        classes: usize,
    },
    #[error("{path}: no epochs to plot")]
    NoEpochs { path: PathBuf },
}
