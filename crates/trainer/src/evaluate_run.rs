//! How a finished (or interrupted) run is evaluated: load its config and a checkpoint's query
//! network, predict a split, and write `report.md`, `report.json`, `confusion.png` and
//! `predictions.csv`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use dataset::data_set::DataSet;
use model::loading::LoadOptions;
use model::QueryNetwork;

use crate::checkpoint::{self, TrainState};
use crate::config::Config;
use crate::evaluate;
use crate::metrics::EvalMetrics;
use crate::run_dir;
use crate::train::open_device;

/// Loads `query.*` tensors of a checkpoint into `query`; the error lists missing, unexpected and
/// mis-shaped tensors (e.g. a checkpoint of a different model config).
pub fn load_query(
    query: &QueryNetwork,
    tensors: &HashMap<String, Tensor>,
    origin: &str,
) -> Result<()> {
    let map: BTreeMap<String, Tensor> = checkpoint::strip_prefix(tensors, checkpoint::QUERY_PREFIX)
        .into_iter()
        .collect();
    model::loading::load_tensors(query.varmap(), &map, &LoadOptions::default(), origin)
        .with_context(|| format!("{origin} does not match the model in the run's config"))?;
    Ok(())
}

/// A query network with the weights of a run's `best` or `last` checkpoint, and its config and
/// checkpoint state.
pub fn load_run_network(
    run: &Path,
    which: checkpoint::Which,
    device: Option<&Device>,
) -> Result<(Config, run_dir::RunInfo, QueryNetwork, TrainState, Device)> {
    let (cfg, info) = run_dir::open(run)?;
    let device = match device {
        Some(d) => d.clone(),
        None => open_device(&cfg.run.device)?,
    };
    let dir = checkpoint::find(run, which)?;
    let (tensors, state) = checkpoint::load(&dir, &device)?;
    let query = crate::methods::query_network_for(&cfg.model, &tensors, &device)?;
    load_query(&query, &tensors, &dir.display().to_string())?;
    Ok((cfg, info, query, state, device))
}

/// Evaluates a run's checkpoint on `split` and writes the report, confusion matrix and
/// predictions into `out_dir`; prints the summary table. Returns the metrics.
pub fn evaluate_run(
    run: &Path,
    split: &str,
    which: checkpoint::Which,
    device: Option<&Device>,
    out_dir: &Path,
) -> Result<EvalMetrics> {
    let (cfg, info, query, state, device) = load_run_network(run, which, device)?;
    let data =
        Arc::new(DataSet::open(&cfg.data.split_dir, split).with_context(|| {
            format!("opening split {split} of {}", cfg.data.split_dir.display())
        })?);
    let preds = evaluate::predict_split(&query, Arc::clone(&data), &cfg, &device)?;
    let metrics = preds.metrics(&data);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let epoch = state.history.len();
    let ctx = crate::report::ReportContext {
        run_name: info.name.clone(),
        split: split.to_string(),
        checkpoint: format!(
            "{} (epoch {epoch}, step {})",
            match which {
                checkpoint::Which::Best => "best",
                checkpoint::Which::Last => "last",
            },
            state.global_step
        ),
        epoch,
        method: info.method.clone(),
        seed: info.seed,
        git_revision: info.git_revision.clone(),
    };
    crate::report::write_report(out_dir, &ctx, &metrics)?;
    let names: Vec<String> = dataset::IsicClass::ALL
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    crate::report::write_predictions_csv(
        &out_dir.join("predictions.csv"),
        &preds.images,
        &preds.probabilities,
        &names,
    )?;
    println!(
        "{} on {split} ({}):\n{}",
        info.name,
        ctx.checkpoint,
        crate::metrics::summary_table(&metrics)
    );
    Ok(metrics)
}
