//! Joint image + saliency augmentation.
//!
//! A [`Pair`] is an RGB image (H, W, 3) u8 and its static saliency map (H, W) u8 of the same size.
//! Geometric steps ([`geometry`], the geometric [`rand_augment`] ops) move both planes with the same
//! parameters and interpolation; colour steps ([`colour`]) change the image only. A view
//! ([`ViewConfig`], presets [`ViewConfig::query`] / [`ViewConfig::key`]) turns a pair into a
//! `size` x `size` pair, drawing all randomness from one RNG the caller seeds per sample;
//! [`EvalConfig`] is the deterministic resize + centre crop. [`Normalization`] writes the result as
//! planar f32: image (3, H, W), map (1, H, W).
//!
//! ```
//! use dataset::augment::{Normalization, Pair, ViewConfig};
//! use rand::SeedableRng;
//! let pair = Pair::new(image::RgbImage::new(60, 45), image::GrayImage::new(60, 45)).unwrap();
//! let view = ViewConfig::query(32).apply(&pair, &mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
//! assert_eq!(view.image.dimensions(), (32, 32));
//! let (mut img, mut sal) = (vec![0f32; 3 * 32 * 32], vec![0f32; 32 * 32]);
//! Normalization::isic().write_chw(&view, &mut img, &mut sal);
//! assert!((sal[0] - (0.0 - 0.144) / 0.137).abs() < 1e-6);
//! ```

pub mod colour;
pub mod geometry;
pub mod presets;
pub mod rand_augment;

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use presets::{AugmentConfig, ColourOps, EvalConfig, Step, ViewConfig, PRESET_NAMES};
pub use rand_augment::{RandAugmentConfig, RandAugmentOp};

/// An image and its saliency map, same width and height.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// RGB (H, W, 3) u8.
    pub image: RgbImage,
    /// Saliency (H, W) u8, 255 = most salient.
    pub saliency: GrayImage,
}

impl Pair {
    /// Pairs an image with its map; errors (with both sizes) if their sizes differ.
    pub fn new(image: RgbImage, saliency: GrayImage) -> Result<Self, String> {
        if image.dimensions() != saliency.dimensions() {
            return Err(format!(
                "saliency map is {:?} but the image is {:?} (width, height)",
                saliency.dimensions(),
                image.dimensions()
            ));
        }
        Ok(Pair { image, saliency })
    }
}

/// Per-channel normalisation of images and maps: `(v / 255 - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Image mean, RGB, in [0, 1].
    pub mean: [f32; 3],
    /// Image standard deviation, RGB.
    pub std: [f32; 3],
    /// Saliency mean in [0, 1] (grey, one channel).
    pub saliency_mean: f32,
    /// Saliency standard deviation.
    pub saliency_std: f32,
}

impl Default for Normalization {
    fn default() -> Self {
        Self::isic()
    }
}

impl Normalization {
    /// ISIC2018: mean (0.765, 0.545, 0.569), std (0.140, 0.151, 0.169); saliency 0.144 / 0.137.
    pub fn isic() -> Self {
        Normalization {
            mean: [0.765, 0.545, 0.569],
            std: [0.140, 0.151, 0.169],
            saliency_mean: 0.144,
            saliency_std: 0.137,
        }
    }

    /// The mean colour as RGB bytes (`round(255 * mean)`), timm's fill for geometric ops.
    pub fn fill_colour(&self) -> [u8; 3] {
        self.mean
            .map(|m| (m * 255.0).round().clamp(0.0, 255.0) as u8)
    }

    /// Positive, finite standard deviations.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |s: f32| s > 0.0 && s.is_finite();
        if !self.std.iter().all(|&s| ok(s)) || !ok(self.saliency_std) {
            return Err(format!(
                "standard deviations must be > 0 (std {:?}, saliency_std {})",
                self.std, self.saliency_std
            ));
        }
        Ok(())
    }

    /// Writes `pair` normalised: `image_out` planar (3, H, W), `saliency_out` (1, H, W), f32.
    ///
    /// # Panics
    /// If the slices are not exactly `3 * H * W` and `H * W` long.
    pub fn write_chw(&self, pair: &Pair, image_out: &mut [f32], saliency_out: &mut [f32]) {
        let (w, h) = pair.image.dimensions();
        let n = w as usize * h as usize;
        assert_eq!(image_out.len(), 3 * n, "image buffer is not 3 x {h} x {w}");
        assert_eq!(
            saliency_out.len(),
            n,
            "saliency buffer is not 1 x {h} x {w}"
        );
        // A 256-entry table per channel turns the divide into a lookup.
        let luts: [[f32; 256]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|v| (v as f32 / 255.0 - self.mean[c]) / self.std[c])
        });
        let (r, rest) = image_out.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (i, p) in pair.image.as_raw().chunks_exact(3).enumerate() {
            r[i] = luts[0][p[0] as usize];
            g[i] = luts[1][p[1] as usize];
            b[i] = luts[2][p[2] as usize];
        }
        let slut: [f32; 256] =
            std::array::from_fn(|v| (v as f32 / 255.0 - self.saliency_mean) / self.saliency_std);
        for (o, &v) in saliency_out.iter_mut().zip(pair.saliency.as_raw()) {
            *o = slut[v as usize];
        }
    }
}
