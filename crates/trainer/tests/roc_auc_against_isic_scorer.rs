//! The report's AUCs equal those of the official ISIC 2018 scorer (`isic-challenge-scoring` 5.6.0)
//! on a committed fixture: 70 images in the ISIC Task 3 format, long-tailed, with many tied scores
//! (`tests/fixtures/isic_scorer/`, written with the scorer's output by
//! `scripts/isic_scorer_fixture.py`). No Python is needed here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use trainer::evaluate::paper_groups;
use trainer::metrics::evaluate_probabilities;
use trainer::report::read_predictions_csv_full;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/isic_scorer")
        .join(name)
}

/// `image -> class index` from a one-hot ISIC ground-truth CSV, and the class names of its header.
fn read_ground_truth(path: &Path) -> (HashMap<String, usize>, Vec<String>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "image");
    let mut labels = HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let hot: Vec<usize> = (1..record.len())
            .filter(|&j| record[j].parse::<f64>().unwrap() > 0.5)
            .map(|j| j - 1)
            .collect();
        assert_eq!(
            hot.len(),
            1,
            "{}: row {} is not one-hot",
            path.display(),
            row + 2
        );
        labels.insert(record[0].to_string(), hot[0]);
    }
    (labels, header[1..].to_vec())
}

fn close(ours: f64, scorer: f64) -> bool {
    // sklearn integrates the ROC curve in floats; we count pairs exactly and divide once.
    (ours - scorer).abs() <= 1e-12
}

#[test]
fn per_class_and_macro_auc_and_balanced_accuracy_equal_the_official_scorer() {
    let (truth, class_names) = read_ground_truth(&fixture("ground_truth.csv"));
    let predictions = read_predictions_csv_full(&fixture("predictions.csv")).unwrap();
    assert_eq!(predictions.class_names, class_names);
    assert_eq!(predictions.images.len(), truth.len());
    // The predictions are shuffled: match rows on the image id, as the scorer does.
    let labels: Vec<usize> = predictions.images.iter().map(|img| truth[img]).collect();
    let m = evaluate_probabilities(
        &labels,
        &predictions.probabilities,
        &class_names,
        &paper_groups(),
    );

    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    for class in &m.per_class {
        let want = expected["per_class_auc"][&class.name].as_f64().unwrap();
        let got = class.auc.expect("every class has positives and negatives");
        assert!(
            close(got, want),
            "{}: AUC {got} vs scorer {want}",
            class.name
        );
    }
    let want = expected["macro_auc"].as_f64().unwrap();
    let got = m.macro_auc.unwrap();
    assert!(close(got, want), "macro AUC {got} vs scorer {want}");
    let want = expected["balanced_accuracy"].as_f64().unwrap();
    assert!(
        close(m.balanced_accuracy, want),
        "balanced accuracy {} vs scorer {want}",
        m.balanced_accuracy
    );
}
