//! Parallel batch loader: decodes images and saliency maps, augments them and yields candle
//! tensors, with a bounded number of batches in flight.
//!
//! Per step and per batch the loader yields ([`LoadedBatch`]): labels (B) u32 and, per view,
//! images (B, 3, H, W) f32 and saliency (B, 1, H, W) f32, both normalised
//! ([`crate::augment::Normalization`]). What a step holds depends on the [`LoaderMode`]:
//! - `Spmix`: `batches = [instance, class_balanced]`, each with `views = [query, key]`;
//! - `Baseline`: `batches = [one batch from the configured sampler]`, `views = [baseline]`;
//! - `Eval`: the data set in order, `views = [eval]`, the last batch possibly short.
//!
//! Sample `slot` of batch `k` in step `step` of `epoch` draws its augmentation from an RNG seeded by
//! `(seed, epoch, step, k, slot, view)` alone, so batches are identical whatever the thread count.
//! A producer thread builds step after step on a rayon pool of `threads` threads; it starts a step
//! only while fewer than `prefetch + 1` steps wait for the caller, which bounds memory.
//!
//! ```no_run
//! use std::sync::Arc;
//! use dataset::{augment::AugmentConfig, data_set::DataSet, loader::*};
//! let train = Arc::new(DataSet::open("data/isic-split".as_ref(), "train").unwrap());
//! let loader = Loader::new(train, LoaderMode::Spmix, AugmentConfig::default(), LoaderConfig::default(), 0).unwrap();
//! for step in loader.epoch(0) {
//!     let step = step.unwrap();
//!     let batches = step.spmix().unwrap();
//!     let _query_images = &batches.instance.view_pair().unwrap().query.images; // (B, 3, 224, 224) f32
//!     let _key_maps = &batches.balanced.view_pair().unwrap().key.saliency;     // (B, 1, 224, 224) f32
//! }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{AugmentConfig, Pair};
use crate::data_set::DataSet;
use crate::error::{DatasetError, Result};
pub use crate::loaded_step::{LoadedBatch, LoadedStep, SpmixBatches, ViewBatch, ViewPair};
use crate::sampler::{rng_for, BatchSampler, ClassBalancedSampler, InstanceSampler};

const TAG_VIEW: u64 = 3;

/// What the loader produces per step (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoaderMode {
    /// Two batches (instance, class-balanced), two views each (query, key).
    Spmix,
    /// One batch, one view (the baseline view).
    Baseline,
    /// The data set in order with the evaluation transform.
    Eval,
}

/// Which sampler feeds baseline mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSampler {
    Instance,
    ClassBalanced,
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Images per batch (B).
    pub batch_size: usize,
    /// Worker threads decoding and augmenting; 0 = one per CPU core.
    pub threads: usize,
    /// Steps built ahead of the caller (>= 1); memory holds at most `prefetch + 1` unconsumed steps.
    pub prefetch: usize,
    /// Replace unreadable images by the next readable index (logged and counted) instead of failing.
    pub skip_unreadable: bool,
    /// Load the saliency maps; when false the map tensors are built from all-zero maps.
    pub with_saliency: bool,
    /// Class-balanced sampler exponent w (class weight 1 / n_c^w).
    pub class_weight_exponent: f64,
    /// Sampler of baseline mode.
    pub baseline_sampler: BaselineSampler,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            threads: 0,
            prefetch: 2,
            skip_unreadable: false,
            with_saliency: true,
            class_weight_exponent: 1.0,
            baseline_sampler: BaselineSampler::Instance,
        }
    }
}

enum Sampling {
    Spmix(InstanceSampler, ClassBalancedSampler),
    Baseline(Box<dyn BatchSampler>),
    Eval,
}

struct Inner {
    data: Arc<DataSet>,
    mode: LoaderMode,
    augment: AugmentConfig,
    cfg: LoaderConfig,
    seed: u64,
    sampling: Sampling,
    pool: rayon::ThreadPool,
    skipped: AtomicUsize,
}

/// The batch loader over one data set. Cheap to share: epochs run on their own producer thread.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

