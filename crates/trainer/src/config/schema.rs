//! The configuration's schema: one struct per TOML table, with the paper's values as defaults
//! (docs/method.md). Reading, layering and overriding are in `load.rs` and `overrides.rs`,
//! cross-field checks in `validate.rs`.

use std::path::PathBuf;

use model::ModelConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration (sections mirror the TOML tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub run: RunConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub method: MethodConfig,
    pub mix: MixConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub eval: EvalConfig,
    pub augment: AugmentSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            run: RunConfig::default(),
            data: DataConfig::default(),
            model: ModelConfig::full(),
            method: MethodConfig::default(),
            mix: MixConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            eval: EvalConfig::default(),
            augment: AugmentSection::default(),
        }
    }
}

/// `[run]`: naming, seed, device and length of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name; the run folder is `<output_dir>/<name>-<UTC timestamp>`.
    pub name: String,
    /// Folder holding the run folders.
    pub output_dir: PathBuf,
    /// Seed of everything random (sampler order, augmentation, mixing noise, init, queue).
    pub seed: u64,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Training epochs (paper: 500).
    pub epochs: usize,
    /// Images per batch B (paper: 64); SPMix steps load 2B images (instance + class-balanced).
    pub batch_size: usize,
    /// Optional timm state dict (safetensors) to start the encoder or trunk from; empty = random.
    pub pretrained: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "spmix".into(),
            output_dir: "runs".into(),
            seed: 0,
            device: "cpu".into(),
            epochs: 500,
            batch_size: 64,
            pretrained: PathBuf::new(),
        }
    }
}

/// `[data]`: where the split is, and how to make it when it is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Split folder written by `cargo xtask prepare-isic` (train/val/test CSVs, saliency, split.json).
    pub split_dir: PathBuf,
    /// When the split folder has no `split.json`: prepare it from this ISIC-layout root (empty = no).
    pub source: PathBuf,
    /// Generate a synthetic ISIC-layout set into `source` first when `source` does not exist.
    pub synthetic: bool,
    /// Synthetic set: multiple of ISIC2018's class counts.
    pub synthetic_scale: f64,
    /// Synthetic set: image size `WxH`.
    pub synthetic_size: String,
    /// Synthetic set: fewest images per class.
    pub synthetic_min_per_class: usize,
    /// Split protocol when preparing: `balanced` (val/test per class) or `stratified` (ratios).
    pub protocol: ProtocolName,
    pub val_per_class: usize,
    pub test_per_class: usize,
    /// train:val:test weights of the stratified protocol.
    pub ratios: [u32; 3],
    /// Seed of the split (and of the synthetic set).
    pub split_seed: u64,
    /// Loader threads (0 = one per core).
    pub workers: usize,
    /// Steps prepared ahead of the training loop.
    pub prefetch: usize,
    /// Resize side of the evaluation transform, as a multiple of the model's image size (256/224).
    pub eval_resize_ratio: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            split_dir: "data/isic-split".into(),
            source: PathBuf::new(),
            synthetic: false,
            synthetic_scale: 0.1,
            synthetic_size: "300x225".into(),
            synthetic_min_per_class: 24,
            protocol: ProtocolName::Balanced,
            val_per_class: 20,
            test_per_class: 40,
            ratios: [7, 1, 2],
            split_seed: 0,
            workers: 0,
            prefetch: 2,
            eval_resize_ratio: 256.0 / 224.0,
        }
    }
}

/// The split protocol `[data] protocol` names; its sizes are `val_per_class`/`test_per_class`
/// (balanced) or `ratios` (stratified), see [`DataConfig::split_protocol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// The paper's protocol: fixed numbers of validation and test images per class.
    Balanced,
    /// Class-stratified train:val:test ratios.
    Stratified,
}

