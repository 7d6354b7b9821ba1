//! Where the CPU forward + backward time of the full Hybrid-ViT goes (batch 2, train mode):
//! trunk (+ 1x1 projection) vs transformer, forward vs backward, and each k>1 conv shape of the
//! trunk through candle's `conv2d` vs im2col + gemm ([`ops::im2col`]).
//!
//! ```text
//! cargo run --release -p model --example profile_split [model|conv|all]   # ITERS=3 timed steps
//! ```
//! Times are medians in ms per batch; "bwd" is fwd+bwd minus fwd.
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use model::{ModelConfig, QueryNetwork};

fn med(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2] * 1e3
}

fn time<F: FnMut() -> candle_core::Result<()>>(iters: usize, mut f: F) -> candle_core::Result<f64> {
    let mut ts = Vec::new();
    for i in 0..=iters {
        let t = Instant::now();
        f()?;
        if i > 0 {
            ts.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(med(ts))
}

fn main() -> anyhow::Result<()> {
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let dev = Device::Cpu;
    let b = 2;
    if what == "all" || what == "model" {
        let cfg = ModelConfig::full();
        let net = QueryNetwork::new(&cfg, &dev)?;
        let enc = net.encoder();
        let x = Tensor::randn(0f32, 1., (b, 3, 224, 224), &dev)?;
        let n = cfg.num_patches();
        let rt = Tensor::randn(0f32, 1., (b, n, cfg.token_dim()), &dev)?;
        let r = Tensor::randn(0f32, 1., (b, cfg.feature_dim()), &dev)?;
        let tf = time(iters, || enc.embed_t(&x, true).map(drop))?;
        let tfb = time(iters, || {
            let t = enc.embed_t(&x, true)?;
            (t * &rt)?.sum_all()?.backward().map(drop)
        })?;
        let tok = Var::from_tensor(&Tensor::randn(0f32, 1., (b, n, cfg.token_dim()), &dev)?)?;
        let vf = time(iters, || enc.encode_t(tok.as_tensor(), true).map(drop))?;
        let vfb = time(iters, || {
            let f = enc.encode_t(tok.as_tensor(), true)?;
            (f * &r)?.sum_all()?.backward().map(drop)
        })?;
        let all = time(iters, || {
            let f = enc.forward_t(&x, true)?;
            (f * &r)?.sum_all()?.backward().map(drop)
        })?;
        println!("batch {b}, ms per batch (median of {iters})");
        println!(
            "trunk+proj  fwd {tf:9.1}  fwd+bwd {tfb:9.1}  bwd {:9.1}",
            tfb - tf
        );
        println!(
            "transformer fwd {vf:9.1}  fwd+bwd {vfb:9.1}  bwd {:9.1}",
            vfb - vf
        );
        println!("full        fwd+bwd {all:9.1}");
    }
    if what == "trunk" || what == "transformer" {
        // A bare loop for `perf record`: ITERS steps of one part's fwd+bwd.
        let cfg = ModelConfig::full();
        let net = QueryNetwork::new(&cfg, &dev)?;
        let enc = net.encoder();
        let x = Tensor::randn(0f32, 1., (b, 3, 224, 224), &dev)?;
        let rt = Tensor::randn(0f32, 1., (b, cfg.num_patches(), cfg.token_dim()), &dev)?;
        let r = Tensor::randn(0f32, 1., (b, cfg.feature_dim()), &dev)?;
        let tok = Var::from_tensor(&rt)?;
        let t = time(iters, || {
            if what == "trunk" {
                (enc.embed_t(&x, true)? * &rt)?
                    .sum_all()?
                    .backward()
                    .map(drop)
            } else {
                (enc.encode_t(tok.as_tensor(), true)? * &r)?
                    .sum_all()?
                    .backward()
                    .map(drop)
            }
        })?;
        println!("{what} fwd+bwd {t:9.1} ms per batch of {b}");
    }
    if what == "all" || what == "conv" {
        // (cin, cout, h, k, stride, pad, count in the full trunk)
        let shapes = [
            (3, 32, 224, 3, 2, 1, 1),
            (32, 32, 112, 3, 1, 1, 1),
            (32, 64, 112, 3, 1, 1, 1),
            (64, 64, 56, 3, 1, 1, 3),
            (128, 128, 56, 3, 2, 1, 1),
            (128, 128, 28, 3, 1, 1, 3),
            (256, 256, 28, 3, 2, 1, 1),
            (256, 256, 14, 3, 1, 1, 5),
        ];
        println!("conv (B={b}) cin cout h k s: candle fwd / fwd+bwd | im2col fwd / fwd+bwd  (ms)");
        let (mut tc, mut ti) = (0.0, 0.0);
        for (cin, cout, h, k, s, p, cnt) in shapes {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (b, cin, h, h), &dev)?)?;
            let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (cout, cin, k, k), &dev)?)?;
            let cf = time(iters, || x.conv2d(&w, p, s, 1, 1).map(drop))?;
            let cfb = time(iters, || {
                x.conv2d(&w, p, s, 1, 1)?.sum_all()?.backward().map(drop)
            })?;
            let f = |x: &Tensor, w: &Tensor| ops::im2col::conv2d_im2col(x, w, s, p);
            let imf = time(iters, || f(&x, &w).map(drop))?;
            let imfb = time(iters, || f(&x, &w)?.sum_all()?.backward().map(drop))?;
            tc += cfb * cnt as f64;
            ti += imfb * cnt as f64;
            println!(
                "{cin:4} {cout:4} {h:4} {k} {s}: {cf:8.1} / {cfb:8.1} (bwd {:8.1}) | {imf:8.1} / {imfb:8.1} (bwd {:8.1})  x{cnt}",
                cfb - cf,
                imfb - imf
            );
        }
        println!("all k>1 convs of the trunk fwd+bwd: candle {tc:.1} ms, im2col {ti:.1} ms");
    }
    Ok(())
}
