#!/usr/bin/env python3
"""Writes the AUC fixture of crates/trainer/tests/roc_auc_against_isic_scorer.rs:
tests/fixtures/isic_scorer/{ground_truth.csv, predictions.csv, expected.json}.

ground_truth.csv and predictions.csv are in the ISIC 2018 Task 3 format (image, MEL, NV, BCC, AKIEC,
BKL, DF, VASC): 70 images with long-tailed class counts, predictions from a seeded random model
that leans towards the true class, a third of the rows rounded to two decimals so that many scores
tie across images, rows shuffled. Every value is a float32 written exactly (the trainer's
probabilities are float32). expected.json holds what the official ISIC challenge scorer
(`isic-challenge-scoring`, the package the challenge leaderboards used) computes on them: per-class
AUC (sklearn.metrics.roc_auc_score, one class against the rest), their mean (macro AUC), and the
balanced multiclass accuracy.

Run from the repository root in a scratch environment (the scorer's pandas code needs pandas < 2.2):
    python3 -m venv /tmp/isic-venv
    /tmp/isic-venv/bin/pip install isic-challenge-scoring==5.6.0 "pandas<2.2"
    /tmp/isic-venv/bin/python crates/trainer/scripts/isic_scorer_fixture.py
"""
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "isic_scorer"
CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
COUNTS = [9, 30, 7, 5, 9, 4, 6]  # long-tailed, NV the head
SEED = 2018


def exact(x: np.float32) -> str:
    """The float32 value, written so that parsing it as float64 or float32 gives it exactly."""
    return repr(float(x))


def main() -> None:
    rng = np.random.default_rng(SEED)
    labels = np.repeat(np.arange(len(CLASSES)), COUNTS)
    rng.shuffle(labels)
    n = len(labels)
    images = [f"ISIC_{9900000 + i:07d}" for i in range(n)]

    logits = rng.normal(0.0, 1.0, (n, len(CLASSES))) + 1.2 * np.eye(len(CLASSES))[labels]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rounded = rng.random(n) < 1 / 3
    probs[rounded] = np.round(probs[rounded], 2)
    probs = probs.astype(np.float32)

    OUT.mkdir(parents=True, exist_ok=True)
    truth_path, pred_path = OUT / "ground_truth.csv", OUT / "predictions.csv"
    with truth_path.open("w") as f:
        f.write("image," + ",".join(CLASSES) + "\n")
        for img, y in zip(images, labels):
            f.write(img + "," + ",".join("1.0" if c == y else "0.0" for c in range(len(CLASSES))) + "\n")
    with pred_path.open("w") as f:
        f.write("image," + ",".join(CLASSES) + "\n")
        for i in rng.permutation(n):
            f.write(images[i] + "," + ",".join(exact(p) for p in probs[i]) + "\n")

    score = ClassificationScore.from_file(truth_path, pred_path, ClassificationMetric.AUC)
    expected = {
        "scorer": f"isic-challenge-scoring {version('isic-challenge-scoring')}",
        "sklearn": version("scikit-learn"),
        "pandas": version("pandas"),
        "per_class_auc": {c: float(score.per_category.loc[c, "auc"]) for c in CLASSES},
        "macro_auc": float(score.macro_average["auc"]),
        "balanced_accuracy": float(score.aggregate["balanced_accuracy"]),
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
