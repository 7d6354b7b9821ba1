//! Momentum key network: EMA arithmetic, no gradients, checkpoint round trip, BN modes.

mod common;

use candle_core::{Device, ModuleT, Tensor};
use common::{fixture, rel_err};
use model::{ModelConfig, MomentumKeyNetwork, QueryNetwork};

fn tiny() -> QueryNetwork {
    let cfg = ModelConfig::from_toml_file(fixture("tiny.toml")).unwrap();
    QueryNetwork::new(&cfg, &Device::Cpu).unwrap()
}

#[test]
fn starts_as_a_copy_and_follows_by_ema() {
    let q = tiny();
    let k = MomentumKeyNetwork::from_query(&q).unwrap();
    let names = k.trainable_names();
    assert!(names.iter().any(|n| n.starts_with("projector.")));
    assert!(names
        .iter()
        .all(|n| !n.starts_with("predictor.") && !n.starts_with("head.")));
    let (qt, kt) = (q.tensors().unwrap(), k.tensors().unwrap());
    for n in &names {
        assert_eq!(rel_err(&kt[n], &qt[n]), 0.0, "{n} not copied");
    }
    // Move the query weights, then one EMA step with m = 0.9.
    for (name, var) in q.trainable_vars() {
        let t = var.as_tensor();
        var.set(&(t + Tensor::ones_like(t).unwrap()).unwrap())
            .unwrap();
        let _ = name;
    }
    k.ema_update(&q, 0.9).unwrap();
    let kt2 = k.tensors().unwrap();
    for n in &names {
        // k = 0.9 k0 + 0.1 (k0 + 1) = k0 + 0.1
        let want = (&kt[n] + 0.1).unwrap();
        let e = (&kt2[n] - &want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(e.to_scalar::<f32>().unwrap() < 1e-6, "{n}: EMA off");
    }
    // Running statistics are the key network's own, not averaged.
    for n in k.running_stat_names() {
        assert_eq!(rel_err(&kt2[&n], &kt[&n]), 0.0, "{n} changed by EMA");
    }
    assert!(k.ema_update(&q, 1.5).is_err());
}

#[test]
fn keys_carry_no_gradient_and_train_mode_updates_running_stats() {
    let q = tiny();
    let k = MomentumKeyNetwork::from_query(&q).unwrap();
    let images = Tensor::randn(0f32, 1., (2, 3, 40, 40), &Device::Cpu).unwrap();
    let before = k.tensors().unwrap();
    let keys_eval = k.keys_t(&images, false).unwrap();
    assert_eq!(keys_eval.dims(), &[2, 8]);
    let after_eval = k.tensors().unwrap();
    for n in k.running_stat_names() {
        assert_eq!(
            rel_err(&after_eval[&n], &before[&n]),
            0.0,
            "eval changed {n}"
        );
    }
    let keys = k.keys_t(&images, true).unwrap();
    let after_train = k.tensors().unwrap();
    let changed = k
        .running_stat_names()
        .iter()
        .filter(|n| rel_err(&after_train[*n], &before[*n]) > 0.0)
        .count();
    assert_eq!(
        changed,
        k.running_stat_names().len(),
        "train mode must update every running stat"
    );
    // A loss through query features and keys: only query variables get gradients.
    let f = q.encoder().forward_t(&images, true).unwrap();
    let p = q.projector().forward_t(&f, true).unwrap();
    let loss = (p * keys).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let kvars = k.tensors().unwrap();
    for (name, t) in &kvars {
        assert!(grads.get(t).is_none(), "key variable {name} got a gradient");
    }
    assert!(grads.get(q.trainable_vars()[0].1.as_tensor()).is_some());
}

#[test]
fn tensors_round_trip_through_a_checkpoint_map() {
    let q = tiny();
    let k = MomentumKeyNetwork::from_query(&q).unwrap();
    let images = Tensor::randn(0f32, 1., (2, 3, 40, 40), &Device::Cpu).unwrap();
    k.keys_t(&images, true).unwrap(); // running stats now differ from the query's
    let saved = k.tensors().unwrap();
    let k2 = MomentumKeyNetwork::from_query(&q).unwrap();
    k2.load_tensors(saved.clone(), "checkpoint").unwrap();
    let a = k.keys_t(&images, false).unwrap();
    let b = k2.keys_t(&images, false).unwrap();
    assert_eq!(rel_err(&a, &b), 0.0);
    let mut broken = saved;
    broken.remove("norm.weight");
    let msg = k2
        .load_tensors(broken, "ckpt.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("norm.weight") && msg.contains("ckpt.safetensors"),
        "{msg}"
    );
}
