//! `prepare-isic`: index a data root, split it by lesion, check every image decodes, compute the
//! saliency maps, and write the split folder (see [`crate::split_files`] for its contents).
//!
//! Atomicity: the CSVs and `split.json` are staged in a temporary folder inside `--out` and renamed
//! into place only when everything succeeded, `split.json` last; a failed run leaves an existing
//! split untouched and writes no CSV. `saliency/` is a cache keyed by image id: each map is written
//! atomically, kept across runs, and recomputed only when its image is newer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::classes::{groups_from_counts, Group, IsicClass, NUM_CLASSES};
use crate::error::{DatasetError, Result};
use crate::index::{IndexOptions, IsicIndex};
use crate::split::{split_by_lesion, Shortfall, Split, SplitItem};
use crate::split_files::{
    saliency_path, write_split_csv, SplitCounts, SplitManifest, SplitProtocol, SplitRow,
    MANIFEST_FILE, SALIENCY_DIR,
};

/// Options of [`prepare_split`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The ISIC2018 or HAM10000 download.
    pub root: PathBuf,
    /// The split folder to write.
    pub out: PathBuf,
    pub protocol: SplitProtocol,
    pub seed: u64,
    pub include_validation: bool,
    /// Drop images whose files are missing, with a warning.
    pub skip_missing: bool,
    /// Replace a split already in `out`.
    pub force: bool,
    /// Compute the saliency maps (on by default; off only for tools that do not need them).
    pub saliency: bool,
}

impl PrepareOptions {
    /// The paper's protocol: 20 validation and 40 test images per class, seed 0, saliency maps on.
    pub fn new(root: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            root: root.into(),
            out: out.into(),
            protocol: SplitProtocol::Balanced {
                val_per_class: 20,
                test_per_class: 40,
            },
            seed: 0,
            include_validation: false,
            skip_missing: false,
            force: false,
            saliency: true,
        }
    }
}

/// What [`prepare_split`] did.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    pub manifest: SplitManifest,
    /// Quotas missed because of multi-image lesions.
    pub shortfalls: Vec<Shortfall>,
    /// Things the user should know (skipped files, images without lesion id).
    pub warnings: Vec<String>,
    /// Saliency maps computed in this run.
    pub maps_written: usize,
    /// Saliency maps already up to date.
    pub maps_up_to_date: usize,
}

/// Runs the whole preparation. See the module doc for what is written and when.
pub fn prepare_split(options: &PrepareOptions) -> Result<PrepareReport> {
    let out = &options.out;
    if !options.force && (out.join(MANIFEST_FILE).exists() || out.join("train.csv").exists()) {
        return Err(DatasetError::OutputExists { path: out.clone() });
    }
    let root = options
        .root
        .canonicalize()
        .map_err(|e| DatasetError::io(&options.root, e))?;
    let index = IsicIndex::read(
        &root,
        &IndexOptions {
            include_validation: options.include_validation,
            skip_missing: options.skip_missing,
        },
    )?;
    let items: Vec<SplitItem> = index
        .entries
        .iter()
        .map(|e| SplitItem {
            image: e.image.clone(),
            class: e.class,
            lesion_id: e.lesion_id.clone(),
        })
        .collect();
    let assignment = split_by_lesion(&items, &options.protocol, options.seed)?;

    std::fs::create_dir_all(out.join(SALIENCY_DIR))
        .map_err(|e| DatasetError::io(out.join(SALIENCY_DIR), e))?;
    let (maps_written, maps_up_to_date) = check_images_and_maps(&index, out, options.saliency)?;

    let mut rows: [Vec<SplitRow>; 3] = Default::default();
    for (e, s) in index.entries.iter().zip(&assignment.splits) {
        rows[*s as usize].push(SplitRow {
            image: e.image.clone(),
            path: e.path.clone(),
            label: e.class.label(),
            class: e.class.name().to_owned(),
            lesion_id: e.lesion_id.clone(),
        });
    }
    let counts = assignment.counts(&items);
    let manifest = SplitManifest {
        version: 1,
        seed: options.seed,
        source_root: root.clone(),
        layout: index.layout.name().to_owned(),
        include_validation: options.include_validation,
        protocol: options.protocol.clone(),
        label_csv_sha256: index
            .label_csvs
            .iter()
            .map(|p| sha256_file(p))
            .collect::<Result<_>>()?,
        classes: IsicClass::ALL.iter().map(|c| c.name().to_owned()).collect(),
        groups: groups_from_counts(&index.class_counts()).to_vec(),
        counts,
        skipped_missing: index.skipped_missing.clone(),
    };

    let staging = tempfile::Builder::new()
        .prefix(".prepare-")
        .tempdir_in(out)
        .map_err(|e| DatasetError::io(out, e))?;
    for split in Split::ALL {
        let name = format!("{}.csv", split.name());
        write_split_csv(&staging.path().join(&name), &rows[split as usize])?;
    }
    let json = serde_json::to_string_pretty(&manifest).map_err(|source| DatasetError::Json {
        path: out.join(MANIFEST_FILE),
        source,
    })?;
    std::fs::write(staging.path().join(MANIFEST_FILE), json + "\n")
        .map_err(|e| DatasetError::io(staging.path().join(MANIFEST_FILE), e))?;
    for name in ["train.csv", "val.csv", "test.csv", MANIFEST_FILE] {
        std::fs::rename(staging.path().join(name), out.join(name))
            .map_err(|e| DatasetError::io(out.join(name), e))?;
    }
    Ok(PrepareReport {
        manifest,
        shortfalls: assignment.shortfalls,
        warnings: index.warnings,
        maps_written,
        maps_up_to_date,
    })
}

