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

/// max |got - want| / max |want| (0 when both are zero).
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape mismatch");
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let (d, s) = (
        diff.to_scalar::<f32>().unwrap(),
        scale.to_scalar::<f32>().unwrap(),
    );
    if s == 0.0 {
        d
    } else {
        d / s
    }
}
