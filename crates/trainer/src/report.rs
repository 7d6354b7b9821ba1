//! Evaluation reports of a run directory: `report.md`, `report.json`, `confusion.png` and
//! `predictions.csv` (ISIC2018 Task 3 submission format). Every file is written atomically
//! (a temporary file in the same folder, then a rename), so a crash never leaves a half-written one.
//!
//! `report.json` (what scripts read; field names are stable, `schema_version` changes if they do):
//! ```text
//! {
//!   "schema_version": 1,
//!   "context": { "run_name", "split", "checkpoint", "epoch", "method", "seed", "git_revision" },
//!   "metrics": {
//!     "total_accuracy", "macro_f1", "balanced_accuracy",      // fractions in [0, 1]
//!     "macro_auc",                                              // in [0, 1] or null
//!     "groups": { "many", "medium", "few" },                    // accuracy per group, fractions
//!     "group_support": { "many", "medium", "few" },             // samples per group
//!     "per_class": [ { "name", "group", "precision", "recall", "f1", "support",
//!                      "auc" } ],                               // [C]; auc in [0, 1] or null
//!     "confusion": [[...]],                                     // (C, C), confusion[true][pred]
//!     "num_samples"
//!   }
//! }
//! ```
//! `report.md` shows the same numbers in percent, except the AUCs (fractions, as ISIC publishes
//! them). The AUCs are one class against the rest on the predicted probabilities, macro AUC their
//! mean: the official ISIC 2018 scorer's definition ([`crate::roc_auc`]).
//!
//! `predictions.csv`: header `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC` (the class names given), then one
//! row per image with its class probabilities, written in Rust's shortest round-trip form so that
//! [`read_predictions_csv`] returns the exact `f32` values. The official isic-challenge-scoring tool
//! matches rows on the `image` column (ISIC image ids, e.g. `ISIC_0034524`, without extension).

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::atomic_file::write_atomic;
use crate::metrics::{summary_table, EvalMetrics};
use crate::plots;

/// File name of the Markdown report inside a run directory.
pub const REPORT_MD: &str = "report.md";
/// File name of the JSON report inside a run directory.
pub const REPORT_JSON: &str = "report.json";
/// File name of the confusion-matrix plot inside a run directory.
pub const CONFUSION_PNG: &str = "confusion.png";
/// Version of the `report.json` layout.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

pub use crate::report_error::ReportError;

/// Who produced the numbers of a report: serialised as the `context` object of `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportContext {
    /// Run name (the run directory's name).
    pub run_name: String,
    /// Evaluated split: `val` or `test`.
    pub split: String,
    /// Checkpoint evaluated: `best` or `last` (or a path).
    pub checkpoint: String,
    /// Epoch of that checkpoint (1-based, as in `metrics.csv`).
    pub epoch: usize,
    /// Training method (`ce`, `ce-resample`, `paco`, `spmix`).
    pub method: String,
    /// Seed of the run.
    pub seed: u64,
    /// `git describe`/commit hash of the code that trained the run.
    pub git_revision: String,
}

/// The whole `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportJson {
    /// [`REPORT_SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    pub context: ReportContext,
    pub metrics: EvalMetrics,
}

fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

fn auc_or_na(auc: Option<f64>) -> String {
    auc.map_or_else(|| "n/a".to_string(), |a| format!("{a:.4}"))
}

/// The Markdown report: context, summary table, per-class table and confusion matrix.
pub fn render_markdown(ctx: &ReportContext, m: &EvalMetrics) -> String {
    let mut s = String::new();
    s.push_str(&format!("# Evaluation report: {}\n\n", ctx.run_name));
    s.push_str("| | |\n|---|---|\n");
    for (k, v) in [
        ("Split", ctx.split.clone()),
        ("Checkpoint", ctx.checkpoint.clone()),
        ("Epoch", ctx.epoch.to_string()),
        ("Method", ctx.method.clone()),
        ("Seed", ctx.seed.to_string()),
        ("Git revision", ctx.git_revision.clone()),
        ("Samples", m.num_samples.to_string()),
    ] {
        s.push_str(&format!("| {k} | `{v}` |\n"));
    }
    s.push_str("\n## Accuracy by group\n\n");
    s.push_str(&summary_table(m));
    s.push_str(&format!(
        "\nBalanced accuracy (mean recall over classes with samples): {} %.\n",
        pct(m.balanced_accuracy)
    ));
    s.push_str(&format!(
        "Macro AUC (one class against the rest, mean over the classes; ISIC 2018's definition): {}.\n",
        auc_or_na(m.macro_auc)
    ));
    s.push_str(&format!(
        "Samples per group: Many {}, Medium {}, Few {} (a group with none shows n/a).\n",
        m.group_support.many, m.group_support.medium, m.group_support.few
    ));
    s.push_str("\n## Per class\n\n");
    s.push_str("| Class | Group | Precision (%) | Recall (%) | F1 (%) | AUC | Support |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for c in &m.per_class {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            c.name,
            c.group.name(),
            pct(c.precision),
            pct(c.recall),
            pct(c.f1),
            auc_or_na(c.auc),
            c.support
        ));
    }
    s.push_str(
        "\nPrecision of a class never predicted is 0, recall of a class without samples is 0, F1 is 0 \
         when both are 0; macro F1 averages the classes present in labels or predictions. AUC is n/a \
         for a class that no sample or every sample has; macro AUC averages the others.\n",
    );
    s.push_str("\n## Confusion matrix (rows: true class, columns: predicted class)\n\n");
    s.push_str("| true \\ pred |");
    for c in &m.per_class {
        s.push_str(&format!(" {} |", c.name));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(m.per_class.len()));
    s.push('\n');
    for (c, row) in m.per_class.iter().zip(&m.confusion) {
        s.push_str(&format!("| **{}** |", c.name));
        for v in row {
            s.push_str(&format!(" {v} |"));
        }
        s.push('\n');
    }
    s.push_str(&format!("\n![confusion matrix]({CONFUSION_PNG})\n"));
    s
}

