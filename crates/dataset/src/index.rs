//! Reading the ISIC2018 Task 3 and HAM10000 layouts into one index of labelled images.
//!
//! Both releases hold the same 10,015 training images; they differ in file layout:
//! - ISIC2018 Task 3: `ISIC2018_Task3_Training_Input/*.jpg`,
//!   `ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv` (one-hot rows,
//!   header `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`) and `ISIC2018_Task3_Training_LesionGroupings.csv`
//!   (`image,lesion_id,diagnosis_confirm_type`; at the root or in the ground-truth folder); optionally
//!   the official validation set (`ISIC2018_Task3_Validation_Input/` and its ground truth).
//! - HAM10000: `HAM10000_metadata.csv` (`lesion_id,image_id,dx,dx_type,age,sex,localization[,dataset]`)
//!   with the images in one or more folders under the root.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classes::IsicClass;
use crate::error::{DatasetError, Result};
use crate::image_id::{checked_image_id, image_file};

/// ISIC2018 Task 3 file and folder names.
pub mod isic_names {
    pub const TRAIN_INPUT: &str = "ISIC2018_Task3_Training_Input";
    pub const TRAIN_GT_DIR: &str = "ISIC2018_Task3_Training_GroundTruth";
    pub const TRAIN_GT_CSV: &str = "ISIC2018_Task3_Training_GroundTruth.csv";
    pub const LESION_GROUPINGS: &str = "ISIC2018_Task3_Training_LesionGroupings.csv";
    pub const VAL_INPUT: &str = "ISIC2018_Task3_Validation_Input";
    pub const VAL_GT_DIR: &str = "ISIC2018_Task3_Validation_GroundTruth";
    pub const VAL_GT_CSV: &str = "ISIC2018_Task3_Validation_GroundTruth.csv";
    /// Header of the ground-truth CSVs.
    pub const GT_HEADER: [&str; 8] = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
    /// Header of the lesion groupings CSV.
    pub const GROUPINGS_HEADER: [&str; 3] = ["image", "lesion_id", "diagnosis_confirm_type"];
}

/// HAM10000 file names.
pub mod ham_names {
    pub const METADATA: &str = "HAM10000_metadata.csv";
    /// Required columns, in order; a trailing `dataset` column is allowed.
    pub const HEADER: [&str; 7] = [
        "lesion_id",
        "image_id",
        "dx",
        "dx_type",
        "age",
        "sex",
        "localization",
    ];
}

/// Which release a data root holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Isic2018,
    Ham10000,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Isic2018 => "isic2018",
            Layout::Ham10000 => "ham10000",
        }
    }

    /// Detects the layout of `root` from the files it holds.
    pub fn detect(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(DatasetError::Layout(format!(
                "{}: not a folder (expected an ISIC2018 Task 3 or HAM10000 download)",
                root.display()
            )));
        }
        if root
            .join(isic_names::TRAIN_GT_DIR)
            .join(isic_names::TRAIN_GT_CSV)
            .is_file()
        {
            Ok(Layout::Isic2018)
        } else if root.join(ham_names::METADATA).is_file() {
            Ok(Layout::Ham10000)
        } else {
            Err(DatasetError::Layout(format!(
                "{}: unrecognised data root. Looked for {}/{} (ISIC2018 Task 3) and {} (HAM10000)",
                root.display(),
                isic_names::TRAIN_GT_DIR,
                isic_names::TRAIN_GT_CSV,
                ham_names::METADATA
            )))
        }
    }
}

/// One labelled image of the source data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Image id, e.g. `ISIC_0024306`.
    pub image: String,
    /// The image file.
    pub path: PathBuf,
    pub class: IsicClass,
    /// Lesion id; an image missing from the groupings is its own lesion (id = image id).
    pub lesion_id: String,
}

/// Options for [`IsicIndex::read`].
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// Also read ISIC2018's official validation images (ISIC layout only).
    pub include_validation: bool,
    /// Drop images whose files are missing (with a warning) instead of failing.
    pub skip_missing: bool,
}

