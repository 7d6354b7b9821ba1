//! Parity with the PyTorch reference formulations (float64) on the committed fixtures written by
//! `scripts/make_fixtures.py` (SupCon, PaCo, CE) and `scripts/make_baseline_fixtures.py` (BCL,
//! MiSLAS label-aware smoothing): losses and gradients in f32, relative error max|a-b| / max|b| <= 1e-5.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor, Var};
use supcon::{
    cross_entropy, BclConfig, BclLoss, ContrastMode, LabelAwareSmoothing,
    LogitAdjustedCrossEntropy, NoPositive, PacoConfig, PacoLoss, SmoothingShape, SupConLoss,
};

const TOL: f64 = 1e-5;

fn fixtures(family: &str) -> HashMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/{family}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cases(map: &HashMap<String, Tensor>) -> BTreeSet<String> {
    map.keys()
        .map(|k| k.split('.').next().unwrap().to_string())
        .collect()
}

fn get<'a>(map: &'a HashMap<String, Tensor>, case: &str, name: &str) -> &'a Tensor {
    map.get(&format!("{case}.{name}"))
        .unwrap_or_else(|| panic!("fixture tensor {case}.{name} missing"))
}

fn params(map: &HashMap<String, Tensor>, case: &str) -> Vec<f64> {
    get(map, case, "params").to_vec1::<f64>().unwrap()
}

/// max|a - b| / max|b| over all elements (b = reference, f64).
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shape mismatch");
    let a = got
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b = want
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(a.iter().all(|x| x.is_finite()), "non-finite values");
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
    let err = rel_err(got, want);
    eprintln!("{what}: relative error {err:.2e}");
    assert!(err <= TOL, "{what}: relative error {err:e} > {TOL:e}");
}

fn counts(map: &HashMap<String, Tensor>, case: &str) -> Vec<usize> {
    get(map, case, "counts")
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|c| c as usize)
        .collect()
}

#[test]
fn supcon_matches_supcontrast() {
    let map = fixtures("supcon");
    let names = cases(&map);
    assert_eq!(names.len(), 10, "fixture cases: {names:?}");
    for case in &names {
        let p = params(&map, case);
        let mode = if p[2] == 1.0 {
            ContrastMode::One
        } else {
            ContrastMode::All
        };
        let no_positive = if p[3] == 1.0 {
            NoPositive::Exclude
        } else {
            NoPositive::CountAsZero
        };
        let loss_fn = SupConLoss::new(p[0], p[1], mode)
            .unwrap()
            .with_no_positive(no_positive);
        let features = Var::from_tensor(get(&map, case, "features")).unwrap();
        let labels = map.get(&format!("{case}.labels"));
        let loss = loss_fn.forward(features.as_tensor(), labels).unwrap();
        assert_eq!(loss.dtype(), DType::F32);
        check(
            &format!("supcon {case} loss"),
            &loss.reshape(1).unwrap(),
            get(&map, case, "loss"),
        );
        let grads = loss.backward().unwrap();
        let grad = grads
            .get(features.as_tensor())
            .expect("gradient reaches the features");
        check(
            &format!("supcon {case} grad"),
            grad,
            get(&map, case, "grad_features"),
        );
    }
}

#[test]
fn paco_matches_gpaco() {
    let map = fixtures("paco");
    let names = cases(&map);
    assert_eq!(names.len(), 12, "fixture cases: {names:?}");
    for case in &names {
        let p = params(&map, case);
        let config = PacoConfig {
            alpha: p[0],
            beta: p[1],
            gamma: p[2],
            temperature: p[3],
            smooth: p[4],
        };
        let paco = PacoLoss::from_class_counts(config, &counts(&map, case), &Device::Cpu).unwrap();
        let features = Var::from_tensor(get(&map, case, "features")).unwrap();
        let logits = Var::from_tensor(get(&map, case, "logits")).unwrap();
        let labels = get(&map, case, "labels");
        let loss = paco
            .forward(features.as_tensor(), labels, logits.as_tensor())
            .unwrap();
        check(
            &format!("paco {case} loss"),
            &loss.reshape(1).unwrap(),
            get(&map, case, "loss"),
        );
        let grads = loss.backward().unwrap();
        let gf = grads
            .get(features.as_tensor())
            .expect("gradient reaches the features");
        let gz = grads
            .get(logits.as_tensor())
            .expect("gradient reaches the logits");
        check(
            &format!("paco {case} grad features"),
            gf,
            get(&map, case, "grad_features"),
        );
        check(
            &format!("paco {case} grad logits"),
            gz,
            get(&map, case, "grad_logits"),
        );
    }
}

