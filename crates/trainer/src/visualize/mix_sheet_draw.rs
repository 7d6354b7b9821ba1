//! Lays out and draws a [`MixSheet`] (Fig. 4) as a PNG.
//!
//! One block per pair: column 1 the foreground (tail) image over its saliency map, column 2 the
//! background (head) image over its map, then one column per Table 2 variant: the ratio grid as a
//! heat map with each patch's value printed, over the mixed-sample illustration. A header names the
//! columns, the samplers and the ratio parameters; a legend at the bottom gives both colour scales
//! and says what the illustration is. [`SheetLayout`] is public so a test can find a drawn patch.

use std::path::Path;

use anyhow::Result;
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::mix_sheet::{mixed_illustration, MixSheet, RatioGrid, VARIANTS};
use super::{draw_image, text_colour_on, viridis};
use crate::config::Foreground;
use crate::plots::{draw_err, render_png, FONT};

/// Pixel geometry of the sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SheetLayout {
    /// Side of one picture (image, map, heat map or illustration), px.
    pub cell: u32,
    /// Rows and columns of the ratio grid.
    pub grid: (usize, usize),
    pub pairs: usize,
}

const MARGIN: i32 = 16;
const GAP: i32 = 14;
/// Extra space between the inputs and the variant columns.
const SEP: i32 = 22;
const TITLE_H: i32 = 92;
const HEADER_H: i32 = 46;
const PAIR_TITLE_H: i32 = 26;
const CAPTION_H: i32 = 22;
const BLOCK_GAP: i32 = 14;
const LEGEND_H: i32 = 150;
/// Pictures per block row: foreground, background and the four variants.
const COLUMNS: usize = 2 + VARIANTS.len();

impl SheetLayout {
    /// The layout for `sheet`: pictures of at least 180 px, larger when the grid has many patches
    /// so a printed ratio stays readable (at most 504 px).
    pub fn for_sheet(sheet: &MixSheet) -> Self {
        let (rows, cols) = sheet
            .pairs
            .first()
            .map(|p| (p.grids[0].rows, p.grids[0].cols))
            .unwrap_or((1, 1));
        let cell = (rows.max(cols) as u32 * 36).clamp(180, 504);
        SheetLayout {
            cell,
            grid: (rows, cols),
            pairs: sheet.pairs.len(),
        }
    }

    /// Canvas size (width, height) in px.
    pub fn size(&self) -> (u32, u32) {
        let w = 2 * MARGIN + COLUMNS as i32 * self.cell as i32 + (COLUMNS as i32 - 1) * GAP + SEP;
        let h = TITLE_H + HEADER_H + self.pairs as i32 * self.block_height() + LEGEND_H;
        (w as u32, h as u32)
    }

    fn block_height(&self) -> i32 {
        PAIR_TITLE_H + 2 * (self.cell as i32 + CAPTION_H) + BLOCK_GAP
    }

    /// Top-left corner of the picture in column `column` (0..6) and row `row` (0 top, 1 bottom)
    /// of pair `pair`.
    pub fn picture_origin(&self, pair: usize, column: usize, row: usize) -> (i32, i32) {
        let c = self.cell as i32;
        let x = MARGIN + column as i32 * (c + GAP) + if column >= 2 { SEP } else { 0 };
        let y = TITLE_H
            + HEADER_H
            + pair as i32 * self.block_height()
            + PAIR_TITLE_H
            + row as i32 * (c + CAPTION_H);
        (x, y)
    }

    /// Side of one patch of the heat map, px.
    pub fn patch_px(&self) -> i32 {
        self.cell as i32 / self.grid.0.max(self.grid.1) as i32
    }

    /// Pixel rectangle (top-left, bottom-right inclusive) of patch `(row, col)` of variant
    /// `variant`'s heat map in pair `pair`. A 1 px white line separates neighbouring patches.
    pub fn patch_rect(
        &self,
        pair: usize,
        variant: usize,
        row: usize,
        col: usize,
    ) -> ((i32, i32), (i32, i32)) {
        let (x0, y0) = self.picture_origin(pair, 2 + variant, 0);
        let p = self.patch_px();
        let (x, y) = (x0 + col as i32 * p, y0 + row as i32 * p);
        ((x, y), (x + p - 2, y + p - 2))
    }
}

/// Colour of a ratio on the sheet's scale: viridis over `[floor, alpha]` (the range every
/// variant's ratios lie in).
pub fn ratio_colour(value: f32, floor: f32, alpha: f32) -> RGBColor {
    let span = alpha - floor;
    let t = if span > 0.0 {
        (value - floor) / span
    } else {
        0.5
    };
    viridis(t)
}

