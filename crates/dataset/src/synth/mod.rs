//! A synthetic, long-tailed, dermoscopy-like data set in the exact ISIC2018 Task 3 layout.
//!
//! It lets a newcomer without ISIC2018, and every test, run the whole pipeline. What it models:
//! - class counts proportional to ISIC2018 (NV 6705, MEL 1113, BKL 1099, BCC 514, AKIEC 327,
//!   VASC 142, DF 115) times a scale, with a floor per class so a small set still splits;
//! - about a quarter of lesions photographed 2-5 times (shifted, rotated, zoomed views of one lesion
//!   on one patient's skin), listed in the lesion groupings CSV;
//! - backgrounds from one distribution for every class (skin tone, texture, a few hairs, vignette,
//!   sometimes the dermoscope's dark circle), so the background says nothing about the class;
//! - a lesion darker than the skin and the most salient thing in the image, whose class lives in
//!   its palette, size, border irregularity and internal structures (dots, globules, streaks,
//!   vessels, white areas); every class borrows colour and structures from others at random, so
//!   classes overlap and a small model stays far from perfect on the tail.
//!
//! Everything is drawn from generators seeded by (seed, class), (seed, lesion) and (seed, image):
//! the same seed gives the same bytes, whatever the thread count.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use rayon::prelude::*;

use crate::classes::{IsicClass, NUM_CLASSES};
use crate::error::{DatasetError, Result};
use crate::index::isic_names;

mod appearance;

use appearance::{render, LesionParams, View};

/// Options of the synthetic generator.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Multiplies ISIC2018's class counts (1.0 gives 10,015 images).
    pub scale: f64,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    pub seed: u64,
    /// No class gets fewer images than this (so small scales still leave tail classes a training set).
    pub min_per_class: usize,
    /// JPEG quality 1-100.
    pub jpeg_quality: u8,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            scale: 0.1,
            width: 300,
            height: 225,
            seed: 0,
            min_per_class: 24,
            jpeg_quality: 90,
        }
    }
}

/// What the generator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    pub root: PathBuf,
    /// Images per class, by label.
    pub counts: [usize; NUM_CLASSES],
    pub images: usize,
    pub lesions: usize,
    /// Lesions with more than one image.
    pub multi_image_lesions: usize,
}

/// Images per class for a scale: ISIC2018's counts times `scale`, rounded, at least `min_per_class`.
pub fn synth_class_counts(scale: f64, min_per_class: usize) -> [usize; NUM_CLASSES] {
    IsicClass::ALL
        .map(|c| ((c.isic2018_count() as f64 * scale).round() as usize).max(min_per_class))
}

/// Parses `WxH` (e.g. `300x225`).
pub fn parse_size(text: &str) -> Result<(u32, u32)> {
    let bad = || {
        DatasetError::Invalid(format!(
            "--size {text:?}: expected WIDTHxHEIGHT like 300x225"
        ))
    };
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if w < 16 || h < 16 || w > 8192 || h > 8192 {
        return Err(DatasetError::Invalid(format!(
            "--size {text:?}: each side must be 16..=8192 pixels"
        )));
    }
    Ok((w, h))
}

/// One planned image.
struct PlannedImage {
    id: String,
    class: IsicClass,
    lesion: usize,
    /// 0 for the first view of a lesion.
    view: usize,
}

/// Writes the synthetic set to `out` in the ISIC2018 Task 3 layout. The files are written into a
/// temporary sibling folder and renamed into place at the end, so a failed run leaves nothing behind.
/// `out` must not exist or be empty, unless `force` (then it is replaced).
pub fn generate_synthetic_isic(
    out: &Path,
    options: &SynthOptions,
    force: bool,
) -> Result<SynthSummary> {
    if !(options.scale > 0.0 && options.scale.is_finite()) {
        return Err(DatasetError::Invalid(format!(
            "--scale {}: must be a positive number",
            options.scale
        )));
    }
    if !(1..=100).contains(&options.jpeg_quality) {
        return Err(DatasetError::Invalid(format!(
            "jpeg quality {} not in 1..=100",
            options.jpeg_quality
        )));
    }
    let occupied = out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| DatasetError::io(out, e))?
            .next()
            .is_some();
    if occupied && !force {
        return Err(DatasetError::OutputExists {
            path: out.to_owned(),
        });
    }
    let counts = synth_class_counts(options.scale, options.min_per_class);
    let (plan, lesion_classes) = plan_images(&counts, options.seed);

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".synth-isic-")
        .tempdir_in(parent)
        .map_err(|e| DatasetError::io(parent, e))?;
    let input_dir = staging.path().join(isic_names::TRAIN_INPUT);
    let gt_dir = staging.path().join(isic_names::TRAIN_GT_DIR);
    for d in [&input_dir, &gt_dir] {
        std::fs::create_dir_all(d).map_err(|e| DatasetError::io(d, e))?;
    }

    let lesions: Vec<LesionParams> = lesion_classes
        .iter()
        .enumerate()
        .map(|(i, &class)| LesionParams::draw(class, &mut stream(options.seed, 1, i as u64)))
        .collect();
    plan.par_iter().enumerate().try_for_each(|(i, img)| {
        let mut rng = stream(options.seed, 2, i as u64);
        let view = if img.view == 0 {
            View::identity()
        } else {
            View::draw(&mut rng)
        };
        let pixels = render(
            &lesions[img.lesion],
            &view,
            options.width,
            options.height,
            options.seed ^ i as u64,
        );
        let path = input_dir.join(format!("{}.jpg", img.id));
        write_jpeg(&path, &pixels, options.jpeg_quality)
    })?;

    write_ground_truth(&gt_dir.join(isic_names::TRAIN_GT_CSV), &plan)?;
    write_groupings(&staging.path().join(isic_names::LESION_GROUPINGS), &plan)?;

    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| DatasetError::io(out, e))?;
    }
    let kept = staging.keep();
    std::fs::rename(&kept, out).map_err(|e| DatasetError::io(out, e))?;

    let mut per_lesion = vec![0usize; lesions.len()];
    for p in &plan {
        per_lesion[p.lesion] += 1;
    }
    Ok(SynthSummary {
        root: out.to_owned(),
        counts,
        images: plan.len(),
        lesions: lesions.len(),
        multi_image_lesions: per_lesion.iter().filter(|&&n| n > 1).count(),
    })
}