impl DataConfig {
    /// The dataset crate's split protocol this section asks for.
    pub fn split_protocol(&self) -> dataset::split_files::SplitProtocol {
        use dataset::split_files::SplitProtocol;
        match self.protocol {
            ProtocolName::Balanced => SplitProtocol::Balanced {
                val_per_class: self.val_per_class,
                test_per_class: self.test_per_class,
            },
            ProtocolName::Stratified => SplitProtocol::Stratified {
                ratios: self.ratios,
            },
        }
    }
}

/// Training method (a Table 1 row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MethodName {
    /// Cross-entropy, instance-balanced sampling.
    #[serde(rename = "ce")]
    Ce,
    /// Cross-entropy, class-balanced sampling.
    #[serde(rename = "ce-resample")]
    CeResample,
    /// PaCo (GPaCo form) on the instance batch's query/key views, no mixing.
    #[serde(rename = "paco")]
    Paco,
    /// SPMix: lesion-aware patch mixing of instance and class-balanced batches + PaCo.
    #[serde(rename = "spmix")]
    Spmix,
}

impl MethodName {
    /// The name as written in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::CeResample => "ce-resample",
            Self::Paco => "paco",
            Self::Spmix => "spmix",
        }
    }
}

/// Where the keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyNetwork {
    /// A momentum (EMA) copy of the encoder and projector (paper).
    Ema,
    /// The query encoder itself, with gradients (reference code; GPaCo's 2B anchors).
    Shared,
}

/// `[method]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    pub name: MethodName,
    pub key_network: KeyNetwork,
    /// EMA momentum m of the key network (paper: 0.999).
    pub momentum: f64,
    /// Class-balanced sampler exponent w (weight of class c = 1 / n_c^w).
    pub class_weight_exponent: f64,
}

impl Default for MethodConfig {
    fn default() -> Self {
        Self {
            name: MethodName::Spmix,
            key_network: KeyNetwork::Ema,
            momentum: 0.999,
            class_weight_exponent: 1.0,
        }
    }
}

/// Which image of a mixed pair is the foreground (gives the label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Foreground {
    /// The class-balanced sample (paper).
    Balanced,
    /// The instance-sampled image (reference code).
    Instance,
}

/// `[mix]`: the lesion-aware ratio and the Table 2 switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixConfig {
    /// Per-patch ratios (true) or one ratio per sample (false).
    pub patch: bool,
    /// Ratios from saliency (true) or random in [floor, alpha] (false).
    pub saliency: bool,
    pub foreground: Foreground,
    /// Upper clip of the ratio (paper: 0.8).
    pub alpha: f32,
    /// Lower end of each view's score range (0.5).
    pub floor: f32,
    /// Noise amplitude added to the normalised saliency (0.5).
    pub noise: f32,
    /// Patch side in pixels; must equal the model's token stride (16).
    pub patch_size: usize,
}

impl Default for MixConfig {
    /// The paper's switches (both on, class-balanced foreground) and patchmix's ratio defaults.
    fn default() -> Self {
        let ratio = patchmix::RatioConfig::default();
        Self {
            patch: true,
            saliency: true,
            foreground: Foreground::Balanced,
            alpha: ratio.alpha,
            floor: ratio.floor,
            noise: ratio.noise,
            patch_size: ratio.patch,
        }
    }
}

impl MixConfig {
    /// The patchmix ratio mode of the two switches (Table 2).
    pub fn ratio_mode(&self) -> patchmix::RatioMode {
        match (self.patch, self.saliency) {
            (true, true) => patchmix::RatioMode::LesionAware,
            (false, true) => patchmix::RatioMode::SampleScalar,
            (true, false) => patchmix::RatioMode::RandomPatch,
            (false, false) => patchmix::RatioMode::ConstantSample,
        }
    }

    /// The patchmix ratio parameters.
    pub fn ratio_config(&self) -> patchmix::RatioConfig {
        patchmix::RatioConfig {
            patch: self.patch_size,
            noise: self.noise,
            floor: self.floor,
            alpha: self.alpha,
        }
    }
}

/// `[loss]`: PaCo hyper-parameters and the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub temperature: f64,
    /// Queue length K (paper: 8192).
    pub queue_size: usize,
    /// Which class prior the PaCo centre logits are adjusted by (`Z + log(prior)`).
    pub prior: Prior,
}

