//! Errors of the loss and queue types.

use std::path::PathBuf;

/// Everything that can go wrong in this crate. Messages name the argument, tensor key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SupconError {
    /// An input tensor has the wrong rank or size.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// The argument (`features`, `labels`, ...).
        what: &'static str,
        /// The expected shape, in words (`(B, V, D)`, `(N, C) with N <= M`).
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// An input tensor has a dtype this crate does not accept.
    #[error("{what}: expected {expected}, got dtype {got:?}")]
    DType {
        /// The argument at fault.
        what: &'static str,
        /// What was expected (`a float dtype`, `an integer dtype`).
        expected: &'static str,
        /// The dtype received.
        got: candle_core::DType,
    },
    /// A hyper-parameter is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    Config {
        /// The parameter name (`temperature`, `smooth`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A label is outside `0..num_classes` where a class index is needed (centre term, cross-entropy).
    #[error("{what}: label {label} at row {row} is not a class index in 0..{num_classes}")]
    LabelOutOfRange {
        /// The argument at fault.
        what: &'static str,
        /// Row of the offending label.
        row: usize,
        /// The label.
        label: u32,
        /// Number of classes.
        num_classes: usize,
    },
    /// A checkpoint tensor map lacks a key or holds a tensor of the wrong shape or dtype.
    #[error("queue checkpoint: tensor `{key}` {problem}")]
    Checkpoint {
        /// The tensor key (`queue.keys`, ...).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading or writing a safetensors file failed.
    #[error("queue checkpoint file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying candle error.
        #[source]
        source: candle_core::Error,
    },
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`SupconError`].
pub type Result<T> = std::result::Result<T, SupconError>;
