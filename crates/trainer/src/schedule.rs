//! Learning-rate schedule (linear warm-up, then cosine) and AdamW with decoupled weight decay on
//! weights only, with state that a checkpoint can save and restore exactly.
//!
//! The schedule is per step: with `W = warmup_epochs * steps_per_epoch` and `T = epochs *
//! steps_per_epoch`, step `t` (0-based) gets `lr (t + 1) / W` while `t < W`, then
//! `min + (lr - min) (1 + cos(pi (t - W) / (T - W))) / 2`.
//!
//! ```
//! use trainer::schedule::LrSchedule;
//! let s = LrSchedule { base_lr: 1.0, min_lr: 0.0, warmup_steps: 2, total_steps: 6 };
//! assert_eq!(s.lr_at(0), 0.5);
//! assert_eq!(s.lr_at(2), 1.0);
//! assert!((s.lr_at(4) - 0.5).abs() < 1e-12);
//! ```

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};

/// Warm-up + cosine schedule over optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LrSchedule {
    /// Learning rate of 0-based step `t`.
    pub fn lr_at(&self, t: usize) -> f64 {
        if t < self.warmup_steps {
            return self.base_lr * (t + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((t - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr
            + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Whether a variable gets weight decay: matrices and conv kernels do; norms, biases (rank 1),
/// the cls token and the position embedding do not.
pub fn decays(name: &str, rank: usize) -> bool {
    rank >= 2 && !name.contains("cls_token") && !name.contains("pos_embed")
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// AdamW (PyTorch's update) over named variables. Moments are f32 tensors on the variables'
/// device; `step` counts updates for the bias correction.
pub struct AdamW {
    vars: Vec<(String, Var, bool)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    params: AdamWParams,
}

impl AdamW {
    /// Moments at zero. `vars` are (name, variable) pairs, e.g. `QueryNetwork::trainable_vars`.
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> candle_core::Result<Self> {
        let mut out = Vec::with_capacity(vars.len());
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (name, var) in vars {
            let d = decays(&name, var.rank());
            m.push(var.zeros_like()?);
            v.push(var.zeros_like()?);
            out.push((name, var, d));
        }
        Ok(Self {
            vars: out,
            m,
            v,
            step: 0,
            params,
        })
    }

    /// Updates taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Names of the variables with weight decay (sorted as given).
    pub fn decayed_names(&self) -> Vec<&str> {
        self.vars
            .iter()
            .filter(|(_, _, d)| *d)
            .map(|(n, _, _)| n.as_str())
            .collect()
    }

    /// One update at learning rate `lr` from `grads`; a variable without a gradient is left alone
    /// (its moments too), as PyTorch does.
    pub fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
    ) -> candle_core::Result<()> {
        self.step += 1;
        let p = self.params;
        let t = self.step as i32;
        let bc1 = 1.0 - p.beta1.powi(t);
        let bc2 = 1.0 - p.beta2.powi(t);
        for (i, (_, var, decay)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // A variable's gradient still carries the op graph of the step's forward pass
            // (candle detaches only intermediate gradients): keeping it inside the moments would
            // chain every step's activations to the next and grow memory without bound.
            let g = g.detach().to_dtype(DType::F32)?;
            let m = ((&self.m[i] * p.beta1)? + (&g * (1.0 - p.beta1))?)?.detach();
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?.detach();
            let theta = if *decay {
                (var.as_tensor() * (1.0 - lr * p.weight_decay))?
            } else {
                var.as_tensor().clone()
            };
            let denom = ((&v / bc2)?.sqrt()? + p.eps)?;
            let update = ((&m / bc1)? / denom)?;
            var.set(&(theta - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as `{prefix}m.<name>` and `{prefix}v.<name>` tensors, for a checkpoint.
    pub fn state_tensors(&self, prefix: &str) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{prefix}m.{name}"), self.m[i].clone());
            out.insert(format!("{prefix}v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments written by [`Self::state_tensors`] and the step count; the error lists
    /// every missing or mis-shaped tensor.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        step: u64,
    ) -> std::result::Result<(), String> {
        let mut problems = Vec::new();
        let mut new_m = Vec::new();
        let mut new_v = Vec::new();
        for (name, var, _) in &self.vars {
            for (which, out) in [("m", &mut new_m), ("v", &mut new_v)] {
                let key = format!("{prefix}{which}.{name}");
                match tensors.get(&key) {
                    None => problems.push(format!("{key} is missing")),
                    Some(t) if t.dims() != var.dims() => problems.push(format!(
                        "{key} has shape {:?}, the model needs {:?}",
                        t.dims(),
                        var.dims()
                    )),
                    Some(t) => match t
                        .to_device(var.device())
                        .and_then(|t| t.to_dtype(DType::F32))
                    {
                        Ok(t) => out.push(t),
                        Err(e) => problems.push(format!("{key}: {e}")),
                    },
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        self.m = new_m;
        self.v = new_v;
        self.step = step;
        Ok(())
    }
}

/// Scales gradients so their global l2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[(String, Var)],
    max_norm: f64,
) -> candle_core::Result<f64> {
    let mut sq = 0f64;
    for (_, v) in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for (_, v) in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_table() {
        let s = LrSchedule {
            base_lr: 2.0,
            min_lr: 0.0,
            warmup_steps: 4,
            total_steps: 12,
        };
        let expect = [
            (0, 0.5),
            (1, 1.0),
            (3, 2.0),
            (4, 2.0),
            (8, 1.0),
            (12, 0.0),
            (100, 0.0),
        ];
        for (t, lr) in expect {
            assert!(
                (s.lr_at(t) - lr).abs() < 1e-12,
                "step {t}: {} != {lr}",
                s.lr_at(t)
            );
        }
        let no_warmup = LrSchedule {
            base_lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 0,
            total_steps: 2,
        };
        assert_eq!(no_warmup.lr_at(0), 1.0);
        assert!((no_warmup.lr_at(1) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn decay_groups() {
        for (name, rank, d) in [
            ("blocks.0.attn.qkv.weight", 2, true),
            ("blocks.0.attn.qkv.bias", 1, false),
            ("blocks.0.norm1.weight", 1, false),
            ("cls_token", 3, false),
            ("pos_embed", 3, false),
            ("patch_embed.backbone.stem.0.weight", 4, true),
            ("patch_embed.backbone.bn1.weight", 1, false),
        ] {
            assert_eq!(decays(name, rank), d, "{name}");
        }
    }

    /// One AdamW step against PyTorch's formula computed by hand: p = 1, g = 0.5, lr 0.1, wd 0.1:
    /// m = 0.05, v = 0.00025, m^ = 0.5, v^ = 0.25, p = 1 * (1 - 0.01) - 0.1 * 0.5 / (0.5 + eps).
    #[test]
    fn adamw_first_step_matches_hand_computation() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::ones((1, 2), DType::F32, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::ones(2, DType::F32, &dev).unwrap()).unwrap();
        let loss = ((w.as_tensor().sum_all().unwrap() + b.as_tensor().sum_all().unwrap()).unwrap()
            * 0.5)
            .unwrap();
        let grads = loss.backward().unwrap();
        let params = AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(
            vec![("w".into(), w.clone()), ("b".into(), b.clone())],
            params,
        )
        .unwrap();
        opt.step(&grads, 0.1).unwrap();
        let wv = w
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bv = b.as_tensor().to_vec1::<f32>().unwrap();
        let step = 0.1 * 0.5 / (0.5 + 1e-8);
        assert!((wv[0] as f64 - (0.99 - step)).abs() < 1e-6, "{wv:?}");
        assert!((bv[0] as f64 - (1.0 - step)).abs() < 1e-6, "{bv:?}");
        assert_eq!(opt.decayed_names(), vec!["w"]);
    }

    /// The moments must not keep the step's graph: a gradient of `w * x` with `x` an activation
    /// carries `x`'s graph, and moments built from it would chain every step to the next.
    #[test]
    fn moments_hold_no_graph() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::ones(3, DType::F32, &dev).unwrap()).unwrap();
        let params = AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
        for _ in 0..3 {
            // x depends on w, so d(loss)/dw = 2 w x-ish tensors built from tracked activations.
            let x = w.as_tensor().sqr().unwrap();
            let loss = (w.as_tensor() * &x).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            assert!(
                grads.get(w.as_tensor()).unwrap().track_op(),
                "premise: grads carry a graph"
            );
            opt.step(&grads, 0.01).unwrap();
        }
        for (name, t) in opt.state_tensors("") {
            assert!(!t.track_op(), "{name} keeps an op graph");
        }
    }
}
