//! Edge cases without Python: no NaN/inf at extreme temperatures, a single class, anchors without
//! positives; input validation; the queue's ring-buffer order and checkpoint round trip.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use supcon::{
    ContrastMode, LabelledQueue, NoPositive, PacoConfig, PacoLoss, QueueInit, SupConLoss,
    SupconError,
};

fn unit_rows(rows: usize, dim: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..rows * dim)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    for r in v.chunks_mut(dim) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
    Tensor::from_vec(v, (rows, dim), &Device::Cpu).unwrap()
}

fn labels(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite())
}

/// Loss value and whether every gradient element is finite.
fn supcon_run(loss_fn: &SupConLoss, f: Tensor, y: Option<&Tensor>) -> (f32, bool) {
    let f = Var::from_tensor(&f).unwrap();
    let loss = loss_fn.forward(f.as_tensor(), y).unwrap();
    let g = loss.backward().unwrap();
    let grad = g.get(f.as_tensor()).unwrap();
    (loss.to_scalar::<f32>().unwrap(), all_finite(grad))
}

fn paco_run(paco: &PacoLoss, f: Tensor, y: &Tensor, z: Tensor) -> (f32, bool) {
    let f = Var::from_tensor(&f).unwrap();
    let z = Var::from_tensor(&z).unwrap();
    let loss = paco.forward(f.as_tensor(), y, z.as_tensor()).unwrap();
    let g = loss.backward().unwrap();
    let ok = all_finite(g.get(f.as_tensor()).unwrap()) && all_finite(g.get(z.as_tensor()).unwrap());
    (loss.to_scalar::<f32>().unwrap(), ok)
}

#[test]
fn supcon_is_finite_at_extreme_temperatures_single_class_and_without_positives() {
    let b = 8;
    let cases: [(&str, Vec<u32>, usize); 3] = [
        ("long tail", vec![0, 0, 0, 0, 1, 1, 2, 3], 2),
        ("single class", vec![5; 8], 2),
        ("no positives (V = 1, distinct labels)", (0..8).collect(), 1),
    ];
    for t in [0.01, 1.0] {
        for (name, y, views) in &cases {
            for mode in [ContrastMode::All, ContrastMode::One] {
                for np in [NoPositive::CountAsZero, NoPositive::Exclude] {
                    let f = unit_rows(b * views, 64, 1)
                        .reshape((b, *views, 64))
                        .unwrap();
                    let loss_fn = SupConLoss::new(t, 0.07, mode).unwrap().with_no_positive(np);
                    let (loss, grad_ok) = supcon_run(&loss_fn, f, Some(&labels(y)));
                    assert!(
                        loss.is_finite() && grad_ok,
                        "T={t} {name} {mode:?} {np:?}: {loss}"
                    );
                    if *views == 1 {
                        // Nobody has a positive: every anchor contributes 0.
                        assert_eq!(loss, 0.0, "{name}");
                    }
                }
            }
        }
    }
}

#[test]
fn supcon_without_positives_averages_as_documented() {
    // Labels [0, 0, 1]: anchors 0 and 1 have a positive (each other), anchor 2 has none.
    let f = unit_rows(3, 16, 2).reshape((3, 1, 16)).unwrap();
    let y = labels(&[0, 0, 1]);
    let counted = SupConLoss::new(0.1, 0.1, ContrastMode::All).unwrap();
    let excluded = counted.with_no_positive(NoPositive::Exclude);
    let (a, _) = supcon_run(&counted, f.clone(), Some(&y));
    let (b, _) = supcon_run(&excluded, f, Some(&y));
    // Same two non-zero terms, divided by 3 and by 2.
    assert!((a * 3.0 - b * 2.0).abs() < 1e-5 * b.abs(), "{a} {b}");
}

