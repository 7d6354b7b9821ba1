//! Checked decoding of untrusted image files, the one decoder every command uses (`prepare-isic`,
//! the `saliency` binary, the training loader, `trainer predict`).
//!
//! - The format comes from the content (magic bytes), never from the file name: a PNG named `.jpg`
//!   decodes as the PNG it is, a text file named `.jpg` is an error.
//! - A pixel budget is checked from the header before any pixel buffer exists: width x height must
//!   not exceed [`DecodeLimits::max_pixels`] (default [`DEFAULT_MAX_PIXELS`], 64 MP: ISIC
//!   dermoscopy images are at most about 30 MP), and `image::Limits` bounds the decoder's own
//!   allocations. A few hundred bytes claiming 100000 x 100000 pixels cost nothing.
//! - A JPEG that ends before its end-of-image marker is an error (the decoder would fill the rest
//!   with grey and report success).
//!
//! Memory: a decoded image takes at most `max_pixels x 8` bytes (RGBA, 16 bits); the saliency map
//! of it about 17 bytes a pixel more. Work run in parallel therefore peaks at about
//! `threads x 25 x max_pixels` bytes (1.6 GB a thread at the default).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};

use crate::jpeg_end::check_jpeg_reaches_eoi;
use crate::SaliencyError;

/// Default per-image pixel budget: 64 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Bytes a pixel may take in the decoder's output (RGBA, 16 bits a channel).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Limits applied to every image before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width x height accepted, in pixels.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl DecodeLimits {
    /// Limits with this per-image pixel budget.
    pub fn with_max_pixels(max_pixels: u64) -> Self {
        DecodeLimits { max_pixels }
    }

    /// The `image` crate's limits for this budget: no side longer than the budget, no allocation
    /// larger than `max_pixels x 8` bytes (plus 1 MiB for the decoder's own tables).
    fn image_limits(&self) -> image::Limits {
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        let mut limits = image::Limits::no_limits();
        limits.max_image_width = Some(side);
        limits.max_image_height = Some(side);
        limits.max_alloc = Some(
            self.max_pixels
                .saturating_mul(MAX_BYTES_PER_PIXEL)
                .saturating_add(1 << 20),
        );
        limits
    }
}

/// The format of an image from its first bytes; an error naming `path` when it is not one the
/// workspace decodes (PNG, JPEG).
pub fn sniff_format(bytes: &[u8], path: &Path) -> Result<ImageFormat, SaliencyError> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => Ok(f),
        Ok(other) => Err(SaliencyError::UnsupportedFormat {
            path: path.to_owned(),
            found: format!("{other:?}"),
        }),
        Err(_) if bytes.is_empty() => Err(SaliencyError::UnsupportedFormat {
            path: path.to_owned(),
            found: "an empty file".into(),
        }),
        Err(_) => Err(SaliencyError::UnsupportedFormat {
            path: path.to_owned(),
            found: "no known image signature".into(),
        }),
    }
}

/// Width and height from the header of an in-memory image, checked against `limits` without
/// decoding any pixel.
pub fn checked_dimensions(
    bytes: &[u8],
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(u32, u32), SaliencyError> {
    let format = sniff_format(bytes, path)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.image_limits());
    let (width, height) = reader
        .into_dimensions()
        .map_err(|source| decode_error(path, source))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(SaliencyError::TooManyPixels {
            path: path.to_owned(),
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    Ok((width, height))
}

/// Decodes an in-memory image file under `limits`: format sniffed from the bytes, pixel budget
/// checked from the header, JPEG completeness checked, then decoded. Errors name `path`.
pub fn decode_image_bytes(
    bytes: &[u8],
    path: &Path,
    limits: &DecodeLimits,
) -> Result<DynamicImage, SaliencyError> {
    checked_dimensions(bytes, path, limits)?;
    let format = sniff_format(bytes, path)?;
    if format == ImageFormat::Jpeg {
        check_jpeg_reaches_eoi(bytes).map_err(|message| SaliencyError::Truncated {
            path: path.to_owned(),
            message,
        })?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.image_limits());
    reader.decode().map_err(|source| decode_error(path, source))
}

/// Reads and decodes the image file at `path` under `limits` (see [`decode_image_bytes`]).
pub fn decode_image_file(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<DynamicImage, SaliencyError> {
    let bytes = std::fs::read(path).map_err(|source| SaliencyError::ReadInput {
        path: path.to_owned(),
        error: source,
    })?;
    decode_image_bytes(&bytes, path, limits)
}

/// The checked dimensions of the image file at `path`, reading only its first MiB when the header
/// lies there (it does for PNG, and for JPEGs without huge metadata), else the whole file.
pub fn image_file_dimensions(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(u32, u32), SaliencyError> {
    use std::io::Read;
    const PREFIX: u64 = 1 << 20;
    let read_err = |source| SaliencyError::ReadInput {
        path: path.to_owned(),
        error: source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.by_ref()
        .take(PREFIX)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    match checked_dimensions(&bytes, path, limits) {
        Ok(size) => Ok(size),
        Err(_) if bytes.len() as u64 == PREFIX => {
            file.read_to_end(&mut bytes).map_err(read_err)?;
            checked_dimensions(&bytes, path, limits)
        }
        Err(e) => Err(e),
    }
}

fn decode_error(path: &Path, source: image::ImageError) -> SaliencyError {
    match source {
        image::ImageError::Limits(e) => SaliencyError::OverLimits {
            path: path.to_owned(),
            message: e.to_string(),
        },
        source => SaliencyError::Decode {
            path: path.to_owned(),
            error: source,
        },
    }
}