/// All labelled images of a data root, sorted by image id.
#[derive(Debug, Clone)]
pub struct IsicIndex {
    pub root: PathBuf,
    pub layout: Layout,
    pub entries: Vec<IndexEntry>,
    /// The label CSV files read, in order (hashed into the split manifest).
    pub label_csvs: Vec<PathBuf>,
    /// Images dropped because their files were missing (`skip_missing`).
    pub skipped_missing: Vec<String>,
    /// Things the user should know that did not stop the read (e.g. images without a lesion id).
    pub warnings: Vec<String>,
}

/// How many missing files an error lists by name.
const LIST_FIRST: usize = 5;

impl IsicIndex {
    /// Reads the data root, detecting its layout.
    pub fn read(root: &Path, options: &IndexOptions) -> Result<Self> {
        let layout = Layout::detect(root)?;
        let mut index = match layout {
            Layout::Isic2018 => read_isic(root, options)?,
            Layout::Ham10000 => {
                if options.include_validation {
                    return Err(DatasetError::Invalid(format!(
                        "{}: --include-validation needs the ISIC2018 Task 3 layout; HAM10000 has no official validation set",
                        root.display()
                    )));
                }
                read_ham(root)?
            }
        };
        index.entries.sort_by(|a, b| a.image.cmp(&b.image));
        index.check_files(options.skip_missing)?;
        Ok(index)
    }

    /// Fails (or, with `skip`, drops with a warning) entries whose image file does not exist.
    fn check_files(&mut self, skip: bool) -> Result<()> {
        let missing: Vec<usize> = (0..self.entries.len())
            .filter(|&i| !self.entries[i].path.is_file())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !skip {
            return Err(DatasetError::MissingImages {
                csv: self.label_csvs[0].clone(),
                count: missing.len(),
                first: missing
                    .iter()
                    .take(LIST_FIRST)
                    .map(|&i| self.entries[i].path.clone())
                    .collect(),
            });
        }
        let gone: HashSet<usize> = missing.iter().copied().collect();
        let mut kept = Vec::with_capacity(self.entries.len() - gone.len());
        for (i, e) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            if gone.contains(&i) {
                self.skipped_missing.push(e.image);
            } else {
                kept.push(e);
            }
        }
        self.entries = kept;
        self.warnings.push(format!(
            "skipped {} image(s) whose files are missing, e.g. {}",
            self.skipped_missing.len(),
            self.skipped_missing[..self.skipped_missing.len().min(LIST_FIRST)].join(", ")
        ));
        Ok(())
    }

    /// Number of images per class, by label.
    pub fn class_counts(&self) -> [usize; crate::NUM_CLASSES] {
        let mut counts = [0; crate::NUM_CLASSES];
        for e in &self.entries {
            counts[e.class.label()] += 1;
        }
        counts
    }
}

fn open_csv(path: &Path) -> Result<(csv::Reader<std::fs::File>, Vec<String>)> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(io) => DatasetError::io(path, io),
            other => DatasetError::Csv {
                path: path.to_owned(),
                row: 1,
                message: format!("{other:?}"),
            },
        })?;
    let header = r
        .headers()
        .map_err(|e| row_error(path, 1, e.to_string()))?
        .iter()
        .map(|s| s.trim_start_matches('\u{feff}').to_owned())
        .collect();
    Ok((r, header))
}

fn row_error(path: &Path, row: u64, message: impl Into<String>) -> DatasetError {
    DatasetError::Csv {
        path: path.to_owned(),
        row,
        message: message.into(),
    }
}

fn header_error(path: &Path, found: Vec<String>, expected: &[&str]) -> DatasetError {
    DatasetError::Header {
        path: path.to_owned(),
        found,
        expected: expected.iter().map(|s| s.to_string()).collect(),
    }
}

