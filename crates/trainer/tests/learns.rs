//! Overfit checks: the demo's tiny Hybrid-ViT, trained with the trainer's own pieces (seeded
//! init, cross-entropy, gradient clipping, AdamW), must fit one fixed batch of synthetic images
//! `(B, 3, 32, 32)`. A failure here means optimisation is broken, not that the data is hard.

use candle_core::{DType, Device, Tensor};
use model::{ModelConfig, QueryNetwork};
use rand::{Rng, SeedableRng};
use trainer::schedule::{clip_grad_norm, AdamW, AdamWParams};

/// Image side: 32 px (a 2x2 token grid) keeps the test quick; the demo uses 64.
const S: usize = 32;
const C: usize = 7;

fn demo_model() -> ModelConfig {
    ModelConfig {
        arch: model::Arch::Hybrid,
        trunk_layers: vec![1, 1, 1],
        trunk_channels: vec![8, 16, 32],
        stem_width: 8,
        embed_dim: 64,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
        image_size: S,
        num_classes: C,
        proj_hidden: 128,
        proj_dim: 32,
    }
}

/// A long-tailed batch: 9 images of class 0 (majority share 9/21), 2 of each other class. Each
/// image is its own noise plus a class colour, roughly normalised (zero mean, unit scale).
fn batch(dev: &Device) -> (Tensor, Tensor) {
    let mut labels = vec![0u32; 9];
    for c in 1..C as u32 {
        labels.extend([c, c]);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut px = Vec::with_capacity(labels.len() * 3 * S * S);
    for &y in &labels {
        for ch in 0..3 {
            // Class colour: a distinct sign pattern per class over the three channels.
            let tint = if (y as usize + ch).is_multiple_of(3) {
                0.6
            } else {
                -0.3
            } * (1.0 + y as f32 / 7.0);
            for _ in 0..S * S {
                px.push(tint + rng.random::<f32>() - 0.5);
            }
        }
    }
    let n = labels.len();
    (
        Tensor::from_vec(px, (n, 3, S, S), dev).unwrap(),
        Tensor::from_vec(labels, n, dev).unwrap(),
    )
}

#[test]
fn ce_overfits_one_batch() {
    let dev = Device::Cpu;
    let net = QueryNetwork::new(&demo_model(), &dev).unwrap();
    trainer::init::seeded_init(&net, 0).unwrap();
    let vars = net.trainable_vars();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        },
    )
    .unwrap();
    let (images, labels) = batch(&dev);
    let n = labels.dims1().unwrap();
    let mut first = None;
    let mut last = (0.0, 0.0);
    for step in 0..40 {
        let f = net.encoder().forward_t(&images, true).unwrap();
        let logits = net.classify(&f).unwrap();
        let loss = supcon::cross_entropy(&logits, &labels).unwrap();
        let mut grads = loss.backward().unwrap();
        // At step 0 each bottleneck's last BatchNorm weight is 0 (timm's zero_init_last), so
        // its residual branch gets no gradient yet; from step 1 on every encoder and classifier
        // variable gets a non-zero gradient (the projector and predictor are not in the CE graph).
        if step == 1 {
            for (name, v) in &vars {
                if name.starts_with("projector.") || name.starts_with("predictor.") {
                    continue;
                }
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name} has no gradient"));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{name} has an all-zero gradient");
            }
        }
        clip_grad_norm(&mut grads, &vars, 5.0).unwrap();
        opt.step(&grads, 1e-3).unwrap();
        let l = loss.to_scalar::<f32>().unwrap() as f64;
        let preds = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let y = labels.to_vec1::<u32>().unwrap();
        let acc = preds.iter().zip(&y).filter(|(a, b)| a == b).count() as f64 / n as f64;
        first.get_or_insert(l);
        last = (l, acc);
    }
    let first = first.unwrap();
    let (loss, acc) = last;
    eprintln!("ce: loss {first:.4} -> {loss:.4}, batch accuracy {acc:.3}");
    assert!(
        loss < 0.3 * first,
        "loss {first:.4} -> {loss:.4}: the tiny model does not fit one batch"
    );
    assert!(acc >= 0.9, "batch accuracy {acc:.3} (majority share 0.43)");
}

/// The demo's config for `method`, with the tiny model and a small queue.
fn config(method: &str) -> trainer::config::Config {
    let text = format!(
        "[method]\nname = \"{method}\"\n[loss]\nqueue_size = 64\n[model]\n\
         trunk_layers = [1, 1, 1]\ntrunk_channels = [8, 16, 32]\nstem_width = 8\nembed_dim = 64\n\
         depth = 2\nnum_heads = 2\nmlp_ratio = 2.0\nimage_size = {S}\nnum_classes = {C}\n\
         proj_hidden = 128\nproj_dim = 32\n"
    );
    trainer::config::Config::from_toml_str(&text, "learns.rs", &[]).unwrap()
}