impl Loader {
    /// Validates the settings and builds the samplers and the thread pool.
    pub fn new(
        data: Arc<DataSet>,
        mode: LoaderMode,
        augment: AugmentConfig,
        cfg: LoaderConfig,
        seed: u64,
    ) -> Result<Self> {
        augment.validate().map_err(DatasetError::Invalid)?;
        if cfg.prefetch == 0 || cfg.batch_size == 0 {
            return Err(DatasetError::Invalid(format!(
                "loader: batch_size ({}) and prefetch ({}) must be >= 1",
                cfg.batch_size, cfg.prefetch
            )));
        }
        let labels = data.labels();
        let w = cfg.class_weight_exponent;
        let b = cfg.batch_size;
        let sampling = match mode {
            LoaderMode::Spmix => {
                let inst = InstanceSampler::new(labels.len(), b, seed)?;
                let bal = ClassBalancedSampler::new(&labels, w, b, inst.batches_per_epoch(), seed)?;
                Sampling::Spmix(inst, bal)
            }
            LoaderMode::Baseline => {
                let inst = InstanceSampler::new(labels.len(), b, seed)?;
                let s: Box<dyn BatchSampler> = match cfg.baseline_sampler {
                    BaselineSampler::Instance => Box::new(inst),
                    BaselineSampler::ClassBalanced => Box::new(ClassBalancedSampler::new(
                        &labels,
                        w,
                        b,
                        inst.batches_per_epoch(),
                        seed,
                    )?),
                };
                Sampling::Baseline(s)
            }
            LoaderMode::Eval => Sampling::Eval,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("loader-{i}"))
            .build()
            .map_err(|e| DatasetError::Invalid(format!("loader: cannot start threads: {e}")))?;
        Ok(Loader {
            inner: Arc::new(Inner {
                data,
                mode,
                augment,
                cfg,
                seed,
                sampling,
                pool,
                skipped: AtomicUsize::new(0),
            }),
        })
    }

    /// Steps in one epoch (eval: batches covering the whole data set).
    pub fn steps_per_epoch(&self) -> usize {
        let inner = &self.inner;
        match &inner.sampling {
            Sampling::Spmix(i, _) => i.batches_per_epoch(),
            Sampling::Baseline(s) => s.batches_per_epoch(),
            Sampling::Eval => inner.data.len().div_ceil(inner.cfg.batch_size),
        }
    }

    /// Images replaced so far because they could not be read (with `skip_unreadable`).
    pub fn skipped(&self) -> usize {
        self.inner.skipped.load(Ordering::Relaxed)
    }

    /// The mode this loader was built for.
    pub fn mode(&self) -> LoaderMode {
        self.inner.mode
    }

    /// Builds one step now, on the loader's threads (no prefetching).
    pub fn load_step(&self, epoch: u64, step: usize) -> Result<LoadedStep> {
        self.inner.load_step(epoch, step)
    }