/// Reads an ISIC ground-truth CSV into (image id, class, line) triples.
pub fn read_ground_truth(path: &Path) -> Result<Vec<(String, IsicClass, u64)>> {
    let (mut r, header) = open_csv(path)?;
    if header != isic_names::GT_HEADER {
        return Err(header_error(path, header, &isic_names::GT_HEADER));
    }
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| row_error(path, line, e.to_string()))?;
        let image = rec[0].to_owned();
        checked_image_id(&image, path, line)?;
        let mut hot = None;
        for (k, field) in rec.iter().skip(1).enumerate() {
            let v: f64 = field.parse().map_err(|_| {
                row_error(
                    path,
                    line,
                    format!("{}: {:?} is not a number", header[k + 1], field),
                )
            })?;
            if v == 1.0 {
                if hot.is_some() {
                    return Err(row_error(
                        path,
                        line,
                        format!("{image}: more than one class is 1 (not one-hot)"),
                    ));
                }
                hot = Some(k);
            } else if v != 0.0 {
                return Err(row_error(
                    path,
                    line,
                    format!(
                        "{image}: {} = {field} (one-hot values must be 0 or 1)",
                        header[k + 1]
                    ),
                ));
            }
        }
        let k = hot.ok_or_else(|| {
            row_error(path, line, format!("{image}: no class is 1 (not one-hot)"))
        })?;
        out.push((image, IsicClass::ALL[k], line));
    }
    Ok(out)
}

/// Reads `image -> lesion_id` from the ISIC lesion groupings CSV.
pub fn read_lesion_groupings(path: &Path) -> Result<HashMap<String, String>> {
    let (mut r, header) = open_csv(path)?;
    if header.len() < 2 || header[..2] != isic_names::GROUPINGS_HEADER[..2] {
        return Err(header_error(path, header, &isic_names::GROUPINGS_HEADER));
    }
    let mut map = HashMap::new();
    for (i, rec) in r.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| row_error(path, line, e.to_string()))?;
        let (image, lesion) = (rec[0].to_owned(), rec[1].to_owned());
        checked_image_id(&image, path, line)?;
        if lesion.is_empty() {
            return Err(row_error(path, line, format!("{image}: empty lesion_id")));
        }
        if map.insert(image.clone(), lesion).is_some() {
            return Err(row_error(path, line, format!("duplicate image id {image}")));
        }
    }
    Ok(map)
}