/// The class prior of PaCo's logit adjustment `Z + log(prior)`.
///
/// Logit adjustment makes `Z` estimate the class-balanced posterior only when the prior is the
/// distribution of the labels the loss is trained on. SPMix's labels are the foreground's: with the
/// class-balanced foreground (paper) they are drawn from the class-balanced sampler, not with the
/// data set's frequencies, and adjusting by the data set's prior would push `Z` towards the tail
/// twice (measured on the demo: every prediction goes to one Few class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prior {
    /// The distribution the anchors' labels are drawn from: the class-balanced sampler's
    /// (`n_c^(1-w)`, uniform for w = 1) when the foreground is the class-balanced sample, the
    /// training set's class frequencies otherwise.
    Anchors,
    /// The training set's class frequencies `n_c / sum n`, whatever the sampler (the paper's
    /// literal formula; docs/method.md step 8).
    Dataset,
    /// No adjustment (a constant prior).
    Uniform,
}

impl Default for LossConfig {
    fn default() -> Self {
        let p = supcon::PacoConfig::default();
        Self {
            alpha: p.alpha,
            beta: p.beta,
            gamma: p.gamma,
            temperature: p.temperature,
            queue_size: 8192,
            prior: Prior::Anchors,
        }
    }
}

impl LossConfig {
    /// The supcon PaCo parameters.
    pub fn paco(&self) -> supcon::PacoConfig {
        supcon::PacoConfig {
            alpha: self.alpha,
            beta: self.beta,
            gamma: self.gamma,
            temperature: self.temperature,
            smooth: 0.0,
        }
    }

    /// The class distribution `(C,)` (sums to 1) that the logit adjustment uses, from the
    /// training set's class counts, the method and the class-balanced sampler's exponent `w`.
    pub fn prior_distribution(
        &self,
        method: &MethodConfig,
        mix: &MixConfig,
        counts: &[usize],
    ) -> Vec<f64> {
        let balanced_anchors =
            method.name == MethodName::Spmix && mix.foreground == Foreground::Balanced;
        let frequencies = || dataset::sampler::class_balanced_probabilities(counts, 0.0);
        match self.prior {
            Prior::Uniform => vec![1.0 / counts.len() as f64; counts.len()],
            Prior::Dataset => frequencies(),
            Prior::Anchors if balanced_anchors => {
                dataset::sampler::class_balanced_probabilities(counts, method.class_weight_exponent)
            }
            Prior::Anchors => frequencies(),
        }
    }
}

/// `[optim]`: AdamW and the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate (paper: 5e-6 at batch 64).
    pub lr: f64,
    /// Decoupled weight decay on weights only (0.1).
    pub weight_decay: f64,
    /// Linear warm-up length in epochs (10), then cosine to `min_lr`.
    pub warmup_epochs: usize,
    pub min_lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 5e-6,
            weight_decay: 0.1,
            warmup_epochs: 10,
            min_lr: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 0.0,
        }
    }
}

/// Validation metric that picks the best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectMetric {
    Accuracy,
    MacroF1,
    BalancedAccuracy,
}

/// `[augment]`: how strong the training views are. The defaults are the paper's presets
/// (`dataset::augment::ViewConfig::query` / `key`); a tiny model on a few hundred images learns
/// faster with larger crops and without RandAugment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSection {
    /// RandomResizedCrop area fraction range of the query, key and baseline views (paper
    /// `[0.08, 1.0]`).
    pub crop_scale: [f32; 2],
    /// Keep RandAugment in the query and baseline views (paper: yes).
    pub rand_augment: bool,
}

impl Default for AugmentSection {
    fn default() -> Self {
        Self {
            crop_scale: [0.08, 1.0],
            rand_augment: true,
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub metric: SelectMetric,
    /// Evaluation batch size.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            metric: SelectMetric::Accuracy,
            batch_size: 64,
        }
    }
}
