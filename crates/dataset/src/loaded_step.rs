//! What the loader yields per step, and typed access to it: a SPMix-mode step is an instance batch
//! and a class-balanced batch, each with a query and a key view of the same images; a baseline or
//! evaluation step is one batch with one view. Consumers name the parts (`step.spmix()?.balanced`,
//! `batch.view_pair()?.key`) instead of indexing by position.

use candle_core::Tensor;

use crate::error::{DatasetError, Result};

/// One view of a batch.
#[derive(Debug, Clone)]
pub struct ViewBatch {
    /// (B, 3, H, W) f32, normalised.
    pub images: Tensor,
    /// (B, 1, H, W) f32, normalised with the saliency mean/std.
    pub saliency: Tensor,
}

/// One batch of a step.
#[derive(Debug, Clone)]
pub struct LoadedBatch {
    /// Data set indices actually loaded (a skipped image's replacement appears here).
    pub indices: Vec<usize>,
    /// (B) u32 class labels.
    pub labels: Tensor,
    /// One entry per view, in the loader mode's order; read them by name with
    /// [`LoadedBatch::view_pair`] or [`LoadedBatch::single_view`].
    pub views: Vec<ViewBatch>,
}

/// Everything for one training (or evaluation) step.
#[derive(Debug, Clone)]
pub struct LoadedStep {
    pub epoch: u64,
    pub step: usize,
    /// The mode's batches in order; read them by name with [`LoadedStep::spmix`] or
    /// [`LoadedStep::single`].
    pub batches: Vec<LoadedBatch>,
}

/// The two batches of a [`crate::loader::LoaderMode::Spmix`] step.
#[derive(Debug, Clone, Copy)]
pub struct SpmixBatches<'a> {
    /// Drawn by the instance-balanced sampler (the data set's class frequencies).
    pub instance: &'a LoadedBatch,
    /// Drawn by the class-balanced sampler.
    pub balanced: &'a LoadedBatch,
}

/// The two views of the same images in a SPMix-mode batch.
#[derive(Debug, Clone, Copy)]
pub struct ViewPair<'a> {
    /// The query view (strong augmentation).
    pub query: &'a ViewBatch,
    /// The key view (the momentum network's input).
    pub key: &'a ViewBatch,
}

impl LoadedStep {
    /// The instance and class-balanced batches of a SPMix-mode step; an error for other modes.
    pub fn spmix(&self) -> Result<SpmixBatches<'_>> {
        match self.batches.as_slice() {
            [instance, balanced] => Ok(SpmixBatches { instance, balanced }),
            other => Err(shape_error("a SPMix-mode step", 2, other.len(), "batches")),
        }
    }

    /// The one batch of a baseline- or evaluation-mode step; an error for SPMix mode.
    pub fn single(&self) -> Result<&LoadedBatch> {
        match self.batches.as_slice() {
            [batch] => Ok(batch),
            other => Err(shape_error(
                "a baseline or evaluation step",
                1,
                other.len(),
                "batches",
            )),
        }
    }
}

impl LoadedBatch {
    /// The query and key views of a SPMix-mode batch; an error for other modes.
    pub fn view_pair(&self) -> Result<ViewPair<'_>> {
        match self.views.as_slice() {
            [query, key] => Ok(ViewPair { query, key }),
            other => Err(shape_error("a SPMix-mode batch", 2, other.len(), "views")),
        }
    }

    /// The one view of a baseline- or evaluation-mode batch; an error for SPMix mode.
    pub fn single_view(&self) -> Result<&ViewBatch> {
        match self.views.as_slice() {
            [view] => Ok(view),
            other => Err(shape_error(
                "a baseline or evaluation batch",
                1,
                other.len(),
                "views",
            )),
        }
    }
}

fn shape_error(what: &str, wanted: usize, found: usize, parts: &str) -> DatasetError {
    DatasetError::Invalid(format!(
        "{what} has {wanted} {parts}, this one has {found} (a loader of another mode?)"
    ))
}
