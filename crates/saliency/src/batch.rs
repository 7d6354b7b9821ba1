//! File-level API: decode an image, compute its map, write it as an 8-bit grey PNG atomically.
//!
//! Every function returns a [`SaliencyError`] naming the file at fault; [`write_maps`] returns one
//! result per job, so one unreadable file does not stop the others.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ExtendedColorType, GrayImage, ImageEncoder};
use rayon::prelude::*;

use crate::decode::{decode_image_file, DecodeLimits};
use crate::{fine_grained_saliency_dynamic, SaliencyError};

/// One map to compute: the saliency of the image at `input`, written to `output` (8-bit grey PNG).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapJob {
    /// Any image the `image` crate decodes (PNG, JPEG), format guessed from the contents.
    pub input: PathBuf,
    /// Destination PNG; missing parent folders are created.
    pub output: PathBuf,
}

impl MapJob {
    /// The job writing `dir/<input stem>.png`, the binary's naming scheme.
    pub fn into_folder(input: impl Into<PathBuf>, dir: &Path) -> MapJob {
        let input = input.into();
        let stem = input.file_stem().unwrap_or(input.as_os_str()).to_owned();
        let output = dir.join(stem).with_extension("png");
        MapJob { input, output }
    }
}

/// What [`write_map`] did for one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapOutcome {
    /// The map was computed and written.
    Written,
    /// The output already existed and was at least as new as the input: nothing was done.
    Skipped,
}

/// Decodes the image at `path` under the default [`DecodeLimits`] (format from the contents,
/// pixel budget checked from the header, truncated JPEGs refused; see [`crate::decode`]).
pub fn load_image(path: &Path) -> Result<DynamicImage, SaliencyError> {
    decode_image_file(path, &DecodeLimits::default())
}

/// The `H x W` u8 saliency map of the image file at `path` (see
/// [`crate::fine_grained_saliency_dynamic`] for how non-RGB formats are handled).
pub fn saliency_from_path(path: &Path) -> Result<GrayImage, SaliencyError> {
    saliency_from_path_with_limits(path, &DecodeLimits::default())
}

/// [`saliency_from_path`] under explicit decoding limits.
pub fn saliency_from_path_with_limits(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<GrayImage, SaliencyError> {
    Ok(fine_grained_saliency_dynamic(&decode_image_file(
        path, limits,
    )?))
}

/// Computes and writes one map unless `job.output` is up to date.
///
/// Up to date means: the output exists and its modification time is at least the input's. The
/// map is written to a temporary file in the output's folder and renamed onto `job.output`, so a
/// reader (or a crash) never sees a half-written PNG. Images are decoded under the default
/// [`DecodeLimits`].
pub fn write_map(job: &MapJob) -> Result<MapOutcome, SaliencyError> {
    write_map_with_limits(job, &DecodeLimits::default())
}

/// [`write_map`] under explicit decoding limits.
pub fn write_map_with_limits(
    job: &MapJob,
    limits: &DecodeLimits,
) -> Result<MapOutcome, SaliencyError> {
    let input_meta = fs::metadata(&job.input).map_err(|source| SaliencyError::ReadInput {
        path: job.input.clone(),
        error: source,
    })?;
    if is_up_to_date(&input_meta, &job.output) {
        return Ok(MapOutcome::Skipped);
    }
    let map = saliency_from_path_with_limits(&job.input, limits)?;
    write_png_atomically(&map, &job.output)?;
    Ok(MapOutcome::Written)
}

/// [`write_map`] for every job, in parallel on the current rayon pool (wrap the call in
/// `ThreadPool::install` to choose the thread count). `result[i]` belongs to `jobs[i]`.
pub fn write_maps(jobs: &[MapJob]) -> Vec<Result<MapOutcome, SaliencyError>> {
    write_maps_with_progress(jobs, &DecodeLimits::default(), |_, _| {})
}

/// [`write_maps`] under explicit decoding limits, calling `on_done(job, result)` from a worker
/// thread as each job finishes (in completion order), e.g. to advance a progress bar. Each worker
/// holds one image at a time, so memory peaks at about threads x the per-image budget.
pub fn write_maps_with_progress<F>(
    jobs: &[MapJob],
    limits: &DecodeLimits,
    on_done: F,
) -> Vec<Result<MapOutcome, SaliencyError>>
where
    F: Fn(&MapJob, &Result<MapOutcome, SaliencyError>) + Sync,
{
    jobs.par_iter()
        // One job per task: images take milliseconds, so scheduling overhead is negligible and
        // large and small images balance across threads.
        .with_max_len(1)
        .map(|job| {
            let result = write_map_with_limits(job, limits);
            on_done(job, &result);
            result
        })
        .collect()
}

fn is_up_to_date(input: &fs::Metadata, output: &Path) -> bool {
    // Any doubt (no output, no timestamps on this file system) means recompute.
    let Ok(out_meta) = fs::metadata(output) else {
        return false;
    };
    match (input.modified(), out_meta.modified()) {
        (Ok(i), Ok(o)) => out_meta.is_file() && o >= i,
        _ => false,
    }
}

fn write_png_atomically(map: &GrayImage, output: &Path) -> Result<(), SaliencyError> {
    let invalid = || SaliencyError::InvalidOutput {
        path: output.to_owned(),
    };
    let name = output.file_name().ok_or_else(invalid)?;
    let dir = match output.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(invalid()),
    };
    let write_err = |source| SaliencyError::WriteOutput {
        path: output.to_owned(),
        error: source,
    };
    fs::create_dir_all(dir).map_err(write_err)?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let tmp = crate::output_file::temp_file_beside(dir, &prefix, ".tmp").map_err(write_err)?;
    {
        let mut writer = BufWriter::new(tmp.as_file());
        // Fast deflate: maps compress well anyway and encoding must not dominate the batch.
        PngEncoder::new_with_quality(&mut writer, CompressionType::Fast, FilterType::Adaptive)
            .write_image(
                map.as_raw(),
                map.width(),
                map.height(),
                ExtendedColorType::L8,
            )
            .map_err(|source| SaliencyError::Encode {
                path: output.to_owned(),
                error: source,
            })?;
        writer.flush().map_err(write_err)?;
    }
    tmp.persist(output).map_err(|e| write_err(e.error))?;
    Ok(())
}
