//! Geometric transforms applied identically to an image (H, W, 3) u8 and its saliency map
//! (H, W) u8: crop + resize, horizontal flip, and PIL-style affine warps (rotate, shear, translate).
//!
//! Every function here takes a [`Pair`] and moves both planes through the same geometry with the
//! same interpolation, so a map pixel keeps pointing at the image pixel it was computed on.

use std::cell::RefCell;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, Luma, Rgb, RgbImage};
use imageproc::geometric_transformations::{warp_into_with, Border, Interpolation};
use rand::Rng;

use super::Pair;

thread_local! {
    // A resizer keeps scratch buffers; one per worker thread avoids reallocating them per sample.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// A crop rectangle in source pixels: `left`, `top`, `width`, `height` (fractional allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Crops `pair` to `crop` (source pixels) and resizes both planes to `out_w` x `out_h` with a
/// bilinear filter that antialiases when shrinking (as PIL's `resize` does).
pub fn crop_resize(pair: &Pair, crop: CropBox, out_w: u32, out_h: u32) -> Pair {
    let opts = ResizeOptions::new()
        .crop(crop.left, crop.top, crop.width, crop.height)
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    let mut image = RgbImage::new(out_w, out_h);
    let mut saliency = GrayImage::new(out_w, out_h);
    RESIZER.with(|r| {
        let mut r = r.borrow_mut();
        // Both planes are U8 / U8x3 buffers of the pair's size and the crop lies inside them (the
        // callers clamp it), so the resizer has no failure left to report.
        r.resize(&pair.image, &mut image, &opts)
            .expect("crop inside the image, pixel types match");
        r.resize(&pair.saliency, &mut saliency, &opts)
            .expect("crop inside the map, pixel types match");
    });
    Pair { image, saliency }
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 tries of an area fraction uniform in
/// `scale` and a log-uniform aspect ratio in `ratio`; otherwise a centre crop with the ratio clamped.
/// Returns an integer-aligned crop of a `width` x `height` image.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: [f32; 2],
    ratio: [f32; 2],
    rng: &mut impl Rng,
) -> CropBox {
    let (w0, h0) = (width as f64, height as f64);
    let area = w0 * h0;
    let (lr0, lr1) = ((ratio[0] as f64).ln(), (ratio[1] as f64).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0] as f64..=scale[1] as f64);
        let aspect = rng.random_range(lr0..=lr1).exp();
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if w > 0.0 && h > 0.0 && w <= w0 && h <= h0 {
            let top = rng.random_range(0..=(height - h as u32)) as f64;
            let left = rng.random_range(0..=(width - w as u32)) as f64;
            return CropBox {
                left,
                top,
                width: w,
                height: h,
            };
        }
    }
    let in_ratio = w0 / h0;
    let (w, h) = if in_ratio < ratio[0] as f64 {
        (w0, (w0 / ratio[0] as f64).round())
    } else if in_ratio > ratio[1] as f64 {
        ((h0 * ratio[1] as f64).round(), h0)
    } else {
        (w0, h0)
    };
    CropBox {
        left: ((w0 - w) / 2.0).floor(),
        top: ((h0 - h) / 2.0).floor(),
        width: w,
        height: h,
    }
}

/// The crop that `Resize(resize)` (shorter side to `resize`) followed by `CenterCrop(crop)` takes,
/// expressed in source pixels, so one resampling does both.
pub fn resize_centre_crop_box(width: u32, height: u32, resize: u32, crop: u32) -> CropBox {
    let (w0, h0) = (width as f64, height as f64);
    let s = resize as f64 / w0.min(h0);
    // torchvision rounds the long side after scaling: emulate its size, then centre-crop there.
    let (rw, rh) = if w0 <= h0 {
        (resize as f64, (h0 * s).trunc())
    } else {
        ((w0 * s).trunc(), resize as f64)
    };
    let (sx, sy) = (rw / w0, rh / h0);
    // torchvision's CenterCrop offsets are Python's round(): halves go to the even neighbour.
    let left = ((rw - crop as f64) / 2.0).round_ties_even().max(0.0);
    let top = ((rh - crop as f64) / 2.0).round_ties_even().max(0.0);
    let cw = (crop as f64).min(rw);
    let ch = (crop as f64).min(rh);
    CropBox {
        left: left / sx,
        top: top / sy,
        width: cw / sx,
        height: ch / sy,
    }
}

