//! The error type of the file-level API; every message names the file at fault.

use std::path::PathBuf;

/// Why one input image could not be turned into a saliency map file.
#[derive(Debug, thiserror::Error)]
pub enum SaliencyError {
    /// The input file could not be opened, read or inspected.
    #[error("cannot read input image {}: {source}", path.display())]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The input file is not an image the `image` crate can decode (corrupt, truncated, unknown).
    #[error("cannot decode image {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// The output path has no file name or no parent folder (e.g. `/` or `..`).
    #[error("output path {} does not name a file", path.display())]
    InvalidOutput { path: PathBuf },
    /// The output's folder could not be created, or the temporary file could not be
    /// written, flushed or renamed onto the output.
    #[error("cannot write saliency map {}: {source}", path.display())]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// PNG encoding of the map failed.
    #[error("cannot encode saliency map {} as PNG: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}
