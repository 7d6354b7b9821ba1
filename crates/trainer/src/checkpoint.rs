//! Checkpoints: what to keep (a pure decision, [`KeepPolicy`]) and how it is written (atomic folders).
//!
//! A checkpoint is a folder `checkpoints/step-<global step, 8 digits>/` holding
//! - `state.safetensors`: `query.<name>` (every query-network variable, running statistics
//!   included), `key.<name>` (the momentum key network, when there is one), `opt.m.<name>` /
//!   `opt.v.<name>` (AdamW moments) and `queue.keys` `(K, D)`, `queue.labels` `(K,)`, `queue.ptr`;
//! - `state.json`: [`TrainState`] (epoch, next step, optimiser step count, history, best epoch).
//!
//! Both files are written into `checkpoints/.tmp-*` and the folder is renamed into place, so a run
//! killed at any moment leaves only complete checkpoints. Everything random in training derives
//! from `(seed, epoch, step)`, so this state is all a resume needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Prefix of the query network's variables in `state.safetensors`.
pub const QUERY_PREFIX: &str = "query.";

/// What the training loop knows between steps, saved in `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (0-based); equals `epochs` when training is complete.
    pub epoch: usize,
    /// The next step of `epoch` to run (0 at an epoch boundary).
    pub next_step: usize,
    /// Optimiser updates so far (global step).
    pub global_step: u64,
    /// Sums of the epoch in progress: loss, correct predictions, samples.
    pub partial_loss: f64,
    pub partial_correct: usize,
    pub partial_samples: usize,
    /// Seconds spent in the epoch in progress before an interruption.
    pub partial_seconds: f64,
    /// One record per finished epoch.
    pub history: Vec<crate::epoch_record::EpochRecord>,
    /// Best finished epoch so far (by the configured metric) and its value.
    pub best: Option<(usize, f64)>,
    /// Global step of the best epoch's checkpoint.
    pub best_step: Option<u64>,
}

impl TrainState {
    /// The state before the first step.
    pub fn start() -> Self {
        Self {
            epoch: 0,
            next_step: 0,
            global_step: 0,
            partial_loss: 0.0,
            partial_correct: 0,
            partial_samples: 0,
            partial_seconds: 0.0,
            history: Vec::new(),
            best: None,
            best_step: None,
        }
    }
}

/// What the keep policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write a checkpoint at this global step.
    Save(u64),
    /// Remove the checkpoint at this global step.
    Delete(u64),
}

/// Keeps the last checkpoint and the best one; decides without touching files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeepPolicy {
    /// Checkpoints on disk (global steps), oldest first.
    pub kept: Vec<u64>,
    /// The best checkpoint's step and metric (higher is better).
    pub best: Option<(u64, f64)>,
}

impl KeepPolicy {
    /// An epoch ended at `step` with validation `metric`: save it, remember it when it beats the
    /// best (ties keep the older), and delete whatever is neither the new last nor the best.
    pub fn on_epoch_end(&mut self, step: u64, metric: f64) -> Vec<Action> {
        let mut actions = vec![Action::Save(step)];
        if self.best.is_none_or(|(_, b)| metric > b) {
            self.best = Some((step, metric));
        }
        self.keep_only_best_and(step, &mut actions);
        actions
    }

    /// An interruption (Ctrl-C) mid-epoch at `step`: save it; older checkpoints other than the
    /// best are deleted (the interrupted one is now the last).
    pub fn on_interrupt(&mut self, step: u64) -> Vec<Action> {
        let mut actions = vec![Action::Save(step)];
        self.keep_only_best_and(step, &mut actions);
        actions
    }

    /// After saving `step`: keep it and the best, delete every other kept checkpoint.
    fn keep_only_best_and(&mut self, step: u64, actions: &mut Vec<Action>) {
        let best = self.best.map(|(s, _)| s);
        let mut keep = Vec::new();
        for &s in &self.kept {
            if Some(s) == best && s != step {
                keep.push(s);
            } else if s != step {
                actions.push(Action::Delete(s));
            }
        }
        keep.push(step);
        self.kept = keep;
    }
}

/// The checkpoints folder of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Folder of the checkpoint at `step`.
pub fn step_dir(run_dir: &Path, step: u64) -> PathBuf {
    checkpoints_dir(run_dir).join(format!("step-{step:08}"))
}

