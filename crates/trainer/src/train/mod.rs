//! The training loop: network construction, steps of the configured method, AdamW with warm-up +
//! cosine, validation every epoch, checkpoints (last + best) with exact resume, and the final test
//! evaluation of the best checkpoint. The split it trains on is [`crate::ensure_split`]'s.
//!
//! Exactness: the initial weights, sampler order, augmentations, mixing noise and queue
//! initialisation all derive from `run.seed` (and the epoch and step), and a checkpoint holds
//! every other piece of state (weights, running statistics, key network, AdamW moments and step,
//! queue, position in the epoch). On the CPU a run resumed from a checkpoint therefore ends with
//! the same bits as an uninterrupted run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use dataset::data_set::DataSet;
use dataset::loader::Loader;
use model::{MomentumKeyNetwork, QueryNetwork};
use supcon::{LabelledQueue, PacoLoss};

use crate::atomic_file::write_atomic;
use crate::checkpoint::{self, Action, KeepPolicy, TrainState};
use crate::config::{Config, DeviceSpec, MethodName, SelectMetric};
pub use crate::ensure_split::ensure_split;
use crate::epoch_record::{metrics_csv, EpochRecord};
use crate::evaluate;
use crate::methods::{self, StepContext};
use crate::metrics::EvalMetrics;
use crate::run_dir;
use crate::run_lock::RunLock;
use crate::schedule::{clip_grad_norm, AdamW, LrSchedule};
use crate::step_trace::{StepObserver, StepRecord};

/// Opens the configured device (`cpu` or `cuda:N`).
pub fn open_device(spec: &str) -> Result<Device> {
    match crate::config::parse_device(spec).map_err(anyhow::Error::msg)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => Device::new_cuda(n).with_context(|| {
            format!("cannot open cuda:{n} (build with `--features cuda` and check the driver)")
        }),
    }
}

/// How [`Trainer::fit`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All epochs done.
    Finished,
    /// Stopped by the stop flag (Ctrl-C) after a step; a checkpoint of that step was written.
    Interrupted,
    /// Stopped at [`Trainer::halt_at_step`] without writing anything (simulates a kill).
    Halted,
}

mod setup;
mod stages;

/// A training run in a run folder (constructed and resumed in `setup.rs`).
pub struct Trainer {
    pub cfg: Config,
    pub run_dir: PathBuf,
    pub info: run_dir::RunInfo,
    device: Device,
    query: QueryNetwork,
    key: Option<MomentumKeyNetwork>,
    queue: Option<LabelledQueue>,
    paco: Option<PacoLoss>,
    /// BCL's prototype head and loss (method `bcl`).
    bcl: Option<methods::bcl::BclState>,
    /// MiSLAS's stage split and loss (method `mislas`), with stage 2's class-balanced loader.
    mislas: Option<(methods::mislas::MislasState, Loader)>,
    /// `log(prior + 1e-9)` of the PaCo logit adjustment (empty without PaCo).
    log_prior: Vec<f64>,
    vars: Vec<(String, Var)>,
    opt: AdamW,
    state: TrainState,
    policy: KeepPolicy,
    loader: Loader,
    val: Arc<DataSet>,
    stop: Arc<AtomicBool>,
    /// Stop (without a checkpoint) once this many optimiser steps are done: a test hook that
    /// simulates a process killed between checkpoints.
    pub halt_at_step: Option<u64>,
    /// Show progress bars.
    pub progress: bool,
    /// Called after every optimiser step (and the queue update) with what the step did: the
    /// hook of the step-parity traces ([`crate::step_trace`]).
    pub observer: Option<StepObserver>,
    /// The lock on the run folder, held while this trainer lives.
    run_lock: Option<RunLock>,
}

impl Trainer {
    /// The query network.
    pub fn query(&self) -> &QueryNetwork {
        &self.query
    }

