//! `curves.png`: the legend has a column of its own right of the accuracy plot, so the last
//! epochs stay visible where a legend inside the plot used to sit (lower right), and the best
//! (selected) epoch is marked in every panel.

use std::path::Path;

use image::RgbImage;
use trainer::epoch_record::EpochRecord;
use trainer::plots::{plot_curves, BEST_EPOCH_COLOR, LEGEND_FRAME_COLOR, LEGEND_WIDTH};

/// 12 epochs whose validation "Few" accuracy ends at 3 %: the lower-right corner of the plot.
fn epochs() -> Vec<EpochRecord> {
    (1..=12)
        .map(|e| {
            let t = e as f64 / 12.0;
            EpochRecord {
                epoch: e,
                lr: 1e-3 * (1.0 - t),
                train_loss: 2.0 - t,
                train_accuracy: 0.3 + 0.6 * t,
                val_accuracy: 0.3 + 0.5 * t,
                val_many: 0.5 + 0.4 * t,
                val_medium: 0.2 + 0.5 * t,
                val_few: if e >= 10 { 0.03 } else { 0.3 },
                val_macro_f1: 0.2 + 0.45 * t,
                val_balanced_accuracy: 0.3 + 0.5 * t,
                seconds: 1.0,
            }
        })
        .collect()
}

fn draw(best: Option<usize>) -> RgbImage {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    plot_curves(&path, &epochs(), best).unwrap();
    load(&path)
}

fn load(path: &Path) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

/// Pixels of colour `rgb` with `x` in `xs` and `y` in `ys`.
fn count(
    img: &RgbImage,
    rgb: [u8; 3],
    xs: std::ops::Range<u32>,
    ys: std::ops::Range<u32>,
) -> usize {
    let mut n = 0;
    for x in xs {
        for y in ys.clone() {
            if img.get_pixel(x, y).0 == rgb {
                n += 1;
            }
        }
    }
    n
}

const FEW: [u8; 3] = [148, 103, 189]; // the 5th series colour: val Few

#[test]
fn legend_sits_beside_the_plot_and_the_last_epochs_stay_visible() {
    let img = draw(None);
    let (w, h) = img.dimensions();
    assert_eq!((w, h), (1500, 480));
    // The accuracy panel is the middle third; its legend column is its right LEGEND_WIDTH pixels.
    let panel = 500..1000;
    let legend_left = panel.end - LEGEND_WIDTH;
    let frame = [
        LEGEND_FRAME_COLOR.0,
        LEGEND_FRAME_COLOR.1,
        LEGEND_FRAME_COLOR.2,
    ];
    assert!(count(&img, frame, legend_left..panel.end, 0..h) > 100);
    assert_eq!(
        count(&img, frame, 0..legend_left, 0..h) + count(&img, frame, panel.end..w, 0..h),
        0,
        "the legend frame must lie in the legend column only"
    );
    // Epochs 10-12 of val Few, at 3 %, are drawn in the plot's lower right (where the old legend
    // sat): its line is there, left of the legend column, in the lower third of the image.
    let lower_right = count(&img, FEW, legend_left - 90..legend_left, 2 * h / 3..h);
    assert!(
        lower_right > 40,
        "val Few at the last epochs: {lower_right} pixels"
    );
}

#[test]
fn best_epoch_is_marked_in_every_panel() {
    let marker = [BEST_EPOCH_COLOR.0, BEST_EPOCH_COLOR.1, BEST_EPOCH_COLOR.2];
    let plain = draw(None);
    let marked = draw(Some(7));
    for panel in [0..500, 500..1000, 1000..1500] {
        assert_eq!(count(&plain, marker, panel.clone(), 0..480), 0);
        let n = count(&marked, marker, panel.clone(), 0..480);
        assert!(n > 150, "panel {panel:?}: {n} marker pixels");
    }
    // The marker of epoch 7 is left of the marker of epoch 11 (the line follows the epoch).
    let leftmost = |img: &RgbImage| {
        (500..1000)
            .find(|&x| count(img, marker, x..x + 1, 100..300) > 20)
            .unwrap()
    };
    assert!(leftmost(&marked) < leftmost(&draw(Some(11))));
}