fn read_isic(root: &Path, options: &IndexOptions) -> Result<IsicIndex> {
    use isic_names::*;
    let gt = root.join(TRAIN_GT_DIR).join(TRAIN_GT_CSV);
    let mut sources = vec![(gt.clone(), root.join(TRAIN_INPUT))];
    if options.include_validation {
        let vgt = root.join(VAL_GT_DIR).join(VAL_GT_CSV);
        if !vgt.is_file() {
            return Err(DatasetError::Layout(format!(
                "--include-validation: {} not found",
                vgt.display()
            )));
        }
        sources.push((vgt, root.join(VAL_INPUT)));
    }
    let groupings_path = [
        root.join(LESION_GROUPINGS),
        root.join(TRAIN_GT_DIR).join(LESION_GROUPINGS),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let groupings = match &groupings_path {
        Some(p) => read_lesion_groupings(p)?,
        None => HashMap::new(),
    };
    let mut warnings = Vec::new();
    if groupings_path.is_none() {
        warnings.push(format!(
            "{LESION_GROUPINGS} not found at the root or in {TRAIN_GT_DIR}/: every image is its own lesion, so images of one lesion may land in different splits"
        ));
    }
    let mut seen: HashMap<String, (PathBuf, u64)> = HashMap::new();
    let mut entries = Vec::new();
    let mut ungrouped = Vec::new();
    for (csv_path, input_dir) in &sources {
        let rows = read_ground_truth(csv_path)?;
        if rows.is_empty() {
            return Err(DatasetError::NoImages {
                path: csv_path.clone(),
            });
        }
        for (image, class, line) in rows {
            if let Some((first, first_line)) = seen.get(&image) {
                return Err(row_error(
                    csv_path,
                    line,
                    format!(
                        "duplicate image id {image} (first at {}:{first_line})",
                        first.display()
                    ),
                ));
            }
            seen.insert(image.clone(), (csv_path.clone(), line));
            let lesion_id = match groupings.get(&image) {
                Some(l) => l.clone(),
                None => {
                    ungrouped.push(image.clone());
                    image.clone()
                }
            };
            entries.push(IndexEntry {
                path: image_file(input_dir, &image, "jpg", csv_path, line)?,
                image,
                class,
                lesion_id,
            });
        }
    }
    if groupings_path.is_some() && !ungrouped.is_empty() {
        warnings.push(format!(
            "{} image(s) are not in {LESION_GROUPINGS} and count as their own lesion, e.g. {}",
            ungrouped.len(),
            ungrouped[..ungrouped.len().min(LIST_FIRST)].join(", ")
        ));
    }
    Ok(IsicIndex {
        root: root.to_owned(),
        layout: Layout::Isic2018,
        entries,
        label_csvs: sources.into_iter().map(|(c, _)| c).collect(),
        skipped_missing: Vec::new(),
        warnings,
    })
}

/// Finds `*.jpg` files up to two folders below `root`, by file stem. Only entries of the folder
/// tree itself are listed, so every path found lies under `root` (symbolic links are not followed
/// into folders).
fn find_images(root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut found = HashMap::new();
    let mut dirs = vec![(root.to_owned(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| DatasetError::io(&dir, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| DatasetError::io(&dir, e))?;
            let p = ent.path();
            let is_real_dir = ent.file_type().is_ok_and(|t| t.is_dir());
            if is_real_dir {
                if depth < 2 {
                    dirs.push((p, depth + 1));
                }
            } else if !p.is_dir()
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg")
                })
            {
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    found.entry(stem.to_owned()).or_insert(p);
                }
            }
        }
    }
    Ok(found)
}

fn read_ham(root: &Path) -> Result<IsicIndex> {
    let path = root.join(ham_names::METADATA);
    let (mut r, header) = open_csv(&path)?;
    let ok_header = (header.len() == 7 || (header.len() == 8 && header[7] == "dataset"))
        && header[..7] == ham_names::HEADER;
    if !ok_header {
        return Err(header_error(&path, header, &ham_names::HEADER));
    }
    let images = find_images(root)?;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut entries = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| row_error(&path, line, e.to_string()))?;
        let (lesion_id, image, dx) = (rec[0].to_owned(), rec[1].to_owned(), &rec[2]);
        checked_image_id(&image, &path, line)?;
        if let Some(first) = seen.insert(image.clone(), line) {
            return Err(row_error(
                &path,
                line,
                format!("duplicate image id {image} (first on row {first})"),
            ));
        }
        let class = IsicClass::parse(dx).ok_or_else(|| {
            row_error(
                &path,
                line,
                format!(
                    "{image}: unknown dx {dx:?} (expected akiec, bcc, bkl, df, mel, nv or vasc)"
                ),
            )
        })?;
        let lesion_id = if lesion_id.is_empty() {
            image.clone()
        } else {
            lesion_id
        };
        // A missing file keeps its expected location so the missing-file report can name it.
        let file = match images.get(&image) {
            Some(found) => found.clone(),
            None => image_file(root, &image, "jpg", &path, line)?,
        };
        entries.push(IndexEntry {
            image,
            path: file,
            class,
            lesion_id,
        });
    }
    if entries.is_empty() {
        return Err(DatasetError::NoImages { path });
    }
    Ok(IsicIndex {
        root: root.to_owned(),
        layout: Layout::Ham10000,
        entries,
        label_csvs: vec![path],
        skipped_missing: Vec::new(),
        warnings: Vec::new(),
    })
}
