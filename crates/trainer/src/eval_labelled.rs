//! `trainer eval --labels GT.csv --images DIR`: a run's model on any labelled set in the ISIC
//! ground-truth format, e.g. the official ISIC2018 Task 3 validation or test set:
//! `ISIC2018_Task3_Validation_GroundTruth.csv` (`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`, one-hot
//! floats) and `ISIC2018_Task3_Validation_Input/<image>.jpg`.
//!
//! Every id of the CSV becomes a path only through [`dataset::image_id::image_file`]; every file is
//! checked to exist before the model runs, and an image that cannot be decoded fails the command
//! (naming it): a metric over part of a set would not be the set's. The report has the same
//! files and numbers as the run's own (balanced accuracy as the official ISIC scorer computes it:
//! the mean recall over the classes present), written to an output folder of its own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use dataset::prepare::DecodeLimits;

use crate::checkpoint::Which;
use crate::metrics::EvalMetrics;

/// A labelled set read from a ground-truth CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSet {
    /// Image ids, in CSV order: `[N]`.
    pub images: Vec<String>,
    /// The image file of each id: `<images dir>/<id>.jpg`.
    pub files: Vec<PathBuf>,
    /// Class index of each image (ISIC order `MEL,NV,BCC,AKIEC,BKL,DF,VASC`): `[N]`.
    pub labels: Vec<usize>,
}

/// Reads an ISIC ground-truth CSV and finds each image in `images_dir`. Errors name the CSV and
/// line (bad header, row, unsafe id, repeated id), or the image file that is missing.
pub fn read_labelled_set(labels_csv: &Path, images_dir: &Path) -> Result<LabelledSet> {
    if !images_dir.is_dir() {
        bail!("--images {}: not a folder", images_dir.display());
    }
    let rows = dataset::index::read_ground_truth(labels_csv)?;
    if rows.is_empty() {
        bail!("{}: no images listed", labels_csv.display());
    }
    let mut seen = HashSet::new();
    let mut set = LabelledSet {
        images: Vec::with_capacity(rows.len()),
        files: Vec::with_capacity(rows.len()),
        labels: Vec::with_capacity(rows.len()),
    };
    for (id, class, line) in rows {
        let file = dataset::image_id::image_file(images_dir, &id, "jpg", labels_csv, line)?;
        if !seen.insert(id.clone()) {
            bail!(
                "{}: line {line}: image {id} is listed twice",
                labels_csv.display()
            );
        }
        if !file.is_file() {
            bail!(
                "{}: line {line}: image {id}: {} does not exist",
                labels_csv.display(),
                file.display()
            );
        }
        set.images.push(id);
        set.files.push(file);
        set.labels.push(class.label());
    }
    Ok(set)
}

/// The default output folder: `<run>/eval-labels-<CSV file stem>-<best|last>/`.
pub fn default_out_dir(run: &Path, labels_csv: &Path, which: Which) -> PathBuf {
    let stem = labels_csv
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "labels".into());
    // The stem names a folder: keep it to characters that are safe everywhere.
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let which = match which {
        Which::Best => "best",
        Which::Last => "last",
    };
    run.join(format!("eval-labels-{stem}-{which}"))
}

/// Evaluates the run's `which` checkpoint on the labelled set and writes `report.md`,
/// `report.json`, `confusion.png` and `predictions.csv` into `out_dir` (created if missing; its
/// files are replaced, each atomically). Prints the summary table. Returns the metrics.
pub fn evaluate_labelled(
    run: &Path,
    which: Which,
    device: Option<&Device>,
    labels_csv: &Path,
    images_dir: &Path,
    out_dir: &Path,
    limits: &DecodeLimits,
) -> Result<EvalMetrics> {
    let set = read_labelled_set(labels_csv, images_dir)?;
    let (cfg, info, query, state, device) =
        crate::evaluate_run::load_run_network(run, which, device)?;
    let results = crate::predict::predict_images(&query, &set.files, &cfg, &device, limits)?;
    let mut probabilities = Vec::with_capacity(results.len());
    for r in results {
        probabilities.push(r.map_err(anyhow::Error::msg)?);
    }
    let names: Vec<String> = dataset::IsicClass::ALL
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let metrics = crate::metrics::evaluate_probabilities(
        &set.labels,
        &probabilities,
        &names,
        &crate::evaluate::paper_groups(),
    );
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let epoch = state.history.len();
    let which_name = match which {
        Which::Best => "best",
        Which::Last => "last",
    };
    let ctx = crate::report::ReportContext {
        run_name: info.name.clone(),
        split: format!("labels {}", labels_csv.display()),
        checkpoint: format!("{which_name} (epoch {epoch}, step {})", state.global_step),
        epoch,
        method: info.method.clone(),
        seed: info.seed,
        git_revision: info.git_revision.clone(),
    };
    crate::report::write_report(out_dir, &ctx, &metrics)?;
    crate::report::write_predictions_csv(
        &out_dir.join("predictions.csv"),
        &set.images,
        &probabilities,
        &names,
    )?;
    println!(
        "{} on {} ({} images, {}):\n{}\nbalanced accuracy {:.2} %, macro AUC {}",
        info.name,
        labels_csv.display(),
        set.images.len(),
        ctx.checkpoint,
        crate::metrics::summary_table(&metrics),
        100.0 * metrics.balanced_accuracy,
        metrics
            .macro_auc
            .map_or_else(|| "n/a".to_string(), |a| format!("{a:.4}"))
    );
    Ok(metrics)
}
