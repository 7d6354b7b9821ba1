//! The training loop: network construction, steps of the configured method, AdamW with warm-up +
//! cosine, validation every epoch, checkpoints (last + best) with exact resume, and the final test
//! evaluation of the best checkpoint. The split it trains on is [`crate::ensure_split`]'s.
//!
//! Exactness: the initial weights, sampler order, augmentations, mixing noise and queue
//! initialisation all derive from `run.seed` (and the epoch and step), and a checkpoint holds
//! every other piece of state (weights, running statistics, key network, AdamW moments and step,
//! queue, position in the epoch). On the CPU a run resumed from a checkpoint therefore ends with
//! the same bits as an uninterrupted run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use dataset::data_set::DataSet;
use dataset::loader::{BaselineSampler, Loader, LoaderConfig, LoaderMode};
use dataset::sampler::derive_seed;
use dataset::split_check::check_split_files;
use model::{LoadOptions, MomentumKeyNetwork, QueryNetwork};
use supcon::{LabelledQueue, PacoLoss, QueueInit};

use crate::checkpoint::{self, Action, EpochRow, KeepPolicy, TrainState};
use crate::config::{Config, DeviceSpec, MethodName, SelectMetric};
pub use crate::ensure_split::ensure_split;
use crate::evaluate;
use crate::methods::{self, StepContext};
use crate::metrics::EvalMetrics;
use crate::run_dir;
use crate::run_lock::RunLock;
use crate::schedule::{clip_grad_norm, AdamW, AdamWParams, LrSchedule};
use crate::step_trace::{StepObserver, StepRecord};

const TAG_QUEUE: u64 = 0x5155_4555;

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

/// A training run in a run folder.
pub struct Trainer {
    pub cfg: Config,
    pub run_dir: PathBuf,
    pub info: run_dir::RunInfo,
    device: Device,
    query: QueryNetwork,
    key: Option<MomentumKeyNetwork>,
    queue: Option<LabelledQueue>,
    paco: Option<PacoLoss>,
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

fn is_contrastive(m: MethodName) -> bool {
    matches!(m, MethodName::Paco | MethodName::Spmix)
}

impl Trainer {
    /// A new run: prepares the data if needed, creates the run folder, builds the networks.
    pub fn create(cfg: Config, stop: Arc<AtomicBool>) -> Result<Self> {
        ensure_split(&cfg.data)?;
        let device = open_device(&cfg.run.device)?;
        let (dir, info) = run_dir::create(&cfg)?;
        // A run folder exists only for a run that could start: removed when setup fails.
        let built = RunLock::acquire(&dir).and_then(|lock| {
            let mut t = Self::build(cfg, dir.clone(), info, device, stop)?;
            t.run_lock = Some(lock);
            t.write_metrics()?;
            Ok(t)
        });
        if built.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let t = built?;
        tracing::info!("run folder {}", dir.display());
        Ok(t)
    }

    /// Continues the run in `dir` from its last checkpoint (or from the start when it has none).
    /// `device` overrides the configured device when given.
    pub fn resume(dir: &Path, device: Option<&str>, stop: Arc<AtomicBool>) -> Result<Self> {
        Self::resume_with(dir, device, &[], stop)
    }

    /// [`Self::resume`] after `--set` overrides. Only `run.epochs` may change, to extend a run
    /// (not below the epochs already done); any other key is refused, naming it, since the rest
    /// of a run's config is what its checkpoints were made with. The new value is written to the
    /// run's `config.toml`.
    pub fn resume_with(
        dir: &Path,
        device: Option<&str>,
        overrides: &[String],
        stop: Arc<AtomicBool>,
    ) -> Result<Self> {
        let (mut cfg, info) = run_dir::open(dir)?;
        let lock = RunLock::acquire(dir)?;
        if !overrides.is_empty() {
            for o in overrides {
                let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim();
                if key != "run.epochs" {
                    bail!(
                        "--set {o}: only run.epochs can change when resuming {} (it extends the \
                         run); {key} is fixed by the run's config.toml",
                        dir.display()
                    );
                }
            }
            cfg = Config::from_toml_str(&cfg.to_toml(), "the run's config.toml", overrides)?;
            let done = checkpoint::list(dir)?
                .last()
                .map(|&s| checkpoint::load_state(&checkpoint::step_dir(dir, s)))
                .transpose()?
                .map_or(0, |st| st.epoch);
            if cfg.run.epochs < done {
                bail!(
                    "--set run.epochs={}: {} has already trained {done} epochs",
                    cfg.run.epochs,
                    dir.display()
                );
            }
            run_dir::write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
            tracing::info!("{}: run.epochs is now {}", dir.display(), cfg.run.epochs);
        }
        if let Some(d) = device {
            cfg.run.device = d.to_string();
        }
        let device = open_device(&cfg.run.device)?;
        let mut t = Self::build(cfg, dir.to_path_buf(), info, device, stop)?;
        t.run_lock = Some(lock);
        let steps = checkpoint::list(dir)?;
        if let Some(&last) = steps.last() {
            let cdir = checkpoint::step_dir(dir, last);
            let (tensors, state) = checkpoint::load(&cdir, &t.device)?;
            t.restore(&tensors, &cdir.display().to_string())?;
            t.opt
                .load_state(&tensors, "opt.", state.global_step)
                .map_err(|e| anyhow!("{}: optimiser state: {e}", cdir.display()))?;
            t.policy = KeepPolicy {
                kept: steps,
                best: state.best_step.zip(state.best.map(|(_, m)| m)),
            };
            t.state = state;
            tracing::info!(
                "resuming {} at epoch {} step {} (global step {})",
                dir.display(),
                t.state.epoch + 1,
                t.state.next_step,
                t.state.global_step
            );
        }
        Ok(t)
    }

