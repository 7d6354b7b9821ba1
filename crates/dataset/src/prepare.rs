//! `prepare-isic`: index a data root, split it by lesion, check every image decodes, compute the
//! saliency maps, and write the split folder (see [`crate::split_files`] for its contents).
//!
//! Untrusted input: image ids become file names only through [`crate::image_id`]; every image is
//! decoded through `saliency::decode` (format from the content, a pixel budget checked from the
//! header, truncated JPEGs refused); an empty source, split or training class is refused.
//!
//! Atomicity: everything (CSVs, `split.json`, the whole new `saliency/` folder) is staged in a
//! temporary folder inside `--out` and swapped in only when everything succeeded, `split.json` last;
//! a failed run leaves an existing split byte-identical and writes nothing else. `saliency/` is a
//! cache keyed on content ([`crate::map_cache`]): a map is carried over (hard-linked into the staged
//! folder) only when its image has the same path, size and SHA-256 as when it was computed.
//!
//! Memory: images are processed in parallel on rayon's pool, one image per worker at a time, so the
//! peak is about threads x (file + decoded image + saliency buffers), at most about
//! `threads x 25 bytes x max_pixels` (see `saliency::decode`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
pub use saliency::{DecodeLimits, DEFAULT_MAX_PIXELS};

use crate::classes::{groups_from_counts, Group, IsicClass, NUM_CLASSES};
use crate::error::{DatasetError, Result};
use crate::index::{IndexOptions, IsicIndex};
use crate::map_cache::{sha256_hex, MapManifest, MapSource};
use crate::split::{refuse_empty, split_by_lesion, Shortfall, Split, SplitItem};
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
    /// Per-image decoding limits (pixel budget).
    pub limits: DecodeLimits,
}

impl PrepareOptions {
    /// The paper's protocol: 20 validation and 40 test images per class, seed 0, saliency maps on,
    /// the default 64 MP pixel budget.
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
            limits: DecodeLimits::default(),
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
    /// Saliency maps carried over from the previous run (same image content).
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
    let counts = assignment.counts(&items);
    refuse_empty(&counts, &options.protocol)?;

    let out_existed = out.exists();
    std::fs::create_dir_all(out).map_err(|e| DatasetError::io(out, e))?;
    let result = stage_and_swap(options, &root, index, &assignment, counts);
    if result.is_err() && !out_existed {
        // Only succeeds when empty: a failed run leaves no new --out folder behind.
        let _ = std::fs::remove_dir(out);
    }
    result
}

