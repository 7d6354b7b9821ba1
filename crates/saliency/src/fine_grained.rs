//! The algorithm of OpenCV's `StaticSaliencyFineGrained` (Montabone & Soto 2010), bit for bit.
//!
//! Input: an 8-bit image of `height x width` pixels (RGB, 3 bytes per pixel, or grey, 1 byte).
//! Output: an 8-bit map of `height x width` pixels, row-major.
//!
//! Steps, each reproducing the integer or `f32` arithmetic of opencv_contrib
//! `modules/saliency/src/staticSaliencyFineGrained.cpp` and of the OpenCV kernels it calls:
//! 1. grey = `(B*3735 + G*19235 + R*9798 + 16384) >> 15` (`cvtColor(BGR2GRAY)`; a grey input is
//!    copied as is, as OpenCV's `srcArg.copyTo(gray)` does);
//! 2. a 3x3 Gaussian blur (`[1,2,1] x [1,2,1]`, `(sum + 8) >> 4`, border reflect-101; a dimension
//!    of length 1 reads its only pixel) applied twice;
//! 3. an `f32` integral image `(H+1) x (W+1)`, each entry = entry above + exact row prefix sum;
//! 4. for each half-width `n` in 12, 24, 48, 28, 56, 112: the box `[x-n+1, x+n+1) x [y-n+1, y+n+1)`
//!    clamped to the image, surround mean `m = (box - g) / (area - 1)` in `f32`, `on = trunc(g - m)`
//!    and `off = trunc(m - g)` when positive; `on` and `off` are summed over the scales in `u16`;
//! 5. `on = trunc(255 * (f32)(sum / (f32)max))` (same for `off`), then
//!    `out = (u8)trunc(255 * (on + off) / max(max on, max off))`: the C++ cast keeps the low byte,
//!    so a sum above 255 wraps (observed with OpenCV 5.0 on a crafted image, see the fixtures);
//!    all-zero sums give `0/0 = NaN`, which the cast turns into 0, so a flat image maps to zeros.
//!
//! Speed comes from layout, not from changing the arithmetic: the integral image is stored with
//! each row padded by 112 copies of its first and last entries, so the clamped window corners of
//! every pixel are plain slice offsets and the per-row loop over `x` has no branches and
//! vectorises; rows of the six scales share one integral image.

/// Half-widths of the six surround windows, in OpenCV's order (`3*4, 3*4*2, ..., 7*4*2*2`).
pub const HALF_WIDTHS: [usize; 6] = [12, 24, 48, 28, 56, 112];

/// Left and right padding of each integral-image row: a window corner is at most
/// `max(HALF_WIDTHS)` columns away from its pixel.
const PAD: usize = 112;

/// Reusable buffers; one per thread avoids re-allocating (and re-zeroing) megabytes per image.
#[derive(Default)]
pub(crate) struct Scratch {
    grey: Vec<u8>,
    blurred: Vec<u8>,
    horizontal: Vec<u16>,
    integral: Vec<f32>,
    centre: Vec<f32>,
    widths: Vec<f32>,
    on_sum: Vec<u16>,
    off_sum: Vec<u16>,
}

/// Pixel layout of the input to [`saliency_u8`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// 3 bytes per pixel, R, G, B.
    Rgb,
    /// 1 byte per pixel.
    Grey,
}

