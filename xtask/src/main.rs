//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//! Thin command-line wrappers: the logic lives in the `dataset` crate, where it is tested.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dataset::prepare::{counts_table, prepare_split, PrepareOptions};
use dataset::split::parse_ratios;
use dataset::split_files::SplitProtocol;
use dataset::synth::{generate_synthetic_isic, parse_size, SynthOptions};

#[derive(Parser)]
#[command(name = "xtask", version, about = "SPMix project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split an ISIC2018 Task 3 or HAM10000 download into train/val/test by lesion and compute the
    /// saliency map of every image.
    PrepareIsic {
        /// The data root (ISIC2018 Task 3 or HAM10000 layout; detected).
        #[arg(long)]
        root: PathBuf,
        /// The split folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Validation images per class (balanced protocol).
        #[arg(long, default_value_t = 20)]
        val_per_class: usize,
        /// Test images per class (balanced protocol; the paper's Table 1 has 40).
        #[arg(long, default_value_t = 40)]
        test_per_class: usize,
        /// Use a plain stratified split by lesion with these train:val:test weights instead, e.g. 7:1:2.
        #[arg(long, conflicts_with_all = ["val_per_class", "test_per_class"])]
        stratified: Option<String>,
        /// Seed of the split: the same seed gives the same split of the same data.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also use ISIC2018's official validation images (ISIC layout).
        #[arg(long)]
        include_validation: bool,
        /// Drop images whose files are missing, with a warning, instead of failing.
        #[arg(long)]
        skip_missing: bool,
        /// Replace a split already in --out.
        #[arg(long)]
        force: bool,
        /// Refuse images with more pixels than this (checked from the header before decoding;
        /// memory peaks at about threads x 25 bytes x this).
        #[arg(long, default_value_t = dataset::prepare::DEFAULT_MAX_PIXELS)]
        max_pixels: u64,
    },
    /// Write a synthetic long-tailed data set in the ISIC2018 Task 3 layout.
    SynthIsic {
        /// The folder to write the data set into (ISIC2018 Task 3 layout), e.g. data/synthetic.
        #[arg(long)]
        out: PathBuf,
        /// Multiplies ISIC2018's class counts (1.0 gives 10,015 images).
        #[arg(long, default_value_t = 0.1)]
        scale: f64,
        /// Image size WIDTHxHEIGHT.
        #[arg(long, default_value = "300x225")]
        size: String,
        /// Seed of the generator: the same seed gives the same images.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// No class gets fewer images than this.
        #[arg(long, default_value_t = 24)]
        min_per_class: usize,
        /// Replace --out if it is not empty.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a redirected log stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::PrepareIsic {
            root,
            out,
            val_per_class,
            test_per_class,
            stratified,
            seed,
            include_validation,
            skip_missing,
            force,
            max_pixels,
        } => {
            let protocol = match stratified {
                Some(text) => SplitProtocol::Stratified {
                    ratios: parse_ratios(&text)?,
                },
                None => SplitProtocol::Balanced {
                    val_per_class,
                    test_per_class,
                },
            };
            let options = PrepareOptions {
                protocol,
                seed,
                include_validation,
                skip_missing,
                force,
                limits: dataset::prepare::DecodeLimits::with_max_pixels(max_pixels),
                ..PrepareOptions::new(&root, &out)
            };
            let report = prepare_split(&options).with_context(|| {
                format!(
                    "prepare-isic --root {} --out {}",
                    root.display(),
                    out.display()
                )
            })?;
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            let m = &report.manifest;
            println!(
                "{} layout at {}, seed {}",
                m.layout,
                m.source_root.display(),
                m.seed
            );
            print!("{}", counts_table(&m.counts, &m.groups));
            for s in &report.shortfalls {
                println!(
                    "note: {} {}: {} of {} requested images (whole lesions only; closest possible)",
                    s.class,
                    s.split.name(),
                    s.got,
                    s.requested
                );
            }
            println!(
                "saliency maps: {} computed, {} reused (same image content); split written to {}",
                report.maps_written,
                report.maps_up_to_date,
                out.display()
            );
            Ok(())
        }
        Command::SynthIsic {
            out,
            scale,
            size,
            seed,
            min_per_class,
            force,
        } => {
            let (width, height) = parse_size(&size)?;
            let options = SynthOptions {
                scale,
                width,
                height,
                seed,
                min_per_class,
                ..SynthOptions::default()
            };
            let start = std::time::Instant::now();
            let summary = generate_synthetic_isic(&out, &options, force)
                .with_context(|| format!("synth-isic --out {}", out.display()))?;
            println!(
                "wrote {} images ({} lesions, {} with several images) of {}x{} to {} in {:.1} s",
                summary.images,
                summary.lesions,
                summary.multi_image_lesions,
                width,
                height,
                out.display(),
                start.elapsed().as_secs_f64()
            );
            for c in dataset::IsicClass::ALL {
                print!("{}={} ", c.name(), summary.counts[c.label()]);
            }
            println!();
            Ok(())
        }
    }
}
