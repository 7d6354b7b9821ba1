//! Reading a timm state-dict listing fixture (`{"tensors": [{"name", "shape", "dtype"}, ...]}`,
//! written by the scripts under `crates/trainer/scripts/`), shared by the tests that compare the
//! model's names with timm's.

use std::path::Path;

use candle_core::DType;

/// `(name, shape, dtype)` of every tensor the fixture at `path` lists, in its order.
pub fn timm_tensor_list(path: &Path) -> Vec<(String, Vec<usize>, DType)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let dtype = match t["dtype"].as_str().unwrap() {
                "F32" => DType::F32,
                "I64" => DType::I64,
                other => panic!("{}: unexpected dtype {other}", path.display()),
            };
            (t["name"].as_str().unwrap().to_string(), shape, dtype)
        })
        .collect()
}
