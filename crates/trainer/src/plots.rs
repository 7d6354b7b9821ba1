//! PNG plots of a run: `curves.png` (per-epoch loss, accuracies and learning rate) and
//! `confusion.png` (the `(C, C)` confusion matrix). Drawn with plotters into an in-memory RGB
//! buffer, encoded with `image` and written atomically. Text uses the embedded DejaVu Sans
//! (`assets/DejaVuSans.ttf`), so no system font is needed. CPU cost: a few milliseconds per plot.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::atomic_file::write_atomic;
use crate::epoch_record::EpochRecord;
use crate::report_error::ReportError;

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters once per process.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "the embedded font assets/DejaVuSans.ttf could not be loaded"
        ))
    }
}

/// Draws with `draw` on a white `w x h` canvas and writes it as a PNG at `path`, atomically.
pub(crate) fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    ensure_font()?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow!("{}: drawing: {e}", path.display()))?;
        draw(&root).with_context(|| format!("{}: drawing", path.display()))?;
        root.present()
            .map_err(|e| anyhow!("{}: drawing: {e}", path.display()))?;
    }
    let mut png = Vec::new();
    // Best compression: the figures are committed to the repository (a few ms more per plot).
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&buf, w, h, image::ExtendedColorType::Rgb8)
    .with_context(|| format!("{}: encoding PNG", path.display()))?;
    write_atomic(path, &png)?;
    Ok(())
}

pub(crate) fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

/// `(lo, hi)` covering the finite values with 5 % margins; never empty.
fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.05 * span
    } else {
        (0.1 * lo.abs()).max(1e-12)
    };
    (lo - pad, hi + pad)
}

const SERIES_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// One panel of `curves.png`: named series of `(epoch, value)` (non-finite values are skipped).
#[allow(clippy::type_complexity)]
fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    x_range: (f64, f64),
    y_range: (f64, f64),
    y_fmt: &dyn Fn(&f64) -> String,
    series: &[(&str, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        // At most one label per epoch: with fractional ticks a 2-epoch run would print "1" five times.
        .x_labels(((x_range.1 - x_range.0).round() as usize + 1).clamp(2, 10))
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(y_fmt)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(draw_err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = SERIES_COLORS[i % SERIES_COLORS.len()];
        let finite: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(_, y)| y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(finite, color.stroke_width(2)).point_size(3))
            .map_err(draw_err)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.6))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Writes `curves.png` (1500 x 480): training loss; train / validation accuracy, validation accuracy
/// per group and validation macro F1 (in percent); learning rate; all against the epoch.
/// `epochs: [E]`, E >= 1, in any order (they are sorted by `epoch`); non-finite values are skipped.
pub fn plot_curves(path: &Path, epochs: &[EpochRecord]) -> anyhow::Result<()> {
    if epochs.is_empty() {
        return Err(ReportError::NoEpochs {
            path: path.to_path_buf(),
        }
        .into());
    }
    let mut epochs = epochs.to_vec();
    epochs.sort_by_key(|e| e.epoch);
    let first = epochs[0].epoch as f64;
    let last = epochs[epochs.len() - 1].epoch as f64;
    // A small margin so the first and last markers are not cut by the axes.
    let x_range = if last > first {
        let pad = 0.03 * (last - first);
        (first - pad, last + pad)
    } else {
        (first - 1.0, first + 1.0)
    };
    let pts = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|e| (e.epoch as f64, f(e))).collect()
    };
    let pct = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .map(|e| (e.epoch as f64, 100.0 * f(e)))
            .collect()
    };
    let loss = pts(|e| e.train_loss);
    let lr = pts(|e| e.lr);
    let accuracy = [
        ("train acc", pct(|e| e.train_accuracy)),
        ("val acc", pct(|e| e.val_accuracy)),
        ("val Many", pct(|e| e.val_many)),
        ("val Medium", pct(|e| e.val_medium)),
        ("val Few", pct(|e| e.val_few)),
        ("val macro F1", pct(|e| e.val_macro_f1)),
    ];
    let loss_range = value_range(loss.iter().map(|p| p.1));
    let lr_max = lr
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let lr_range = (0.0, if lr_max > 0.0 { 1.08 * lr_max } else { 1.0 });

    render_png(path, (1500, 480), |root| {
        let panels = root.split_evenly((1, 3));
        draw_panel(
            &panels[0],
            "Training loss",
            "loss",
            x_range,
            loss_range,
            &|v| format!("{v:.3}"),
            &[("train loss", loss.clone())],
        )?;
        draw_panel(
            &panels[1],
            "Accuracy and macro F1",
            "%",
            x_range,
            (0.0, 100.0),
            &|v| format!("{v:.0}"),
            &accuracy,
        )?;
        draw_panel(
            &panels[2],
            "Learning rate",
            "lr",
            x_range,
            lr_range,
            &|v| format!("{v:.1e}"),
            &[("lr", lr.clone())],
        )?;
        Ok(())
    })
}

