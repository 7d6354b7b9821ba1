//! The law each variable is initialised from, recorded where the variable is created.
//!
//! Every layer asks its `VarBuilder` for a variable with an initialiser (`Init::Randn`,
//! `Init::Uniform`, `Init::Const`). [`recording_builder`] wraps the `VarMap` so that each request
//! also records `name -> Init`; the network keeps that table ([`InitLaws`]) so a caller that must
//! draw the initial values itself (the trainer re-draws them from a seeded generator, since
//! candle's CPU generator cannot be seeded) asks the model for a variable's law instead of
//! re-deriving it from names and shapes, which would drift silently when a layer changes.
//!
//! The laws follow timm's `vit_small_resnet50d_s16_224` as `timm.create_model` builds it:
//! trunk convs Kaiming-normal fan-out, the last BatchNorm of every bottleneck zero
//! (`zero_init_last`), the 1x1 token projection PyTorch's default conv init
//! (`U(+-1/sqrt(fan_in))` for weight and bias), ViT linears `N(0, 0.02)` with zero bias,
//! `cls_token` `N(0, 1e-6)`, `pos_embed` `N(0, 0.02)`; projector/predictor PyTorch's default
//! `Linear` (`U(+-1/sqrt(fan_in))`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

/// Variable name -> the law its initial value was drawn from.
pub type InitLaws = BTreeMap<String, Init>;

/// A `VarMap` backend that records the initialiser of every variable it creates.
struct RecordingBackend {
    varmap: VarMap,
    laws: Arc<Mutex<InitLaws>>,
}

impl SimpleBackend for RecordingBackend {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.laws
            .lock()
            .expect("init-law table poisoned")
            .insert(name.to_string(), h);
        self.varmap.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        SimpleBackend::get_unchecked(&self.varmap, name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        SimpleBackend::contains_tensor(&self.varmap, name)
    }
}

/// A f32 `VarBuilder` over `varmap` whose variable requests are recorded into the returned
/// table (complete once the network built from the builder is).
pub fn recording_builder(
    varmap: &VarMap,
    device: &Device,
) -> (VarBuilder<'static>, Arc<Mutex<InitLaws>>) {
    let laws = Arc::new(Mutex::new(InitLaws::new()));
    let backend = RecordingBackend {
        varmap: varmap.clone(),
        laws: Arc::clone(&laws),
    };
    (
        VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()),
        laws,
    )
}

/// Whether values drawn from `law` are random (not a constant).
pub fn is_random(law: &Init) -> bool {
    !matches!(law, Init::Const(_))
}