/// Computes the 8-bit saliency map of a `height x width` image into `out` (`height * width` bytes).
///
/// `pixels` holds `height * width * 3` bytes (RGB) or `height * width` bytes (grey), row-major.
pub(crate) fn saliency_u8(
    pixels: &[u8],
    layout: Layout,
    width: usize,
    height: usize,
    scratch: &mut Scratch,
    out: &mut [u8],
) {
    let n = width * height;
    assert_eq!(out.len(), n, "output buffer must hold width * height bytes");
    if n == 0 {
        return;
    }
    let Scratch {
        grey,
        blurred,
        horizontal,
        integral,
        centre,
        widths,
        on_sum,
        off_sum,
    } = scratch;

    resize(grey, n);
    match layout {
        Layout::Rgb => {
            assert_eq!(
                pixels.len(),
                n * 3,
                "RGB input must hold width * height * 3 bytes"
            );
            rgb_to_grey(pixels, grey);
        }
        Layout::Grey => {
            assert_eq!(pixels.len(), n, "grey input must hold width * height bytes");
            grey.copy_from_slice(pixels);
        }
    }

    // OpenCV blurs twice, in place; ping-pong between two buffers instead.
    resize(blurred, n);
    resize(horizontal, n);
    gaussian3(grey, blurred, horizontal, width, height);
    gaussian3(blurred, grey, horizontal, width, height);
    let g: &[u8] = grey;

    let stride = width + 1 + 2 * PAD;
    resize(integral, stride * (height + 1));
    padded_integral(g, width, height, integral);

    resize(widths, HALF_WIDTHS.len() * width);
    for (k, &half) in HALF_WIDTHS.iter().enumerate() {
        for (x, w) in widths[k * width..(k + 1) * width].iter_mut().enumerate() {
            let x1 = (x + 1).saturating_sub(half);
            let x2 = (x + half + 1).min(width);
            *w = (x2 - x1) as f32;
        }
    }

    resize(centre, width);
    resize(on_sum, n);
    resize(off_sum, n);
    for y in 0..height {
        for (c, &v) in centre.iter_mut().zip(&g[y * width..(y + 1) * width]) {
            *c = f32::from(v);
        }
        let on_row = &mut on_sum[y * width..(y + 1) * width];
        let off_row = &mut off_sum[y * width..(y + 1) * width];
        on_row.fill(0);
        off_row.fill(0);
        for (k, &half) in HALF_WIDTHS.iter().enumerate() {
            let y1 = (y + 1).saturating_sub(half);
            let y2 = (y + half + 1).min(height);
            let rows = RowWindow {
                top: &integral[y1 * stride..(y1 + 1) * stride],
                bottom: &integral[y2 * stride..(y2 + 1) * stride],
                // Padded index of column x-n+1 at x = 0 and of column x+n+1 at x = 0.
                left: PAD + 1 - half,
                right: PAD + 1 + half,
                height: (y2 - y1) as f32,
            };
            scale_row(
                &rows,
                centre,
                &widths[k * width..(k + 1) * width],
                on_row,
                off_row,
            );
        }
    }

    mix(on_sum, off_sum, out);
}

/// The two integral-image rows of one scale and one output row.
struct RowWindow<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    left: usize,
    right: usize,
    height: f32,
}

/// Adds one scale's `on` and `off` values of one row to the running sums.
#[inline]
fn scale_row(rows: &RowWindow, centre: &[f32], widths: &[f32], on: &mut [u16], off: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { scale_row_avx2(rows, centre, widths, on, off) };
            return;
        }
    }
    scale_row_generic(rows, centre, widths, on, off);
}

/// The same loop compiled for AVX2: only wider vectors, the same IEEE operations in the same
/// order (Rust never fuses a multiply and an add), so the bits do not change.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scale_row_avx2(
    rows: &RowWindow,
    centre: &[f32],
    widths: &[f32],
    on: &mut [u16],
    off: &mut [u16],
) {
    scale_row_generic(rows, centre, widths, on, off);
}

#[inline(always)]
fn scale_row_generic(
    rows: &RowWindow,
    centre: &[f32],
    widths: &[f32],
    on: &mut [u16],
    off: &mut [u16],
) {
    let w = centre.len();
    let bottom_right = &rows.bottom[rows.right..rows.right + w];
    let top_left = &rows.top[rows.left..rows.left + w];
    let bottom_left = &rows.bottom[rows.left..rows.left + w];
    let top_right = &rows.top[rows.right..rows.right + w];
    let widths = &widths[..w];
    let on = &mut on[..w];
    let off = &mut off[..w];
    let h = rows.height;
    for x in 0..w {
        // OpenCV: (float)(I(P2.y,P2.x) + I(P1.y,P1.x) - I(P2.y,P1.x) - I(P1.y,P2.x)), left to right.
        let sum = ((bottom_right[x] + top_left[x]) - bottom_left[x]) - top_right[x];
        let g = centre[x];
        // Window areas are at most 224 * 224, so the f32 product is the exact integer area.
        let mean = (sum - g) / (widths[x] * h - 1.0);
        on[x] += truncate_positive(g - mean);
        off[x] += truncate_positive(mean - g);
    }
}

/// `(uchar)v` for `v > 0`, else 0 (NaN included), as `u16`.
///
/// `v < 256` always: `v = g - mean` with `g <= 255`, and a blurred `g` near 255 has bright
/// neighbours, so its surround mean is far above the `f32` rounding error of the box sum (under
/// 2 grey levels even for 16-megapixel images). Clamping to 255 therefore changes nothing, and
/// lets the conversion compile to one vector instruction (Rust's saturating `as` does not).
#[inline(always)]
fn truncate_positive(v: f32) -> u16 {
    // f32::max returns the non-NaN operand, so NaN (a 1x1 image's 0/0) becomes 0 like in C++;
    // f32::clamp would keep the NaN.
    #[allow(clippy::manual_clamp)]
    let clamped = v.max(0.0).min(255.0);
    // SAFETY: `clamped` is finite and in [0, 255], representable as i32.
    (unsafe { clamped.to_int_unchecked::<i32>() }) as u16
}

