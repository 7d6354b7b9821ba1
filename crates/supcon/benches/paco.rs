//! PaCo forward + backward at the paper's sizes on the CPU, against the torch reference in the same run.
//!
//! B = 64 (N = 128 anchors, shared encoder), K = 8192, D = 256, C = 7; f32. Gradients w.r.t. q, k
//! and the centre logits (the queue is constant). Torch runs `scripts/bench_torch.py` (the fixture
//! formulation) with as many threads as candle uses; it is skipped when no Python with torch is
//! found (env `SPMIX_PYTHON`, default `python3`; BENCHMARKS.md says how to make its venv).
//!
//! `cargo bench -p supcon --bench paco` (env `ITERS`, default 20).

use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use supcon::{LabelledQueue, PacoConfig, PacoLoss, QueueInit};

const B: usize = 64;
const K: usize = 8192;
const D: usize = 256;
const C: usize = 7;

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let threads = candle_core::utils::get_num_threads();
    let dev = Device::Cpu;
    let counts = [4700, 780, 770, 360, 230, 100, 80];
    let paco = PacoLoss::from_class_counts(PacoConfig::default(), &counts, &dev)?;
    let queue = LabelledQueue::new(
        K,
        D,
        QueueInit::RandomLabels {
            num_classes: C as u32,
        },
        0,
        DType::F32,
        &dev,
    )?;
    let unit = |t: Tensor| t.broadcast_div(&t.sqr()?.sum_keepdim(1)?.sqrt()?);
    let q = Var::from_tensor(&unit(Tensor::randn(0f32, 1.0, (B, D), &dev)?)?)?;
    let k = Var::from_tensor(&unit(Tensor::randn(0f32, 1.0, (B, D), &dev)?)?)?;
    let z = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2 * B, C), &dev)?)?;
    let y = Tensor::from_vec(
        (0..B as u32).map(|i| i % C as u32).collect::<Vec<_>>(),
        B,
        &dev,
    )?;
    let labels = Tensor::cat(&[&y, &y, queue.labels()], 0)?;

    let step = || -> Result<(), Box<dyn std::error::Error>> {
        let f = Tensor::cat(&[q.as_tensor(), k.as_tensor(), queue.keys()], 0)?;
        let loss = paco.forward(&f, &labels, z.as_tensor())?;
        let grads = loss.backward()?;
        assert!(grads.get(q.as_tensor()).is_some() && grads.get(z.as_tensor()).is_some());
        Ok(())
    };
    for _ in 0..3 {
        step()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        step()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let ours = median_ms(times);
    println!(
        "PaCo fwd+bwd B={B} (N={}) K={K} D={D} C={C}, f32, {threads} threads, {iters} iters",
        2 * B
    );
    println!("candle (supcon): median {ours:.2} ms");

    let python = std::env::var("SPMIX_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch.py");
    let args = [B, K, D, C, threads, iters].map(|v| v.to_string());
    match Command::new(&python).arg(script).args(&args).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let torch: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("median_ms="))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("unexpected output of {script}: {text}"))?;
            println!("torch (reference): median {torch:.2} ms");
            println!("ratio candle / torch: {:.2}", ours / torch);
        }
        Ok(out) => println!(
            "torch reference skipped: {python} {script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("torch reference skipped: cannot run {python}: {e}"),
    }
    Ok(())
}
