//! Runs the encoder (Hybrid-ViT, or ResNet-50 with `arch = "resnet50"` in the `[model]` table)
//! on images and writes its tokens, features (and logits) to check weights against timm:
//!
//! ```text
//! cargo run --release -p model --example forward -- --config M.toml --weights W.safetensors \
//!     --input X.safetensors [--train] --out Y.safetensors
//! ```
//!
//! X holds `images` (B, 3, S, S) f32; Y gets `tokens` (B, N, C), `features` (B, F) (the hybrid's
//! cls feature; ResNet-50's globally pooled stage-4 map, the input of its classifier) and, when
//! the weights hold a classifier (`head.*` / ResNet-50's `fc.*`), `logits` (B, classes).
//! Encoder-only timm state dicts load (heads absent); `module.` / `base_encoder.` prefixes are
//! stripped. `--train` uses batch statistics in the BatchNorms (timm's `model.train()`; there is
//! no dropout).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use clap::Parser;
use model::{loading, ModelConfig, QueryNetwork};

#[derive(Parser)]
#[command(about = "Hybrid-ViT / ResNet-50 forward pass on a safetensors batch")]
struct Args {
    /// TOML file with a `[model]` table.
    #[arg(long)]
    config: PathBuf,
    /// timm-named safetensors weights (encoder, optionally heads).
    #[arg(long)]
    weights: PathBuf,
    /// safetensors file holding `images` (B, 3, S, S).
    #[arg(long)]
    input: PathBuf,
    /// Use batch statistics (train mode) instead of running statistics.
    #[arg(long)]
    train: bool,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = ModelConfig::from_toml_file(&args.config)?;
    let net = QueryNetwork::new(&cfg, &Device::Cpu)?;
    let report = net
        .load_encoder(&args.weights)
        .with_context(|| format!("loading weights {}", args.weights.display()))?;
    let input = loading::read_safetensors(&args.input)?;
    let Some(images) = input.get("images") else {
        bail!("{}: no tensor named `images`", args.input.display());
    };
    let images = images.to_dtype(DType::F32)?;
    let tokens = net
        .encoder()
        .embed_t(&images, args.train)
        .with_context(|| format!("images from {}", args.input.display()))?;
    let features = net.encoder().encode_t(&tokens, args.train)?;
    let mut out = HashMap::from([
        ("tokens".to_string(), tokens),
        ("features".to_string(), features.clone()),
    ]);
    let classifier_weight = format!("{}weight", cfg.arch.classifier_prefix());
    let has_classifier = report.loaded.contains(&classifier_weight);
    if has_classifier {
        out.insert("logits".to_string(), net.classify(&features)?);
    }
    // Write beside the target, then rename, so a failed run never leaves half a file.
    let tmp = args.out.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&out, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    let mut names: Vec<_> = out
        .iter()
        .map(|(k, v)| format!("{k} {:?}", v.dims()))
        .collect();
    names.sort();
    println!(
        "{} ({} mode, {} tensors loaded{}): {}",
        args.out.display(),
        if args.train { "train" } else { "eval" },
        report.loaded.len(),
        if has_classifier {
            ""
        } else {
            ", no classifier in the weights"
        },
        names.join(", ")
    );
    Ok(())
}
