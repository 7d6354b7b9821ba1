//! Forward + backward time per image (train mode, encoder only, loss = sum(features * r)) of
//! the tiny and the full Hybrid-ViT on the CPU, against timm/PyTorch on the same model in the
//! same run (Python from `SPMIX_PYTHON`, else the project venv; skipped when absent).
//!
//! `cargo bench -p model --bench forward_backward`; `MODEL_BENCH_ITERS` sets timed steps (3),
//! `MODEL_BENCH_ROUNDS` the alternating candle/timm rounds (3).

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use model::{ModelConfig, QueryNetwork};

fn tiny() -> ModelConfig {
    ModelConfig {
        arch: model::Arch::Hybrid,
        trunk_layers: vec![2, 1, 2],
        trunk_channels: vec![4, 8, 16],
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

/// The reference Python (`SPMIX_PYTHON`, else `python3`; BENCHMARKS.md says how to make its venv).
fn python() -> String {
    std::env::var("SPMIX_PYTHON").unwrap_or_else(|_| "python3".into())
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

/// timm's seconds per image for each case, or None where Python or timm is missing.
fn time_timm(
    cases: &[(&str, ModelConfig, usize)],
    iters: usize,
    threads: usize,
) -> Vec<Option<f64>> {
    let mut theirs = vec![None; cases.len()];
    let py = python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_timm.py");
    let mut cmd = Command::new(&py);
    cmd.arg(script)
        .arg(threads.to_string())
        .arg(iters.to_string());
    for (name, cfg, batch) in cases {
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
    theirs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (iters, rounds) = (
        env("MODEL_BENCH_ITERS", 3),
        env("MODEL_BENCH_ROUNDS", 3).max(1),
    );
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cases = [
        ("tiny", tiny(), 8usize),
        ("full", ModelConfig::full(), 2usize),
    ];
    // Rounds alternate candle and timm so that a slow spell of the machine hits both sides;
    // the ratio reported is the median of the per-round ratios.
    let mut ours = vec![Vec::new(); cases.len()];
    let mut theirs = vec![Vec::new(); cases.len()];
    for round in 1..=rounds {
        for (i, (name, cfg, batch)) in cases.iter().enumerate() {
            let s = time_candle(cfg, *batch, iters)?;
            eprintln!("round {round}: candle {name}: {:.2} ms/image", s * 1e3);
            ours[i].push(s);
        }
        for (i, t) in time_timm(&cases, iters, threads).into_iter().enumerate() {
            if let Some(t) = t {
                eprintln!(
                    "round {round}: timm {}: {:.2} ms/image",
                    cases[i].0,
                    t * 1e3
                );
                theirs[i].push(t);
            }
        }
    }
    println!(
        "forward+backward per image, train mode, CPU, {threads} threads, median of {iters} steps, {rounds} alternating rounds"
    );
    println!("| model | batch | candle ms/img | timm ms/img | ratio (timm / candle), per round | median ratio |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, _, batch)) in cases.iter().enumerate() {
        let c = median(ours[i].clone());
        if theirs[i].len() == ours[i].len() {
            let ratios: Vec<f64> = theirs[i].iter().zip(&ours[i]).map(|(t, o)| t / o).collect();
            let per_round = ratios
                .iter()
                .map(|r| format!("{r:.2}x"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {name} | {batch} | {:.2} | {:.2} | {per_round} | {:.2}x |",
                c * 1e3,
                median(theirs[i].clone()) * 1e3,
                median(ratios)
            );
        } else {
            println!("| {name} | {batch} | {:.2} | - | - | - |", c * 1e3);
        }
    }
    Ok(())
}
