//! Samplers: the instance sampler visits every index once per epoch; class-balanced draws are
//! balanced within a statistical tolerance; (seed, epoch) fixes the order; resuming mid-epoch gives
//! the rest of the same order.

use dataset::sampler::{BatchSampler, ClassBalancedSampler, InstanceSampler, SpmixSampler};

fn long_tail_labels() -> Vec<usize> {
    // 500 / 100 / 20 / 5 images: class 3 is 100x rarer than class 0.
    let mut l = Vec::new();
    for (c, n) in [500, 100, 20, 5].into_iter().enumerate() {
        l.extend(std::iter::repeat_n(c, n));
    }
    l
}

#[test]
fn instance_sampler_visits_every_index_once_and_drops_the_last_batch() {
    let s = InstanceSampler::new(103, 10, 7).unwrap();
    assert_eq!(s.batches_per_epoch(), 10);
    for epoch in 0..3 {
        let seen: Vec<usize> = (0..10).flat_map(|st| s.batch(epoch, st)).collect();
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "epoch {epoch}: repeats within an epoch");
        assert!(seen.iter().all(|&i| i < 103));
        // The 3 left out are the tail of the epoch's permutation.
        let order = s.epoch_order(epoch);
        assert_eq!(&order[..100], &seen[..]);
    }
    assert_ne!(s.epoch_order(0), s.epoch_order(1), "epochs must reshuffle");
    assert!(InstanceSampler::new(5, 10, 0).is_err());
}

#[test]
fn same_seed_and_epoch_give_the_same_order_and_resume_continues_it() {
    let a = InstanceSampler::new(50, 8, 11).unwrap();
    let b = InstanceSampler::new(50, 8, 11).unwrap();
    let c = InstanceSampler::new(50, 8, 12).unwrap();
    let full: Vec<Vec<usize>> = (0..a.batches_per_epoch()).map(|s| a.batch(4, s)).collect();
    let resumed: Vec<Vec<usize>> = (3..b.batches_per_epoch()).map(|s| b.batch(4, s)).collect();
    assert_eq!(&full[3..], &resumed[..]);
    assert_ne!(full[0], c.batch(4, 0));

    let labels = long_tail_labels();
    let cb1 = ClassBalancedSampler::new(&labels, 1.0, 16, 20, 5).unwrap();
    let cb2 = ClassBalancedSampler::new(&labels, 1.0, 16, 20, 5).unwrap();
    let full: Vec<Vec<usize>> = (0..20).map(|s| cb1.batch(2, s)).collect();
    let resumed: Vec<Vec<usize>> = (7..20).map(|s| cb2.batch(2, s)).collect();
    assert_eq!(&full[7..], &resumed[..]);
    assert_ne!(cb1.batch(2, 0), cb1.batch(3, 0));
}

/// Draw counts per class over `batches` batches of 64.
fn class_draws(labels: &[usize], w: f64, batches: usize) -> [f64; 4] {
    let s = ClassBalancedSampler::new(labels, w, 64, batches, 99).unwrap();
    let mut counts = [0f64; 4];
    for step in 0..batches {
        for i in s.batch(0, step) {
            counts[labels[i]] += 1.0;
        }
    }
    counts
}

#[test]
fn class_balanced_draws_are_balanced_within_tolerance() {
    let labels = long_tail_labels();
    let total = 200.0 * 64.0;
    // w = 1: each class 1/4. Binomial sd = sqrt(N p (1-p)) ~ 49; allow 5 sd.
    let c = class_draws(&labels, 1.0, 200);
    let sd = (total * 0.25 * 0.75f64).sqrt();
    for (k, &n) in c.iter().enumerate() {
        assert!(
            (n - total / 4.0).abs() < 5.0 * sd,
            "class {k}: {n} draws of {total}"
        );
    }
    // w = 0: instance frequencies (500 : 100 : 20 : 5 of 625).
    let c0 = class_draws(&labels, 0.0, 200);
    for (k, (&n, m)) in c0.iter().zip([500.0, 100.0, 20.0, 5.0]).enumerate() {
        let p = m / 625.0;
        let sd = (total * p * (1.0 - p)).sqrt();
        assert!((n - total * p).abs() < 5.0 * sd + 1.0, "w=0 class {k}: {n}");
    }
    // w = 0.5: proportional to sqrt(n_c).
    let s = ClassBalancedSampler::new(&labels, 0.5, 64, 1, 0).unwrap();
    let p = s.class_probabilities();
    let z: f64 = [500f64, 100.0, 20.0, 5.0].iter().map(|n| n.sqrt()).sum();
    assert!((p[0] - 500f64.sqrt() / z).abs() < 1e-12);
}

#[test]
fn class_balanced_sampler_covers_the_rare_images() {
    // Every image of the rarest class is drawn: within a class the draw is uniform.
    let labels = long_tail_labels();
    let s = ClassBalancedSampler::new(&labels, 1.0, 64, 50, 1).unwrap();
    let mut seen = std::collections::HashSet::new();
    for st in 0..50 {
        for i in s.batch(0, st) {
            if labels[i] == 3 {
                seen.insert(i);
            }
        }
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn spmix_sampler_pairs_one_batch_from_each() {
    let labels = long_tail_labels();
    let s = SpmixSampler::new(&labels, 32, 1.0, 3).unwrap();
    assert_eq!(s.batches_per_epoch(), 625 / 32);
    let (inst, bal) = s.step(0, 5);
    assert_eq!((inst.len(), bal.len()), (32, 32));
    assert_eq!(inst, s.instance.batch(0, 5));
    assert_eq!(bal, s.balanced.batch(0, 5));
    // Class-balanced batches lean to the tail: far more rare-class images than instance batches.
    let rare = |v: &[usize]| v.iter().filter(|&&i| labels[i] >= 2).count();
    let (mut r_inst, mut r_bal) = (0, 0);
    for st in 0..s.batches_per_epoch() {
        let (i, b) = s.step(1, st);
        r_inst += rare(&i);
        r_bal += rare(&b);
    }
    assert!(r_bal > 5 * r_inst, "balanced {r_bal} vs instance {r_inst}");
}
