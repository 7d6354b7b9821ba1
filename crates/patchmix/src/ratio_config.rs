//! The parameters of the lesion-aware ratio and the patch grid they give an image: what the CPU
//! op (`ratio`), its CUDA kernel (`cuda`) and the composed reference all read.

use crate::error::{PatchMixError, Result};

/// Parameters of the lesion-aware ratio. Defaults are the paper's: P = 16, a = 0.5, floor 0.5,
/// alpha 0.8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioConfig {
    /// Patch side P in pixels (16 for a ViT-/16 at 224 px -> 14 x 14 patches).
    pub patch: usize,
    /// Noise amplitude a: per-pixel noise is uniform in [-a, a) (saliency units, i.e. after
    /// normalisation with mean 0.144 / std 0.137).
    pub noise: f32,
    /// Lower end of the per-view score range [floor, 1].
    pub floor: f32,
    /// Upper clip of the merged ratio.
    pub alpha: f32,
}

impl Default for RatioConfig {
    fn default() -> Self {
        Self {
            patch: 16,
            noise: 0.5,
            floor: 0.5,
            alpha: 0.8,
        }
    }
}

impl RatioConfig {
    /// Checks 0 < patch, 0 <= noise (finite), 0 <= floor <= alpha <= 1.
    pub fn validate(&self) -> Result<()> {
        if self.patch == 0 {
            return Err(PatchMixError::param(
                "patch",
                self.patch,
                "must be at least 1 pixel",
            ));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(PatchMixError::param(
                "noise",
                self.noise,
                "must be finite and >= 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.floor) {
            return Err(PatchMixError::param(
                "floor",
                self.floor,
                "must lie in [0, 1]",
            ));
        }
        if !(self.floor..=1.0).contains(&self.alpha) {
            return Err(PatchMixError::param(
                "alpha",
                self.alpha,
                "must lie in [floor, 1]",
            ));
        }
        Ok(())
    }
}

/// Image and patch-grid sizes, in pixels and patches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    /// Image height H.
    pub h: usize,
    /// Image width W.
    pub w: usize,
    /// Patch side P.
    pub p: usize,
    /// Whole patches per column, H / P.
    pub hp: usize,
    /// Whole patches per row, W / P.
    pub wp: usize,
}

impl Grid {
    pub(crate) fn new(h: usize, w: usize, p: usize) -> Self {
        Self {
            h,
            w,
            p,
            hp: h / p,
            wp: w / p,
        }
    }

    /// Patches per image N = (H / P) (W / P).
    pub(crate) fn np(&self) -> usize {
        self.hp * self.wp
    }
}
