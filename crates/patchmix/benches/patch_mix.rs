//! Fused vs composed: `cargo bench -p patchmix --bench patch_mix` (CPU), and with
//! `--features cuda` on a GPU machine also the CUDA kernels against a device-to-device copy of
//! the same bytes and against composed candle CUDA ops. B = 64, N = 196, C = 768 (the paper's
//! token batch); saliency 64 x 1 x 224 x 224. Prints median times and ratios measured in the
//! same run. Set PATCHMIX_BENCH_ITERS to change the number of timed iterations (default 7).

use candle_core::{DType, Device, Tensor};
use patchmix::reference::{
    lesion_aware_ratio_composed, patch_mix_backward_composed, patch_mix_composed,
};
use patchmix::{lesion_aware_ratio, patch_mix, patch_mix_backward, RatioConfig};
use std::time::Instant;

const B: usize = 64;
const N: usize = 196;
const C: usize = 768;

fn iters() -> usize {
    std::env::var("PATCHMIX_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// Median wall time in seconds of `f` after one warm-up call; `sync` waits for the device.
fn time(iters: usize, sync: &dyn Fn(), mut f: impl FnMut()) -> f64 {
    f();
    sync();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            sync();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn inputs(dt: DType, dev: &Device) -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor)> {
    let fg = Tensor::randn(0f32, 1., (B, N, C), &Device::Cpu)?
        .to_dtype(dt)?
        .to_device(dev)?;
    let bg = Tensor::randn(0f32, 1., (B, N, C), &Device::Cpu)?
        .to_dtype(dt)?
        .to_device(dev)?;
    let r = Tensor::rand(0.5f32, 0.8, (B, N), &Device::Cpu)?
        .to_dtype(dt)?
        .to_device(dev)?;
    let g = Tensor::randn(0f32, 1., (B, N, C), &Device::Cpu)?
        .to_dtype(dt)?
        .to_device(dev)?;
    Ok((fg, bg, r, g))
}

fn row(name: &str, fused: f64, composed: f64) {
    println!(
        "| {name:<34} | {:>10.2} | {:>12.2} | {:>6.2}x |",
        fused * 1e3,
        composed * 1e3,
        composed / fused
    );
}

fn cpu(iters: usize) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let none = || {};
    println!(
        "CPU ({} rayon threads), {iters} timed iterations, median:",
        rayon::current_num_threads()
    );
    println!("| op (B=64, N=196, C=768)            | fused (ms) | composed (ms) | ratio |");
    println!("|------------------------------------|-----------:|-------------:|------:|");
    for dt in [DType::F32, DType::BF16] {
        let (fg, bg, r, g) = inputs(dt, &dev)?;
        let fused = time(iters, &none, || {
            let out = patch_mix(&fg, &bg, &r).unwrap();
            let grads = patch_mix_backward(&fg, &bg, &r, &g).unwrap();
            std::hint::black_box((out, grads));
        });
        let composed = time(iters, &none, || {
            let out = patch_mix_composed(&fg, &bg, &r).unwrap();
            let grads = patch_mix_backward_composed(&fg, &bg, &r, &g).unwrap();
            std::hint::black_box((out, grads));
        });
        row(&format!("patch_mix fwd+bwd {dt:?}"), fused, composed);
    }
    let sf = Tensor::randn(0f32, 1., (B, 1, 224, 224), &dev)?;
    let sb = Tensor::randn(0f32, 1., (B, 1, 224, 224), &dev)?;
    let cfg = RatioConfig::default();
    let fused = time(iters, &none, || {
        std::hint::black_box(lesion_aware_ratio(&sf, &sb, &cfg, 1).unwrap());
    });
    let composed = time(iters, &none, || {
        std::hint::black_box(lesion_aware_ratio_composed(&sf, &sb, &cfg, 1).unwrap());
    });
    row("lesion_aware_ratio 64x224x224 F32", fused, composed);
    Ok(())
}

#[cfg(feature = "cuda")]
fn cuda(iters: usize) -> candle_core::Result<()> {
    let dev = match patchmix::cuda_device(0) {
        Ok(d) => d,
        Err(e) => {
            println!("\nCUDA: skipped ({e})");
            return Ok(());
        }
    };
    let cdev = match &dev {
        Device::Cuda(c) => c.clone(),
        _ => unreachable!(),
    };
    let sync = || dev.synchronize().unwrap();
    let iters = iters * 4;
    println!("\nCUDA, {iters} timed iterations, median:");
    println!(
        "| op (B=64, N=196, C=768) | fused (us) | GB/s | % of dtod copy | composed (us) | ratio |"
    );
    println!(
        "|-------------------------|-----------:|-----:|---------------:|--------------:|------:|"
    );
    for dt in [DType::F32, DType::BF16, DType::F16] {
        let (fg, bg, r, g) = inputs(dt, &dev)?;
        let sz = dt.size_in_bytes();
        let m = B * N * C;
        // Bytes each fused kernel must move: fwd reads fg, bg, r and writes out; bwd reads fg,
        // bg, g, r and writes d_fg, d_bg, d_r.
        let fwd_bytes = (3 * m + B * N) * sz;
        let bwd_bytes = (5 * m + 2 * B * N) * sz;
        let copy_gbs = |bytes: usize| -> f64 {
            // A device-to-device copy of bytes/2 reads and writes `bytes` in all.
            let src = cdev.alloc_zeros::<u8>(bytes / 2).unwrap();
            let mut dst = cdev.alloc_zeros::<u8>(bytes / 2).unwrap();
            let t = time(iters, &sync, || cdev.memcpy_dtod(&src, &mut dst).unwrap());
            bytes as f64 / t / 1e9
        };
        let t_fwd = time(iters, &sync, || {
            std::hint::black_box(patch_mix(&fg, &bg, &r).unwrap());
        });
        let t_bwd = time(iters, &sync, || {
            std::hint::black_box(patch_mix_backward(&fg, &bg, &r, &g).unwrap());
        });
        let c_fwd = time(iters, &sync, || {
            std::hint::black_box(patch_mix_composed(&fg, &bg, &r).unwrap());
        });
        let c_bwd = time(iters, &sync, || {
            std::hint::black_box(patch_mix_backward_composed(&fg, &bg, &r, &g).unwrap());
        });
        for (name, t, c, bytes) in [
            ("fwd", t_fwd, c_fwd, fwd_bytes),
            ("bwd", t_bwd, c_bwd, bwd_bytes),
        ] {
            let gbs = bytes as f64 / t / 1e9;
            let copy = copy_gbs(bytes);
            println!(
                "| patch_mix {name} {dt:?}{:pad$} | {:>10.1} | {gbs:>4.0} | {:>13.1}% | {:>13.1} | {:>4.2}x |",
                "",
                t * 1e6,
                100.0 * gbs / copy,
                c * 1e6,
                c / t,
                pad = 11 - format!("{dt:?}").len()
            );
        }
        println!(
            "| patch_mix fwd+bwd {dt:?}{:pad$} | {:>10.1} |      |                | {:>13.1} | {:>4.2}x |",
            "",
            (t_fwd + t_bwd) * 1e6,
            (c_fwd + c_bwd) * 1e6,
            (c_fwd + c_bwd) / (t_fwd + t_bwd),
            pad = 5 - format!("{dt:?}").len().min(5)
        );
    }
    let sf = Tensor::randn(0f32, 1., (B, 1, 224, 224), &dev)?;
    let sb = Tensor::randn(0f32, 1., (B, 1, 224, 224), &dev)?;
    let cfg = RatioConfig::default();
    let t = time(iters, &sync, || {
        std::hint::black_box(lesion_aware_ratio(&sf, &sb, &cfg, 1).unwrap());
    });
    println!(
        "lesion_aware_ratio 64x224x224 F32 (CUDA): {:.1} us",
        t * 1e6
    );
    Ok(())
}

fn main() -> candle_core::Result<()> {
    // `cargo bench` passes --bench; a name filter is not supported by this simple runner.
    let iters = iters();
    cpu(iters)?;
    #[cfg(feature = "cuda")]
    cuda(iters)?;
    Ok(())
}
