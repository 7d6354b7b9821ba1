//! Evaluation metrics: pure functions of true labels and predicted labels (or class
//! probabilities), no I/O.
//!
//! Inputs are `N` samples: `labels: [N]` and `predictions: [N]`, class indices in `0..C` where
//! `C = class_names.len()`, and `groups: [C]`, the Many / Medium / Few group of each class;
//! [`evaluate_probabilities`] takes `probabilities: (N, C)` instead of predictions, predicts their
//! argmax and adds the ROC AUCs ([`crate::roc_auc`]).
//! Outputs ([`EvalMetrics`]) are fractions in `[0, 1]` (never NaN) and counts; the confusion matrix
//! is `(C, C)` with `confusion[true][pred]`.
//!
//! Conventions (those of scikit-learn with `zero_division=0`):
//! - precision of a class never predicted is 0; recall of a class with no support is 0;
//!   F1 is `2·TP / (2·TP + FP + FN)`, 0 when that denominator is 0 (precision + recall = 0);
//! - macro F1 is the mean F1 over the classes present in the labels OR the predictions
//!   (`sklearn.metrics.f1_score(average="macro")` without `labels=`): a class absent from both
//!   is left out, a class only predicted counts with F1 = 0;
//! - balanced accuracy is the mean recall over the classes with support
//!   (`sklearn.metrics.balanced_accuracy_score`);
//! - AUC is one class against the rest on that class's probability, macro AUC the mean over the
//!   classes where it is defined (the ISIC 2018 scorer's definition; [`crate::roc_auc`]); both are
//!   `None` (JSON `null`, "n/a" in the report) when only predicted labels are known;
//! - a group's accuracy is the accuracy over the samples whose true class is in the group (on the
//!   paper's balanced test sets this equals the mean recall of the group's classes); a group with no
//!   samples has accuracy 0 and support 0 in [`EvalMetrics::group_support`], which the report
//!   shows as "n/a".
//!
//! ```
//! use dataset::Group;
//! use trainer::metrics::evaluate;
//! let names: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
//! let m = evaluate(&[0, 0, 1, 1], &[0, 1, 1, 1], &names, &[Group::Many, Group::Few]);
//! assert_eq!(m.total_accuracy, 0.75);
//! assert_eq!(m.groups.many, 0.5);
//! assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 2]]);
//! ```

use dataset::Group;
use serde::{Deserialize, Serialize};

use crate::roc_auc;

/// Precision, recall and F1 (fractions in `[0, 1]`) of one class, and its support (number of samples
/// whose true label is this class). JSON field names are stable (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name (`MEL`, `NV`, ...).
    pub name: String,
    /// Many / Medium / Few group of the class (`"many"`, `"medium"`, `"few"` in JSON).
    pub group: Group,
    /// `TP / (TP + FP)`; 0 when the class is never predicted.
    pub precision: f64,
    /// `TP / (TP + FN)`; 0 when the class has no support.
    pub recall: f64,
    /// `2·TP / (2·TP + FP + FN)`; 0 when precision + recall = 0.
    pub f1: f64,
    /// Number of samples of this true class.
    pub support: usize,
    /// One-vs-rest ROC AUC on this class's probability, in `[0, 1]`; `None` without
    /// probabilities, or when every sample or none is of this class.
    #[serde(default)]
    pub auc: Option<f64>,
}

/// Accuracy (fraction in `[0, 1]`) over the samples whose true class is in each group.
/// A group with no samples has 0.0 here; see [`EvalMetrics::group_support`] to tell it apart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupAccuracy {
    pub many: f64,
    pub medium: f64,
    pub few: f64,
}

/// Number of samples whose true class is in each group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSupport {
    pub many: usize,
    pub medium: usize,
    pub few: usize,
}

impl GroupSupport {
    /// Support of one group.
    pub fn get(&self, group: Group) -> usize {
        match group {
            Group::Many => self.many,
            Group::Medium => self.medium,
            Group::Few => self.few,
        }
    }
}

