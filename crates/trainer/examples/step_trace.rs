//! Trains the first K optimiser steps of a config and writes everything the PyTorch reference
//! needs to replay them (see `trainer::step_trace`):
//!
//! ```text
//! OUT/init.safetensors         the state before step 1 (query.*, key.*, queue.*)
//! OUT/steps/step-NNNN.safetensors  each step's inputs
//! OUT/trace.json               the Rust side's trace (lr, loss, gradient norm, input checksums)
//! OUT/final.safetensors        the state after step K
//! ```
//!
//! `cargo run -p trainer --example step_trace -- --config crates/trainer/tests/fixtures/step_parity/config.toml --set method.name=ce --steps 20 --out /tmp/trace-ce`
//! (the synthetic data goes to OUT/data unless `--data DIR` names a shared folder).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::Parser;
use trainer::config::Config;
use trainer::step_trace::{self, Trace};
use trainer::train::{Outcome, Trainer};

#[derive(Parser)]
struct Args {
    /// TOML config (e.g. crates/trainer/tests/fixtures/step_parity/config.toml).
    #[arg(long)]
    config: PathBuf,
    /// Config overrides, e.g. --set method.name=paco (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Optimiser steps to trace.
    #[arg(long, default_value_t = 20)]
    steps: u64,
    /// Output folder (created; must not hold a trace already).
    #[arg(long)]
    out: PathBuf,
    /// Folder for the synthetic data and its split (default OUT/data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also write each step's gradients (`grad.<variable>`) into its input file.
    #[arg(long)]
    gradients: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.out.join("trace.json").exists() {
        bail!("{} already holds a trace", args.out.display());
    }
    let steps_dir = args.out.join("steps");
    std::fs::create_dir_all(&steps_dir)
        .with_context(|| format!("creating {}", steps_dir.display()))?;
    let data = args.data.clone().unwrap_or_else(|| args.out.join("data"));
    let mut set = vec![
        format!("data.source=\"{}\"", data.join("synthetic").display()),
        format!("data.split_dir=\"{}\"", data.join("split").display()),
        format!("run.output_dir=\"{}\"", args.out.join("runs").display()),
    ];
    set.extend(args.set.iter().cloned());
    let cfg = Config::from_file(&args.config, &set)?;
    let method = cfg.method.name.as_str().to_string();
    let mut trainer = Trainer::create(cfg, Arc::new(AtomicBool::new(false)))?;
    trainer.progress = false;
    trainer.halt_at_step = Some(args.steps);
    candle_core::safetensors::save(&trainer.state_tensors()?, args.out.join("init.safetensors"))?;
    let rows = Arc::new(Mutex::new(Vec::new()));
    trainer.observer = Some(step_trace::observer(
        Arc::clone(&rows),
        step_trace::Dump {
            dir: Some(steps_dir),
            gradients: args.gradients,
        },
    ));
    let outcome = trainer.fit()?;
    if outcome != Outcome::Halted {
        bail!("the run ended ({outcome:?}) before {} steps", args.steps);
    }
    candle_core::safetensors::save(
        &trainer.state_tensors()?,
        args.out.join("final.safetensors"),
    )?;
    let trace = Trace {
        producer: "rust".into(),
        method,
        steps_per_epoch: trainer.steps_per_epoch(),
        log_prior: trainer.log_prior().to_vec(),
        rows: rows.lock().expect("trace rows poisoned").clone(),
    };
    trace.write(&args.out.join("trace.json"))?;
    println!(
        "{} steps traced into {}",
        trace.rows.len(),
        args.out.display()
    );
    Ok(())
}