    /// Optimiser steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.loader.steps_per_epoch()
    }

    /// `log(prior + 1e-9)` `(C,)` that PaCo adds to the centre logits (empty without PaCo).
    pub fn log_prior(&self) -> &[f64] {
        &self.log_prior
    }

    /// The training state (epoch, step, history).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Every tensor of the training state (see [`crate::checkpoint`] for the names).
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> = self
            .query
            .tensors()?
            .into_iter()
            .map(|(k, t)| (format!("{}{k}", crate::checkpoint::QUERY_PREFIX), t))
            .collect();
        if let Some(key) = &self.key {
            out.extend(
                key.tensors()?
                    .into_iter()
                    .map(|(k, t)| (format!("key.{k}"), t)),
            );
        }
        out.extend(self.opt.state_tensors("opt."));
        if let Some(q) = &self.queue {
            out.extend(q.to_tensors("queue.")?);
        }
        if let Some(b) = &self.bcl {
            out.extend(b.tensors()?);
        }
        Ok(out)
    }

    fn schedule(&self) -> LrSchedule {
        let spe = self.loader.steps_per_epoch();
        LrSchedule {
            base_lr: self.cfg.optim.lr,
            min_lr: self.cfg.optim.min_lr,
            warmup_steps: self.cfg.optim.warmup_epochs * spe,
            total_steps: self.scheduled_epochs() * spe,
        }
    }

    fn apply(&mut self, actions: &[Action]) -> Result<()> {
        for a in actions {
            match *a {
                Action::Save(step) => {
                    let tensors = self.state_tensors()?;
                    checkpoint::save(&self.run_dir, step, &tensors, &self.state)?;
                }
                Action::Delete(step) => checkpoint::delete(&self.run_dir, step)?,
            }
        }
        Ok(())
    }

    fn write_metrics(&self) -> Result<()> {
        write_atomic(
            &self.run_dir.join("metrics.csv"),
            metrics_csv(&self.state.history).as_bytes(),
        )?;
        Ok(())
    }

    /// Trains until all epochs are done, the stop flag is raised, or [`Self::halt_at_step`].
    pub fn fit(&mut self) -> Result<Outcome> {
        let epochs = self.cfg.run.epochs;
        let schedule = self.schedule();
        let bs = self.cfg.run.batch_size;
        while self.state.epoch < epochs {
            let e = self.state.epoch;
            let spe = self.loader_for(e).steps_per_epoch();
            let start = Instant::now();
            let bar = if self.progress {
                indicatif::ProgressBar::new(spe as u64)
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} steps ({per_sec}) {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{}", e + 1, epochs));
            bar.set_position(self.state.next_step as u64);
            let mut lr = self.lr_at(&schedule, e, self.state.global_step);
            let epoch_steps = self
                .loader_for(e)
                .epoch_from(e as u64, self.state.next_step);
            for step in epoch_steps {
                let step = step.with_context(|| format!("loading epoch {} step", e + 1))?;
                let s = step.step;
                lr = self.lr_at(&schedule, e, self.state.global_step);
                let ctx = StepContext {
                    cfg: &self.cfg,
                    device: &self.device,
                    query: &self.query,
                    key: self.key.as_ref(),
                    queue: self.queue.as_ref(),
                    paco: self.paco.as_ref(),
                    bcl: self.bcl.as_ref(),
                    mislas: self.mislas.as_ref().map(|(m, _)| m),
                    epoch: e,
                    step: s,
                };
                let out = match self.cfg.method.name {
                    MethodName::Ce | MethodName::CeResample => methods::ce::step(&ctx, &step)?,
                    MethodName::Paco => methods::paco::step(&ctx, &step)?,
                    MethodName::Spmix => methods::spmix::step(&ctx, &step)?,
                    MethodName::Mislas => methods::mislas::step(&ctx, &step)?,
                    MethodName::Bcl => methods::bcl::step(&ctx, &step)?,
                };
                let loss = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !loss.is_finite() {
                    let last = checkpoint::list(&self.run_dir)?
                        .last()
                        .map(|&s| checkpoint::step_dir(&self.run_dir, s).display().to_string())
                        .unwrap_or_else(|| "none yet".into());
                    bail!(
                        "the loss became {loss} at epoch {} step {} (lr {lr:e}); training stopped. \
                         The last good checkpoint ({last}) is kept; try a lower optim.lr or set optim.grad_clip",
                        e + 1,
                        s
                    );
                }
                let mut grads = out.loss.backward()?;
                // The norm is needed for clipping and for tracing; otherwise it is not computed.
                let mut grad_norm = f64::NAN;
                if self.cfg.optim.grad_clip > 0.0 || self.observer.is_some() {
                    grad_norm = clip_grad_norm(&mut grads, &self.vars, self.cfg.optim.grad_clip)?;
                    if !grad_norm.is_finite() {
                        bail!(
                            "the gradient norm became {grad_norm} at epoch {} step {s}; training stopped, \
                             the last good checkpoint is kept",
                            e + 1
                        );
                    }
                }
                self.opt.step(&grads, lr)?;
                if let (Some(q), Some((k, y))) = (self.queue.as_mut(), &out.enqueue) {
                    q.enqueue(k, y)?;
                }
                if let Some(observe) = self.observer.as_mut() {
                    observe(&StepRecord {
                        epoch: e,
                        step: s,
                        global_step: self.state.global_step,
                        lr,
                        loss,
                        grad_norm,
                        batch: &step,
                        ratios: out.ratios.as_ref(),
                        grads: &grads,
                        vars: &self.vars,
                    })?;
                }
                let preds = out.logits.argmax(1)?.to_vec1::<u32>()?;
                let labels = out.labels.to_vec1::<u32>()?;
                let n = labels.len();
                self.state.partial_correct +=
                    preds.iter().zip(&labels).filter(|(a, b)| a == b).count();
                self.state.partial_samples += n;
                self.state.partial_loss += loss * n as f64;
                self.state.next_step = s + 1;
                self.state.global_step += 1;
                bar.inc(1);
                bar.set_message(format!(
                    "loss {:.4} ({:.1} img/s)",
                    loss,
                    ((self.state.next_step * bs) as f64) / start.elapsed().as_secs_f64().max(1e-9)
                ));
                if self.halt_at_step == Some(self.state.global_step) {
                    bar.abandon();
                    return Ok(Outcome::Halted);
                }
                if self.stop.load(Ordering::SeqCst) && self.state.next_step < spe {
                    bar.abandon_with_message("interrupted");
                    self.state.partial_seconds += start.elapsed().as_secs_f64();
                    let actions = self.policy.on_interrupt(self.state.global_step);
                    self.apply(&actions)?;
                    tracing::warn!(
                        "interrupted: checkpoint written at epoch {} step {}; continue with --resume {}",
                        e + 1,
                        self.state.next_step,
                        self.run_dir.display()
                    );
                    return Ok(Outcome::Interrupted);
                }
            }
            bar.finish_and_clear();
            let val = evaluate::predict_split(
                &self.query,
                Arc::clone(&self.val),
                &self.cfg,
                &self.device,
            )?
            .metrics(&self.val);
            let st = &mut self.state;
            let row = EpochRecord {
                epoch: e + 1,
                lr,
                train_loss: st.partial_loss / st.partial_samples.max(1) as f64,
                train_accuracy: st.partial_correct as f64 / st.partial_samples.max(1) as f64,
                val_accuracy: val.total_accuracy,
                val_many: val.groups.many,
                val_medium: val.groups.medium,
                val_few: val.groups.few,
                val_macro_f1: val.macro_f1,
                val_balanced_accuracy: val.balanced_accuracy,
                seconds: st.partial_seconds + start.elapsed().as_secs_f64(),
            };
            tracing::info!(
                "epoch {}/{}: loss {:.4}, train acc {:.3}, val acc {:.3} (many {:.3} medium {:.3} few {:.3}), macro F1 {:.3}, {:.1} s",
                row.epoch, epochs, row.train_loss, row.train_accuracy, row.val_accuracy,
                row.val_many, row.val_medium, row.val_few, row.val_macro_f1, row.seconds
            );
            let metric = select(&val, self.cfg.eval.metric);
            st.history.push(row);
            st.epoch += 1;
            st.next_step = 0;
            st.partial_loss = 0.0;
            st.partial_correct = 0;
            st.partial_samples = 0;
            st.partial_seconds = 0.0;
            let step = st.global_step;
            let actions = self.policy.on_epoch_end(step, metric);
            if self.policy.best.map(|(s, _)| s) == Some(step) {
                self.state.best = Some((e + 1, metric));
                self.state.best_step = Some(step);
            }
            self.apply(&actions)?;
            self.write_metrics()?;
            let curves = self.run_dir.join("curves.png");
            let best_epoch = self.state.best.map(|(epoch, _)| epoch);
            if let Err(err) = crate::plots::plot_curves(&curves, &self.state.history, best_epoch) {
                tracing::warn!("curves.png not written: {err:#}");
            }
            if self.stop.load(Ordering::SeqCst) && self.state.epoch < epochs {
                tracing::warn!(
                    "interrupted after epoch {}; continue with --resume {}",
                    e + 1,
                    self.run_dir.display()
                );
                return Ok(Outcome::Interrupted);
            }
        }
        Ok(Outcome::Finished)
    }

    /// Evaluates the best checkpoint on the test split and writes `report.md`, `report.json`,
    /// `confusion.png` and `predictions.csv` into the run folder. Returns the test metrics.
    pub fn finish(&self) -> Result<EvalMetrics> {
        crate::evaluate_run::evaluate_run(
            &self.run_dir,
            "test",
            checkpoint::Which::Best,
            Some(&self.device),
            &self.run_dir,
        )
    }
}

/// The value of the configured selection metric (higher is better).
pub fn select(m: &EvalMetrics, which: SelectMetric) -> f64 {
    match which {
        SelectMetric::Accuracy => m.total_accuracy,
        SelectMetric::MacroF1 => m.macro_f1,
        SelectMetric::BalancedAccuracy => m.balanced_accuracy,
    }
}