impl GroupAccuracy {
    /// Accuracy of one group.
    pub fn get(&self, group: Group) -> f64 {
        match group {
            Group::Many => self.many,
            Group::Medium => self.medium,
            Group::Few => self.few,
        }
    }
}

/// Everything the evaluation reports, for one split. Fractions in `[0, 1]`, never NaN.
/// Serialised as the `metrics` object of `report.json`; field names are stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Correct predictions / all samples; 0 when there are no samples.
    pub total_accuracy: f64,
    /// Accuracy per Many / Medium / Few group.
    pub groups: GroupAccuracy,
    /// Samples per group (0 marks a group whose accuracy is not meaningful).
    pub group_support: GroupSupport,
    /// Mean F1 over the classes present in the labels or the predictions.
    pub macro_f1: f64,
    /// Mean recall over the classes with support.
    pub balanced_accuracy: f64,
    /// Mean of the per-class AUCs that are defined (ISIC 2018's macro AUC); `None` without
    /// probabilities.
    #[serde(default)]
    pub macro_auc: Option<f64>,
    /// One entry per class, in label order: `[C]`.
    pub per_class: Vec<ClassMetrics>,
    /// `(C, C)` counts, `confusion[true][pred]`.
    pub confusion: Vec<Vec<usize>>,
    /// `N`, the number of samples evaluated.
    pub num_samples: usize,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Computes every metric of the report.
///
/// `labels: [N]`, `predictions: [N]`: class indices in `0..C`; `class_names: [C]`;
/// `groups: [C]`, `groups[c]` the group of class `c`. `N = 0` gives all-zero metrics.
///
/// # Panics
/// If `labels` and `predictions` differ in length, `groups` and `class_names` differ in length, or
/// an index is `>= C`: these are programming errors (the indices come from our own model and data
/// set), not bad user input.
pub fn evaluate(
    labels: &[usize],
    predictions: &[usize],
    class_names: &[String],
    groups: &[Group],
) -> EvalMetrics {
    let c = class_names.len();
    assert_eq!(
        labels.len(),
        predictions.len(),
        "evaluate: {} labels but {} predictions",
        labels.len(),
        predictions.len()
    );
    assert_eq!(
        groups.len(),
        c,
        "evaluate: {} groups for {} class names",
        groups.len(),
        c
    );
    let mut confusion = vec![vec![0usize; c]; c];
    for (i, (&t, &p)) in labels.iter().zip(predictions).enumerate() {
        assert!(
            t < c && p < c,
            "evaluate: sample {i} has label {t} / prediction {p}, but there are {c} classes"
        );
        confusion[t][p] += 1;
    }

    let support: Vec<usize> = confusion.iter().map(|row| row.iter().sum()).collect();
    let predicted: Vec<usize> = (0..c)
        .map(|j| confusion.iter().map(|row| row[j]).sum())
        .collect();
    let per_class: Vec<ClassMetrics> = (0..c)
        .map(|k| {
            let tp = confusion[k][k];
            let fp = predicted[k] - tp;
            let fn_ = support[k] - tp;
            ClassMetrics {
                name: class_names[k].clone(),
                group: groups[k],
                precision: ratio(tp, predicted[k]),
                recall: ratio(tp, support[k]),
                // The TP form equals 2PR/(P+R) and is what sklearn computes; it is exactly 0, not NaN,
                // when the class is neither present nor predicted.
                f1: ratio(2 * tp, 2 * tp + fp + fn_),
                support: support[k],
                auc: None,
            }
        })
        .collect();

    let correct: usize = (0..c).map(|k| confusion[k][k]).sum();
    let n = labels.len();

    let group_counts = |g: Group| {
        (0..c)
            .filter(|&k| groups[k] == g)
            .fold((0, 0), |(ok, all), k| {
                (ok + confusion[k][k], all + support[k])
            })
    };
    let (many_ok, many_n) = group_counts(Group::Many);
    let (medium_ok, medium_n) = group_counts(Group::Medium);
    let (few_ok, few_n) = group_counts(Group::Few);

    let present_f1: Vec<f64> = (0..c)
        .filter(|&k| support[k] > 0 || predicted[k] > 0)
        .map(|k| per_class[k].f1)
        .collect();
    let supported_recall: Vec<f64> = (0..c)
        .filter(|&k| support[k] > 0)
        .map(|k| per_class[k].recall)
        .collect();

    EvalMetrics {
        total_accuracy: ratio(correct, n),
        groups: GroupAccuracy {
            many: ratio(many_ok, many_n),
            medium: ratio(medium_ok, medium_n),
            few: ratio(few_ok, few_n),
        },
        group_support: GroupSupport {
            many: many_n,
            medium: medium_n,
            few: few_n,
        },
        macro_f1: mean(&present_f1),
        balanced_accuracy: mean(&supported_recall),
        macro_auc: None,
        per_class,
        confusion,
        num_samples: n,
    }
}

