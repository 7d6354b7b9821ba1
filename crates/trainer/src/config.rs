//! The training configuration: one TOML file with every value of the method (docs/method.md), e.g.
//!
//! ```toml
//! [run]
//! name = "spmix"
//! seed = 0
//! epochs = 500
//! batch_size = 64
//! [method]
//! name = "spmix"          # ce | ce-resample | paco | spmix
//! [model]                 # the model crate's table, as is
//! image_size = 224
//! ```
//!
//! Missing keys take the paper's values ([`Config::default`]); unknown keys are errors that name
//! the key path and suggest the nearest valid key; `--set a.b=value` overrides any value (the value
//! is parsed as TOML, falling back to a string).
//!
//! ```
//! let cfg = trainer::config::Config::from_toml_str(
//!     "[run]\nepochs = 3\n", "example", &["optim.lr=1e-4".to_string()]).unwrap();
//! assert_eq!(cfg.run.epochs, 3);
//! assert_eq!(cfg.optim.lr, 1e-4);
//! let err = trainer::config::Config::from_toml_str("[run]\nepoch = 3\n", "example", &[]).unwrap_err();
//! assert!(err.to_string().contains("did you mean `run.epochs`"));
//! ```

use std::path::{Path, PathBuf};

use model::ModelConfig;
use serde::{Deserialize, Serialize};

pub use crate::methods::bcl::BclSection;
pub use crate::methods::mislas::{MislasSection, Shape as SmoothingShape};

/// Errors of reading, overriding and validating a configuration; each names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {error}")]
    Io {
        path: PathBuf,
        /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
        error: std::io::Error,
    },
    #[error("{origin}: malformed TOML: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: unknown key `{key}`{suggestion}")]
    UnknownKey {
        origin: String,
        key: String,
        suggestion: String,
    },
    #[error("--set {arg:?}: {reason}")]
    BadOverride { arg: String, reason: String },
    #[error("{origin}: invalid value: {message}")]
    Invalid { origin: String, message: String },
}

/// A result with [`ConfigError`].
pub type Result<T> = std::result::Result<T, ConfigError>;

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
    pub mislas: MislasSection,
    pub bcl: BclSection,
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
            mislas: MislasSection::default(),
            bcl: BclSection::default(),
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
    pub protocol: String,
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
            protocol: "balanced".into(),
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
    /// MiSLAS: mixup + CE, then classifier re-training with label-aware smoothing (`[mislas]`).
    #[serde(rename = "mislas")]
    Mislas,
    /// BCL: balanced contrastive loss with class prototypes + logit-compensated CE (`[bcl]`).
    #[serde(rename = "bcl")]
    Bcl,
}

