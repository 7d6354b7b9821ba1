//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn load(name: &str) -> HashMap<String, Tensor> {
    model::loading::read_safetensors(fixture(name)).expect("fixture readable")
}

/// max |got - want| / max |want| (0 when both are zero); panics on a shape mismatch.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    ops::compare::rel_err(got, want).expect("comparable tensors")
}