/// Every metric of [`evaluate`] for the argmax of `probabilities: (N, C)`, plus the one-vs-rest
/// AUC of each class and the macro AUC.
///
/// # Panics
/// As [`evaluate`], and if a row of `probabilities` does not have `C` values.
pub fn evaluate_probabilities(
    labels: &[usize],
    probabilities: &[Vec<f32>],
    class_names: &[String],
    groups: &[Group],
) -> EvalMetrics {
    let mut m = evaluate(labels, &argmax_rows(probabilities), class_names, groups);
    let aucs = roc_auc::one_vs_rest_auc(labels, probabilities, class_names.len());
    m.macro_auc = roc_auc::macro_auc(&aucs);
    for (class, auc) in m.per_class.iter_mut().zip(aucs) {
        class.auc = auc;
    }
    m
}

/// Index of the largest value of each row: `probabilities: (N, C)` -> `[N]`.
///
/// Ties go to the lowest index (as `numpy.argmax`); NaN never wins; a row that is empty or all NaN
/// gives 0.
pub fn argmax_rows(probabilities: &[Vec<f32>]) -> Vec<usize> {
    probabilities
        .iter()
        .map(|row| {
            let mut best: Option<(usize, f32)> = None;
            for (j, &v) in row.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((j, v));
                }
            }
            best.map_or(0, |(j, _)| j)
        })
        .collect()
}

fn percent_or_na(value: f64, support: usize) -> String {
    if support == 0 {
        "n/a".to_string()
    } else {
        format!("{:.2}", 100.0 * value)
    }
}

/// The table the demo prints (and `report.md` embeds): Many / Medium / Few / Total accuracy and
/// macro F1, all in percent with two decimals; a group without samples shows `n/a`. It is a
/// Markdown table whose columns are aligned for the terminal:
///
/// ```text
/// | Many  | Medium | Few   | Total | Macro F1 |
/// |------:|-------:|------:|------:|---------:|
/// | 90.00 | 75.00  | 50.00 | 71.67 | 70.12    |
/// ```
pub fn summary_table(m: &EvalMetrics) -> String {
    let headers = [
        "Many (%)",
        "Medium (%)",
        "Few (%)",
        "Total (%)",
        "Macro F1 (%)",
    ];
    let values = [
        percent_or_na(m.groups.many, m.group_support.many),
        percent_or_na(m.groups.medium, m.group_support.medium),
        percent_or_na(m.groups.few, m.group_support.few),
        percent_or_na(m.total_accuracy, m.num_samples),
        percent_or_na(m.macro_f1, m.num_samples),
    ];
    let widths: Vec<usize> = headers
        .iter()
        .zip(&values)
        .map(|(h, v)| h.len().max(v.len()))
        .collect();
    let row = |cells: Vec<String>| {
        let inner: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(s, &w)| format!(" {s:>w$} "))
            .collect();
        format!("|{}|", inner.join("|"))
    };
    let header = row(headers.iter().map(|s| s.to_string()).collect());
    let rule = format!(
        "|{}|",
        widths
            .iter()
            .map(|&w| format!("{}:", "-".repeat(w + 1)))
            .collect::<Vec<_>>()
            .join("|")
    );
    let body = row(values.to_vec());
    format!("{header}\n{rule}\n{body}\n")
}