impl MethodName {
    /// The name as written in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::CeResample => "ce-resample",
            Self::Paco => "paco",
            Self::Spmix => "spmix",
            Self::Mislas => "mislas",
            Self::Bcl => "bcl",
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
    fn default() -> Self {
        Self {
            patch: true,
            saliency: true,
            foreground: Foreground::Balanced,
            alpha: 0.8,
            floor: 0.5,
            noise: 0.5,
            patch_size: 16,
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

impl Config {
    /// Reads a TOML file, applies `--set` overrides and validates.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (`origin` names it in errors), applies overrides, validates.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.into(),
            message: e.to_string(),
        })?;
        let known =
            toml::Table::try_from(Config::default()).expect("the default config serialises");
        check_keys(&value, &known, "", origin)?;
        for o in overrides {
            apply_override(&mut value, &known, o)?;
        }
        // Missing keys take the defaults, inside `[model]` too (its type has no serde defaults).
        let mut full = known.clone();
        merge(&mut full, value);
        let cfg: Config = toml::Value::Table(full)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                origin: origin.into(),
                message: e.to_string(),
            })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            origin: origin.into(),
            message,
        })?;
        Ok(cfg)
    }

    /// The resolved configuration as TOML (what a run folder stores).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises")
    }

    /// Cross-field checks; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.model.validate().map_err(|e| format!("[model]: {e}"))?;
        let pos = |k: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{k} = {v}: must be a positive number"))
            }
        };
        if self.run.epochs == 0 {
            return Err("run.epochs = 0: must be at least 1".into());
        }
        if self.run.batch_size < 2 {
            return Err(format!(
                "run.batch_size = {}: must be at least 2 (BatchNorm needs two samples)",
                self.run.batch_size
            ));
        }
        parse_device(&self.run.device)?;
        pos("optim.lr", self.optim.lr)?;
        pos("optim.eps", self.optim.eps)?;
        if !(self.optim.weight_decay >= 0.0 && self.optim.weight_decay.is_finite()) {
            return Err(format!(
                "optim.weight_decay = {}: must be >= 0",
                self.optim.weight_decay
            ));
        }
        if !(0.0..=self.optim.lr).contains(&self.optim.min_lr) {
            return Err(format!(
                "optim.min_lr = {}: must be in [0, optim.lr]",
                self.optim.min_lr
            ));
        }
        for (k, b) in [
            ("optim.beta1", self.optim.beta1),
            ("optim.beta2", self.optim.beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("{k} = {b}: must be in [0, 1)"));
            }
        }
        if !(self.optim.grad_clip >= 0.0 && self.optim.grad_clip.is_finite()) {
            return Err(format!(
                "optim.grad_clip = {}: must be >= 0 (0 = off)",
                self.optim.grad_clip
            ));
        }
        if !(0.0..=1.0).contains(&self.method.momentum) {
            return Err(format!(
                "method.momentum = {}: must be in [0, 1]",
                self.method.momentum
            ));
        }
        self.mix
            .ratio_config()
            .validate()
            .map_err(|e| format!("[mix]: {e}"))?;
        let stride = self.model.image_size / self.model.grid_size();
        if self.mix.patch_size * self.model.grid_size() != self.model.image_size
            && self.method.name == MethodName::Spmix
        {
            return Err(format!(
                "mix.patch_size = {}: the model's {} px images give a {}x{} token grid, so the \
                 patch must be {} px (image_size must be a multiple of 16)",
                self.mix.patch_size,
                self.model.image_size,
                self.model.grid_size(),
                self.model.grid_size(),
                stride
            ));
        }
        if self.loss.queue_size == 0 {
            return Err("loss.queue_size = 0: must be at least 1".into());
        }
        self.loss
            .paco()
            .validate_public()
            .map_err(|e| format!("[loss]: {e}"))?;
        if self.model.num_classes != dataset::NUM_CLASSES {
            return Err(format!(
                "model.num_classes = {}: the ISIC data have {} classes",
                self.model.num_classes,
                dataset::NUM_CLASSES
            ));
        }
        match self.data.protocol.as_str() {
            "balanced" | "stratified" => {}
            other => {
                return Err(format!(
                    "data.protocol = {other:?}: expected \"balanced\" or \"stratified\""
                ))
            }
        }
        dataset::synth::parse_size(&self.data.synthetic_size)
            .map_err(|e| format!("data.synthetic_size: {e}"))?;
        pos("data.synthetic_scale", self.data.synthetic_scale)?;
        if !(self.data.eval_resize_ratio >= 1.0 && self.data.eval_resize_ratio.is_finite()) {
            return Err(format!(
                "data.eval_resize_ratio = {}: must be >= 1",
                self.data.eval_resize_ratio
            ));
        }
        let [lo, hi] = self.augment.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(format!(
                "augment.crop_scale = [{lo}, {hi}]: needs 0 < min <= max <= 1"
            ));
        }
        self.mislas
            .validate(self.method.name == MethodName::Mislas, self.run.epochs)?;
        self.bcl.validate()?;
        if self.eval.batch_size == 0 || self.data.prefetch == 0 {
            return Err("eval.batch_size and data.prefetch must be at least 1".into());
        }
        Ok(())
    }
}

/// Helper trait: PaCo's own validation is private to supcon; mirror its checks here.
trait ValidatePublic {
    fn validate_public(&self) -> std::result::Result<(), String>;
}

impl ValidatePublic for supcon::PacoConfig {
    fn validate_public(&self) -> std::result::Result<(), String> {
        for (k, v, ok) in [
            ("alpha", self.alpha, self.alpha >= 0.0),
            ("beta", self.beta, self.beta >= 0.0),
            ("gamma", self.gamma, self.gamma >= 0.0),
            ("temperature", self.temperature, self.temperature > 0.0),
        ] {
            if !(v.is_finite() && ok) {
                return Err(format!("loss.{k} = {v}: out of range"));
            }
        }
        Ok(())
    }
}

/// A parsed `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

/// Parses `cpu` or `cuda:N` (`cuda` = `cuda:0`).
pub fn parse_device(s: &str) -> std::result::Result<DeviceSpec, String> {
    match s {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| format!("device {s:?}: expected `cpu` or `cuda:N`")),
    }
}