#[test]
fn paco_is_finite_at_extreme_temperatures_single_class_and_without_positives() {
    let (b, k, d) = (6, 10, 32);
    let dev = Device::Cpu;
    for t in [0.01, 1.0] {
        let config = PacoConfig {
            temperature: t,
            ..PacoConfig::default()
        };
        // Long tail, EMA keys and shared encoder.
        let paco = PacoLoss::from_class_counts(config, &[50, 10, 2], &dev).unwrap();
        let mut y: Vec<u32> = vec![0, 0, 1, 2, 0, 1];
        y.extend_from_within(..);
        y.extend(std::iter::repeat_n(LabelledQueue::UNLABELLED, k));
        for n in [b, 2 * b] {
            let z = Tensor::randn(0f32, 3.0, (n, 3), &dev).unwrap();
            let (loss, ok) = paco_run(&paco, unit_rows(2 * b + k, d, 3), &labels(&y), z);
            assert!(loss.is_finite() && ok, "T={t} N={n}: {loss}");
        }
        // A single class (C = 1) and a single class among several.
        for counts in [vec![10], vec![10, 0, 3]] {
            let paco = PacoLoss::from_class_counts(config, &counts, &dev).unwrap();
            let z = Tensor::randn(0f32, 3.0, (2 * b, counts.len()), &dev).unwrap();
            let (loss, ok) = paco_run(
                &paco,
                unit_rows(2 * b + k, d, 4),
                &labels(&vec![0; 2 * b + k]),
                z,
            );
            assert!(loss.is_finite() && ok, "T={t} counts {counts:?}: {loss}");
        }
        // F = [q; queue], distinct query labels, unlabelled queue: no anchor has a positive,
        // and with beta = 0 no anchor has any weight at all.
        for beta in [1.0, 0.0] {
            let paco =
                PacoLoss::from_class_counts(PacoConfig { beta, ..config }, &[5; 6], &dev).unwrap();
            let mut y: Vec<u32> = (0..b as u32).collect();
            y.extend(std::iter::repeat_n(LabelledQueue::UNLABELLED, k));
            let z = Tensor::randn(0f32, 3.0, (b, 6), &dev).unwrap();
            let (loss, ok) = paco_run(&paco, unit_rows(b + k, d, 5), &labels(&y), z);
            assert!(loss.is_finite() && ok, "T={t} beta={beta}: {loss}");
            if beta == 0.0 {
                assert_eq!(loss, 0.0);
            }
        }
    }
}

#[test]
fn paco_with_only_centre_term_is_logit_adjusted_cross_entropy() {
    // alpha = 0 and gamma = 0 drop the contrastive part: what remains is balanced-softmax CE.
    let dev = Device::Cpu;
    let counts = [40, 9, 1];
    let config = PacoConfig {
        alpha: 0.0,
        gamma: 0.0,
        ..PacoConfig::default()
    };
    let paco = PacoLoss::from_class_counts(config, &counts, &dev).unwrap();
    let z = Tensor::randn(0f32, 2.0, (4, 3), &dev).unwrap();
    let y = labels(&[0, 1, 2, 1, 0, 1, 2, 1]);
    let f = unit_rows(8, 16, 6);
    let paco_loss = paco
        .forward(&f, &y, &z)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let ce = supcon::LogitAdjustedCrossEntropy::from_class_counts(&counts, 1.0, &dev)
        .unwrap()
        .forward(&z, &y.narrow(0, 0, 4).unwrap())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((paco_loss - ce).abs() < 1e-5, "{paco_loss} vs {ce}");
}

