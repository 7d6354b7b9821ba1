//! `trainer`: train / eval / predict / export / visualize. Glue over the library modules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use trainer::checkpoint::Which;
use trainer::config::Config;
use trainer::train::{self, Outcome, Trainer};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "SPMix training, evaluation and prediction"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How `eval` and `predict` load a run's network and read images.
#[derive(clap::Args)]
struct RunModelArgs {
    /// The checkpoint: best on validation, or the last one written.
    #[arg(long, value_enum, default_value = "best")]
    checkpoint: Which,
    /// cpu or cuda:N, e.g. --device cuda:0 (default: the run's run.device).
    #[arg(long)]
    device: Option<String>,
    /// Refuse images with more pixels than this (checked from the header before decoding).
    #[arg(long, default_value_t = dataset::prepare::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (a new run folder, or --resume an interrupted one).
    Train {
        /// TOML config (e.g. configs/demo.toml); not needed with --resume.
        #[arg(long, required_unless_present = "resume")]
        config: Option<PathBuf>,
        /// Override a config value: --set optim.lr=1e-4 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Continue the run in this folder from its last checkpoint; with --set run.epochs=N
        /// (the only key that may change) extend it to N epochs.
        #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
        resume: Option<PathBuf>,
        /// cpu or cuda:N, e.g. --device cuda:0 (overrides run.device).
        #[arg(long)]
        device: Option<String>,
        /// Skip the final test evaluation.
        #[arg(long)]
        no_test: bool,
    },
    /// Evaluate a run's checkpoint on a split of its data (report in
    /// RUN_DIR/eval-<split>-<checkpoint>/), or with --labels and --images on any labelled set in
    /// the ISIC ground-truth format, e.g. the official ISIC2018 Task 3 validation or test set
    /// (report in RUN_DIR/eval-labels-<CSV name>-<checkpoint>/ unless --out). Writes report.md,
    /// report.json, confusion.png and predictions.csv.
    Eval {
        /// The run folder (as `train` printed it), e.g. runs/demo-spmix-20261201-044030.
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// Which split of the run's data to evaluate (ignored with --labels).
        #[arg(long, default_value = "test", value_parser = ["val", "test"], conflicts_with = "labels")]
        split: String,
        /// Ground truth in the ISIC format (header image,MEL,NV,BCC,AKIEC,BKL,DF,VASC, one-hot
        /// rows), e.g. ISIC2018_Task3_Validation_GroundTruth.csv; needs --images.
        #[arg(long, value_name = "GT.csv", requires = "images")]
        labels: Option<PathBuf>,
        /// The folder holding <image>.jpg for every row of --labels, e.g.
        /// ISIC2018_Task3_Validation_Input.
        #[arg(long, value_name = "DIR", requires = "labels")]
        images: Option<PathBuf>,
        /// Output folder of a --labels evaluation (created if missing; its report files are
        /// replaced), e.g. --out isic2018-val-report.
        #[arg(long, value_name = "DIR", requires = "labels")]
        out: Option<PathBuf>,
        #[command(flatten)]
        model: RunModelArgs,
    },
    /// Class probabilities of images, batched at the run's eval.batch_size. CSV (on stdout, or
    /// --out): image,MEL,NV,BCC,AKIEC,BKL,DF,VASC,predicted,file,error. An unreadable image gets
    /// a warning and a row with only its error; the others are still predicted; the exit status
    /// is then 1.
    Predict {
        /// The run folder whose model predicts, e.g. runs/demo-spmix-20261201-044030.
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        #[command(flatten)]
        model: RunModelArgs,
        /// Write the CSV to this file (atomically; replaced if it exists) instead of stdout,
        /// e.g. --out predictions.csv.
        #[arg(long, value_name = "FILE.csv")]
        out: Option<PathBuf>,
        /// Image files (JPEG or PNG, recognised by content) and folders (their .jpg, .jpeg and
        /// .png files, sorted by name, sub-folders not searched), e.g. data/isic/ISIC_0024306.jpg
        /// or ISIC2018_Task3_Test_Input.
        #[arg(required = true, value_name = "IMAGES")]
        images: Vec<PathBuf>,
    },
    /// Export a run's classifier (query encoder + linear head, no contrastive heads, key network,
    /// optimiser state or queue) as a timm state dict, with preprocess.json beside it (image size,
    /// resize, mean, std, class order). See docs/export.md for loading it in timm.
    Export {
        /// The run folder, e.g. runs/demo-spmix-20261201-044030.
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// The checkpoint: best on validation, or the last one written.
        #[arg(long, value_enum, default_value = "best")]
        checkpoint: Which,
        /// The weights file to write, e.g. --out export/model.safetensors; preprocess.json goes
        /// into the same folder.
        #[arg(long, value_name = "FILE.safetensors")]
        out: PathBuf,
        /// Replace an existing weights file or preprocess.json (refused otherwise).
        #[arg(long)]
        force: bool,
    },
    /// Draw the paper's figures: with --split, the class counts per split coloured by
    /// Many/Medium/Few group (Fig. 3); with --config or --run, tail/head pairs drawn by the
    /// training's samplers and augmentations with their saliency maps, per-patch ratios and mixed
    /// samples for each Table 2 variant (Fig. 4).
    #[command(group(clap::ArgGroup::new("input").required(true).args(["split", "config", "run"])))]
    Visualize {
        /// A prepared split folder, e.g. data/bench-split: draw its class counts.
        #[arg(long, value_name = "SPLIT_DIR")]
        split: Option<PathBuf>,
        /// TOML config whose data, augmentation and [mix] settings the sheet uses.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A run folder: use the config it recorded.
        #[arg(long, value_name = "RUN_DIR")]
        run: Option<PathBuf>,
        /// Override a config value: --set mix.alpha=0.9 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "split")]
        set: Vec<String>,
        /// Tail/head pairs on the sheet.
        #[arg(long, default_value_t = 4, conflicts_with = "split")]
        pairs: usize,
        /// run.seed of the samplers, augmentations and ratio noise (default: the config's).
        #[arg(long, conflicts_with = "split")]
        seed: Option<u64>,
        /// The PNG to write (replaced atomically).
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train {
            config,
            set,
            resume,
            device,
            no_test,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            // Ctrl-C (SIGINT) and, with ctrlc's `termination` feature, SIGTERM and SIGHUP (what a
            // job scheduler sends before a kill) all stop after the step with a checkpoint.
            ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    eprintln!("second stop signal: exiting without a checkpoint");
                    std::process::exit(130);
                }
                eprintln!("stop signal (Ctrl-C or SIGTERM): finishing the step, then writing a checkpoint (again to quit now)");
            })
            .context("installing the Ctrl-C / SIGTERM handler")?;
            let mut trainer = match resume {
                Some(dir) => Trainer::resume_with(&dir, device.as_deref(), &set, stop)?,
                None => {
                    let path = config.expect("clap requires --config without --resume");
                    let mut cfg = Config::from_file(&path, &set)?;
                    if let Some(d) = device {
                        cfg.run.device = d;
                        cfg.validate().map_err(anyhow::Error::msg)?;
                    }
                    Trainer::create(cfg, stop)?
                }
            };
            let started = std::time::Instant::now();
            match trainer.fit()? {
                Outcome::Finished => {}
                Outcome::Interrupted | Outcome::Halted => return Ok(ExitCode::from(130)),
            }
            tracing::info!("training took {:.1} s", started.elapsed().as_secs_f64());
            if !no_test {
                trainer.finish()?;
            }
            println!("run folder: {}", trainer.run_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            run,
            split,
            labels,
            images,
            out,
            model:
                RunModelArgs {
                    checkpoint,
                    device,
                    max_pixels,
                },
        } => {
            let dev = device.as_deref().map(train::open_device).transpose()?;
            let name = match checkpoint {
                Which::Best => "best",
                Which::Last => "last",
            };
            match (labels, images) {
                (Some(labels), Some(images)) => {
                    let out = out.unwrap_or_else(|| {
                        trainer::eval_labelled::default_out_dir(&run, &labels, checkpoint)
                    });
                    let limits = dataset::prepare::DecodeLimits::with_max_pixels(max_pixels);
                    trainer::eval_labelled::evaluate_labelled(
                        &run,
                        checkpoint,
                        dev.as_ref(),
                        &labels,
                        &images,
                        &out,
                        &limits,
                    )?;
                    println!("report: {}", out.display());
                }
                _ => {
                    let out = run.join(format!("eval-{split}-{name}"));
                    trainer::evaluate_run::evaluate_run(
                        &run,
                        &split,
                        checkpoint,
                        dev.as_ref(),
                        &out,
                    )?;
                    println!("report: {}", out.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict {
            run,
            model:
                RunModelArgs {
                    checkpoint,
                    device,
                    max_pixels,
                },
            out,
            images,
        } => {
            let files = trainer::predict::collect_images(&images)?;
            let dev = device.as_deref().map(train::open_device).transpose()?;
            let (cfg, _, query, _, dev) =
                trainer::evaluate_run::load_run_network(&run, checkpoint, dev.as_ref())?;
            let limits = dataset::prepare::DecodeLimits::with_max_pixels(max_pixels);
            let results = trainer::predict::predict_images(&query, &files, &cfg, &dev, &limits)?;
            let rows: Vec<_> = files.into_iter().zip(results).collect();
            let failed = rows.iter().filter(|(_, r)| r.is_err()).count();
            for (_, r) in &rows {
                if let Err(message) = r {
                    tracing::warn!("skipped: {message}");
                }
            }
            match &out {
                Some(path) => {
                    trainer::predict_csv::write_predictions_file(path, &rows)?;
                    eprintln!("{} prediction(s) written to {}", rows.len(), path.display());
                }
                None => trainer::predict_csv::write_predictions(std::io::stdout().lock(), &rows)?,
            }
            if failed > 0 {
                tracing::warn!("{failed} of {} image(s) could not be read", rows.len());
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            run,
            checkpoint,
            out,
            force,
        } => {
            let done = trainer::export::export_run(&run, checkpoint, &out, force)?;
            println!(
                "exported {} tensors ({} values) to {}\npreprocessing: {}",
                done.tensors,
                done.elements,
                done.model_path.display(),
                done.preprocess_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Visualize {
            split,
            config,
            run,
            set,
            pairs,
            seed,
            out,
        } => {
            if let Some(split) = split {
                trainer::visualize::class_counts_png(&split, &out)?;
            } else {
                let path = match (&config, &run) {
                    (Some(c), _) => c.clone(),
                    (None, Some(r)) => r.join("config.toml"),
                    (None, None) => unreachable!("clap requires --split, --config or --run"),
                };
                let mut cfg = Config::from_file(&path, &set)?;
                if let Some(s) = seed {
                    cfg.run.seed = s;
                }
                trainer::visualize::mix_sheet_png(&cfg, pairs, &out)?;
            }
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