/// Mirrors both planes left-right in place.
pub fn hflip(pair: &mut Pair) {
    image::imageops::flip_horizontal_in_place(&mut pair.image);
    image::imageops::flip_horizontal_in_place(&mut pair.saliency);
}

/// A PIL `Image.transform(AFFINE)` matrix `(a, b, c, d, e, f)`: the output pixel centred at
/// `(x, y)` samples the input at `(a x + b y + c, d x + e y + f)` (pixel-centre coordinates, origin at
/// the top-left corner of the image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [f32; 6]);

impl Affine {
    /// PIL's `Image.rotate(degrees)` about the image centre: counter-clockwise for positive degrees.
    pub fn rotate(degrees: f32, width: u32, height: u32) -> Self {
        let a = -degrees.to_radians();
        let (s, c) = a.sin_cos();
        let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
        let m = [c, s, 0.0, -s, c, 0.0];
        // Translate so that the centre maps to itself (PIL's post-multiplied centre shift).
        let tx = m[0] * -cx + m[1] * -cy + cx;
        let ty = m[3] * -cx + m[4] * -cy + cy;
        Affine([m[0], m[1], tx, m[3], m[4], ty])
    }
    /// timm's ShearX: `(1, factor, 0, 0, 1, 0)`.
    pub fn shear_x(factor: f32) -> Self {
        Affine([1.0, factor, 0.0, 0.0, 1.0, 0.0])
    }
    /// timm's ShearY: `(1, 0, 0, factor, 1, 0)`.
    pub fn shear_y(factor: f32) -> Self {
        Affine([1.0, 0.0, 0.0, factor, 1.0, 0.0])
    }
    /// timm's TranslateX: `(1, 0, pixels, 0, 1, 0)`.
    pub fn translate_x(pixels: f32) -> Self {
        Affine([1.0, 0.0, pixels, 0.0, 1.0, 0.0])
    }
    /// timm's TranslateY: `(1, 0, 0, 0, 1, pixels)`.
    pub fn translate_y(pixels: f32) -> Self {
        Affine([1.0, 0.0, 0.0, 0.0, 1.0, pixels])
    }
}

/// Warps both planes with the same affine map and bilinear interpolation. Pixels whose pre-image
/// falls outside the input take `fill` in the image and 0 (no saliency) in the map.
pub fn warp_affine(pair: &Pair, m: Affine, fill: [u8; 3]) -> Pair {
    let [a, b, c, d, e, f] = m.0;
    // imageproc samples at integer pixel indices; PIL's matrix works on pixel centres (+0.5).
    let mapping = move |x: f32, y: f32| {
        let (xc, yc) = (x + 0.5, y + 0.5);
        (a * xc + b * yc + c - 0.5, d * xc + e * yc + f - 0.5)
    };
    let (w, h) = pair.image.dimensions();
    let mut image = RgbImage::new(w, h);
    let mut saliency = GrayImage::new(w, h);
    warp_into_with(
        &pair.image,
        mapping,
        Interpolation::Bilinear,
        Border::Constant(Rgb(fill)),
        &mut image,
    );
    warp_into_with(
        &pair.saliency,
        mapping,
        Interpolation::Bilinear,
        Border::Constant(Luma([0])),
        &mut saliency,
    );
    Pair { image, saliency }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torchvision: Resize(64) of 170x128 gives 85x64; CenterCrop(64) then starts at
    /// round(10.5) = 10 (Python rounds halves to even), i.e. at 20 source pixels.
    #[test]
    fn centre_crop_offset_rounds_halves_to_even_as_torchvision() {
        let b = resize_centre_crop_box(170, 128, 64, 64);
        assert_eq!(b.left, 20.0);
        assert_eq!(b.top, 0.0);
        assert_eq!((b.width, b.height), (128.0, 128.0));
        // 174x128 -> 87x64: offset 11.5 rounds to 12.
        assert_eq!(resize_centre_crop_box(174, 128, 64, 64).left, 24.0);
    }
}
