//! Edge cases and invariants of the Table 1 baselines' losses without Python (BCL, MiSLAS label-aware
//! smoothing): finite losses and gradients at the extremes, reductions to plain losses, named errors.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use supcon::{
    cross_entropy, BalancedSupConLoss, BclConfig, BclLoss, LabelAwareSmoothing,
    LogitAdjustedCrossEntropy, SmoothingShape, SupconError,
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
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite())
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn bcl_is_finite_for_any_views_classes_and_temperature() {
    let dev = Device::Cpu;
    let d = 64;
    // (counts, labels, views)
    let cases: [(Vec<usize>, Vec<u32>, usize); 4] = [
        (vec![50, 10, 2], vec![0, 0, 1, 2, 0, 1], 2),
        (vec![10], vec![0, 0, 0], 2),
        (vec![50, 10, 2], vec![1], 1),
        (vec![50, 10, 2, 0], vec![0, 1, 0, 0], 3),
    ];
    for t in [0.01, 0.07, 1.0] {
        for (counts, y, v) in &cases {
            let (b, c) = (y.len(), counts.len());
            let config = BclConfig {
                temperature: t,
                ..BclConfig::default()
            };
            let bcl = BclLoss::from_class_counts(config, counts, &dev).unwrap();
            let f = Var::from_tensor(&unit_rows(b * v, d, 1).reshape((b, *v, d)).unwrap()).unwrap();
            let p = Var::from_tensor(&unit_rows(c, d, 2)).unwrap();
            let z = Var::from_tensor(&Tensor::randn(0f32, 3.0, (b, c), &dev).unwrap()).unwrap();
            let parts = bcl
                .forward(f.as_tensor(), &labels(y), p.as_tensor(), z.as_tensor())
                .unwrap();
            let loss = scalar(&parts.total);
            let g = parts.total.backward().unwrap();
            let grads_ok = [&f, &p, &z]
                .iter()
                .all(|var| all_finite(g.get(var.as_tensor()).unwrap()));
            assert!(
                loss.is_finite() && grads_ok,
                "T={t} counts={counts:?} V={v}: {loss}"
            );
        }
    }
}

#[test]
fn bcl_without_contrastive_weight_is_logit_adjusted_cross_entropy() {
    let dev = Device::Cpu;
    let counts = [4700, 780, 770, 360, 230, 100, 80];
    let config = BclConfig {
        scl_weight: 0.0,
        ..BclConfig::default()
    };
    let bcl = BclLoss::from_class_counts(config, &counts, &dev).unwrap();
    let y = labels(&[0, 3, 6, 0, 1]);
    let z = Tensor::randn(0f32, 2.0, (5, 7), &dev).unwrap();
    let parts = bcl
        .forward(
            &unit_rows(10, 16, 3).reshape((5, 2, 16)).unwrap(),
            &y,
            &unit_rows(7, 16, 4),
            &z,
        )
        .unwrap();
    let adjusted = LogitAdjustedCrossEntropy::from_class_counts(&counts, 1.0, &dev)
        .unwrap()
        .forward(&z, &y)
        .unwrap();
    assert_eq!(scalar(&parts.total), scalar(&adjusted));
    assert!(scalar(&parts.scl) > 0.0);
}

#[test]
fn balanced_contrast_only_sees_prototypes_when_alone() {
    // B = 1, V = 1: the anchor's only positive is its own prototype, the contrast set is the C
    // prototypes (each class counted once): loss = -log softmax over prototype similarities.
    let dev = Device::Cpu;
    let t = 0.5;
    let f = Tensor::new(&[[[1f32, 0.]]], &dev).unwrap();
    let p = Tensor::new(&[[1f32, 0.], [0., 1.], [-1., 0.]], &dev).unwrap();
    let loss = BalancedSupConLoss::new(t, 3)
        .unwrap()
        .forward(&f, &labels(&[0]), &p)
        .unwrap();
    let logits = [1.0 / t, 0.0, -1.0 / t];
    let log_sum = logits.iter().map(|x: &f64| x.exp()).sum::<f64>().ln();
    let expected = log_sum - logits[0];
    assert!(
        (scalar(&loss) - expected).abs() < 1e-6,
        "{} vs {expected}",
        scalar(&loss)
    );
}

