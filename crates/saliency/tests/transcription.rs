//! The fast implementation against a literal transcription of OpenCV's C++ (per-pixel clamped
//! corners, no padding, no tables), on random images of random sizes, plus invariants.

use image::{GrayImage, Luma, Rgb, RgbImage};
use proptest::prelude::*;
use saliency::{fine_grained_saliency, fine_grained_saliency_grey, map_to_f32, HALF_WIDTHS};

/// staticSaliencyFineGrained.cpp, line by line, on a grey image `g` (`h x w`, already grey).
fn transcription(g: &[u8], w: usize, h: usize) -> Vec<u8> {
    let reflect = |i: isize, n: usize| -> usize {
        if n == 1 {
            0
        } else if i < 0 {
            1
        } else if i as usize >= n {
            n - 2
        } else {
            i as usize
        }
    };
    let blur = |src: &[u8]| -> Vec<u8> {
        let mut dst = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0u32;
                for (dy, ky) in [(-1isize, 1u32), (0, 2), (1, 1)] {
                    for (dx, kx) in [(-1isize, 1u32), (0, 2), (1, 1)] {
                        let yy = reflect(y as isize + dy, h);
                        let xx = reflect(x as isize + dx, w);
                        sum += ky * kx * u32::from(src[yy * w + xx]);
                    }
                }
                dst[y * w + x] = ((sum + 8) >> 4) as u8;
            }
        }
        dst
    };
    let gray = blur(&blur(g));
    let cols = w + 1;
    let mut integral = vec![0f32; (h + 1) * cols];
    for y in 0..h {
        let mut s = 0f32;
        for x in 0..w {
            s += f32::from(gray[y * w + x]);
            integral[(y + 1) * cols + x + 1] = integral[y * cols + x + 1] + s;
        }
    }
    let at = |y: i64, x: i64| integral[y as usize * cols + x as usize];
    let mut on_sum = vec![0u16; w * h];
    let mut off_sum = vec![0u16; w * h];
    for &n in &HALF_WIDTHS {
        let n = n as i64;
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let clamp_x = |v: i64| v.clamp(0, w as i64);
                let clamp_y = |v: i64| v.clamp(0, h as i64);
                let (p1x, p2x) = (clamp_x(x - n + 1), clamp_x(x + n + 1));
                let (p1y, p2y) = (clamp_y(y - n + 1), clamp_y(y + n + 1));
                let value = at(p2y, p2x) + at(p1y, p1x) - at(p2y, p1x) - at(p1y, p2x);
                let centre = gray[(y * w as i64 + x) as usize];
                let area = ((p2x - p1x) * (p2y - p1y) - 1) as f32;
                let value = (value - f32::from(centre)) / area;
                let mean_on = f32::from(centre) - value;
                let mean_off = value - f32::from(centre);
                let i = (y * w as i64 + x) as usize;
                if mean_on > 0.0 {
                    on_sum[i] += mean_on as i32 as u8 as u16;
                }
                if mean_off > 0.0 {
                    off_sum[i] += mean_off as i32 as u8 as u16;
                }
            }
        }
    }
    let max_on = *on_sum.iter().max().unwrap();
    let max_off = *off_sum.iter().max().unwrap();
    // (uchar)(double): x86 truncates to a 32-bit int (NaN -> 0x80000000) and keeps the low byte.
    let cast = |v: f64| -> u8 {
        if v.is_nan() {
            0
        } else {
            v as i32 as u8
        }
    };
    let on: Vec<u8> = on_sum
        .iter()
        .map(|&s| cast(255.0 * f64::from(f32::from(s) / f32::from(max_on))))
        .collect();
    let off: Vec<u8> = off_sum
        .iter()
        .map(|&s| cast(255.0 * f64::from(f32::from(s) / f32::from(max_off))))
        .collect();
    let max_val = i32::from((*on.iter().max().unwrap()).max(*off.iter().max().unwrap()));
    on.iter()
        .zip(&off)
        .map(|(&a, &b)| {
            cast(
                255.0 * f64::from((i32::from(a) + i32::from(b)) as f32) / f64::from(max_val as f32),
            )
        })
        .collect()
}

fn rgb_to_grey(img: &RgbImage) -> Vec<u8> {
    img.pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((b * 3735 + g * 19235 + r * 9798 + 16384) >> 15) as u8
        })
        .collect()
}

fn image_strategy(max_side: u32) -> impl Strategy<Value = RgbImage> {
    (1..=max_side, 1..=max_side, any::<u64>(), 0u8..3).prop_map(|(w, h, seed, kind)| {
        let mut state = seed | 1;
        let mut next = move || {
            // xorshift: cheap deterministic pixels.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        RgbImage::from_fn(w, h, |x, y| match kind {
            0 => {
                let v = next();
                Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
            }
            // Smooth blobs: large uniform regions, like photographs.
            1 => {
                let v = ((x / 7 + y / 5) as u64 * 37 + seed) as u8;
                Rgb([v, v / 2, 255 - v])
            }
            _ => {
                let v = if next() % 50 == 0 { 255 } else { 10 };
                Rgb([v, v, v])
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fast_equals_transcription(img in image_strategy(90)) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let expected = transcription(&rgb_to_grey(&img), w, h);
        let map = fine_grained_saliency(&img);
        prop_assert_eq!(map.dimensions(), img.dimensions());
        prop_assert_eq!(map.as_raw(), &expected);
    }

    #[test]
    fn flat_images_give_zeros(w in 1u32..300, h in 1u32..40, v in any::<u8>()) {
        let map = fine_grained_saliency_grey(&GrayImage::from_pixel(w, h, Luma([v])));
        prop_assert_eq!(map.dimensions(), (w, h));
        prop_assert!(map.as_raw().iter().all(|&p| p == 0));
        prop_assert!(map_to_f32(&map).as_raw().iter().all(|&p| p == 0.0));
    }
}

#[test]
fn fast_equals_transcription_beyond_the_largest_window() {
    // Wider and taller than 2 * 112 + 1, so every window kind (clamped left, interior, clamped
    // right) occurs, and large enough for the f32 integral image to round.
    for (w, h, seed) in [(300u32, 260u32, 1u64), (257, 229, 2)] {
        let mut img = RgbImage::new(w, h);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let v = (x as u64 * 2654435761 + y as u64 * 40503 + seed) >> 3;
            *p = Rgb([(x + y) as u8 ^ v as u8, (v >> 5) as u8, (y * 3) as u8]);
        }
        let expected = transcription(&rgb_to_grey(&img), w as usize, h as usize);
        assert_eq!(fine_grained_saliency(&img).as_raw(), &expected, "{w}x{h}");
    }
}

#[test]
fn empty_images_give_empty_maps() {
    assert_eq!(
        fine_grained_saliency(&RgbImage::new(0, 5)).dimensions(),
        (0, 5)
    );
    assert_eq!(fine_grained_saliency_grey(&GrayImage::new(3, 0)).len(), 0);
}
