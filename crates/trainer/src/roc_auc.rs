//! Area under the ROC curve, one class against the rest, as ISIC 2018 Task 3 scores it.
//!
//! The official scorer (`isic-challenge-scoring`) computes, for each class, scikit-learn's
//! `roc_auc_score(truth == class, probability of class)` with unit sample weights, and the macro AUC
//! as the plain mean of the seven per-class values. This module computes the same numbers without
//! building the ROC curve: the AUC is the probability that a random positive scores above a random
//! negative, a tie counting one half (the trapezoidal area sklearn integrates), i.e.
//!
//! ```text
//! AUC = ( #{(p, n): s_p > s_n} + 1/2 #{(p, n): s_p = s_n} ) / (P * N)
//! ```
//!
//! over the `P` positives and `N` negatives, counted exactly in integers and divided once.
//! Undefined (`None`) when the class has no positive or no negative sample (sklearn raises an error
//! there), or when a score is NaN.
//!
//! ```
//! use trainer::roc_auc::roc_auc;
//! // one tie between a positive and a negative: (3 + 1/2) / (2 * 2)
//! let auc = roc_auc(&[0.9, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap();
//! assert_eq!(auc, 0.875);
//! assert_eq!(roc_auc(&[0.5, 0.7], &[true, true]), None);
//! ```

/// AUC of `scores: [N]` for the binary truth `is_positive: [N]`, in `[0, 1]`; `None` when there
/// is no positive, no negative, or a NaN score.
///
/// # Panics
/// If the two slices differ in length (a programming error).
pub fn roc_auc(scores: &[f32], is_positive: &[bool]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        is_positive.len(),
        "roc_auc: {} scores but {} truth values",
        scores.len(),
        is_positive.len()
    );
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let positives = is_positive.iter().filter(|&&p| p).count() as u128;
    let negatives = is_positive.len() as u128 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Twice the number of correctly ordered (positive above negative) pairs, ties counting 1.
    let mut twice_pairs: u128 = 0;
    let mut negatives_below: u128 = 0;
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        // `==` (not total_cmp) so that -0.0 and 0.0 tie, as they do for sklearn.
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| scores[i] == score)
                .count();
        let tied_positives = order[start..end]
            .iter()
            .filter(|&&i| is_positive[i])
            .count() as u128;
        let tied_negatives = (end - start) as u128 - tied_positives;
        twice_pairs += tied_positives * (2 * negatives_below + tied_negatives);
        negatives_below += tied_negatives;
        start = end;
    }
    Some(twice_pairs as f64 / (2 * positives * negatives) as f64)
}

/// One-vs-rest AUC of each class: `labels: [N]` class indices in `0..C`, `probabilities: (N, C)`
/// (the score of class `c` is column `c`) -> `[C]`, `None` where undefined (see [`roc_auc`]).
///
/// # Panics
/// If `labels` and `probabilities` differ in length or a row does not have `num_classes` values.
pub fn one_vs_rest_auc(
    labels: &[usize],
    probabilities: &[Vec<f32>],
    num_classes: usize,
) -> Vec<Option<f64>> {
    assert_eq!(
        labels.len(),
        probabilities.len(),
        "one_vs_rest_auc: {} labels but {} probability rows",
        labels.len(),
        probabilities.len()
    );
    for (i, row) in probabilities.iter().enumerate() {
        assert_eq!(
            row.len(),
            num_classes,
            "one_vs_rest_auc: row {i} has {} values for {num_classes} classes",
            row.len()
        );
    }
    (0..num_classes)
        .map(|c| {
            let scores: Vec<f32> = probabilities.iter().map(|row| row[c]).collect();
            let truth: Vec<bool> = labels.iter().map(|&y| y == c).collect();
            roc_auc(&scores, &truth)
        })
        .collect()
}

/// Macro AUC: the mean of the per-class AUCs. A class whose AUC is undefined (absent from the
/// labels, or present in every one) is left out, as macro F1 leaves out absent classes; the
/// official scorer refuses such a set instead. `None` when no class has an AUC.
pub fn macro_auc(per_class: &[Option<f64>]) -> Option<f64> {
    let defined: Vec<f64> = per_class.iter().flatten().copied().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}