#[test]
fn inputs_are_validated_with_named_errors() {
    let dev = Device::Cpu;
    let paco = PacoLoss::from_class_counts(PacoConfig::default(), &[3, 2], &dev).unwrap();
    let f = unit_rows(6, 8, 7);
    let z = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
    // Anchor label 2 with C = 2.
    let err = paco
        .forward(&f, &labels(&[0, 2, 0, 1, 1, 1]), &z)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SupconError::LabelOutOfRange {
                row: 1,
                label: 2,
                ..
            }
        ),
        "{err}"
    );
    // Wrong number of classes in Z.
    let err = paco
        .forward(
            &f,
            &labels(&[0; 6]),
            &Tensor::zeros((2, 3), DType::F32, &dev).unwrap(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("centre_logits"), "{err}");
    // Labels of the wrong length.
    let err = paco.forward(&f, &labels(&[0; 5]), &z).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    let err = PacoLoss::from_class_counts(
        PacoConfig {
            smooth: 1.0,
            ..PacoConfig::default()
        },
        &[1],
        &dev,
    )
    .unwrap_err();
    assert!(err.to_string().contains("smooth"), "{err}");
    let err = SupConLoss::new(0.0, 0.07, ContrastMode::All).unwrap_err();
    assert!(err.to_string().contains("temperature"), "{err}");
    let err = SupConLoss::default()
        .forward(
            &unit_rows(1, 8, 8).reshape((1, 1, 8)).unwrap(),
            Some(&labels(&[0])),
        )
        .unwrap_err();
    assert!(err.to_string().contains("features"), "{err}");
    let err = supcon::log_prior(&[0, 0]).unwrap_err();
    assert!(err.to_string().contains("class_counts"), "{err}");
}

#[test]
fn queue_starts_with_unit_rows_and_seeded_contents() {
    let dev = Device::Cpu;
    let q = LabelledQueue::new(37, 16, QueueInit::Unlabelled, 11, DType::F32, &dev).unwrap();
    let norms = q
        .keys()
        .sqr()
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    assert!(q
        .labels()
        .to_vec1::<u32>()
        .unwrap()
        .iter()
        .all(|&l| l == LabelledQueue::UNLABELLED));
    let again = LabelledQueue::new(37, 16, QueueInit::Unlabelled, 11, DType::F32, &dev).unwrap();
    let other = LabelledQueue::new(37, 16, QueueInit::Unlabelled, 12, DType::F32, &dev).unwrap();
    let same = |a: &Tensor, b: &Tensor| {
        a.eq(b)
            .unwrap()
            .min_all()
            .unwrap()
            .to_scalar::<u8>()
            .unwrap()
            == 1
    };
    assert!(same(q.keys(), again.keys()));
    assert!(!same(q.keys(), other.keys()));
    let r = LabelledQueue::new(
        200,
        4,
        QueueInit::RandomLabels { num_classes: 7 },
        1,
        DType::F32,
        &dev,
    )
    .unwrap();
    let l = r.labels().to_vec1::<u32>().unwrap();
    assert!(
        l.iter().all(|&x| x < 7) && (0..7).all(|c| l.contains(&c)),
        "{l:?}"
    );
}

#[test]
fn queue_wraps_around_when_capacity_is_not_a_multiple_of_the_batch() {
    let dev = Device::Cpu;
    // K = 7, B = 3: steps write rows 0-2, 3-5, 6+0-1, 2-4, ...
    let mut q = LabelledQueue::new(7, 2, QueueInit::Unlabelled, 0, DType::F32, &dev).unwrap();
    let mut expected_keys = q.keys().to_vec2::<f32>().unwrap();
    let mut expected_labels = vec![LabelledQueue::UNLABELLED; 7];
    let mut next = 0usize;
    for step in 0..5u32 {
        let ids: Vec<u32> = (0..3).map(|i| step * 3 + i).collect();
        let keys: Vec<f32> = ids.iter().flat_map(|&i| [i as f32, -(i as f32)]).collect();
        let keys = Tensor::from_vec(keys, (3, 2), &dev).unwrap();
        q.enqueue(&keys, &labels(&ids)).unwrap();
        for &i in &ids {
            expected_keys[next] = vec![i as f32, -(i as f32)];
            expected_labels[next] = i;
            next = (next + 1) % 7;
        }
        assert_eq!(q.ptr(), next, "step {step}");
        assert_eq!(
            q.labels().to_vec1::<u32>().unwrap(),
            expected_labels,
            "step {step}"
        );
        assert_eq!(
            q.keys().to_vec2::<f32>().unwrap(),
            expected_keys,
            "step {step}"
        );
    }
    // A batch longer than the queue keeps its last K rows in ring order.
    let ids: Vec<u32> = (100..117).collect();
    let keys = Tensor::from_vec(
        ids.iter()
            .flat_map(|&i| [i as f32, 0.0])
            .collect::<Vec<_>>(),
        (17, 2),
        &dev,
    )
    .unwrap();
    q.enqueue(&keys, &labels(&ids)).unwrap();
    for &i in &ids {
        expected_labels[next] = i;
        next = (next + 1) % 7;
    }
    assert_eq!(q.ptr(), next);
    assert_eq!(q.labels().to_vec1::<u32>().unwrap(), expected_labels);
}