/// Deep-merges `over` onto `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Every key of `value` must exist in `known` (the default config's tree).
fn check_keys(value: &toml::Table, known: &toml::Table, prefix: &str, origin: &str) -> Result<()> {
    for (k, v) in value {
        let path = format!("{prefix}{k}");
        match known.get(k) {
            None => {
                return Err(ConfigError::UnknownKey {
                    origin: origin.into(),
                    key: path,
                    suggestion: suggest(k, known, prefix),
                })
            }
            Some(toml::Value::Table(kt)) => {
                if let toml::Value::Table(vt) = v {
                    check_keys(vt, kt, &format!("{path}."), origin)?;
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn suggest(key: &str, known: &toml::Table, prefix: &str) -> String {
    let best = known
        .keys()
        .map(|k| (levenshtein(key, k), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= key.len().max(3) / 2 + 1 => format!("; did you mean `{prefix}{k}`?"),
        _ => {
            let all: Vec<String> = known.keys().map(|k| format!("{prefix}{k}")).collect();
            format!("; valid keys here: {}", all.join(", "))
        }
    }
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Applies `a.b.c=value`: the key must exist; the value is TOML (`3`, `1e-4`, `true`, `[1, 2]`,
/// `"x"`) or, failing that, a bare string.
fn apply_override(value: &mut toml::Table, known: &toml::Table, arg: &str) -> Result<()> {
    let bad = |reason: String| ConfigError::BadOverride {
        arg: arg.into(),
        reason,
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE, e.g. optim.lr=1e-4".into()))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {}", raw.trim())) {
        Ok(mut t) => t.remove("v").expect("parsed key v"),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let mut kt = known;
    let mut vt = value;
    let mut prefix = String::new();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match kt.get(*p) {
            None => {
                return Err(bad(format!(
                    "unknown key `{prefix}{p}`{}",
                    suggest(p, kt, &prefix)
                )))
            }
            Some(toml::Value::Table(sub)) if !last => {
                kt = sub;
                let entry = vt
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                vt = entry
                    .as_table_mut()
                    .ok_or_else(|| bad(format!("`{prefix}{p}` is not a table in the file")))?;
                prefix.push_str(p);
                prefix.push('.');
            }
            Some(toml::Value::Table(_)) => {
                return Err(bad(format!(
                    "`{prefix}{p}` is a table; set one of its keys"
                )))
            }
            Some(_) if !last => return Err(bad(format!("`{prefix}{p}` is not a table"))),
            Some(default) => {
                // A float key given as an integer (`optim.lr=1`) is still a float.
                let v = match (default, parsed) {
                    (toml::Value::Float(_), toml::Value::Integer(n)) => {
                        toml::Value::Float(n as f64)
                    }
                    (_, v) => v,
                };
                vt.insert(p.to_string(), v);
                return Ok(());
            }
        }
    }
    Err(bad("empty key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_table() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("epoch", "epochs", 1),
            ("kitten", "sitting", 3),
            ("lr", "", 2),
        ] {
            assert_eq!(levenshtein(a, b), d, "{a} {b}");
        }
    }

    #[test]
    fn empty_file_is_the_paper_config() {
        let cfg = Config::from_toml_str("", "empty", &[]).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.optim.lr, 5e-6);
        assert_eq!(cfg.loss.queue_size, 8192);
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = Config::from_toml_str("[method]\nname = \"paco\"\n", "x", &[]).unwrap();
        let again = Config::from_toml_str(&cfg.to_toml(), "again", &[]).unwrap();
        assert_eq!(cfg, again);
        assert_eq!(again.method.name, MethodName::Paco);
    }

    /// The logit-adjustment prior follows the anchors' label distribution: the sampler's with
    /// the class-balanced foreground, the data set's otherwise, or what the config forces.
    #[test]
    fn prior_follows_the_anchor_labels() {
        let counts = [10usize, 60, 20, 0, 5, 3, 2];
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        let freq: Vec<f64> = counts.iter().map(|&n| n as f64 / 100.0).collect();
        let uniform6: Vec<f64> = counts
            .iter()
            .map(|&n| if n == 0 { 0.0 } else { 1.0 / 6.0 })
            .collect();

        let spmix = Config::default();
        assert_eq!(spmix.loss.prior, Prior::Anchors);
        let p = spmix
            .loss
            .prior_distribution(&spmix.method, &spmix.mix, &counts);
        assert!(close(&p, &uniform6), "{p:?}");

        let inst = Config::from_toml_str("[mix]\nforeground = \"instance\"\n", "x", &[]).unwrap();
        assert!(close(
            &inst
                .loss
                .prior_distribution(&inst.method, &inst.mix, &counts),
            &freq
        ));

        let paco = Config::from_toml_str("[method]\nname = \"paco\"\n", "x", &[]).unwrap();
        assert!(close(
            &paco
                .loss
                .prior_distribution(&paco.method, &paco.mix, &counts),
            &freq
        ));

        // w = 0.5: class weights n^(1/2).
        let half =
            Config::from_toml_str("[method]\nclass_weight_exponent = 0.5\n", "x", &[]).unwrap();
        let sq: Vec<f64> = counts.iter().map(|&n| (n as f64).sqrt()).collect();
        let total: f64 = sq.iter().sum();
        let want: Vec<f64> = sq.iter().map(|x| x / total).collect();
        assert!(close(
            &half
                .loss
                .prior_distribution(&half.method, &half.mix, &counts),
            &want
        ));

        let forced = Config::from_toml_str("[loss]\nprior = \"dataset\"\n", "x", &[]).unwrap();
        assert!(close(
            &forced
                .loss
                .prior_distribution(&forced.method, &forced.mix, &counts),
            &freq
        ));
        let flat = Config::from_toml_str("[loss]\nprior = \"uniform\"\n", "x", &[]).unwrap();
        let p = flat
            .loss
            .prior_distribution(&flat.method, &flat.mix, &counts);
        assert!(p.iter().all(|&x| (x - 1.0 / 7.0).abs() < 1e-12), "{p:?}");
    }
}