#[test]
fn cross_entropy_matches_torch() {
    let map = fixtures("ce");
    let names = cases(&map);
    assert_eq!(names.len(), 4, "fixture cases: {names:?}");
    for case in &names {
        let tau = params(&map, case)[0];
        let logits = Var::from_tensor(get(&map, case, "logits")).unwrap();
        let labels = get(&map, case, "labels");
        let loss = if tau == 0.0 {
            cross_entropy(logits.as_tensor(), labels).unwrap()
        } else {
            LogitAdjustedCrossEntropy::from_class_counts(&counts(&map, case), tau, &Device::Cpu)
                .unwrap()
                .forward(logits.as_tensor(), labels)
                .unwrap()
        };
        check(
            &format!("ce {case} loss"),
            &loss.reshape(1).unwrap(),
            get(&map, case, "loss"),
        );
        let grads = loss.backward().unwrap();
        let gz = grads
            .get(logits.as_tensor())
            .expect("gradient reaches the logits");
        check(
            &format!("ce {case} grad"),
            gz,
            get(&map, case, "grad_logits"),
        );
    }
}

#[test]
fn zero_tau_adjustment_equals_plain_cross_entropy() {
    let map = fixtures("ce");
    let logits = get(&map, "plain", "logits");
    let labels = get(&map, "plain", "labels");
    let plain = cross_entropy(logits, labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let adjusted =
        LogitAdjustedCrossEntropy::from_class_counts(&counts(&map, "plain"), 0.0, &Device::Cpu)
            .unwrap()
            .forward(logits, labels)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
    assert_eq!(plain, adjusted);
}

#[test]
fn bcl_matches_authors_code() {
    let map = fixtures("bcl");
    let names = cases(&map);
    assert_eq!(names.len(), 8, "fixture cases: {names:?}");
    for case in &names {
        let p = params(&map, case);
        let config = BclConfig {
            ce_weight: p[0],
            scl_weight: p[1],
            temperature: p[2],
            tau: p[3],
        };
        let bcl = BclLoss::from_class_counts(config, &counts(&map, case), &Device::Cpu).unwrap();
        let features = Var::from_tensor(get(&map, case, "features")).unwrap();
        let prototypes = Var::from_tensor(get(&map, case, "prototypes")).unwrap();
        let logits = Var::from_tensor(get(&map, case, "logits")).unwrap();
        let parts = bcl
            .forward(
                features.as_tensor(),
                get(&map, case, "labels"),
                prototypes.as_tensor(),
                logits.as_tensor(),
            )
            .unwrap();
        assert_eq!(parts.total.dtype(), DType::F32);
        for (what, got) in [
            ("loss", &parts.total),
            ("ce", &parts.ce),
            ("scl", &parts.scl),
        ] {
            check(
                &format!("bcl {case} {what}"),
                &got.reshape(1).unwrap(),
                get(&map, case, what),
            );
        }
        let grads = parts.total.backward().unwrap();
        for (what, var) in [
            ("features", &features),
            ("prototypes", &prototypes),
            ("logits", &logits),
        ] {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("gradient reaches the {what}"));
            check(
                &format!("bcl {case} grad {what}"),
                grad,
                get(&map, case, &format!("grad_{what}")),
            );
        }
    }
}

#[test]
fn label_aware_smoothing_matches_mislas() {
    let map = fixtures("label_aware_smoothing");
    let names = cases(&map);
    assert_eq!(names.len(), 7, "fixture cases: {names:?}");
    for case in &names {
        let p = params(&map, case);
        let shape = match p[2] as u32 {
            0 => SmoothingShape::Concave,
            1 => SmoothingShape::Linear,
            2 => SmoothingShape::Convex,
            3 => SmoothingShape::Exp { power: p[3] },
            other => panic!("{case}: unknown shape id {other}"),
        };
        let las = LabelAwareSmoothing::from_class_counts(
            &counts(&map, case),
            p[0],
            p[1],
            shape,
            &Device::Cpu,
        )
        .unwrap();
        let epsilons = Tensor::new(las.epsilons(), &Device::Cpu).unwrap();
        check(
            &format!("las {case} epsilons"),
            &epsilons,
            get(&map, case, "epsilons"),
        );
        let logits = Var::from_tensor(get(&map, case, "logits")).unwrap();
        let loss = las
            .forward(logits.as_tensor(), get(&map, case, "labels"))
            .unwrap();
        check(
            &format!("las {case} loss"),
            &loss.reshape(1).unwrap(),
            get(&map, case, "loss"),
        );
        let grads = loss.backward().unwrap();
        let gz = grads
            .get(logits.as_tensor())
            .expect("gradient reaches the logits");
        check(
            &format!("las {case} grad logits"),
            gz,
            get(&map, case, "grad_logits"),
        );
    }
}
