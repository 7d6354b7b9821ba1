//! `trainer visualize`: the paper's figures from a prepared split or a config.
//!
//! - [`class_counts`]: Fig. 3, the class counts of each split coloured by Many / Medium / Few;
//! - [`mix_sheet`]: Fig. 4, tail/head pairs drawn by the training's samplers and augmentations, with
//!   their saliency maps, the per-patch ratio grid of each Table 2 variant and the mixed sample
//!   ([`mix_sheet_draw`] lays the sheet out).
//!
//! Both are PNGs drawn with plotters (the embedded DejaVu Sans of [`crate::plots`]) and written
//! atomically.

pub mod class_counts;
pub mod mix_sheet;
pub mod mix_sheet_draw;

use std::path::Path;

use anyhow::Result;
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Fig. 3 of the prepared split in `split_dir`, written to `out`.
pub fn class_counts_png(split_dir: &Path, out: &Path) -> Result<()> {
    let counts = class_counts::ClassCounts::read(split_dir)?;
    class_counts::write_png(&counts, &split_dir.display().to_string(), out)
}

/// Fig. 4 for `cfg` (its split prepared first when missing, as `train` does): `pairs` tail/head
/// pairs, written to `out`.
pub fn mix_sheet_png(cfg: &crate::config::Config, pairs: usize, out: &Path) -> Result<()> {
    crate::ensure_split::ensure_split(&cfg.data)?;
    let sheet = mix_sheet::build(cfg, pairs)?;
    mix_sheet_draw::write_png(&sheet, out)
}

/// A perceptually ordered colour map (viridis, 9 control points, linear between them):
/// `t` in `[0, 1]` (clamped; NaN gives the low end) -> RGB.
pub fn viridis(t: f32) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let lerp = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Black or white, whichever reads better on `bg` (by its luma).
pub fn text_colour_on(bg: RGBColor) -> RGBColor {
    let luma = 0.299 * bg.0 as f32 + 0.587 * bg.1 as f32 + 0.114 * bg.2 as f32;
    if luma > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

/// Draws `img` with its top-left corner at `(x, y)` of `area`, resized to `side x side` pixels
/// with nearest-neighbour sampling (every source pixel stays a visible square).
pub(crate) fn draw_image(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    img: &RgbImage,
    (x, y): (i32, i32),
    side: u32,
) -> Result<()> {
    let scaled = image::imageops::resize(img, side, side, image::imageops::FilterType::Nearest);
    for (px, py, p) in scaled.enumerate_pixels() {
        area.draw_pixel((x + px as i32, y + py as i32), &RGBColor(p[0], p[1], p[2]))
            .map_err(crate::plots::draw_err)?;
    }
    Ok(())
}
