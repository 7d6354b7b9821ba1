//! One finished epoch: a row of the run's `metrics.csv`, an entry of the checkpoint's history
//! (`state.json`) and a point of `curves.png` — one type for all three.

use serde::{Deserialize, Serialize};

/// What a training epoch measured. Accuracies and F1 are fractions in `[0, 1]`; `val_*` are on the
/// validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub val_many: f64,
    pub val_medium: f64,
    pub val_few: f64,
    pub val_macro_f1: f64,
    pub val_balanced_accuracy: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// `metrics.csv` text of the history: a header row, then one row per epoch at full precision.
pub fn metrics_csv(history: &[EpochRecord]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    if history.is_empty() {
        // `serialize` writes the header with the first row; an empty history still gets one.
        w.write_record([
            "epoch",
            "lr",
            "train_loss",
            "train_accuracy",
            "val_accuracy",
            "val_many",
            "val_medium",
            "val_few",
            "val_macro_f1",
            "val_balanced_accuracy",
            "seconds",
        ])
        .expect("writing to memory");
    }
    for r in history {
        w.serialize(r).expect("a record of numbers serialises");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of numbers is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_csv_round_trips_and_has_a_header_when_empty() {
        let row = EpochRecord {
            epoch: 3,
            lr: 1.25e-4,
            train_loss: 0.123_456_789,
            train_accuracy: 0.5,
            val_accuracy: 2.0 / 3.0,
            val_many: 1.0,
            val_medium: 0.25,
            val_few: 0.0,
            val_macro_f1: 0.4,
            val_balanced_accuracy: 0.45,
            seconds: 12.5,
        };
        let text = metrics_csv(std::slice::from_ref(&row));
        let back: Vec<EpochRecord> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![row]);
        let empty = metrics_csv(&[]);
        assert_eq!(empty.lines().count(), 1);
        assert_eq!(empty.lines().next(), text.lines().next());
    }
}
