//! Metrics against hand-computed values (table-driven). Conventions under test: precision of a class
//! never predicted = 0, recall of a class without support = 0, F1 = 2TP/(2TP+FP+FN) or 0, macro F1
//! over classes present in labels OR predictions, balanced accuracy over classes with support, group
//! accuracy over the samples of the group.

use dataset::Group::{self, Few, Many, Medium};
use trainer::metrics::{argmax_rows, evaluate, summary_table, EvalMetrics, GroupSupport};

struct Case {
    name: &'static str,
    groups: &'static [Group],
    labels: &'static [usize],
    predictions: &'static [usize],
    confusion: &'static [&'static [usize]],
    /// (precision, recall, f1, support) per class
    per_class: &'static [(f64, f64, f64, usize)],
    total: f64,
    /// (many, medium, few)
    group_acc: (f64, f64, f64),
    group_support: (usize, usize, usize),
    macro_f1: f64,
    balanced: f64,
}

const CASES: &[Case] = &[
    Case {
        // C is never predicted: its precision is 0 (not NaN) and its F1 0, and it still counts in
        // macro F1 because it has support.
        name: "class never predicted",
        groups: &[Many, Medium, Few],
        labels: &[0, 0, 0, 1, 1, 2],
        predictions: &[0, 0, 1, 1, 1, 1],
        confusion: &[&[2, 1, 0], &[0, 2, 0], &[0, 1, 0]],
        per_class: &[
            (1.0, 2.0 / 3.0, 0.8, 3),
            (0.5, 1.0, 2.0 / 3.0, 2),
            (0.0, 0.0, 0.0, 1),
        ],
        total: 4.0 / 6.0,
        group_acc: (2.0 / 3.0, 1.0, 0.0),
        group_support: (3, 2, 1),
        macro_f1: (0.8 + 2.0 / 3.0 + 0.0) / 3.0,
        balanced: (2.0 / 3.0 + 1.0 + 0.0) / 3.0,
    },
    Case {
        // C has no support but is predicted once: recall 0, F1 0, counted in macro F1 (sklearn
        // averages over labels present in y_true or y_pred) but not in balanced accuracy. The Few
        // group has no samples: accuracy 0 with support 0.
        name: "class with no support, predicted",
        groups: &[Many, Medium, Few],
        labels: &[0, 0, 1, 1],
        predictions: &[0, 2, 1, 1],
        confusion: &[&[1, 0, 1], &[0, 2, 0], &[0, 0, 0]],
        per_class: &[
            (1.0, 0.5, 2.0 / 3.0, 2),
            (1.0, 1.0, 1.0, 2),
            (0.0, 0.0, 0.0, 0),
        ],
        total: 0.75,
        group_acc: (0.5, 1.0, 0.0),
        group_support: (2, 2, 0),
        macro_f1: (2.0 / 3.0 + 1.0 + 0.0) / 3.0,
        balanced: 0.75,
    },
    Case {
        // C is in neither labels nor predictions: left out of macro F1 and balanced accuracy.
        name: "class absent from labels and predictions",
        groups: &[Many, Medium, Few],
        labels: &[0, 1],
        predictions: &[0, 1],
        confusion: &[&[1, 0, 0], &[0, 1, 0], &[0, 0, 0]],
        per_class: &[(1.0, 1.0, 1.0, 1), (1.0, 1.0, 1.0, 1), (0.0, 0.0, 0.0, 0)],
        total: 1.0,
        group_acc: (1.0, 1.0, 0.0),
        group_support: (1, 1, 0),
        macro_f1: 1.0,
        balanced: 1.0,
    },
    Case {
        name: "perfect classifier",
        groups: &[Many, Medium, Medium, Few],
        labels: &[0, 1, 2, 3, 3, 0],
        predictions: &[0, 1, 2, 3, 3, 0],
        confusion: &[&[2, 0, 0, 0], &[0, 1, 0, 0], &[0, 0, 1, 0], &[0, 0, 0, 2]],
        per_class: &[
            (1.0, 1.0, 1.0, 2),
            (1.0, 1.0, 1.0, 1),
            (1.0, 1.0, 1.0, 1),
            (1.0, 1.0, 1.0, 2),
        ],
        total: 1.0,
        group_acc: (1.0, 1.0, 1.0),
        group_support: (2, 2, 2),
        macro_f1: 1.0,
        balanced: 1.0,
    },
    Case {
        // The collapse a long-tailed model falls into: everything is the head class.
        name: "all predictions one class",
        groups: &[Many, Medium, Few, Few],
        labels: &[0, 0, 0, 0, 1, 1, 2, 3],
        predictions: &[0, 0, 0, 0, 0, 0, 0, 0],
        confusion: &[&[4, 0, 0, 0], &[2, 0, 0, 0], &[1, 0, 0, 0], &[1, 0, 0, 0]],
        per_class: &[
            (0.5, 1.0, 2.0 / 3.0, 4),
            (0.0, 0.0, 0.0, 2),
            (0.0, 0.0, 0.0, 1),
            (0.0, 0.0, 0.0, 1),
        ],
        total: 0.5,
        group_acc: (1.0, 0.0, 0.0),
        group_support: (4, 2, 2),
        macro_f1: (2.0 / 3.0) / 4.0,
        balanced: 0.25,
    },
    Case {
        // Few = classes 1 (1 of 3 right) and 2 (1 of 1 right): the group accuracy is over samples,
        // 2/4, not the mean of the two recalls (2/3).
        name: "group accuracy over samples",
        groups: &[Many, Few, Few],
        labels: &[0, 1, 1, 1, 2],
        predictions: &[0, 1, 0, 0, 2],
        confusion: &[&[1, 0, 0], &[2, 1, 0], &[0, 0, 1]],
        per_class: &[
            (1.0 / 3.0, 1.0, 0.5, 1),
            (1.0, 1.0 / 3.0, 0.5, 3),
            (1.0, 1.0, 1.0, 1),
        ],
        total: 3.0 / 5.0,
        group_acc: (1.0, 0.0, 0.5),
        group_support: (1, 0, 4),
        macro_f1: 2.0 / 3.0,
        balanced: (1.0 + 1.0 / 3.0 + 1.0) / 3.0,
    },
    Case {
        name: "no samples",
        groups: &[Many, Few],
        labels: &[],
        predictions: &[],
        confusion: &[&[0, 0], &[0, 0]],
        per_class: &[(0.0, 0.0, 0.0, 0), (0.0, 0.0, 0.0, 0)],
        total: 0.0,
        group_acc: (0.0, 0.0, 0.0),
        group_support: (0, 0, 0),
        macro_f1: 0.0,
        balanced: 0.0,
    },
];

