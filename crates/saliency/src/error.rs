//! The error type of the file-level API; every message names the file at fault and includes the
//! underlying I/O or decoder message itself (not as `source()`, so a printed chain has it once).

use std::path::PathBuf;

/// Why one input image could not be turned into a saliency map file.
#[derive(Debug, thiserror::Error)]
pub enum SaliencyError {
    /// The input file could not be opened, read or inspected.
    #[error("cannot read input image {}: {error}", path.display())]
    ReadInput {
        path: PathBuf,
        /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
        error: std::io::Error,
    },
    /// The input file is not an image the `image` crate can decode (corrupt, truncated, unknown).
    #[error("cannot decode image {}: {error}", path.display())]
    Decode {
        path: PathBuf,
        /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
        error: image::ImageError,
    },
    /// The file is empty or not a PNG or JPEG (judged by its content, not its name).
    #[error("cannot decode image {}: {found} (expected a PNG or JPEG file)", path.display())]
    UnsupportedFormat { path: PathBuf, found: String },
    /// The header claims more pixels than the per-image budget allows; nothing was decoded.
    #[error(
        "image {} is {width}x{height} = {} pixels, over the limit of {max_pixels} (raise it with --max-pixels)",
        path.display(), u64::from(*width) * u64::from(*height)
    )]
    TooManyPixels {
        path: PathBuf,
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// The decoder would need more memory than the limits allow.
    #[error("image {} exceeds the decoding limits: {message} (raise them with --max-pixels)", path.display())]
    OverLimits { path: PathBuf, message: String },
    /// The file ends before the image does (a JPEG without its end-of-image marker).
    #[error("cannot decode image {}: {message}", path.display())]
    Truncated { path: PathBuf, message: String },
    /// The output path has no file name or no parent folder (e.g. `/` or `..`).
    #[error("output path {} does not name a file", path.display())]
    InvalidOutput { path: PathBuf },
    /// The output's folder could not be created, or the temporary file could not be
    /// written, flushed or renamed onto the output.
    #[error("cannot write saliency map {}: {error}", path.display())]
    WriteOutput {
        path: PathBuf,
        /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
        error: std::io::Error,
    },
    /// PNG encoding of the map failed.
    #[error("cannot encode saliency map {} as PNG: {error}", path.display())]
    Encode {
        path: PathBuf,
        /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
        error: image::ImageError,
    },
}
