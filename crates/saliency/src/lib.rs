//! Montabone–Soto static fine-grained saliency (OpenCV's `StaticSaliencyFineGrained`), bit-exact.
//!
//! Shapes: an `H x W` 8-bit image (RGB or grey) gives an `H x W` 8-bit map ([`GrayImage`]);
//! [`map_to_f32`] gives the `H x W` `f32` map OpenCV's Python binding returns
//! (`u8 * (1.0f32 / 255.0)`, values in `[0, 1]`). The u8 map equals OpenCV 5.0's byte for byte, and
//! the f32 map bit for bit, on every committed fixture (see `tests/parity.rs`).
//!
//! ```
//! use image::{Rgb, RgbImage};
//! let mut img = RgbImage::from_pixel(64, 48, Rgb([40, 40, 40]));
//! img.put_pixel(30, 20, Rgb([250, 250, 250]));
//! let map = saliency::fine_grained_saliency(&img);
//! assert_eq!(map.dimensions(), (64, 48));
//! assert_eq!(map.get_pixel(30, 20).0[0], 255); // the lone bright pixel is the most salient
//! assert_eq!(map.get_pixel(0, 0).0[0], 0);
//! ```
//!
//! Colour order: [`RgbImage`] is R, G, B; OpenCV's grey weights are applied to the right channels
//! (feeding OpenCV the same bytes in RGB order instead of BGR changes most pixels).
//! A grey image is used as is, as OpenCV does with a 1-channel input; a grey image and the same
//! image expanded to three equal channels give the same map (the weights sum to 2^15).
//!
//! Decoding: every image file is read through [`decode`] (format from the content, a pixel budget
//! checked from the header, truncated JPEGs refused), which the rest of the workspace uses too.
//!
//! Files: [`write_maps`] computes many maps in parallel (rayon), writes each atomically as an
//! 8-bit grey PNG, skips outputs that are already up to date, and returns one result per file.

mod batch;
pub mod decode;
mod error;
mod fine_grained;
mod jpeg_end;
pub mod output_file;

use std::cell::RefCell;

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, RgbImage};
use rayon::prelude::*;

pub use batch::{
    load_image, saliency_from_path, saliency_from_path_with_limits, write_map,
    write_map_with_limits, write_maps, write_maps_with_progress, MapJob, MapOutcome,
};
pub use decode::{decode_image_bytes, decode_image_file, DecodeLimits, DEFAULT_MAX_PIXELS};
pub use error::SaliencyError;
pub use fine_grained::HALF_WIDTHS;

use fine_grained::{saliency_u8, Layout, Scratch};

/// An `H x W` saliency map in OpenCV's `f32` form, values `k / 255` for `k` in `0..=255`.
pub type SaliencyMapF32 = ImageBuffer<Luma<f32>, Vec<f32>>;

thread_local! {
    // Buffers sized for the largest image this thread has seen (about 4 * (W + 225) * (H + 1)
    // bytes for the integral image plus 9 * W * H bytes): reuse saves allocation and page faults.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn compute(pixels: &[u8], layout: Layout, width: u32, height: u32) -> GrayImage {
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0u8; w * h];
    SCRATCH.with_borrow_mut(|scratch| saliency_u8(pixels, layout, w, h, scratch, &mut out));
    GrayImage::from_raw(width, height, out).expect("buffer holds width * height bytes")
}

/// Saliency map of an RGB image: `H x W x 3` (R, G, B) -> `H x W` u8, identical to OpenCV's
/// `StaticSaliencyFineGrained` on the same pixels in BGR order, times 255.
pub fn fine_grained_saliency(image: &RgbImage) -> GrayImage {
    compute(image.as_raw(), Layout::Rgb, image.width(), image.height())
}

/// Saliency map of a grey image: `H x W` -> `H x W` u8 (OpenCV's 1-channel path: no conversion).
pub fn fine_grained_saliency_grey(image: &GrayImage) -> GrayImage {
    compute(image.as_raw(), Layout::Grey, image.width(), image.height())
}

/// Saliency map of any decoded image, `H x W` u8.
///
/// 8-bit grey uses the grey path and 8-bit RGB the RGB path without a copy; grey with alpha and
/// 16-bit grey are reduced to 8-bit grey, every other format (RGBA, 16-bit, float) to 8-bit RGB
/// by the `image` crate's conversions (alpha dropped). OpenCV itself only takes 8-bit input.
pub fn fine_grained_saliency_dynamic(image: &DynamicImage) -> GrayImage {
    match image {
        DynamicImage::ImageLuma8(g) => fine_grained_saliency_grey(g),
        DynamicImage::ImageRgb8(rgb) => fine_grained_saliency(rgb),
        DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => fine_grained_saliency_grey(&image.to_luma8()),
        other => fine_grained_saliency(&other.to_rgb8()),
    }
}

/// The `f32` map OpenCV's binding returns for an RGB image: [`map_to_f32`] of
/// [`fine_grained_saliency`].
pub fn fine_grained_saliency_f32(image: &RgbImage) -> SaliencyMapF32 {
    map_to_f32(&fine_grained_saliency(image))
}

/// OpenCV's conversion of the u8 map to `f32`: `v as f32 * (1.0f32 / 255.0)` per pixel (a
/// multiplication by the rounded reciprocal, which differs from `v / 255.0` in some last bits).
pub fn map_to_f32(map: &GrayImage) -> SaliencyMapF32 {
    const SCALE: f32 = 1.0 / 255.0;
    let data = map.as_raw().iter().map(|&v| f32::from(v) * SCALE).collect();
    SaliencyMapF32::from_raw(map.width(), map.height(), data).expect("same size as the u8 map")
}

/// Maps of many RGB images at once, in parallel on the current rayon pool; `out[i]` belongs to
/// `images[i]`.
pub fn saliency_batch(images: &[RgbImage]) -> Vec<GrayImage> {
    images.par_iter().map(fine_grained_saliency).collect()
}