fn names(n: usize) -> Vec<String> {
    ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"][..n]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn hand_computed_cases() {
    for case in CASES {
        let c = case.groups.len();
        let class_names = names(c);
        let m = evaluate(case.labels, case.predictions, &class_names, case.groups);
        let n = case.name;
        assert_eq!(m.num_samples, case.labels.len(), "{n}");
        let conf: Vec<Vec<usize>> = case.confusion.iter().map(|r| r.to_vec()).collect();
        assert_eq!(m.confusion, conf, "{n}: confusion");
        assert_eq!(m.per_class.len(), c, "{n}");
        for (k, (got, &(p, r, f1, support))) in m.per_class.iter().zip(case.per_class).enumerate() {
            assert_eq!(got.name, class_names[k], "{n}: class {k} name");
            assert_eq!(got.group, case.groups[k], "{n}: class {k} group");
            assert!(
                close(got.precision, p),
                "{n}: class {k} precision {} != {p}",
                got.precision
            );
            assert!(
                close(got.recall, r),
                "{n}: class {k} recall {} != {r}",
                got.recall
            );
            assert!(close(got.f1, f1), "{n}: class {k} f1 {} != {f1}", got.f1);
            assert_eq!(got.support, support, "{n}: class {k} support");
        }
        assert!(
            close(m.total_accuracy, case.total),
            "{n}: total {}",
            m.total_accuracy
        );
        let (many, medium, few) = case.group_acc;
        assert!(close(m.groups.many, many), "{n}: many {}", m.groups.many);
        assert!(
            close(m.groups.medium, medium),
            "{n}: medium {}",
            m.groups.medium
        );
        assert!(close(m.groups.few, few), "{n}: few {}", m.groups.few);
        let (sm, sd, sf) = case.group_support;
        assert_eq!(
            m.group_support,
            GroupSupport {
                many: sm,
                medium: sd,
                few: sf
            },
            "{n}: group support"
        );
        assert!(
            close(m.macro_f1, case.macro_f1),
            "{n}: macro F1 {} != {}",
            m.macro_f1,
            case.macro_f1
        );
        assert!(
            close(m.balanced_accuracy, case.balanced),
            "{n}: balanced {} != {}",
            m.balanced_accuracy,
            case.balanced
        );
        assert_no_nan(&m, n);
    }
}