/// `(B*3735 + G*19235 + R*9798 + 16384) >> 15` per pixel; `rgb` is in R, G, B order.
fn rgb_to_grey(rgb: &[u8], grey: &mut [u8]) {
    for (g, p) in grey.iter_mut().zip(rgb.chunks_exact(3)) {
        let (r, gr, b) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]));
        *g = ((b * 3735 + gr * 19235 + r * 9798 + 16384) >> 15) as u8;
    }
}

/// OpenCV's 8-bit `GaussianBlur(src, dst, Size(3, 3), 0, 0)`: kernel `[1,2,1]/4` in both
/// directions, exact fixed point, result `(sum + 8) >> 4`, border reflect-101.
fn gaussian3(src: &[u8], dst: &mut [u8], tmp: &mut [u16], width: usize, height: usize) {
    // Reflect-101 neighbour of index 0 is 1 and of the last is the one before it; a dimension of
    // length 1 has only itself (OpenCV's borderInterpolate returns 0 there).
    let before = |i: usize, len: usize| if i > 0 { i - 1 } else { 1.min(len - 1) };
    let after = |i: usize, len: usize| {
        if i + 1 < len {
            i + 1
        } else {
            len.saturating_sub(2)
        }
    };
    for y in 0..height {
        let s = &src[y * width..(y + 1) * width];
        let t = &mut tmp[y * width..(y + 1) * width];
        if width >= 2 {
            for x in 1..width - 1 {
                t[x] = u16::from(s[x - 1]) + 2 * u16::from(s[x]) + u16::from(s[x + 1]);
            }
        }
        for x in [0, width - 1] {
            t[x] = u16::from(s[before(x, width)])
                + 2 * u16::from(s[x])
                + u16::from(s[after(x, width)]);
        }
    }
    for y in 0..height {
        let up = &tmp[before(y, height) * width..][..width];
        let mid = &tmp[y * width..][..width];
        let down = &tmp[after(y, height) * width..][..width];
        let d = &mut dst[y * width..(y + 1) * width];
        for x in 0..width {
            d[x] = ((up[x] + 2 * mid[x] + down[x] + 8) >> 4) as u8;
        }
    }
}

/// Writes OpenCV's `integral(gray, sum, CV_32F)` into `out`, rows padded on both sides.
///
/// Entry `(y, x)` of the `(H+1) x (W+1)` integral image sits at `y * stride + PAD + x`, where
/// `stride = W + 1 + 2 * PAD`; the `PAD` entries left of it repeat column 0 (zero) and the `PAD`
/// entries right of column `W` repeat column `W`, which is exactly OpenCV's corner clamping.
fn padded_integral(g: &[u8], width: usize, height: usize, out: &mut [f32]) {
    let stride = width + 1 + 2 * PAD;
    out[..stride].fill(0.0);
    for y in 0..height {
        let (done, rest) = out.split_at_mut((y + 1) * stride);
        let above = &done[y * stride + PAD + 1..][..width];
        let row = &mut rest[..stride];
        row[..PAD + 1].fill(0.0);
        // The row prefix sum is an exact integer (< 2^24 for any width below 65793), so the only
        // rounding is the f32 addition to the entry above, as in OpenCV.
        let mut prefix = 0u32;
        for ((o, &a), &v) in row[PAD + 1..PAD + 1 + width]
            .iter_mut()
            .zip(above)
            .zip(&g[y * width..(y + 1) * width])
        {
            prefix += u32::from(v);
            *o = a + prefix as f32;
        }
        let last = row[PAD + width];
        row[PAD + 1 + width..].fill(last);
    }
}

