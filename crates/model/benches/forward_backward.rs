//! Forward + backward time per image (train mode, encoder only, loss = sum(features * r)) of
//! the tiny and the full Hybrid-ViT on the CPU, against timm/PyTorch on the same model in the
//! same run (Python from `SPMIX_PYTHON`, else the project venv; skipped when absent).
//!
//! `cargo bench -p model --bench forward_backward`; `MODEL_BENCH_ITERS` sets timed steps (3).

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use model::{ModelConfig, QueryNetwork};

fn tiny() -> ModelConfig {
    ModelConfig {
        trunk_layers: [2, 1, 2],
        trunk_channels: [4, 8, 16],
        stem_width: 4,
        embed_dim: 32,
        depth: 2,
        num_heads: 4,
        mlp_ratio: 3.0,
        image_size: 40,
        num_classes: 5,
        proj_hidden: 16,
        proj_dim: 8,
    }
}

/// Median seconds per image of forward + backward over `iters` steps after one warm-up.
fn time_candle(cfg: &ModelConfig, batch: usize, iters: usize) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let net = QueryNetwork::new(cfg, &dev).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let x = Tensor::randn(0f32, 1., (batch, 3, cfg.image_size, cfg.image_size), &dev)?;
    let r = Tensor::randn(0f32, 1., (batch, cfg.embed_dim), &dev)?;
    let mut times = Vec::new();
    for it in 0..=iters {
        let t0 = Instant::now();
        let f = net.encoder().forward_t(&x, true)?;
        let grads = (f * &r)?.sum_all()?.backward()?;
        drop(grads);
        if it > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2] / batch as f64)
}

fn python() -> Option<String> {
    if let Ok(p) = std::env::var("SPMIX_PYTHON") {
        return Some(p);
    }
    let venv = "/root/.cache/spmix-py/venv/bin/python";
    std::path::Path::new(venv)
        .exists()
        .then(|| venv.to_string())
}

fn cfg_json(c: &ModelConfig) -> String {
    format!(
        "{{\"trunk_layers\": {:?}, \"trunk_channels\": {:?}, \"stem_width\": {}, \"embed_dim\": {}, \
         \"depth\": {}, \"num_heads\": {}, \"mlp_ratio\": {}, \"image_size\": {}, \"num_classes\": {}, \
         \"proj_hidden\": {}, \"proj_dim\": {}}}",
        c.trunk_layers,
        c.trunk_channels,
        c.stem_width,
        c.embed_dim,
        c.depth,
        c.num_heads,
        c.mlp_ratio,
        c.image_size,
        c.num_classes,
        c.proj_hidden,
        c.proj_dim
    )
}

fn main() -> anyhow::Result<()> {
    let iters: usize = std::env::var("MODEL_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cases = [
        ("tiny", tiny(), 8usize),
        ("full", ModelConfig::full(), 2usize),
    ];
    let mut ours = Vec::new();
    for (name, cfg, batch) in &cases {
        let s = time_candle(cfg, *batch, iters)?;
        eprintln!("candle {name}: {:.2} ms/image", s * 1e3);
        ours.push(s);
    }
    let mut theirs = vec![None; cases.len()];
    if let Some(py) = python() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_timm.py");
        let mut cmd = Command::new(&py);
        cmd.arg(script)
            .arg(threads.to_string())
            .arg(iters.to_string());
        for (name, cfg, batch) in &cases {
            cmd.arg(name).arg(batch.to_string()).arg(cfg_json(cfg));
        }
        match cmd.output() {
            Ok(o) if o.status.success() => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    let mut it = line.split_whitespace();
                    if let (Some(n), Some(v)) =
                        (it.next(), it.next().and_then(|v| v.parse::<f64>().ok()))
                    {
                        if let Some(i) = cases.iter().position(|c| c.0 == n) {
                            theirs[i] = Some(v);
                        }
                    }
                }
            }
            Ok(o) => eprintln!(
                "timm reference failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run {py}: {e}"),
        }
    } else {
        eprintln!("no Python found (set SPMIX_PYTHON): timm reference skipped");
    }
    println!("forward+backward per image, train mode, CPU, {threads} threads, median of {iters}");
    println!("| model | batch | candle ms/img | timm ms/img | ratio (timm / candle) |");
    println!("|---|---|---|---|---|");
    for (i, (name, _, batch)) in cases.iter().enumerate() {
        let (t, r) = match theirs[i] {
            Some(v) => (format!("{:.2}", v * 1e3), format!("{:.2}x", v / ours[i])),
            None => ("-".into(), "-".into()),
        };
        println!("| {name} | {batch} | {:.2} | {t} | {r} |", ours[i] * 1e3);
    }
    Ok(())
}