fn assert_no_nan(m: &EvalMetrics, n: &str) {
    let mut all = vec![
        m.total_accuracy,
        m.macro_f1,
        m.balanced_accuracy,
        m.groups.many,
        m.groups.medium,
        m.groups.few,
    ];
    for c in &m.per_class {
        all.extend([c.precision, c.recall, c.f1]);
    }
    assert!(
        all.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
        "{n}: {all:?}"
    );
}

#[test]
fn seven_isic_classes_balanced_test_set() {
    // 280 samples, 40 per class (the paper's test split); each class c gets 40 - 5c right and the
    // rest predicted as NV (1), the way a head-biased model errs.
    let groups = [Medium, Many, Medium, Few, Medium, Few, Few];
    let mut labels = Vec::new();
    let mut predictions = Vec::new();
    for c in 0..7 {
        for i in 0..40 {
            labels.push(c);
            predictions.push(if i < 40 - 5 * c { c } else { 1 });
        }
    }
    let m = evaluate(&labels, &predictions, &names(7), &groups);
    // NV: all 40 right (i < 35 or predicted NV anyway).
    assert_eq!(m.confusion[1][1], 40);
    assert!(close(m.groups.many, 1.0));
    // Medium = MEL(40), BCC(30), BKL(20) right out of 120.
    assert!(close(m.groups.medium, 90.0 / 120.0));
    // Few = AKIEC(25), DF(15), VASC(10) out of 120.
    assert!(close(m.groups.few, 50.0 / 120.0));
    let correct = 40 + 40 + 30 + 25 + 20 + 15 + 10;
    assert!(close(m.total_accuracy, correct as f64 / 280.0));
    // Balanced test set: balanced accuracy == total accuracy.
    assert!(close(m.balanced_accuracy, m.total_accuracy));
    // NV precision: 40 / (40 NV + 0 MEL + 10 BCC + 15 AKIEC + 20 BKL + 25 DF + 30 VASC).
    assert!(close(m.per_class[1].precision, 40.0 / 140.0));
}

#[test]
#[should_panic(expected = "sample 1 has label 3")]
fn label_out_of_range_panics() {
    evaluate(&[0, 3], &[0, 1], &names(3), &[Many, Medium, Few]);
}

#[test]
#[should_panic(expected = "2 labels but 1 predictions")]
fn length_mismatch_panics() {
    evaluate(&[0, 1], &[0], &names(3), &[Many, Medium, Few]);
}

#[test]
fn argmax_rows_cases() {
    let rows = vec![
        vec![0.1, 0.7, 0.2],
        vec![0.4, 0.4, 0.2],        // tie: lowest index
        vec![f32::NAN, 0.3, 0.6],   // NaN never wins
        vec![f32::NAN, f32::NAN],   // all NaN: 0
        vec![],                     // empty: 0
        vec![-3.0, -1.0, -2.0],     // logits work too
        vec![0.0, 0.0, 0.0, 1e-30], // tiny positive beats zeros
    ];
    assert_eq!(argmax_rows(&rows), vec![1, 0, 2, 0, 0, 1, 3]);
    assert!(argmax_rows(&[]).is_empty());
}

#[test]
fn summary_table_exact() {
    let m = evaluate(
        &[0, 0, 0, 1, 1, 2],
        &[0, 0, 1, 1, 1, 1],
        &names(3),
        &[Many, Medium, Few],
    );
    let expected = "\
| Many (%) | Medium (%) | Few (%) | Total (%) | Macro F1 (%) |
|---------:|-----------:|--------:|----------:|-------------:|
|    66.67 |     100.00 |    0.00 |     66.67 |        48.89 |
";
    assert_eq!(summary_table(&m), expected);
}

#[test]
fn summary_table_marks_empty_groups() {
    let m = evaluate(&[0, 1], &[0, 0], &names(3), &[Many, Medium, Few]);
    let table = summary_table(&m);
    let last = table.lines().last().unwrap();
    let cells: Vec<&str> = last
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(cells, vec!["100.00", "0.00", "n/a", "50.00", "33.33"]);
}
