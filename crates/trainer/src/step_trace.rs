//! Step traces: what every optimiser step of a run did, for step parity with the PyTorch
//! reference trainer (`crates/trainer/scripts/reference_trainer.py`).
//!
//! A trace is produced in two halves. `cargo run -p trainer --example step_trace`
//! trains K steps and writes the initial state, every step's inputs (the loader's batches after
//! augmentation, labels, indices, SPMix's ratios) and a [`Trace`] of the Rust side; the reference
//! script replays those inputs through timm and `torch.optim.AdamW` and writes its own trace and
//! final weights into `crates/trainer/tests/fixtures/step_parity/`. The `step_parity` test then
//! runs the same K steps in Rust and compares (no Python at test time). Each row carries
//! checksums of its inputs, so a changed loader is reported as such rather than as a training
//! difference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::methods;

/// What one optimiser step did.
pub struct StepRecord<'a> {
    /// 0-based epoch and step within it.
    pub epoch: usize,
    pub step: usize,
    /// 0-based optimiser step over the run (before this step's increment).
    pub global_step: u64,
    /// Learning rate of the step.
    pub lr: f64,
    /// The loss the gradients came from.
    pub loss: f64,
    /// Global l2 norm of all gradients before clipping.
    pub grad_norm: f64,
    /// The loader's batches (images after augmentation, labels, indices).
    pub batch: &'a dataset::loader::LoadedStep,
    /// SPMix's mixing ratios of the step.
    pub ratios: Option<&'a methods::MixRatios>,
    /// The step's gradients (after any clipping) of the query network's `vars`.
    pub grads: &'a candle_core::backprop::GradStore,
    pub vars: &'a [(String, Var)],
}

/// A per-step callback, see [`crate::train::Trainer::observer`].
pub type StepObserver = Box<dyn FnMut(&StepRecord) -> Result<()> + Send>;

/// One optimiser step of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRow {
    /// 0-based optimiser step over the run.
    pub global_step: u64,
    /// 0-based epoch and step within it.
    pub epoch: usize,
    pub step: usize,
    /// Learning rate of the step.
    pub lr: f64,
    /// Loss before the update.
    pub loss: f64,
    /// Global l2 norm of the gradients (before any clipping).
    pub grad_norm: f64,
    /// Checksums of the step's inputs (every view's images; labels; SPMix's ratios).
    pub inputs: InputChecksums,
}

/// Sums over a step's inputs, in f64.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputChecksums {
    /// Sum and sum of absolute values of every image of every view of every batch.
    pub image_sum: f64,
    pub image_abs_sum: f64,
    /// Sum of all labels.
    pub label_sum: u64,
    /// Sum of both views' mixing ratios (0 without mixing).
    pub ratio_sum: f64,
}

/// A trace: the run's facts the reference needs, and one row per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Producer of the rows: `"rust"` or `"pytorch"`.
    pub producer: String,
    /// The config's method name (`ce`, `ce-resample`, `paco`, `spmix`).
    pub method: String,
    /// Optimiser steps per epoch (the schedule's unit).
    pub steps_per_epoch: usize,
    /// `log(prior + 1e-9)` added to the PaCo centre logits (contrastive methods; empty otherwise).
    pub log_prior: Vec<f64>,
    pub rows: Vec<TraceRow>,
}

impl Trace {
    /// Reads a trace written by [`Trace::write`] (or by the reference script).
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the trace as pretty JSON (through a temporary file).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::atomic_file::write_atomic(path, text.as_bytes())?;
        Ok(())
    }
}

impl InputChecksums {
    /// Checksums of one step's inputs.
    pub fn of(record: &StepRecord) -> Result<Self> {
        let mut image_sum = 0.0;
        let mut image_abs_sum = 0.0;
        let mut label_sum = 0u64;
        for batch in &record.batch.batches {
            for view in &batch.views {
                let x = view.images.to_dtype(DType::F64)?;
                image_sum += x.sum_all()?.to_scalar::<f64>()?;
                image_abs_sum += x.abs()?.sum_all()?.to_scalar::<f64>()?;
            }
            label_sum += batch
                .labels
                .to_vec1::<u32>()?
                .iter()
                .map(|&y| y as u64)
                .sum::<u64>();
        }
        let ratio_sum = match record.ratios {
            Some(r) => {
                r.query
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?
                    + r.key.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?
            }
            None => 0.0,
        };
        Ok(Self {
            image_sum,
            image_abs_sum,
            label_sum,
            ratio_sum,
        })
    }
}

impl TraceRow {
    /// The row of one step.
    pub fn of(record: &StepRecord) -> Result<Self> {
        Ok(Self {
            global_step: record.global_step,
            epoch: record.epoch,
            step: record.step,
            lr: record.lr,
            loss: record.loss,
            grad_norm: record.grad_norm,
            inputs: InputChecksums::of(record)?,
        })
    }
}

/// A step's inputs as named tensors: `b{i}.labels` (u32), `b{i}.indices` (u32), `b{i}.v{j}.images`
/// `(B, 3, S, S)` for batch `i` (SPMix and PaCo: 0 instance, 1 class-balanced) and view `j`
/// (0 query, 1 key), and `ratio.query` / `ratio.key` `(B, N)` for SPMix.
pub fn step_tensors(record: &StepRecord) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (i, batch) in record.batch.batches.iter().enumerate() {
        out.insert(format!("b{i}.labels"), batch.labels.clone());
        let idx: Vec<u32> = batch.indices.iter().map(|&i| i as u32).collect();
        let n = idx.len();
        out.insert(
            format!("b{i}.indices"),
            Tensor::from_vec(idx, n, &candle_core::Device::Cpu)?,
        );
        for (j, view) in batch.views.iter().enumerate() {
            out.insert(format!("b{i}.v{j}.images"), view.images.clone());
        }
    }
    if let Some(r) = record.ratios {
        out.insert("ratio.query".into(), r.query.clone());
        out.insert("ratio.key".into(), r.key.clone());
    }
    Ok(out)
}

/// The step's gradients as `grad.<variable>` tensors (variables without a gradient left out).
pub fn gradient_tensors(record: &StepRecord) -> HashMap<String, Tensor> {
    record
        .vars
        .iter()
        .filter_map(|(name, var)| {
            let g = record.grads.get(var.as_tensor())?;
            Some((format!("grad.{name}"), g.detach()))
        })
        .collect()
}

/// What an [`observer`] writes besides the trace rows.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Folder for `step-{global_step:04}.safetensors` with each step's inputs; none: no files.
    pub dir: Option<PathBuf>,
    /// Add the step's gradients ([`gradient_tensors`]) to those files (a debugging aid).
    pub gradients: bool,
}

/// An observer that appends each step's [`TraceRow`] to `rows` and writes what `dump` asks for.
pub fn observer(rows: Arc<Mutex<Vec<TraceRow>>>, dump: Dump) -> StepObserver {
    Box::new(move |record: &StepRecord| {
        let row = TraceRow::of(record)?;
        if let Some(dir) = &dump.dir {
            let path = dir.join(format!("step-{:04}.safetensors", record.global_step));
            let mut tensors = step_tensors(record)?;
            if dump.gradients {
                tensors.extend(gradient_tensors(record));
            }
            candle_core::safetensors::save(&tensors, &path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        rows.lock().expect("trace rows poisoned").push(row);
        Ok(())
    })
}
