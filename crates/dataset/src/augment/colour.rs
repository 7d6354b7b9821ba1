//! Colour transforms of an RGB image (H, W, 3) u8, in place. They never see the saliency map: a
//! lesion stays where it is when its colours change.
//!
//! The enhance-style ops follow PIL's `ImageEnhance` (a blend between the image and a degenerate
//! version of it with a factor; 1 keeps the image), as torchvision's PIL path and timm use them.

use image::RgbImage;

/// PIL's ITU-R 601-2 luma in fixed point (`L = R*299/1000 + G*587/1000 + B*114/1000`), rounded.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

#[inline]
fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

fn apply_lut(image: &mut RgbImage, lut: &[u8; 256]) {
    for v in image.iter_mut() {
        *v = lut[*v as usize];
    }
}

/// Multiplies every channel by `factor` (PIL `Brightness`: blend with black).
pub fn brightness(image: &mut RgbImage, factor: f32) {
    let lut: [u8; 256] = std::array::from_fn(|v| clamp_u8(v as f32 * factor));
    apply_lut(image, &lut);
}

/// Mean luma of the image, rounded to an integer (PIL `Contrast`'s degenerate grey level).
pub fn mean_luma(image: &RgbImage) -> f32 {
    let n = (image.width() as u64 * image.height() as u64).max(1);
    let sum: u64 = image.pixels().map(|p| luma(p[0], p[1], p[2]) as u64).sum();
    (sum as f64 / n as f64 + 0.5).floor() as f32
}

/// Blends with the image's mean grey level (PIL `Contrast`).
pub fn contrast(image: &mut RgbImage, factor: f32) {
    let mean = mean_luma(image);
    let lut: [u8; 256] = std::array::from_fn(|v| clamp_u8(mean + factor * (v as f32 - mean)));
    apply_lut(image, &lut);
}

/// Blends with the image's grey version (PIL `Color`, torchvision saturation).
pub fn saturation(image: &mut RgbImage, factor: f32) {
    for p in image.pixels_mut() {
        let l = luma(p[0], p[1], p[2]) as f32;
        for c in p.0.iter_mut() {
            *c = clamp_u8(l + factor * (*c as f32 - l));
        }
    }
}

/// Rotates the hue by `shift` turns (`shift` in [-0.5, 0.5], torchvision `adjust_hue`).
pub fn hue(image: &mut RgbImage, shift: f32) {
    if shift == 0.0 {
        return;
    }
    for p in image.pixels_mut() {
        let [r, g, b] = p.0.map(|c| c as f32 / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta == 0.0 {
            continue; // grey pixels have no hue to rotate
        }
        let h = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        let h = (h + shift).rem_euclid(1.0) * 6.0;
        let (s, v) = (delta / max, max);
        let i = h.floor();
        let f = h - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (r, g, b) = match i as i32 {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        p.0 = [r, g, b].map(|c| clamp_u8(c * 255.0));
    }
}

/// Replaces every pixel by its luma in all three channels (torchvision `RandomGrayscale` output).
pub fn grayscale(image: &mut RgbImage) {
    for p in image.pixels_mut() {
        let l = luma(p[0], p[1], p[2]);
        p.0 = [l, l, l];
    }
}

/// Gaussian blur with standard deviation `sigma` pixels (> 0), reflecting nothing: imageproc pads
/// by continuity at the borders.
pub fn gaussian_blur(image: &mut RgbImage, sigma: f32) {
    *image = imageproc::filter::gaussian_blur_f32(image, sigma);
}

/// `255 - v` on every channel.
pub fn invert(image: &mut RgbImage) {
    for v in image.iter_mut() {
        *v = 255 - *v;
    }
}

/// Keeps the `bits` most significant bits of each channel (`bits` >= 8 keeps the image; 0 gives
/// black), as PIL `ImageOps.posterize`.
pub fn posterize(image: &mut RgbImage, bits: u32) {
    if bits >= 8 {
        return;
    }
    let mask = !((1u32 << (8 - bits)) - 1) as u8;
    for v in image.iter_mut() {
        *v &= mask;
    }
}

/// Inverts every channel value at or above `threshold` (PIL `ImageOps.solarize`; 256 keeps all).
pub fn solarize(image: &mut RgbImage, threshold: u32) {
    let lut: [u8; 256] = std::array::from_fn(|v| {
        if (v as u32) < threshold {
            v as u8
        } else {
            255 - v as u8
        }
    });
    apply_lut(image, &lut);
}

/// Adds `add` to channel values below `threshold`, saturating (timm `solarize_add`).
pub fn solarize_add(image: &mut RgbImage, add: i32, threshold: u32) {
    let lut: [u8; 256] = std::array::from_fn(|v| {
        if (v as u32) < threshold {
            (v as i32 + add).clamp(0, 255) as u8
        } else {
            v as u8
        }
    });
    apply_lut(image, &lut);
}

/// Blends with a 3x3 smoothed copy (kernel `[[1,1,1],[1,5,1],[1,1,1]] / 13`, border pixels kept),
/// as PIL `Sharpness`.
pub fn sharpness(image: &mut RgbImage, factor: f32) {
    let (w, h) = image.dimensions();
    if w < 3 || h < 3 {
        return;
    }
    let src = image.clone();
    let (w, h) = (w as usize, h as usize);
    let s = src.as_raw();
    let out = image.as_mut();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let at = |xx: usize, yy: usize| s[(yy * w + xx) * 3 + c] as u32;
                let sum = at(x - 1, y - 1)
                    + at(x, y - 1)
                    + at(x + 1, y - 1)
                    + at(x - 1, y)
                    + 5 * at(x, y)
                    + at(x + 1, y)
                    + at(x - 1, y + 1)
                    + at(x, y + 1)
                    + at(x + 1, y + 1);
                // PIL rounds the 3x3 filter result before blending.
                let smooth = ((sum as f32) / 13.0).round();
                let v = at(x, y) as f32;
                out[(y * w + x) * 3 + c] = clamp_u8(smooth + factor * (v - smooth));
            }
        }
    }
}

/// Histogram equalisation of each channel separately (PIL `ImageOps.equalize`).
pub fn equalize(image: &mut RgbImage) {
    let mut hist = [[0u32; 256]; 3];
    for p in image.pixels() {
        for c in 0..3 {
            hist[c][p[c] as usize] += 1;
        }
    }
    let luts: [[u8; 256]; 3] = std::array::from_fn(|c| {
        let h = &hist[c];
        let total: u32 = h.iter().sum();
        let last = h.iter().rev().find(|&&n| n > 0).copied().unwrap_or(0);
        let step = (total - last) / 255;
        let mut lut = [0u8; 256];
        if step == 0 {
            // One grey level (or nearly): PIL leaves the channel as it is.
            for (i, v) in lut.iter_mut().enumerate() {
                *v = i as u8;
            }
            return lut;
        }
        let mut n = step / 2;
        for (i, v) in lut.iter_mut().enumerate() {
            *v = (n / step).min(255) as u8;
            n += h[i];
        }
        lut
    });
    for p in image.pixels_mut() {
        for c in 0..3 {
            p[c] = luts[c][p[c] as usize];
        }
    }
}