#[test]
fn enqueue_detaches_keys_and_casts_labels() {
    let dev = Device::Cpu;
    let mut q = LabelledQueue::new(4, 3, QueueInit::Unlabelled, 0, DType::F32, &dev).unwrap();
    let k = Var::from_tensor(&unit_rows(2, 3, 9)).unwrap();
    let y = Tensor::new(&[2i64, -1], &dev).unwrap();
    q.enqueue(k.as_tensor(), &y).unwrap();
    // No gradient path from the queue back to the keys that were enqueued.
    let grads = q.keys().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(k.as_tensor()).is_none());
    assert_eq!(
        q.labels().to_vec1::<u32>().unwrap()[..2],
        [2, LabelledQueue::UNLABELLED]
    );
    let err = q
        .enqueue(&unit_rows(2, 4, 1), &labels(&[0, 0]))
        .unwrap_err();
    assert!(err.to_string().contains("keys"), "{err}");
}

#[test]
fn queue_checkpoint_round_trips_and_rejects_bad_maps() {
    let dev = Device::Cpu;
    let mut q = LabelledQueue::new(5, 3, QueueInit::Unlabelled, 4, DType::F32, &dev).unwrap();
    q.enqueue(&unit_rows(3, 3, 10), &labels(&[1, 2, 3]))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.safetensors");
    q.save(&path, "queue.").unwrap();
    let mut r = LabelledQueue::load(&path, "queue.", &dev).unwrap();
    assert_eq!(r.ptr(), 3);
    assert_eq!(
        r.labels().to_vec1::<u32>().unwrap(),
        q.labels().to_vec1::<u32>().unwrap()
    );
    assert_eq!(
        r.keys().to_vec2::<f32>().unwrap(),
        q.keys().to_vec2::<f32>().unwrap()
    );
    // The restored queue continues where the saved one stopped, and does not alias it.
    r.enqueue(&unit_rows(3, 3, 11), &labels(&[4, 5, 6]))
        .unwrap();
    assert_eq!(r.labels().to_vec1::<u32>().unwrap(), [6, 2, 3, 4, 5]);
    assert_eq!(r.ptr(), 1);
    assert_eq!(q.labels().to_vec1::<u32>().unwrap()[..3], [1, 2, 3]);

    let mut map = q.to_tensors("q.").unwrap();
    map.insert("q.ptr".into(), Tensor::new(&[5u32], &dev).unwrap());
    let err = LabelledQueue::from_tensors(&map, "q.", &dev).unwrap_err();
    assert!(err.to_string().contains("q.ptr"), "{err}");
    map.remove("q.labels");
    let err = LabelledQueue::from_tensors(&map, "q.", &dev).unwrap_err();
    assert!(
        err.to_string().contains("q.labels") && err.to_string().contains("missing"),
        "{err}"
    );
    let err = LabelledQueue::load(dir.path().join("absent.safetensors"), "q.", &dev).unwrap_err();
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}