/// A SPMix-mode loader step built from [`batch`]: batch 0 (instance) is the long-tailed batch,
/// batch 1 (class-balanced) the same images in reverse order; the key view is the query view
/// mirrored; saliency is a centred disc (lesion) on every image.
fn spmix_step(dev: &Device) -> dataset::loader::LoadedStep {
    let (images, labels) = batch(dev);
    let n = labels.dims1().unwrap();
    let disc: Vec<f32> = (0..S * S)
        .map(|i| {
            let (y, x) = ((i / S) as f32 - 15.5, (i % S) as f32 - 15.5);
            if x * x + y * y < 100.0 {
                1.5
            } else {
                -0.5
            }
        })
        .collect();
    let sal = Tensor::from_vec(disc, (1, 1, S, S), dev)
        .unwrap()
        .repeat((n, 1, 1, 1))
        .unwrap();
    let views = |x: &Tensor| {
        vec![
            dataset::loader::ViewBatch {
                images: x.clone(),
                saliency: sal.clone(),
            },
            dataset::loader::ViewBatch {
                images: x.flip(&[3]).unwrap(),
                saliency: sal.clone(),
            },
        ]
    };
    let order: Vec<u32> = (0..n as u32).rev().collect();
    let idx = Tensor::from_vec(order, n, dev).unwrap();
    let images_b = images.index_select(&idx, 0).unwrap();
    let labels_b = labels.index_select(&idx, 0).unwrap();
    dataset::loader::LoadedStep {
        epoch: 0,
        step: 0,
        batches: vec![
            dataset::loader::LoadedBatch {
                indices: (0..n).collect(),
                labels: labels.clone(),
                views: views(&images),
            },
            dataset::loader::LoadedBatch {
                indices: (0..n).rev().collect(),
                labels: labels_b,
                views: views(&images_b),
            },
        ],
    }
}

/// Trains `method` (paco or spmix, EMA keys) on one fixed step for `steps` updates; returns the
/// losses.
fn contrastive_losses(method: &str, steps: usize) -> Vec<f64> {
    let dev = Device::Cpu;
    let cfg = config(method);
    let net = QueryNetwork::new(&cfg.model, &dev).unwrap();
    trainer::init::seeded_init(&net, 0).unwrap();
    let key = model::MomentumKeyNetwork::from_query(&net).unwrap();
    let mut queue = supcon::LabelledQueue::new(
        cfg.loss.queue_size,
        cfg.model.proj_dim,
        supcon::QueueInit::Unlabelled,
        1,
        DType::F32,
        &dev,
    )
    .unwrap();
    let mut counts = vec![2usize; C];
    counts[0] = 9;
    let paco = supcon::PacoLoss::from_class_counts(cfg.loss.paco(), &counts, &dev).unwrap();
    let vars = net.trainable_vars();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        },
    )
    .unwrap();
    let step = spmix_step(&dev);
    let mut losses = Vec::new();
    for s in 0..steps {
        let ctx = trainer::methods::StepContext {
            cfg: &cfg,
            device: &dev,
            query: &net,
            key: Some(&key),
            queue: Some(&queue),
            paco: Some(&paco),
            bcl: None,
            mislas: None,
            epoch: 0,
            step: s,
        };
        let out = match method {
            "paco" => trainer::methods::paco::step(&ctx, &step).unwrap(),
            _ => trainer::methods::spmix::step(&ctx, &step).unwrap(),
        };
        let mut grads = out.loss.backward().unwrap();
        clip_grad_norm(&mut grads, &vars, 5.0).unwrap();
        opt.step(&grads, 1e-3).unwrap();
        let (k, y) = out.enqueue.unwrap();
        queue.enqueue(&k, &y).unwrap();
        losses.push(out.loss.to_scalar::<f32>().unwrap() as f64);
    }
    losses
}

fn assert_decreases(method: &str, losses: &[f64]) {
    let n = losses.len();
    let head = losses[..3].iter().sum::<f64>() / 3.0;
    let tail = losses[n - 3..].iter().sum::<f64>() / 3.0;
    eprintln!("{method}: loss {head:.4} (first 3 steps) -> {tail:.4} (last 3)");
    assert!(
        tail.is_finite() && tail < 0.8 * head,
        "{method}: loss {head:.4} (first 3 steps) -> {tail:.4} (last 3): {losses:?}"
    );
}

#[test]
fn paco_loss_decreases_on_one_batch() {
    let l = contrastive_losses("paco", 25);
    assert_decreases("paco", &l);
}

#[test]
fn spmix_loss_decreases_on_one_batch() {
    let l = contrastive_losses("spmix", 25);
    assert_decreases("spmix", &l);
}
