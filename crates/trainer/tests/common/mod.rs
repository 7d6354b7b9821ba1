//! Helpers shared by the trainer's integration tests.

use std::path::Path;

/// A tiny run config (4-8 channel trunk, 16-dim ViT, 32 px) on a tiny synthetic set generated
/// into `data`, runs under `runs`: `method`, `epochs` epochs of batch 8.
pub fn tiny_config_text(data: &Path, runs: &Path, method: &str, epochs: usize) -> String {
    format!(
        r#"
[run]
name = "t"
output_dir = "{runs}"
epochs = {epochs}
batch_size = 8
[data]
split_dir = "{data}/split"
source = "{data}/synth"
synthetic = true
synthetic_scale = 0.004
synthetic_size = "64x48"
synthetic_min_per_class = 10
protocol = "stratified"
workers = 2
[model]
trunk_layers = [1, 1, 1]
trunk_channels = [4, 8, 8]
stem_width = 4
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0
image_size = 32
num_classes = 7
proj_hidden = 32
proj_dim = 16
[method]
name = "{method}"
momentum = 0.9
[loss]
queue_size = 64
[optim]
lr = 1e-3
warmup_epochs = 1
grad_clip = 1.0
"#,
        runs = runs.display(),
        data = data.display()
    )
}

/// Every tensor of a trainer's state (weights, key network, optimiser, queue) as its f32 bytes,
/// for bit-exact comparisons of resumed runs.
#[allow(dead_code)] // not every test binary that shares this module compares states
pub fn state_bytes(t: &trainer::train::Trainer) -> std::collections::HashMap<String, Vec<u8>> {
    t.state_tensors()
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let bytes: Vec<u8> = v
                .flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (k, bytes)
        })
        .collect()
}