    fn build(
        cfg: Config,
        run_dir: PathBuf,
        info: run_dir::RunInfo,
        device: Device,
        stop: Arc<AtomicBool>,
    ) -> Result<Self> {
        let split = &cfg.data.split_dir;
        let train = Arc::new(
            DataSet::open(split, "train")
                .with_context(|| format!("opening {}/train.csv", split.display()))?,
        );
        let val = Arc::new(
            DataSet::open(split, "val")
                .with_context(|| format!("opening {}/val.csv", split.display()))?,
        );
        if train.is_empty() || val.is_empty() {
            bail!(
                "{}: the train and val splits must not be empty",
                split.display()
            );
        }
        // Every image and map must be there and readable before epoch 1, not after it.
        check_split_files(&train, "train", cfg.method.name == MethodName::Spmix)?;
        check_split_files(&val, "val", false)?;
        let query = QueryNetwork::new(&cfg.model, &device)?;
        crate::init::seeded_init(&query, cfg.run.seed)?;
        if !cfg.run.pretrained.as_os_str().is_empty() {
            let p = &cfg.run.pretrained;
            let r = crate::pretrained::load_pretrained(&query, p)
                .with_context(|| format!("loading run.pretrained {}", p.display()))?;
            tracing::info!(
                "loaded {} tensors from {} ({:?}; {} in the file unused)",
                r.report.loaded.len(),
                p.display(),
                r.form,
                r.report.ignored.len()
            );
            for m in &r.report.mismatched {
                tracing::info!("not loaded (shape differs; kept its start): {m}");
            }
        } else if let Some(warning) =
            crate::pretrained::missing_pretrained_warning(&cfg.model, &cfg.run.pretrained)
        {
            tracing::warn!("{warning}");
        }
        let m = cfg.method.name;
        let contrastive = is_contrastive(m);
        let key = if contrastive && methods::uses_ema(&cfg) {
            Some(MomentumKeyNetwork::from_query(&query)?)
        } else {
            None
        };
        let (queue, paco, log_prior) = if contrastive {
            let q = LabelledQueue::new(
                cfg.loss.queue_size,
                cfg.model.proj_dim,
                QueueInit::Unlabelled,
                derive_seed(&[cfg.run.seed, TAG_QUEUE]),
                DType::F32,
                &device,
            )?;
            let prior = cfg
                .loss
                .prior_distribution(&cfg.method, &cfg.mix, &train.class_counts());
            let log_prior: Vec<f64> = prior.iter().map(|p| (p + 1e-9).ln()).collect();
            let t = Tensor::from_vec(log_prior.clone(), (1, prior.len()), &device)?;
            let p = PacoLoss::with_log_prior(cfg.loss.paco(), &t)?;
            (Some(q), Some(p), log_prior)
        } else {
            (None, None, Vec::new())
        };
        let vars = query.trainable_vars();
        let parameters: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
        tracing::info!(
            "{} ({}): {parameters} trainable parameters in {} variables; {} epochs of batch {}, \
             AdamW lr {:e} wd {}, {} warm-up epochs, seed {}",
            cfg.method.name.as_str(),
            cfg.run.device,
            vars.len(),
            cfg.run.epochs,
            cfg.run.batch_size,
            cfg.optim.lr,
            cfg.optim.weight_decay,
            cfg.optim.warmup_epochs,
            cfg.run.seed
        );
        let opt = AdamW::new(
            vars.clone(),
            AdamWParams {
                beta1: cfg.optim.beta1,
                beta2: cfg.optim.beta2,
                eps: cfg.optim.eps,
                weight_decay: cfg.optim.weight_decay,
            },
        )?;
        let (mode, sampler) = match m {
            MethodName::Ce => (LoaderMode::Baseline, BaselineSampler::Instance),
            MethodName::CeResample => (LoaderMode::Baseline, BaselineSampler::ClassBalanced),
            MethodName::Paco | MethodName::Spmix => (LoaderMode::Spmix, BaselineSampler::Instance),
        };
        let loader = Loader::new(
            Arc::clone(&train),
            mode,
            evaluate::augment_config(&cfg),
            LoaderConfig {
                batch_size: cfg.run.batch_size,
                threads: cfg.data.workers,
                prefetch: cfg.data.prefetch,
                with_saliency: m == MethodName::Spmix,
                class_weight_exponent: cfg.method.class_weight_exponent,
                baseline_sampler: sampler,
                ..LoaderConfig::default()
            },
            cfg.run.seed,
        )?;
        Ok(Self {
            cfg,
            run_dir,
            info,
            device,
            query,
            key,
            queue,
            paco,
            log_prior,
            vars,
            opt,
            state: TrainState::start(),
            policy: KeepPolicy::default(),
            loader,
            val,
            stop,
            halt_at_step: None,
            progress: true,
            observer: None,
            run_lock: None,
        })
    }

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
            .map(|(k, t)| (format!("query.{k}"), t))
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
        Ok(out)
    }