/// A generator for one purpose (`kind`) and item, independent of every other.
fn stream(seed: u64, kind: u64, item: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(kind << 48 | item);
    rng
}

/// Groups each class's images into lesions (a quarter of lesions with 2-5 images) and gives the
/// images ISIC-style ids in a shuffled order, so that classes interleave as in the real set.
fn plan_images(counts: &[usize; NUM_CLASSES], seed: u64) -> (Vec<PlannedImage>, Vec<IsicClass>) {
    let mut lesion_classes = Vec::new();
    let mut raw = Vec::new();
    for class in IsicClass::ALL {
        let mut rng = stream(seed, 0, class.label() as u64);
        let mut remaining = counts[class.label()];
        while remaining > 0 {
            let size = if rng.random_bool(0.25) {
                rng.random_range(2..=5)
            } else {
                1
            };
            let size = size.min(remaining);
            let lesion = lesion_classes.len();
            lesion_classes.push(class);
            for view in 0..size {
                raw.push((class, lesion, view));
            }
            remaining -= size;
        }
    }
    raw.shuffle(&mut stream(seed, 0, 99));
    let plan = raw
        .into_iter()
        .enumerate()
        .map(|(i, (class, lesion, view))| PlannedImage {
            id: format!("ISIC_{:07}", i),
            class,
            lesion,
            view,
        })
        .collect();
    (plan, lesion_classes)
}

fn write_jpeg(path: &Path, pixels: &RgbImage, quality: u8) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let mut w = BufWriter::new(file);
    JpegEncoder::new_with_quality(&mut w, quality)
        .encode_image(pixels)
        .map_err(|e| DatasetError::Image {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    w.flush().map_err(|e| DatasetError::io(path, e))
}

fn write_ground_truth(path: &Path, plan: &[PlannedImage]) -> Result<()> {
    let mut rows: Vec<&PlannedImage> = plan.iter().collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    write_csv(
        path,
        &isic_names::GT_HEADER,
        rows.iter().map(|r| {
            let one_hot = IsicClass::ALL.map(|c| if c == r.class { "1.0" } else { "0.0" });
            std::iter::once(r.id.clone())
                .chain(one_hot.iter().map(|v| v.to_string()))
                .collect()
        }),
    )
}

fn write_groupings(path: &Path, plan: &[PlannedImage]) -> Result<()> {
    let mut rows: Vec<&PlannedImage> = plan.iter().collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    write_csv(
        path,
        &isic_names::GROUPINGS_HEADER,
        rows.iter().map(|r| {
            // Like ISIC: malignant and rare classes confirmed by histopathology, naevi mostly by follow-up.
            let confirm = match r.class {
                IsicClass::Nv if r.lesion % 2 == 0 => "serial imaging showing no change",
                IsicClass::Nv => "single image expert consensus",
                _ => "histopathology",
            };
            vec![
                r.id.clone(),
                format!("HAM_{:07}", r.lesion),
                confirm.to_string(),
            ]
        }),
    )
}

/// Writes a CSV file: the header, then the rows.
fn write_csv(path: &Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<()> {
    let csv_err = |e: csv::Error| DatasetError::io(path, std::io::Error::other(e));
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    w.write_record(header).map_err(csv_err)?;
    for row in rows {
        w.write_record(&row).map_err(csv_err)?;
    }
    w.flush().map_err(|e| DatasetError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_isic_with_a_floor() {
        let c = synth_class_counts(0.1, 24);
        assert_eq!(c[IsicClass::Nv.label()], 671); // 670.5 rounds up
        assert_eq!(c[IsicClass::Df.label()], 24);
        assert_eq!(synth_class_counts(1.0, 0).iter().sum::<usize>(), 10015);
    }

    #[test]
    fn size_parses() {
        assert_eq!(parse_size("300x225").unwrap(), (300, 225));
        assert!(parse_size("300").is_err());
        assert!(parse_size("0x10").is_err());
    }

    #[test]
    fn lesion_is_darker_than_skin() {
        let mut rng = stream(7, 1, 0);
        for class in IsicClass::ALL {
            let l = LesionParams::draw(class, &mut rng);
            let img = render(&l, &View::identity(), 120, 90, 1);
            let lum = |p: &image::Rgb<u8>| p.0.iter().map(|&v| v as f32).sum::<f32>();
            let centre = lum(img.get_pixel(60, 45));
            let corner = lum(img.get_pixel(20, 20)).max(lum(img.get_pixel(100, 70)));
            // The dermoscope circle can darken a corner; compare with the brighter of two skin points.
            assert!(centre < corner, "{class}: centre {centre} corner {corner}");
        }
    }
}
