//! The files a prepared split consists of, and reading them back.
//!
//! A split folder (the `--out` of `cargo xtask prepare-isic`) holds:
//! - `train.csv`, `val.csv`, `test.csv` with header `image,path,label,class,lesion_id`; `path` is the
//!   image file, absolute (canonicalised at prepare time); a relative path is resolved against the
//!   split folder;
//! - `saliency/<image>.png`: the static saliency map of each image (8-bit grey, the image's size),
//!   found by image id (see [`saliency_path`]);
//! - `split.json`: the [`SplitManifest`] (seed, source, counts per class and split, groups).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classes::{Group, IsicClass, NUM_CLASSES};
use crate::error::{DatasetError, Result};

/// Header of the split CSVs.
pub const SPLIT_CSV_HEADER: [&str; 5] = ["image", "path", "label", "class", "lesion_id"];
/// The three split names, in order.
pub const SPLIT_NAMES: [&str; 3] = ["train", "val", "test"];
/// File name of the manifest.
pub const MANIFEST_FILE: &str = "split.json";
/// Folder (inside the split folder) holding the saliency maps.
pub const SALIENCY_DIR: &str = "saliency";

/// One image of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRow {
    /// Image id, e.g. `ISIC_0024306`.
    pub image: String,
    /// Image file (absolute, or relative to the split folder).
    pub path: PathBuf,
    /// Class label 0..7 (MEL, NV, BCC, AKIEC, BKL, DF, VASC).
    pub label: usize,
    /// Class name, e.g. `NV` (redundant with `label`, for people reading the file).
    pub class: String,
    /// Lesion id; images of one lesion are always in one split.
    pub lesion_id: String,
}

/// Where the saliency map of `image` lives in the split folder `split_dir`.
pub fn saliency_path(split_dir: &Path, image: &str) -> PathBuf {
    split_dir.join(SALIENCY_DIR).join(format!("{image}.png"))
}

/// Writes rows as a split CSV (the header even when there are no rows).
pub fn write_split_csv(path: &Path, rows: &[SplitRow]) -> Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(|e| csv_error(path, 0, e))?;
    w.write_record(SPLIT_CSV_HEADER)
        .map_err(|e| csv_error(path, 1, e))?;
    for r in rows {
        w.serialize(r).map_err(|e| csv_error(path, 0, e))?;
    }
    w.flush().map_err(|e| DatasetError::io(path, e))
}

/// Reads a split CSV, checking the header, the label/class agreement and label range, and that
/// every image id can name a file ([`crate::image_id`]). A relative `path` is resolved against the
/// folder holding the CSV and may not leave it (no `..`, no symbolic link out of it); an absolute
/// `path` is allowed (prepare writes those) and canonicalised when the file exists.
pub fn read_split_csv(path: &Path) -> Result<Vec<SplitRow>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| csv_error(path, 0, e))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| csv_error(path, 1, e))?
        .iter()
        .map(str::to_owned)
        .collect();
    if header != SPLIT_CSV_HEADER {
        return Err(DatasetError::Header {
            path: path.to_owned(),
            found: header,
            expected: SPLIT_CSV_HEADER.iter().map(|s| s.to_string()).collect(),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (i, rec) in r.deserialize::<SplitRow>().enumerate() {
        let line = i as u64 + 2;
        let mut row = rec.map_err(|e| csv_error(path, line, e))?;
        let class = IsicClass::from_label(row.label).ok_or_else(|| DatasetError::Csv {
            path: path.to_owned(),
            row: line,
            message: format!("label {} is not in 0..{NUM_CLASSES}", row.label),
        })?;
        if class.name() != row.class {
            return Err(DatasetError::Csv {
                path: path.to_owned(),
                row: line,
                message: format!(
                    "label {} is {} but class says {:?}",
                    row.label, class, row.class
                ),
            });
        }
        crate::image_id::checked_image_id(&row.image, path, line)?;
        row.path = resolve_row_path(base, &row.path, path, line)?;
        rows.push(row);
    }
    Ok(rows)
}

/// Where the `path` column of row `row` of `csv` points: a relative path under `base` (refused
/// when it climbs out lexically or, once resolved, through a symbolic link), an absolute path
/// canonicalised. A file that does not exist is returned unresolved; the split check names it.
fn resolve_row_path(base: &Path, found: &Path, csv: &Path, row: u64) -> Result<PathBuf> {
    let outside = || DatasetError::PathOutsideRoot {
        path: csv.to_owned(),
        row,
        found: found.display().to_string(),
        root: base.to_owned(),
    };
    if found.is_absolute() {
        return Ok(found.canonicalize().unwrap_or_else(|_| found.to_owned()));
    }
    if found
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    let joined = base.join(found);
    match (joined.canonicalize(), base.canonicalize()) {
        (Ok(file), Ok(root)) if !file.starts_with(&root) => Err(outside()),
        (Ok(file), Ok(_)) => Ok(file),
        _ => Ok(joined),
    }
}

fn csv_error(path: &Path, row: u64, e: csv::Error) -> DatasetError {
    let row = e.position().map(|p| p.line()).unwrap_or(row);
    DatasetError::Csv {
        path: path.to_owned(),
        row,
        message: e.to_string(),
    }
}

/// Per-class image counts of one split, by label.
pub type ClassCounts = [usize; NUM_CLASSES];

/// `split.json`: what a split was made from and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Format version of this file.
    pub version: u32,
    /// Seed of the split.
    pub seed: u64,
    /// Source root as given on the command line (canonicalised).
    pub source_root: PathBuf,
    /// `isic2018` or `ham10000`.
    pub layout: String,
    /// Whether ISIC2018's official validation images were included.
    pub include_validation: bool,
    /// Split protocol: `balanced` (fixed val/test counts per class) or `stratified`.
    pub protocol: SplitProtocol,
    /// SHA-256 (hex) of the label CSV(s), in the order read.
    pub label_csv_sha256: Vec<String>,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Many / Medium / Few per class, from the class totals over all splits.
    pub groups: Vec<Group>,
    /// Images per class in each split.
    pub counts: SplitCounts,
    /// Images dropped because their files were missing (`--skip-missing`).
    pub skipped_missing: Vec<String>,
}

/// The split protocol and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SplitProtocol {
    /// `val_per_class` and `test_per_class` images of every class, the rest to train.
    Balanced {
        val_per_class: usize,
        test_per_class: usize,
    },
    /// A stratified split of lesions with these train:val:test weights.
    Stratified { ratios: [u32; 3] },
}

/// Images per class (by label) in each split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: ClassCounts,
    pub val: ClassCounts,
    pub test: ClassCounts,
}

impl SplitManifest {
    /// Reads `split.json` from a split folder.
    pub fn read(split_dir: &Path) -> Result<Self> {
        let path = split_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|error| DatasetError::Json { path, error })
    }
}