#[test]
fn label_aware_smoothing_reduces_to_cross_entropy_and_handles_balanced_counts() {
    let dev = Device::Cpu;
    let z = Tensor::randn(0f32, 2.0, (6, 4), &dev).unwrap();
    let y = labels(&[0, 1, 2, 3, 0, 0]);
    let none = LabelAwareSmoothing::from_class_counts(
        &[9, 5, 2, 1],
        0.0,
        0.0,
        SmoothingShape::Concave,
        &dev,
    )
    .unwrap();
    let plain = cross_entropy(&z, &y).unwrap();
    assert!((scalar(&none.forward(&z, &y).unwrap()) - scalar(&plain)).abs() < 1e-6);
    // All classes equally frequent: the reference divides 0 by 0; here all get the head bound.
    let balanced =
        LabelAwareSmoothing::from_class_counts(&[5, 5, 5], 0.3, 0.1, SmoothingShape::Convex, &dev)
            .unwrap();
    assert_eq!(balanced.epsilons(), &[0.3, 0.3, 0.3]);
    // Every shape runs from the tail bound at the rarest class to the head bound at the largest.
    for shape in [
        SmoothingShape::Concave,
        SmoothingShape::Linear,
        SmoothingShape::Convex,
        SmoothingShape::Exp { power: 3.0 },
    ] {
        let las = LabelAwareSmoothing::from_class_counts(&[100, 0, 40, 7], 0.4, 0.1, shape, &dev)
            .unwrap();
        let eps = las.epsilons();
        assert!(
            (eps[0] - 0.4).abs() < 1e-12 && (eps[1] - 0.1).abs() < 1e-12,
            "{shape:?}: {eps:?}"
        );
        assert!(
            eps[1] <= eps[3] && eps[3] <= eps[2] && eps[2] <= eps[0],
            "{shape:?}: {eps:?}"
        );
    }
}

#[test]
fn inputs_are_validated_with_named_errors() {
    let dev = Device::Cpu;
    let config_error = |r: Result<BclLoss, SupconError>, want: &str| match r {
        Err(SupconError::Config { name, .. }) => assert_eq!(name, want),
        other => panic!("expected a config error on {want}, got {other:?}"),
    };
    let bad_temperature = BclConfig {
        temperature: 0.0,
        ..BclConfig::default()
    };
    config_error(
        BclLoss::from_class_counts(bad_temperature, &[3, 2], &dev),
        "temperature",
    );
    let bad_weight = BclConfig {
        scl_weight: f64::NAN,
        ..BclConfig::default()
    };
    config_error(
        BclLoss::from_class_counts(bad_weight, &[3, 2], &dev),
        "scl_weight",
    );
    config_error(
        BclLoss::from_class_counts(BclConfig::default(), &[], &dev),
        "num_classes",
    );

    let bcl = BclLoss::from_class_counts(BclConfig::default(), &[3, 2, 1], &dev).unwrap();
    let f = unit_rows(4, 8, 5).reshape((2, 2, 8)).unwrap();
    let p = unit_rows(3, 8, 6);
    let z = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let shape_error = |r: supcon::Result<supcon::BclParts>, want: &str| match r {
        Err(SupconError::Shape { what, .. }) => assert_eq!(what, want),
        other => panic!("expected a shape error on {want}, got {other:?}"),
    };
    shape_error(
        bcl.forward(&f, &labels(&[0, 1]), &unit_rows(2, 8, 6), &z),
        "prototypes",
    );
    shape_error(
        bcl.forward(&f, &labels(&[0, 1]), &unit_rows(3, 7, 6), &z),
        "prototypes",
    );
    shape_error(
        bcl.forward(&f.flatten(0, 1).unwrap(), &labels(&[0, 1, 2, 0]), &p, &z),
        "features",
    );
    shape_error(
        bcl.forward(
            &f,
            &labels(&[0, 1]),
            &p,
            &Tensor::zeros((3, 3), DType::F32, &dev).unwrap(),
        ),
        "logits",
    );
    match bcl.forward(&f, &labels(&[0, 3]), &p, &z) {
        Err(SupconError::LabelOutOfRange { row, label, .. }) => assert_eq!((row, label), (1, 3)),
        other => panic!("expected an out-of-range label, got {other:?}"),
    }
    match bcl.forward(&f, &labels(&[0, 1]), &p.to_dtype(DType::F64).unwrap(), &z) {
        Err(SupconError::DType { what, .. }) => assert_eq!(what, "prototypes"),
        other => panic!("expected a dtype error, got {other:?}"),
    }

    let las_error = |head: f64, tail: f64, shape: SmoothingShape, counts: &[usize], want: &str| {
        match LabelAwareSmoothing::from_class_counts(counts, head, tail, shape, &dev) {
            Err(SupconError::Config { name, .. }) => assert_eq!(name, want),
            other => panic!("expected a config error on {want}, got {other:?}"),
        }
    };
    las_error(1.5, 0.0, SmoothingShape::Concave, &[3, 1], "smooth_head");
    las_error(0.3, -0.1, SmoothingShape::Linear, &[3, 1], "smooth_tail");
    las_error(
        0.3,
        0.0,
        SmoothingShape::Exp { power: 0.0 },
        &[3, 1],
        "power",
    );
    las_error(0.3, 0.0, SmoothingShape::Concave, &[], "class_counts");
    let las =
        LabelAwareSmoothing::from_class_counts(&[3, 1], 0.3, 0.0, SmoothingShape::Concave, &dev)
            .unwrap();
    match las.forward(
        &Tensor::zeros((2, 3), DType::F32, &dev).unwrap(),
        &labels(&[0, 1]),
    ) {
        Err(SupconError::Shape { what, .. }) => assert_eq!(what, "logits"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    match las.forward(
        &Tensor::zeros((2, 2), DType::F32, &dev).unwrap(),
        &labels(&[0, 2]),
    ) {
        Err(SupconError::LabelOutOfRange { row, .. }) => assert_eq!(row, 1),
        other => panic!("expected an out-of-range label, got {other:?}"),
    }
}
