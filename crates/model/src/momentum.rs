//! Momentum key network: a copy of the encoder and projector whose weights follow the query
//! network by EMA, `theta_k <- m theta_k + (1 - m) theta_q`, and never receive gradients.
//!
//! Shapes: images `(B, 3, S, S)` -> tokens `(B, N, C)` -> features `(B, F)` -> keys
//! `(B, proj_dim)` (not normalised). Its variables live in their own [`VarMap`] under the same
//! names as the query network's encoder and projector; BatchNorm running statistics are the key
//! network's own (updated by its train-mode forwards, not averaged), as in MoCo.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, ModuleT, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::encoder::Encoder;
use crate::error::{ModelError, Result};
use crate::heads::MlpHead;
use crate::layers::is_running_stat;
use crate::loading::{self, LoadOptions, LoadReport};
use crate::network::{named_trainable, tensor_map, QueryNetwork};

/// Encoder + projector following a [`QueryNetwork`] by EMA; outputs are detached.
pub struct MomentumKeyNetwork {
    varmap: VarMap,
    encoder: Encoder,
    projector: MlpHead,
}

impl MomentumKeyNetwork {
    /// A copy of `query`'s encoder and projector (weights and running statistics).
    pub fn from_query(query: &QueryNetwork) -> Result<Self> {
        let cfg = query.config();
        let device = query.encoder().device().clone();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let encoder = Encoder::new(cfg, vb.clone())?;
        let projector = MlpHead::projector(
            cfg.feature_dim(),
            cfg.proj_hidden,
            cfg.proj_dim,
            vb.pp("projector"),
        )?;
        let key = Self {
            varmap,
            encoder,
            projector,
        };
        let src: BTreeMap<String, Tensor> = query
            .tensors()?
            .into_iter()
            .filter(|(n, _)| {
                !n.starts_with("predictor.") && !n.starts_with(cfg.arch.classifier_prefix())
            })
            .collect();
        loading::load_tensors(&key.varmap, &src, &LoadOptions::default(), "query network")?;
        Ok(key)
    }

    /// EMA step on every trainable variable: `k <- m k + (1 - m) q`, `m` in [0, 1].
    /// Running statistics are left alone.
    pub fn ema_update(&self, query: &QueryNetwork, m: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&m) {
            return Err(ModelError::InvalidConfig(format!(
                "EMA momentum {m} not in [0, 1]"
            )));
        }
        let q = query.varmap().data().lock().expect("VarMap lock poisoned");
        for (name, k) in named_trainable(&self.varmap) {
            let qv = q.get(&name).ok_or_else(|| ModelError::WeightsMismatch {
                origin: "query network".into(),
                report: format!("  variable {name} of the key network is missing"),
            })?;
            let new = ((k.as_detached_tensor() * m)? + (qv.as_detached_tensor() * (1.0 - m))?)?;
            k.set(&new)?;
        }
        Ok(())
    }

    /// The key encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Detached tokens `(B, N, C)` of images `(B, 3, S, S)`.
    pub fn embed_t(&self, images: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.encoder.embed_t(images, train)?.detach())
    }

    /// Detached keys `(B, proj_dim)` = projector(encode(tokens)); `train` selects batch statistics
    /// in the BatchNorms after the tokens (ResNet-50's stage 4, the projector's).
    pub fn keys_from_tokens_t(&self, tokens: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let f = self.encoder.encode_t(&tokens.detach(), train)?;
        Ok(self.projector.forward_t(&f, train)?.detach())
    }

    /// Detached keys `(B, proj_dim)` of images `(B, 3, S, S)`.
    pub fn keys_t(&self, images: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let f = self.encoder.forward_t(images, train)?;
        Ok(self.projector.forward_t(&f, train)?.detach())
    }

    /// A copy of every variable (running statistics included), for checkpoints.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        Ok(tensor_map(&self.varmap)?)
    }

    /// Restores a map written by [`Self::tensors`]; the error lists missing, unexpected and
    /// mis-shaped tensors.
    pub fn load_tensors(
        &self,
        tensors: HashMap<String, Tensor>,
        origin: &str,
    ) -> Result<LoadReport> {
        let t = loading::normalise_tensors(tensors, origin)?;
        loading::load_tensors(&self.varmap, &t, &LoadOptions::default(), origin)
    }

    /// Names of the variables that EMA updates (running statistics excluded), sorted.
    pub fn trainable_names(&self) -> Vec<String> {
        named_trainable(&self.varmap)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// Names of the running statistics.
    pub fn running_stat_names(&self) -> Vec<String> {
        let data = self.varmap.data().lock().expect("VarMap lock poisoned");
        let mut v: Vec<String> = data
            .keys()
            .filter(|n| is_running_stat(n))
            .cloned()
            .collect();
        v.sort();
        v
    }
}