    /// All steps of `epoch`, built ahead in the background.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// Steps `start..` of `epoch`: resuming mid-epoch gives the same batches as an uninterrupted run.
    pub fn epoch_from(&self, epoch: u64, start: usize) -> EpochIter {
        let end = self.steps_per_epoch();
        let (tx, rx) = channel();
        let inner = Arc::clone(&self.inner);
        let slots = Arc::new(Slots::new(self.inner.cfg.prefetch + 1));
        let producer_slots = Arc::clone(&slots);
        let handle = std::thread::Builder::new()
            .name("loader-producer".into())
            .spawn(move || {
                for step in start..end {
                    // A step is built only when a slot is free: memory holds at most
                    // prefetch + 1 steps the caller has not taken yet.
                    if !producer_slots.acquire() {
                        return;
                    }
                    let r = inner.load_step(epoch, step);
                    let failed = r.is_err();
                    // A closed channel means the caller dropped the iterator: stop quietly.
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning the loader thread");
        EpochIter {
            rx: Some(rx),
            handle: Some(handle),
            slots,
            done: false,
        }
    }
}

/// A counting semaphore of steps the producer may hold (built or being built, not yet taken).
struct Slots {
    state: Mutex<SlotState>,
    cv: Condvar,
    capacity: usize,
}

struct SlotState {
    free: usize,
    closed: bool,
    peak: usize,
}

impl Slots {
    fn new(capacity: usize) -> Self {
        Slots {
            state: Mutex::new(SlotState {
                free: capacity,
                closed: false,
                peak: 0,
            }),
            cv: Condvar::new(),
            capacity,
        }
    }
    /// Waits for a free slot; false once the consumer is gone.
    fn acquire(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.free == 0 && !s.closed {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.closed {
            return false;
        }
        s.free -= 1;
        s.peak = s.peak.max(self.capacity - s.free);
        true
    }
    fn release(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.free += 1;
        self.cv.notify_all();
    }
    fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.closed = true;
        self.cv.notify_all();
    }
    fn peak(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).peak
    }
}

/// Iterator over the steps of one epoch; yields `Err` once (with the file name) and then stops.
pub struct EpochIter {
    rx: Option<Receiver<Result<LoadedStep>>>,
    handle: Option<JoinHandle<()>>,
    slots: Arc<Slots>,
    done: bool,
}

impl EpochIter {
    /// The most steps that existed at once beyond those handed to the caller (<= prefetch + 1).
    pub fn peak_in_flight(&self) -> usize {
        self.slots.peak()
    }
}

impl Iterator for EpochIter {
    type Item = Result<LoadedStep>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(r) => {
                self.slots.release();
                if r.is_err() {
                    self.done = true;
                }
                Some(r)
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Wake a producer waiting for a slot, and make its next send fail.
        self.slots.close();
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Output buffers of one sample: per view (image (3, H, W), map (1, H, W)).
type SlotBuffers<'a> = Vec<(&'a mut [f32], &'a mut [f32])>;

impl Inner {
    fn batch_indices(&self, epoch: u64, step: usize) -> Vec<Vec<usize>> {
        match &self.sampling {
            Sampling::Spmix(i, b) => vec![i.batch(epoch, step), b.batch(epoch, step)],
            Sampling::Baseline(s) => vec![s.batch(epoch, step)],
            Sampling::Eval => {
                let b = self.cfg.batch_size;
                let lo = step * b;
                let hi = (lo + b).min(self.data.len());
                vec![(lo..hi).collect()]
            }
        }
    }

    /// Output side of each view.
    fn view_sizes(&self) -> Vec<u32> {
        let a = &self.augment;
        match self.mode {
            LoaderMode::Spmix => vec![a.query.size, a.key.size],
            LoaderMode::Baseline => vec![a.baseline.size],
            LoaderMode::Eval => vec![a.eval.crop],
        }
    }

    fn load_step(&self, epoch: u64, step: usize) -> Result<LoadedStep> {
        let batches_idx = self.batch_indices(epoch, step);
        let sizes = self.view_sizes();
        let mut img_bufs: Vec<Vec<Vec<f32>>> = Vec::new();
        let mut sal_bufs: Vec<Vec<Vec<f32>>> = Vec::new();
        for idx in &batches_idx {
            let n = idx.len();
            img_bufs.push(
                sizes
                    .iter()
                    .map(|&s| vec![0f32; n * 3 * (s * s) as usize])
                    .collect(),
            );
            sal_bufs.push(
                sizes
                    .iter()
                    .map(|&s| vec![0f32; n * (s * s) as usize])
                    .collect(),
            );
        }
        // Split every output buffer into per-sample slices up front, so workers write in place.
        let mut work: Vec<(usize, usize, usize, SlotBuffers)> = Vec::new();
        for (k, (ib, sb)) in img_bufs.iter_mut().zip(sal_bufs.iter_mut()).enumerate() {
            let n = batches_idx[k].len();
            let mut per_slot: Vec<SlotBuffers> = (0..n).map(|_| Vec::new()).collect();
            for (v, (iv, sv)) in ib.iter_mut().zip(sb.iter_mut()).enumerate() {
                let hw = (sizes[v] * sizes[v]) as usize;
                for (slot, (ic, sc)) in iv.chunks_mut(3 * hw).zip(sv.chunks_mut(hw)).enumerate() {
                    per_slot[slot].push((ic, sc));
                }
            }
            for (slot, bufs) in per_slot.into_iter().enumerate() {
                work.push((k, slot, batches_idx[k][slot], bufs));
            }
        }
        let loaded: Vec<(usize, usize)> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(k, slot, index, bufs)| self.load_sample(epoch, step, k, slot, index, bufs))
                .collect::<Result<Vec<_>>>()
        })?;
        let mut out = Vec::with_capacity(batches_idx.len());
        let mut it = loaded.into_iter();
        for (k, idx) in batches_idx.iter().enumerate() {
            let n = idx.len();
            let (indices, labels): (Vec<usize>, Vec<u32>) =
                it.by_ref().take(n).map(|(i, l)| (i, l as u32)).unzip();
            let labels = Tensor::from_vec(labels, n, &Device::Cpu).map_err(tensor_err)?;
            let mut views = Vec::with_capacity(sizes.len());
            for (v, &s) in sizes.iter().enumerate() {
                let s = s as usize;
                let images = Tensor::from_vec(
                    std::mem::take(&mut img_bufs[k][v]),
                    (n, 3, s, s),
                    &Device::Cpu,
                )
                .map_err(tensor_err)?;
                let saliency = Tensor::from_vec(
                    std::mem::take(&mut sal_bufs[k][v]),
                    (n, 1, s, s),
                    &Device::Cpu,
                )
                .map_err(tensor_err)?;
                views.push(ViewBatch { images, saliency });
            }
            out.push(LoadedBatch {
                indices,
                labels,
                views,
            });
        }
        Ok(LoadedStep {
            epoch,
            step,
            batches: out,
        })
    }

    /// Loads data set item `index` (or, with the skip policy, the next readable one), augments it
    /// into `bufs`, and returns (index used, label).
    fn load_sample(
        &self,
        epoch: u64,
        step: usize,
        k: usize,
        slot: usize,
        index: usize,
        bufs: SlotBuffers,
    ) -> Result<(usize, usize)> {
        let (used, pair) = self.read_with_policy(index)?;
        let label = self.data.item(used).label;
        let norm = &self.augment.normalization;
        for (v, (img, sal)) in bufs.into_iter().enumerate() {
            let view = match self.mode {
                LoaderMode::Eval => self.augment.eval.apply(&pair),
                _ => {
                    let cfg = match (self.mode, v) {
                        (LoaderMode::Spmix, 0) => &self.augment.query,
                        (LoaderMode::Spmix, _) => &self.augment.key,
                        _ => &self.augment.baseline,
                    };
                    let mut rng = rng_for(
                        TAG_VIEW,
                        &[
                            self.seed,
                            epoch,
                            step as u64,
                            k as u64,
                            slot as u64,
                            v as u64,
                        ],
                    );
                    cfg.apply(&pair, &mut rng)
                }
            };
            norm.write_chw(&view, img, sal);
        }
        Ok((used, label))
    }

    fn read_with_policy(&self, index: usize) -> Result<(usize, Pair)> {
        let n = self.data.len();
        let first = match self.data.load_pair(index, self.cfg.with_saliency) {
            Ok(p) => return Ok((index, p)),
            Err(e) => e,
        };
        if !self.cfg.skip_unreadable {
            return Err(first);
        }
        tracing::warn!("skipping unreadable image {index}: {first}");
        self.skipped.fetch_add(1, Ordering::Relaxed);
        // Deterministic replacement: the next indices in order, so runs stay reproducible.
        for step in 1..n.min(MAX_REPLACEMENT_TRIES + 1) {
            let j = (index + step) % n;
            match self.data.load_pair(j, self.cfg.with_saliency) {
                Ok(p) => return Ok((j, p)),
                Err(e) => {
                    tracing::warn!("skipping unreadable image {j}: {e}");
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Err(first)
    }
}

/// How many following images the skip policy tries before giving up with the first error.
const MAX_REPLACEMENT_TRIES: usize = 16;

fn tensor_err(e: candle_core::Error) -> DatasetError {
    DatasetError::Invalid(format!("building a batch tensor: {e}"))
}