/// Writes the sheet to `out` (PNG, atomically).
pub fn write_png(sheet: &MixSheet, out: &Path) -> Result<()> {
    let layout = SheetLayout::for_sheet(sheet);
    render_png(out, layout.size(), |root| {
        draw_header(root, sheet, &layout)?;
        for (i, _) in sheet.pairs.iter().enumerate() {
            draw_pair(root, sheet, &layout, i)?;
        }
        draw_legend(root, sheet, &layout)
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn text(area: &Area, s: &str, at: (i32, i32), size: u32) -> Result<()> {
    area.draw(&Text::new(
        s.to_string(),
        at,
        (FONT, size).into_font().color(&BLACK),
    ))
    .map_err(draw_err)
}

fn draw_header(root: &Area, sheet: &MixSheet, layout: &SheetLayout) -> Result<()> {
    let r = &sheet.ratio;
    let (rows, cols) = layout.grid;
    let (fg_sampler, bg_sampler) = match sheet.foreground {
        Foreground::Balanced => ("class-balanced", "instance sampler (mostly head classes)"),
        Foreground::Instance => ("instance", "class-balanced sampler"),
    };
    text(
        root,
        &format!(
            "SPMix mixing: {} tail/head pairs from epoch 1 of the training loader (run.seed {})",
            sheet.pairs.len(),
            sheet.seed
        ),
        (MARGIN, 10),
        22,
    )?;
    text(
        root,
        &format!(
            "Tail foreground (a class outside Many) from the {fg_sampler} sampler, its label kept; \
             background from the {bg_sampler}; query view at {} px, enlarged.",
            sheet.image_size
        ),
        (MARGIN, 42),
        15,
    )?;
    text(
        root,
        &format!(
            "Patches of {} px ({rows} x {cols} tokens); ratio = foreground share of each token: \
             saliency noise {}, floor {}, alpha {}.",
            r.patch, r.noise, r.floor, r.alpha
        ),
        (MARGIN, 64),
        15,
    )?;
    let titles: Vec<(String, String)> = [
        (
            "foreground (tail)".to_string(),
            "image / saliency".to_string(),
        ),
        ("background".to_string(), "image / saliency".to_string()),
    ]
    .into_iter()
    .chain(
        VARIANTS
            .iter()
            .map(|v| (v.title.to_string(), "ratio / mixed".to_string())),
    )
    .collect();
    for (k, (a, b)) in titles.iter().enumerate() {
        let (x, _) = layout.picture_origin(0, k, 0);
        text(root, a, (x, TITLE_H), 15)?;
        text(root, b, (x, TITLE_H + 20), 14)?;
    }
    Ok(())
}

fn grey_to_rgb(g: &image::GrayImage) -> RgbImage {
    RgbImage::from_fn(g.width(), g.height(), |x, y| {
        let v = g.get_pixel(x, y)[0];
        image::Rgb([v, v, v])
    })
}

fn draw_pair(root: &Area, sheet: &MixSheet, layout: &SheetLayout, i: usize) -> Result<()> {
    let p = &sheet.pairs[i];
    let (fg, bg) = (&p.foreground, &p.background);
    let (x, y) = layout.picture_origin(i, 0, 0);
    text(
        root,
        &format!(
            "Pair {}: {} {} kept, {} {} as background (train images #{} and #{}; step {}, slot {})",
            i + 1,
            fg.class,
            fg.image,
            bg.class,
            bg.image,
            fg.index,
            bg.index,
            p.step,
            p.slot
        ),
        (x, y - PAIR_TITLE_H + 4),
        15,
    )?;
    let side = layout.cell;
    let caption = |col: usize, row: usize, s: &str| -> Result<()> {
        let (cx, cy) = layout.picture_origin(i, col, row);
        text(root, s, (cx, cy + side as i32 + 3), 14)
    };
    for (col, s) in [(0, fg), (1, bg)] {
        draw_image(root, &s.rgb, layout.picture_origin(i, col, 0), side)?;
        caption(col, 0, &format!("{} image", s.class))?;
        draw_image(
            root,
            &grey_to_rgb(&s.saliency),
            layout.picture_origin(i, col, 1),
            side,
        )?;
        caption(col, 1, &format!("{} saliency", s.class))?;
    }
    for (v, grid) in p.grids.iter().enumerate() {
        draw_ratio_grid(root, sheet, layout, i, v, grid)?;
        let mean = grid.values.iter().sum::<f32>() / grid.values.len().max(1) as f32;
        caption(2 + v, 0, &format!("ratio, mean {mean:.2}"))?;
        let mixed = mixed_illustration(&fg.rgb, &bg.rgb, grid, sheet.ratio.patch);
        draw_image(root, &mixed, layout.picture_origin(i, 2 + v, 1), side)?;
        caption(2 + v, 1, &format!("mixed, label {}", fg.class))?;
    }
    Ok(())
}

fn draw_ratio_grid(
    root: &Area,
    sheet: &MixSheet,
    layout: &SheetLayout,
    pair: usize,
    variant: usize,
    grid: &RatioGrid,
) -> Result<()> {
    let p = layout.patch_px();
    let font_px = ((p as f32) * 0.3).clamp(10.0, 22.0) as u32;
    // A printed value needs about 3.2 font sizes of width ("0.73").
    let print_values = p as f32 >= 3.2 * font_px as f32;
    for r in 0..grid.rows {
        for c in 0..grid.cols {
            let value = grid.at(r, c);
            let colour = ratio_colour(value, sheet.ratio.floor, sheet.ratio.alpha);
            let (a, b) = layout.patch_rect(pair, variant, r, c);
            root.draw(&Rectangle::new([a, b], colour.filled()))
                .map_err(draw_err)?;
            if print_values {
                let style = (FONT, font_px)
                    .into_font()
                    .color(&text_colour_on(colour))
                    .pos(Pos::new(HPos::Center, VPos::Center));
                root.draw(&Text::new(
                    format!("{value:.2}"),
                    ((a.0 + b.0) / 2, (a.1 + b.1) / 2),
                    style,
                ))
                .map_err(draw_err)?;
            }
        }
    }
    Ok(())
}

fn draw_legend(root: &Area, sheet: &MixSheet, layout: &SheetLayout) -> Result<()> {
    let (_, h) = layout.size();
    let y = h as i32 - LEGEND_H + 10;
    let (floor, alpha) = (sheet.ratio.floor, sheet.ratio.alpha);
    let bar_w = 320;
    // Ratio colour bar.
    text(
        root,
        "ratio r (foreground share of a token)",
        (MARGIN, y),
        15,
    )?;
    for x in 0..bar_w {
        let v = floor + (alpha - floor) * x as f32 / (bar_w - 1) as f32;
        let c = ratio_colour(v, floor, alpha);
        root.draw(&PathElement::new(
            vec![(MARGIN + x, y + 22), (MARGIN + x, y + 44)],
            c,
        ))
        .map_err(draw_err)?;
    }
    let tick = |x: i32, s: String, h: HPos| -> Result<()> {
        root.draw(&Text::new(
            s,
            (x, y + 48),
            (FONT, 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(h, VPos::Top)),
        ))
        .map_err(draw_err)
    };
    tick(MARGIN, format!("{floor:.2} (floor)"), HPos::Left)?;
    tick(
        MARGIN + bar_w / 2,
        format!("{:.2}", (floor + alpha) / 2.0),
        HPos::Center,
    )?;
    tick(MARGIN + bar_w, format!("{alpha:.2} (alpha)"), HPos::Right)?;
    // Saliency grey bar.
    let sx = MARGIN + bar_w + 60;
    text(root, "saliency (static map; white = lesion)", (sx, y), 15)?;
    for x in 0..bar_w {
        let g = (255 * x / (bar_w - 1)) as u8;
        root.draw(&PathElement::new(
            vec![(sx + x, y + 22), (sx + x, y + 44)],
            RGBColor(g, g, g),
        ))
        .map_err(draw_err)?;
    }
    root.draw(&Rectangle::new(
        [(sx, y + 22), (sx + bar_w - 1, y + 44)],
        BLACK.stroke_width(1),
    ))
    .map_err(draw_err)?;
    tick(sx, "0".into(), HPos::Left)?;
    tick(sx + bar_w, "1".into(), HPos::Right)?;
    let notes = [
        "Mixed: each patch's pixels = r x foreground + (1 - r) x background. Training mixes the two images' \
         tokens with these r, not pixels; the label is the foreground's.",
        "patch + saliency: lesion-aware r per patch; saliency per sample: its mean over the patches; \
         random per patch / plain token mixup: uniform in [floor, alpha) per patch / per sample.",
    ];
    for (k, n) in notes.iter().enumerate() {
        text(root, n, (MARGIN, y + 76 + 22 * k as i32), 14)?;
    }
    Ok(())
}
