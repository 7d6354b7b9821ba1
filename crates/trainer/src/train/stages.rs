//! Which loader and learning rate an epoch uses. One stage for every method but MiSLAS, whose
//! stage 2 (the last `mislas.stage2_epochs` epochs) has its class-balanced loader and restarts a
//! cosine from `optim.lr * mislas.stage2_lr_scale` (no warm-up) over its own steps, while the
//! warm-up + cosine of [`Trainer::schedule`] spans stage 1.

use dataset::loader::Loader;

use super::Trainer;
use crate::schedule::LrSchedule;

impl Trainer {
    /// Epochs the run's main warm-up + cosine spans (all, or MiSLAS's stage 1).
    pub(super) fn scheduled_epochs(&self) -> usize {
        self.mislas
            .as_ref()
            .map_or(self.cfg.run.epochs, |(m, _)| m.stage1_epochs)
    }

    /// The learning rate of optimiser step `global_step` in epoch `epoch` (0-based).
    pub(super) fn lr_at(&self, schedule: &LrSchedule, epoch: usize, global_step: u64) -> f64 {
        match &self.mislas {
            Some((m, stage2)) if m.in_stage2(epoch) => {
                let stage1_steps = m.stage1_epochs * self.loader.steps_per_epoch();
                LrSchedule {
                    base_lr: self.cfg.optim.lr * self.cfg.mislas.stage2_lr_scale,
                    min_lr: self.cfg.optim.min_lr,
                    warmup_steps: 0,
                    total_steps: self.cfg.mislas.stage2_epochs * stage2.steps_per_epoch(),
                }
                .lr_at((global_step as usize).saturating_sub(stage1_steps))
            }
            _ => schedule.lr_at(global_step as usize),
        }
    }

    /// The loader of epoch `epoch` (0-based).
    pub(super) fn loader_for(&self, epoch: usize) -> &Loader {
        match &self.mislas {
            Some((m, stage2)) if m.in_stage2(epoch) => stage2,
            _ => &self.loader,
        }
    }
}