    fn restore(&mut self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        load_query(&self.query, tensors, origin)?;
        if let Some(key) = &self.key {
            key.load_tensors(checkpoint::strip_prefix(tensors, "key."), origin)
                .with_context(|| format!("{origin}: key network"))?;
        }
        if self.queue.is_some() {
            self.queue = Some(
                LabelledQueue::from_tensors(tensors, "queue.", &self.device)
                    .with_context(|| format!("{origin}: queue"))?,
            );
        }
        Ok(())
    }

    fn schedule(&self) -> LrSchedule {
        let spe = self.loader.steps_per_epoch();
        LrSchedule {
            base_lr: self.cfg.optim.lr,
            min_lr: self.cfg.optim.min_lr,
            warmup_steps: self.cfg.optim.warmup_epochs * spe,
            total_steps: self.cfg.run.epochs * spe,
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
        run_dir::write_atomic(
            &self.run_dir.join("metrics.csv"),
            run_dir::metrics_csv(&self.state.history).as_bytes(),
        )
    }

    /// Trains until all epochs are done, the stop flag is raised, or [`Self::halt_at_step`].
    pub fn fit(&mut self) -> Result<Outcome> {
        let epochs = self.cfg.run.epochs;
        let spe = self.loader.steps_per_epoch();
        let schedule = self.schedule();
        let bs = self.cfg.run.batch_size;
        while self.state.epoch < epochs {
            let e = self.state.epoch;
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
            let mut lr = schedule.lr_at(self.state.global_step as usize);
            for step in self.loader.epoch_from(e as u64, self.state.next_step) {
                let step = step.with_context(|| format!("loading epoch {} step", e + 1))?;
                let s = step.step;
                lr = schedule.lr_at(self.state.global_step as usize);
                let ctx = StepContext {
                    cfg: &self.cfg,
                    device: &self.device,
                    query: &self.query,
                    key: self.key.as_ref(),
                    queue: self.queue.as_ref(),
                    paco: self.paco.as_ref(),
                    epoch: e,
                    step: s,
                };
                let out = match self.cfg.method.name {
                    MethodName::Ce | MethodName::CeResample => methods::ce::step(&ctx, &step)?,
                    MethodName::Paco => methods::paco::step(&ctx, &step)?,
                    MethodName::Spmix => methods::spmix::step(&ctx, &step)?,
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
            let row = EpochRow {
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
            let records: Vec<crate::plots::EpochRecord> =
                self.state.history.iter().map(to_record).collect();
            if let Err(err) = crate::plots::plot_curves(&self.run_dir.join("curves.png"), &records)
            {
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
        evaluate_run(
            &self.run_dir,
            "test",
            checkpoint::Which::Best,
            Some(&self.device),
            &self.run_dir,
        )
    }
}

fn to_record(r: &EpochRow) -> crate::plots::EpochRecord {
    crate::plots::EpochRecord {
        epoch: r.epoch,
        lr: r.lr,
        train_loss: r.train_loss,
        train_accuracy: r.train_accuracy,
        val_accuracy: r.val_accuracy,
        val_many: r.val_many,
        val_medium: r.val_medium,
        val_few: r.val_few,
        val_macro_f1: r.val_macro_f1,
        seconds: r.seconds,
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

/// Loads `query.*` tensors of a checkpoint into `query`; the error lists missing, unexpected and
/// mis-shaped tensors (e.g. a checkpoint of a different model config).
pub fn load_query(
    query: &QueryNetwork,
    tensors: &HashMap<String, Tensor>,
    origin: &str,
) -> Result<()> {
    let map: BTreeMap<String, Tensor> = checkpoint::strip_prefix(tensors, "query.")
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
    let query = QueryNetwork::new(&cfg.model, &device)?;
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