/// White -> dark blue, `t` in `[0, 1]`.
fn heat_color(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// Writes `confusion.png`: the `(C, C)` matrix `confusion[true][pred]` as a heat map coloured by the
/// row-normalised fraction (the recall of the true class, so rare classes are as visible as common
/// ones), each cell labelled with its count and row percentage. `class_names: [C]`.
pub fn plot_confusion(
    path: &Path,
    confusion: &[Vec<usize>],
    class_names: &[String],
) -> anyhow::Result<()> {
    let c = class_names.len();
    if confusion.len() != c || confusion.iter().any(|r| r.len() != c) || c == 0 {
        return Err(ReportError::ConfusionShape {
            path: path.to_path_buf(),
            rows: confusion.len(),
            cols: confusion.first().map_or(0, |r| r.len()),
            classes: c,
        }
        .into());
    }
    let cell = (560 / c as i32).clamp(40, 90);
    let left = 120;
    let top = 70;
    let grid = cell * c as i32;
    let w = (left + grid + 40) as u32;
    let h = (top + grid + 90) as u32;
    let total: usize = confusion.iter().flatten().sum();

    render_png(path, (w, h), |root| {
        let center = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            format!("Confusion matrix ({total} samples; colour = row %)"),
            ((w / 2) as i32, 24),
            (FONT, 20).into_font().color(&BLACK).pos(center),
        ))
        .map_err(draw_err)?;
        let count_size = (cell as f64 * 0.28).clamp(11.0, 18.0);
        for (t, row) in confusion.iter().enumerate() {
            let row_total: usize = row.iter().sum();
            for (p, &n) in row.iter().enumerate() {
                let frac = if row_total == 0 {
                    0.0
                } else {
                    n as f64 / row_total as f64
                };
                let x0 = left + p as i32 * cell;
                let y0 = top + t as i32 * cell;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    heat_color(frac).filled(),
                ))
                .map_err(draw_err)?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    RGBColor(200, 200, 200).stroke_width(1),
                ))
                .map_err(draw_err)?;
                let ink = if frac > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    n.to_string(),
                    (x0 + cell / 2, y0 + cell * 2 / 5),
                    (FONT, count_size).into_font().color(&ink).pos(center),
                ))
                .map_err(draw_err)?;
                if row_total > 0 {
                    root.draw(&Text::new(
                        format!("{:.0}%", 100.0 * frac),
                        (x0 + cell / 2, y0 + cell * 3 / 4),
                        (FONT, count_size * 0.7).into_font().color(&ink).pos(center),
                    ))
                    .map_err(draw_err)?;
                }
            }
        }
        let label_size = (cell as f64 * 0.25).clamp(11.0, 16.0);
        for (k, name) in class_names.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (left - 8, top + k as i32 * cell + cell / 2),
                (FONT, label_size)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(draw_err)?;
            root.draw(&Text::new(
                name.clone(),
                (left + k as i32 * cell + cell / 2, top + grid + 16),
                (FONT, label_size).into_font().color(&BLACK).pos(center),
            ))
            .map_err(draw_err)?;
        }
        root.draw(&Text::new(
            "predicted class",
            (left + grid / 2, top + grid + 50),
            (FONT, 16).into_font().color(&BLACK).pos(center),
        ))
        .map_err(draw_err)?;
        root.draw(&Text::new(
            "true class",
            (10, top - 20),
            (FONT, 16)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_err)?;
        Ok(())
    })
}