/// Decodes every image once, in parallel, to catch corrupt files before training does, and writes the
/// saliency map of each image whose map is missing or older than the image. Returns (written, up to
/// date); fails listing the first undecodable images.
fn check_images_and_maps(index: &IsicIndex, out: &Path, saliency: bool) -> Result<(usize, usize)> {
    let written = AtomicUsize::new(0);
    let fresh = AtomicUsize::new(0);
    let mut failures: Vec<(String, String)> = index
        .entries
        .par_iter()
        .filter_map(|e| {
            let image = match image::open(&e.path) {
                Ok(img) => img,
                Err(err) => return Some((e.path.display().to_string(), err.to_string())),
            };
            if !saliency {
                return None;
            }
            let map_path = saliency_path(out, &e.image);
            if is_up_to_date(&map_path, &e.path) {
                fresh.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let map = saliency::fine_grained_saliency(&image.to_rgb8());
            match write_png_atomic(&map_path, &map) {
                Ok(()) => {
                    written.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(err) => Some((map_path.display().to_string(), err.to_string())),
            }
        })
        .collect();
    if !failures.is_empty() {
        failures.sort();
        return Err(DatasetError::CorruptImages {
            count: failures.len(),
            first: failures
                .iter()
                .take(5)
                .map(|(p, m)| format!("{p}: {m}"))
                .collect(),
        });
    }
    Ok((written.into_inner(), fresh.into_inner()))
}

/// A map is up to date when it exists and is not older than its image.
fn is_up_to_date(map: &Path, image: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(map), modified(image)), (Some(m), Some(i)) if m >= i)
}

/// Writes a grey PNG through a temporary file in the same folder, then renames it.
fn write_png_atomic(path: &Path, map: &image::GrayImage) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".map-")
        .suffix(".png")
        .tempfile_in(dir)
        .map_err(|e| DatasetError::io(dir, e))?;
    map.save_with_format(tmp.path(), image::ImageFormat::Png)
        .map_err(|e| DatasetError::Image {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    tmp.persist(path)
        .map_err(|e| DatasetError::io(path, e.error))?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A plain-text table of images per class and split, with totals and groups, for the terminal.
pub fn counts_table(counts: &SplitCounts, groups: &[Group]) -> String {
    let mut s = format!(
        "{:<6} {:<7} {:>7} {:>7} {:>7} {:>7}\n",
        "class", "group", "train", "val", "test", "total"
    );
    let mut totals = [0usize; 4];
    for c in IsicClass::ALL {
        let k = c.label();
        let row = [
            counts.train[k],
            counts.val[k],
            counts.test[k],
            counts.train[k] + counts.val[k] + counts.test[k],
        ];
        for (t, v) in totals.iter_mut().zip(row) {
            *t += v;
        }
        let group = groups.get(k).map(|g| g.name()).unwrap_or("?");
        s += &format!(
            "{:<6} {:<7} {:>7} {:>7} {:>7} {:>7}\n",
            c.name(),
            group,
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    s += &format!(
        "{:<6} {:<7} {:>7} {:>7} {:>7} {:>7}\n",
        "total", "", totals[0], totals[1], totals[2], totals[3]
    );
    debug_assert_eq!(NUM_CLASSES, 7);
    s
}