/// Stages everything in a temporary folder inside `--out`, then swaps it in.
fn stage_and_swap(
    options: &PrepareOptions,
    root: &Path,
    mut index: IsicIndex,
    assignment: &crate::split::SplitAssignment,
    counts: SplitCounts,
) -> Result<PrepareReport> {
    let out = &options.out;
    let staging = tempfile::Builder::new()
        .prefix(".prepare-")
        .tempdir_in(out)
        .map_err(|e| DatasetError::io(out, e))?;
    let staged_maps = staging.path().join(SALIENCY_DIR);
    std::fs::create_dir(&staged_maps).map_err(|e| DatasetError::io(&staged_maps, e))?;
    let (previous, warning) = MapManifest::read_or_empty(&out.join(SALIENCY_DIR));
    index.warnings.extend(warning);
    let maps = check_images_and_stage_maps(&index, out, &staged_maps, &previous, options)?;
    if options.saliency {
        maps.manifest.write(&staged_maps)?;
    }

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
    let manifest = SplitManifest {
        version: 1,
        seed: options.seed,
        source_root: root.to_owned(),
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

    for split in Split::ALL {
        let name = format!("{}.csv", split.name());
        write_split_csv(&staging.path().join(&name), &rows[split as usize])?;
    }
    let json = serde_json::to_string_pretty(&manifest).map_err(|error| DatasetError::Json {
        path: out.join(MANIFEST_FILE),
        error,
    })?;
    std::fs::write(staging.path().join(MANIFEST_FILE), json + "\n")
        .map_err(|e| DatasetError::io(staging.path().join(MANIFEST_FILE), e))?;
    swap_in(staging.path(), out)?;
    Ok(PrepareReport {
        manifest,
        shortfalls: assignment.shortfalls.clone(),
        warnings: index.warnings,
        maps_written: maps.written,
        maps_up_to_date: maps.reused,
    })
}

/// Moves the staged split into `out`: the old `split.json` and `saliency/` aside into the staging
/// folder (deleted with it), then the staged maps, the CSVs, and the new `split.json` last, so a
/// folder with a `split.json` is always one complete split, even after a crash mid-swap.
fn swap_in(staging: &Path, out: &Path) -> Result<()> {
    let rename =
        |from: &Path, to: &Path| std::fs::rename(from, to).map_err(|e| DatasetError::io(to, e));
    let live_manifest = out.join(MANIFEST_FILE);
    if live_manifest.exists() {
        rename(&live_manifest, &staging.join("previous-split.json"))?;
    }
    let live_maps = out.join(SALIENCY_DIR);
    if live_maps.exists() {
        rename(&live_maps, &staging.join("previous-saliency"))?;
    }
    rename(&staging.join(SALIENCY_DIR), &live_maps)?;
    for name in ["train.csv", "val.csv", "test.csv", MANIFEST_FILE] {
        rename(&staging.join(name), &out.join(name))?;
    }
    Ok(())
}

/// An image that failed: (its path, the message naming it).
type Failure = (String, String);

/// The staged maps of a run.
struct StagedMaps {
    manifest: MapManifest,
    written: usize,
    reused: usize,
}

/// Decodes every image once, in parallel, to catch corrupt files before training does, and puts
/// the saliency map of each image into `staged`: the previous map (hard-linked, or copied) when
/// `previous` says it was computed from exactly this file content, else a newly computed one.
/// Fails listing the first undecodable images.
fn check_images_and_stage_maps(
    index: &IsicIndex,
    out: &Path,
    staged: &Path,
    previous: &MapManifest,
    options: &PrepareOptions,
) -> Result<StagedMaps> {
    let written = AtomicUsize::new(0);
    let reused = AtomicUsize::new(0);
    let results: Vec<std::result::Result<Option<(String, MapSource)>, Failure>> = index
        .entries
        .par_iter()
        // One image per task: images differ in size, and a worker holds one at a time.
        .with_max_len(1)
        .map(|e| {
            let name = e.path.display().to_string();
            let bytes =
                std::fs::read(&e.path).map_err(|err| (name.clone(), format!("{name}: {err}")))?;
            // The decoder's message names the file itself.
            let image = saliency::decode_image_bytes(&bytes, &e.path, &options.limits)
                .map_err(|err| (name.clone(), err.to_string()))?;
            if !options.saliency {
                return Ok(None);
            }
            let source = MapSource {
                source: e.path.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            };
            drop(bytes);
            let old_map = saliency_path(out, &e.image);
            let new_map = staged.join(format!("{}.png", e.image));
            if previous.is_map_of(&e.image, &source)
                && old_map.is_file()
                && link_or_copy(&old_map, &new_map).is_ok()
            {
                reused.fetch_add(1, Ordering::Relaxed);
                return Ok(Some((e.image.clone(), source)));
            }
            let map = saliency::fine_grained_saliency_dynamic(&image);
            drop(image);
            map.save_with_format(&new_map, image::ImageFormat::Png)
                .map_err(|err| {
                    let name = new_map.display().to_string();
                    (name.clone(), format!("{name}: {err}"))
                })?;
            written.fetch_add(1, Ordering::Relaxed);
            Ok(Some((e.image.clone(), source)))
        })
        .collect();
    let mut manifest = MapManifest {
        version: 1,
        ..MapManifest::default()
    };
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(Some((image, source))) => {
                manifest.maps.insert(image, source);
            }
            Ok(None) => {}
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        failures.sort();
        return Err(DatasetError::CorruptImages {
            count: failures.len(),
            first: failures
                .iter()
                .take(5)
                .map(|(_, message)| message.clone())
                .collect(),
        });
    }
    Ok(StagedMaps {
        manifest,
        written: written.into_inner(),
        reused: reused.into_inner(),
    })
}

/// Hard-links `from` to `to`, or copies it where links are not possible.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    Ok(sha256_hex(&bytes))
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