/// Writes `report.md`, `report.json` and `confusion.png` into `run_dir` (which must exist), each
/// atomically. Errors name the file that could not be written.
pub fn write_report(run_dir: &Path, ctx: &ReportContext, m: &EvalMetrics) -> anyhow::Result<()> {
    let json = ReportJson {
        schema_version: REPORT_SCHEMA_VERSION,
        context: ctx.clone(),
        metrics: m.clone(),
    };
    let mut text = serde_json::to_string_pretty(&json).context("serialising report.json")?;
    text.push('\n');
    write_atomic(&run_dir.join(REPORT_JSON), text.as_bytes())?;
    write_atomic(&run_dir.join(REPORT_MD), render_markdown(ctx, m).as_bytes())?;
    let names: Vec<String> = m.per_class.iter().map(|c| c.name.clone()).collect();
    plots::plot_confusion(&run_dir.join(CONFUSION_PNG), &m.confusion, &names)?;
    Ok(())
}

/// Reads a `report.json` written by [`write_report`].
pub fn read_report(path: &Path) -> anyhow::Result<ReportJson> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let report: ReportJson = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a report.json", path.display()))?;
    Ok(report)
}

/// Writes `predictions.csv` atomically: header `image,<class_names...>`, then one row per image.
///
/// `images: [N]` image ids; `probabilities: (N, C)`; `class_names: [C]` (ISIC order
/// `MEL,NV,BCC,AKIEC,BKL,DF,VASC` for a submission). Errors on mismatched lengths or an image name
/// that would need CSV quoting (the scoring tool expects bare ids).
pub fn write_predictions_csv(
    path: &Path,
    images: &[String],
    probabilities: &[Vec<f32>],
    class_names: &[String],
) -> anyhow::Result<()> {
    if images.len() != probabilities.len() {
        return Err(ReportError::RowCountMismatch {
            path: path.to_path_buf(),
            images: images.len(),
            rows: probabilities.len(),
        }
        .into());
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = std::iter::once("image").chain(class_names.iter().map(String::as_str));
    out.write_record(header)?;
    for (row, (image, probs)) in images.iter().zip(probabilities).enumerate() {
        // The scoring tool expects bare ids: refuse a name the CSV writer would have to quote.
        if image.contains([',', '"', '\n', '\r']) || image.is_empty() {
            return Err(ReportError::BadImageName {
                path: path.to_path_buf(),
                row,
                image: image.clone(),
            }
            .into());
        }
        if probs.len() != class_names.len() {
            return Err(ReportError::RowWidthMismatch {
                path: path.to_path_buf(),
                row,
                image: image.clone(),
                got: probs.len(),
                expected: class_names.len(),
            }
            .into());
        }
        // `{}` on f32 is the shortest string that parses back to the same f32.
        let fields = std::iter::once(image.clone()).chain(probs.iter().map(|p| p.to_string()));
        out.write_record(fields)?;
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// A parsed `predictions.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionsCsv {
    /// Class columns of the header, after `image`: `[C]`.
    pub class_names: Vec<String>,
    /// Image ids: `[N]`.
    pub images: Vec<String>,
    /// `(N, C)` probabilities.
    pub probabilities: Vec<Vec<f32>>,
}

/// Reads a `predictions.csv` with its header. Errors name the file and the line (1-based, header =
/// line 1) of a row with the wrong number of fields or a value that is not a finite number.
pub fn read_predictions_csv_full(path: &Path) -> anyhow::Result<PredictionsCsv> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("{}: reading the header", path.display()))?
        .clone();
    let fields: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if fields.len() < 2 || fields[0].trim_start_matches('\u{feff}') != "image" {
        return Err(ReportError::BadHeader {
            path: path.to_path_buf(),
            header: fields.join(","),
        }
        .into());
    }
    let class_names = fields[1..].to_vec();
    let mut images = Vec::new();
    let mut probabilities = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |message: String| ReportError::BadRow {
            path: path.to_path_buf(),
            line,
            message,
        };
        if record.len() != fields.len() {
            return Err(bad(format!(
                "{} fields, expected {} (image + {} classes)",
                record.len(),
                fields.len(),
                class_names.len()
            ))
            .into());
        }
        let mut row = Vec::with_capacity(class_names.len());
        for (j, value) in record.iter().enumerate().skip(1) {
            let v: f32 = value.trim().parse().map_err(|_| {
                bad(format!(
                    "column {} ({}): {value:?} is not a number",
                    j + 1,
                    fields[j]
                ))
            })?;
            if !v.is_finite() {
                return Err(bad(format!(
                    "column {} ({}): {value:?} is not finite",
                    j + 1,
                    fields[j]
                ))
                .into());
            }
            row.push(v);
        }
        images.push(record[0].trim().to_string());
        probabilities.push(row);
    }
    Ok(PredictionsCsv {
        class_names,
        images,
        probabilities,
    })
}

/// Reads a `predictions.csv`: image ids `[N]` and probabilities `(N, C)` (see
/// [`read_predictions_csv_full`] for the class names of the header).
pub fn read_predictions_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Vec<f32>>)> {
    let p = read_predictions_csv_full(path)?;
    Ok((p.images, p.probabilities))
}