/// Complete checkpoints on disk, by global step, ascending.
pub fn list(run_dir: &Path) -> Result<Vec<u64>> {
    let dir = checkpoints_dir(run_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
            steps.push(n);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// Writes a checkpoint folder atomically (temporary folder, then rename; an older folder of the
/// same step is replaced).
pub fn save(
    run_dir: &Path,
    step: u64,
    tensors: &HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // A checkpoint folder gets the mode of any new folder (0755 under umask 022), not 0700.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777));
    let tmp = builder
        .tempdir_in(&dir)
        .with_context(|| format!("creating a temporary folder in {}", dir.display()))?;
    // Save on the CPU: a CUDA tensor would be copied anyway, and CPU copies keep the bytes exact.
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    candle_core::safetensors::save(&cpu, tmp.path().join("state.safetensors"))
        .context("writing state.safetensors")?;
    std::fs::write(
        tmp.path().join("state.json"),
        serde_json::to_string_pretty(state)?,
    )
    .context("writing state.json")?;
    let target = step_dir(run_dir, step);
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("replacing {}", target.display()))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &target)
        .with_context(|| format!("renaming {} to {}", tmp_path.display(), target.display()))?;
    Ok(target)
}

/// Removes the checkpoint at `step` (missing is fine).
pub fn delete(run_dir: &Path, step: u64) -> Result<()> {
    let d = step_dir(run_dir, step);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("deleting {}", d.display()))?;
    }
    Ok(())
}

/// Reads a checkpoint folder: its tensors (on `device`) and state.
pub fn load(dir: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, TrainState)> {
    let st = dir.join("state.safetensors");
    let tensors = candle_core::safetensors::load(&st, device)
        .with_context(|| format!("reading checkpoint {}", st.display()))?;
    Ok((tensors, load_state(dir)?))
}

/// Which checkpoint of a run to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Best,
    Last,
}

/// Folder of the run's `best` or `last` checkpoint.
pub fn find(run_dir: &Path, which: Which) -> Result<PathBuf> {
    let steps = list(run_dir)?;
    let Some(&last) = steps.last() else {
        bail!(
            "{} holds no checkpoint (expected {}/step-*)",
            run_dir.display(),
            checkpoints_dir(run_dir).display()
        );
    };
    match which {
        Which::Last => Ok(step_dir(run_dir, last)),
        Which::Best => {
            let state = load_state(&step_dir(run_dir, last))?;
            let best = state.best_step.unwrap_or(last);
            let d = step_dir(run_dir, best);
            if !d.exists() {
                bail!("best checkpoint {} is missing", d.display());
            }
            Ok(d)
        }
    }
}

/// The [`TrainState`] of a checkpoint folder, without its tensors.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    let js = dir.join("state.json");
    let text = std::fs::read_to_string(&js).with_context(|| format!("reading {}", js.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", js.display()))
}

/// Tensors of `map` under `prefix`, with the prefix removed.
pub fn strip_prefix(map: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    map.iter()
        .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The story of a run: epoch 1 (step 10) is the first, so it is saved and best; epoch 2
    /// (step 20) is worse: saved as last, epoch 1 kept as best; epoch 3 (step 30) is better
    /// still: saved, and both older ones go; epoch 4 ties: saved as last, the older best stays.
    #[test]
    fn keep_last_and_best_narrative() {
        let mut p = KeepPolicy::default();
        assert_eq!(p.on_epoch_end(10, 0.5), vec![Action::Save(10)]);
        assert_eq!(p.on_epoch_end(20, 0.4), vec![Action::Save(20)]);
        assert_eq!(p.kept, vec![10, 20]);
        assert_eq!(
            p.on_epoch_end(30, 0.6),
            vec![Action::Save(30), Action::Delete(10), Action::Delete(20)]
        );
        assert_eq!(p.on_epoch_end(40, 0.6), vec![Action::Save(40)]);
        assert_eq!(p.best, Some((30, 0.6)));
        assert_eq!(p.kept, vec![30, 40]);
        // Ctrl-C mid-epoch 5 at step 43: the interrupted state becomes the last, 40 goes.
        assert_eq!(
            p.on_interrupt(43),
            vec![Action::Save(43), Action::Delete(40)]
        );
        assert_eq!(p.kept, vec![30, 43]);
        // Resumed, epoch 5 ends at step 50, better: 30 and 43 go.
        assert_eq!(
            p.on_epoch_end(50, 0.7),
            vec![Action::Save(50), Action::Delete(30), Action::Delete(43)]
        );
    }
}
