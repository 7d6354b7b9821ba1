//! ROC AUC on hand-computed cases, against the pair-counting definition on random scores with
//! ties, and the one-vs-rest / macro forms the report uses.

use trainer::roc_auc::{macro_auc, one_vs_rest_auc, roc_auc};

#[test]
fn hand_computed_cases() {
    let t = true;
    let f = false;
    // (scores, truth, AUC)
    let cases: [(&[f32], &[bool], Option<f64>); 9] = [
        (&[0.9, 0.8, 0.2, 0.1], &[t, t, f, f], Some(1.0)),
        (&[0.1, 0.2, 0.8, 0.9], &[t, t, f, f], Some(0.0)),
        (&[0.5, 0.5, 0.5, 0.5], &[t, f, t, f], Some(0.5)),
        // one positive-negative tie: (3 + 1/2) / 4
        (&[0.9, 0.4, 0.4, 0.1], &[t, t, f, f], Some(0.875)),
        // 1 positive above 2 of 3 negatives
        (&[0.3, 0.1, 0.5, 0.2], &[t, f, f, f], Some(2.0 / 3.0)),
        // -0.0 and 0.0 tie, as in sklearn
        (&[0.0, -0.0], &[t, f], Some(0.5)),
        (&[0.3, 0.7], &[t, t], None),
        (&[0.3, 0.7], &[f, f], None),
        (&[0.3, f32::NAN], &[t, f], None),
    ];
    for (scores, truth, want) in cases {
        assert_eq!(
            roc_auc(scores, truth),
            want,
            "scores {scores:?} truth {truth:?}"
        );
    }
    assert_eq!(roc_auc(&[], &[]), None);
}

/// The definition: correctly ordered positive-negative pairs, ties counting one half.
fn pairwise_auc(scores: &[f32], truth: &[bool]) -> f64 {
    let (mut pairs, mut n) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            if truth[i] && !truth[j] {
                n += 1.0;
                pairs += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    pairs / n
}

#[test]
fn equals_the_pairwise_definition_on_random_scores_with_ties() {
    // A fixed linear congruential sequence: scores on a coarse grid, so many tie.
    let mut state: u64 = 0x5eed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for trial in 0..50 {
        let n = 2 + (next() % 60) as usize;
        let scores: Vec<f32> = (0..n).map(|_| (next() % 12) as f32 / 11.0).collect();
        let mut truth: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
        truth[0] = true;
        truth[1] = false;
        let got = roc_auc(&scores, &truth).unwrap();
        let want = pairwise_auc(&scores, &truth);
        assert!((got - want).abs() < 1e-12, "trial {trial}: {got} vs {want}");

        // Invariant under reordering the samples.
        let mut order: Vec<usize> = (0..n).collect();
        order.reverse();
        order.rotate_left(n / 3);
        let s2: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
        let t2: Vec<bool> = order.iter().map(|&i| truth[i]).collect();
        assert_eq!(
            roc_auc(&s2, &t2),
            Some(got),
            "trial {trial}: order changed the AUC"
        );
    }
}

#[test]
fn one_vs_rest_uses_each_class_column_and_macro_skips_undefined_classes() {
    // Class 2 never occurs: its AUC is undefined and the macro AUC averages classes 0 and 1.
    let labels = [0, 0, 1, 1];
    let probabilities = vec![
        vec![0.7, 0.2, 0.1],
        vec![0.4, 0.5, 0.1],
        vec![0.5, 0.4, 0.1],
        vec![0.1, 0.8, 0.1],
    ];
    let aucs = one_vs_rest_auc(&labels, &probabilities, 3);
    // class 0: positives 0.7, 0.4 vs negatives 0.5, 0.1 -> 3 of 4 pairs
    // class 1: positives 0.4, 0.8 vs negatives 0.2, 0.5 -> 3 of 4 pairs
    assert_eq!(aucs, vec![Some(0.75), Some(0.75), None]);
    assert_eq!(macro_auc(&aucs), Some(0.75));
    assert_eq!(macro_auc(&[Some(1.0), Some(0.5), None]), Some(0.75));
    assert_eq!(macro_auc(&[None, None]), None);
}
