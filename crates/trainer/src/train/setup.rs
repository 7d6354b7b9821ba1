//! Building a [`Trainer`]: a new run (split, run folder, networks, seeded or pretrained weights,
//! queue, optimiser, loader) or the continuation of a run folder from its last checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use dataset::data_set::DataSet;
use dataset::loader::{BaselineSampler, Loader, LoaderConfig, LoaderMode};
use dataset::sampler::derive_seed;
use dataset::split_check::check_split_files;
use model::MomentumKeyNetwork;
use supcon::{LabelledQueue, PacoLoss, QueueInit};

use super::{open_device, Trainer};
use crate::atomic_file::write_atomic;
use crate::checkpoint::{self, KeepPolicy, TrainState};
use crate::config::{Config, MethodName};
use crate::ensure_split::ensure_split;
use crate::methods;
use crate::run_dir;
use crate::run_lock::RunLock;
use crate::schedule::{AdamW, AdamWParams};

/// Seed tag of the queue's initial keys.
const TAG_QUEUE: u64 = 0x5155_4555;

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
            if cfg.method.name == MethodName::Mislas {
                bail!(
                    "--set {}: a MiSLAS run cannot be extended ({} is split into its two stages \
                     by run.epochs and mislas.stage2_epochs)",
                    overrides.join(" "),
                    dir.display()
                );
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
            write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
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
        let query = crate::methods::query_network(&cfg, &device)?;
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
        let bcl = if m == MethodName::Bcl {
            Some(methods::bcl::BclState::new(
                &query,
                &cfg.bcl,
                &train.class_counts(),
                cfg.run.seed,
                &device,
            )?)
        } else {
            None
        };
        let mut vars = query.trainable_vars();
        if let Some(b) = &bcl {
            vars.extend(b.trainable_vars());
        }
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
            MethodName::Ce | MethodName::Mislas => {
                (LoaderMode::Baseline, BaselineSampler::Instance)
            }
            MethodName::CeResample => (LoaderMode::Baseline, BaselineSampler::ClassBalanced),
            MethodName::Paco | MethodName::Spmix | MethodName::Bcl => {
                (LoaderMode::Spmix, BaselineSampler::Instance)
            }
        };
        let make_loader = |mode: LoaderMode, sampler: BaselineSampler| {
            Loader::new(
                Arc::clone(&train),
                mode,
                crate::augment::augment_config(&cfg),
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
            )
        };
        let loader = make_loader(mode, sampler)?;
        let mislas = if m == MethodName::Mislas {
            let state = methods::mislas::MislasState::new(
                &cfg.mislas,
                cfg.run.epochs,
                &train.class_counts(),
                &device,
            )?;
            let stage2 = make_loader(LoaderMode::Baseline, BaselineSampler::ClassBalanced)?;
            Some((state, stage2))
        } else {
            None
        };
        Ok(Self {
            cfg,
            run_dir,
            info,
            device,
            query,
            key,
            queue,
            paco,
            bcl,
            mislas,
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

    fn restore(&mut self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        crate::evaluate_run::load_query(&self.query, tensors, origin)?;
        if let Some(key) = &self.key {
            key.load_tensors(checkpoint::strip_prefix(tensors, "key."), origin)
                .with_context(|| format!("{origin}: key network"))?;
        }
        if let Some(b) = &self.bcl {
            b.load(tensors, origin)?;
        }
        if self.queue.is_some() {
            self.queue = Some(
                LabelledQueue::from_tensors(tensors, "queue.", &self.device)
                    .with_context(|| format!("{origin}: queue"))?,
            );
        }
        Ok(())
    }
}
