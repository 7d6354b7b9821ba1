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

/// Runs `net` on the fixture `io`'s `images` in `train` or eval mode through the token seam and
/// compares tokens, features, logits, projector and predictor outputs with the fixture's
/// `{mode}_{name}` tensors (plus the direct `forward_t` features when `direct`), each within `tol`.
pub fn check_outputs_against_fixture(
    net: &model::QueryNetwork,
    io: &HashMap<String, Tensor>,
    train: bool,
    direct: bool,
    tol: f32,
) {
    use candle_core::ModuleT;
    let mode = if train { "train" } else { "eval" };
    let images = &io["images"];
    let tokens = net.encoder().embed_t(images, train).unwrap();
    let features = net.encoder().encode_t(&tokens, train).unwrap();
    let logits = net.classify(&features).unwrap();
    let proj = net.projector().forward_t(&features, train).unwrap();
    let pred = net.predictor().forward_t(&proj, train).unwrap();
    let mut outputs = vec![
        ("tokens", tokens),
        ("features", features),
        ("logits", logits),
        ("proj", proj),
        ("pred", pred),
    ];
    if direct {
        outputs.push(("features", net.encoder().forward_t(images, train).unwrap()));
    }
    for (name, got) in &outputs {
        let want = &io[&format!("{mode}_{name}")];
        let e = rel_err(got, want);
        eprintln!("{mode} {name}: relative error {e:.2e}");
        assert!(e <= tol, "{mode} {name}: relative error {e:e} > {tol:e}");
    }
}