/// OpenCV's `mixScales` and `mixOnOff`: normalise each sum map by its maximum, then combine.
fn mix(on_sum: &[u16], off_sum: &[u16], out: &mut [u8]) {
    let max_on = on_sum.iter().copied().max().unwrap_or(0);
    let max_off = off_sum.iter().copied().max().unwrap_or(0);
    // The sums take at most 6 * 255 + 1 values: a lookup table replaces a division per pixel.
    let on_table = normalise_table(max_on);
    let off_table = normalise_table(max_off);
    // The tables are non-decreasing, so the largest normalised value is that of the largest sum.
    let max_on8 = on_table[usize::from(max_on)];
    let max_off8 = off_table[usize::from(max_off)];
    let max_val = i32::from(max_on8.max(max_off8));
    let mut combine = [0u8; 511];
    for (s, c) in combine.iter_mut().enumerate() {
        // (uchar)(255. * (float)(on + off) / (float)maxVal): double arithmetic, truncated to int,
        // low byte kept. maxVal = 0 gives NaN; x86's conversion yields 0x80000000, low byte 0.
        let v = 255.0f64 * f64::from(s as f32) / f64::from(max_val as f32);
        *c = if v.is_nan() { 0 } else { v as i32 as u8 };
    }
    for ((o, &a), &b) in out.iter_mut().zip(on_sum).zip(off_sum) {
        let s = usize::from(on_table[usize::from(a)]) + usize::from(off_table[usize::from(b)]);
        *o = combine[s];
    }
}

/// `(uchar)(255. * (float)(sum / (float)max))` for every possible `sum` in `0..=6*255`.
fn normalise_table(max: u16) -> [u8; 6 * 255 + 1] {
    let mut table = [0u8; 6 * 255 + 1];
    for (s, t) in table.iter_mut().enumerate() {
        let ratio = s as f32 / f32::from(max);
        // NaN (max = 0) becomes 0 in both C++ on x86 (low byte of 0x80000000) and Rust.
        *t = (255.0f64 * f64::from(ratio)) as i32 as u8;
    }
    table
}

/// Grows or shrinks `v` to `n` elements without caring about the old contents.
fn resize<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    v.resize(n, T::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pixels: &[u8], layout: Layout, w: usize, h: usize) -> Vec<u8> {
        let mut out = vec![0; w * h];
        saliency_u8(pixels, layout, w, h, &mut Scratch::default(), &mut out);
        out
    }

    #[test]
    fn grey_weights_are_for_bgr_reversed_to_rgb() {
        let mut g = [0u8; 3];
        rgb_to_grey(&[255, 0, 0, 0, 255, 0, 0, 0, 255], &mut g);
        // R -> 9798 / 32768 * 255 = 76.2, G -> 149.7, B -> 29.1.
        assert_eq!(g, [76, 150, 29]);
    }

    #[test]
    fn blur_reflects_101_and_keeps_single_pixel_dimensions() {
        let mut out = [0u8; 2];
        let mut tmp = [0u16; 2];
        // Row [29, 240]: each neighbour is the other pixel: (240 + 58 + 240) * 4 / 16 = 134.5.
        gaussian3(&[29, 240], &mut out, &mut tmp, 2, 1);
        assert_eq!(out, [135, 135]);
        let mut one = [0u8; 1];
        gaussian3(&[77], &mut one, &mut [0u16; 1], 1, 1);
        assert_eq!(one, [77]);
    }

    #[test]
    fn integral_matches_definition_and_padding() {
        let g = [1u8, 2, 3, 4, 5, 6];
        let stride = 3 + 1 + 2 * PAD;
        let mut out = vec![f32::NAN; stride * 3];
        padded_integral(&g, 3, 2, &mut out);
        let at = |y: usize, x: isize| out[y * stride + (PAD as isize + x) as usize];
        assert_eq!(at(1, 3), 6.0);
        assert_eq!(at(2, 3), 21.0);
        assert_eq!(at(2, 1), 5.0);
        assert_eq!(at(2, -(PAD as isize)), 0.0);
        assert_eq!(at(2, 3 + PAD as isize), 21.0);
        assert_eq!(at(0, 2), 0.0);
    }

    #[test]
    fn flat_and_single_pixel_images_give_zeros() {
        assert_eq!(run(&[200; 35], Layout::Grey, 7, 5), vec![0; 35]);
        assert_eq!(run(&[1, 2, 3], Layout::Rgb, 1, 1), vec![0]);
    }

    #[test]
    fn combine_wraps_above_255_like_the_cpp_cast() {
        // Pixel 0 normalises to on = 255 and off = 255: OpenCV's (uchar)510.0 keeps the low
        // byte, 254; pixel 1 has on = trunc(127.5) = 127.
        let on = [6u16, 3, 0];
        let off = [1u16, 0, 1];
        let mut out = [0u8; 3];
        mix(&on, &off, &mut out);
        assert_eq!(out, [(255u32 + 255) as u8, 127, 255]);
    }
}
