//! `saliency INPUT... --out-dir DIR`: writes `DIR/<input stem>.png` (8-bit grey saliency map) for
//! every input, in parallel; exits non-zero after listing the inputs that failed. Inputs are
//! decoded by content under a pixel budget (`--max-pixels`, default 64 MP).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use saliency::{write_maps_with_progress, DecodeLimits, MapJob, MapOutcome};

/// Static fine-grained saliency maps (OpenCV's StaticSaliencyFineGrained, bit-exact).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Input images (PNG, JPEG, ...).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Folder for the maps, created if missing; each map is named after its input's stem.
    #[arg(long)]
    out_dir: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Refuse images with more pixels than this (checked from the header before decoding).
    #[arg(long, default_value_t = saliency::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Show a progress bar from this many inputs on.
    #[arg(long, default_value_t = 64)]
    progress_from: usize,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot start the thread pool")?;
    }
    let jobs: Vec<MapJob> = args
        .inputs
        .iter()
        .map(|input| MapJob::into_folder(input, &args.out_dir))
        .collect();
    // Two inputs with the same stem would race for one output file.
    let mut seen: HashMap<&PathBuf, &PathBuf> = HashMap::new();
    for job in &jobs {
        if let Some(first) = seen.insert(&job.output, &job.input) {
            bail!(
                "{} and {} would both write {}",
                first.display(),
                job.input.display(),
                job.output.display()
            );
        }
    }

    let bar = if jobs.len() >= args.progress_from {
        let bar = ProgressBar::new(jobs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} maps, {per_sec}, eta {eta}")
                .context("progress bar template")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let limits = DecodeLimits::with_max_pixels(args.max_pixels);
    let results = write_maps_with_progress(&jobs, &limits, |_, _| bar.inc(1));
    bar.finish_and_clear();

    let (mut written, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
    for result in results {
        match result {
            Ok(MapOutcome::Written) => written += 1,
            Ok(MapOutcome::Skipped) => skipped += 1,
            Err(e) => failed.push(e),
        }
    }
    eprintln!(
        "{written} written, {skipped} up to date, {} failed",
        failed.len()
    );
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for e in &failed {
        eprintln!("failed: {e}");
    }
    Ok(ExitCode::FAILURE)
}
