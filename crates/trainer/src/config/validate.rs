//! Cross-field checks of a parsed configuration; each message names the key.

use super::{Config, MethodName};

impl Config {
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
