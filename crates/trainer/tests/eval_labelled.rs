//! `trainer eval --labels GT.csv --images DIR` on a synthetic set written in the official ISIC2018
//! Task 3 validation layout gives the balanced accuracy (and AUCs) the official scorer computes on
//! the same predictions, writes its report where asked without touching the run folder, and
//! refuses unsafe ids, repeated ids and missing images by name.
//!
//! Fixtures: `tests/fixtures/user_data/` (run/, isic2018_val/, isic2018_val_scored/), written by
//! `crates/trainer/scripts/user_data_fixtures.py`: the scorer (`isic-challenge-scoring` 5.6.0)
//! scored the `predictions.csv` that `trainer eval --labels` wrote for the committed run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/user_data")
}

fn val() -> PathBuf {
    fixtures().join("isic2018_val")
}

fn gt_csv() -> PathBuf {
    val().join("ISIC2018_Task3_Validation_GroundTruth/ISIC2018_Task3_Validation_GroundTruth.csv")
}

fn images() -> PathBuf {
    val().join("ISIC2018_Task3_Validation_Input")
}

fn eval(labels: &Path, images: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .env("RUST_LOG", "warn")
        .args(["eval", "--device", "cpu", "--run"])
        .arg(fixtures().join("run"))
        .arg("--labels")
        .arg(labels)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

#[test]
fn official_validation_layout_gives_the_official_scorers_balanced_accuracy() {
    let run_before = tree(&fixtures().join("run"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = eval(&gt_csv(), &images(), &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        tree(&fixtures().join("run")),
        run_before,
        "the run folder is untouched"
    );
    for f in [
        "report.md",
        "report.json",
        "confusion.png",
        "predictions.csv",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }

    // The predictions are those the scorer saw (same argmax, same values to float noise).
    let scored = fixtures().join("isic2018_val_scored");
    let (ids, probs) = trainer::report::read_predictions_csv(&out.join("predictions.csv")).unwrap();
    let (ids0, probs0) =
        trainer::report::read_predictions_csv(&scored.join("predictions.csv")).unwrap();
    assert_eq!(ids, ids0);
    assert_eq!(
        trainer::metrics::argmax_rows(&probs),
        trainer::metrics::argmax_rows(&probs0)
    );
    for (a, b) in probs.iter().flatten().zip(probs0.iter().flatten()) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }

    let scorer = json(&scored.join("scorer.json"));
    let report = json(&out.join("report.json"));
    let m = &report["metrics"];
    assert_eq!(m["num_samples"], 21);
    let ba = m["balanced_accuracy"].as_f64().unwrap();
    let want = scorer["balanced_accuracy"].as_f64().unwrap();
    assert!(
        (ba - want).abs() < 1e-12,
        "balanced accuracy {ba}, scorer {want}"
    );
    // Not a degenerate set: the predictions span classes and the accuracy is no constant's.
    let predicted: BTreeSet<usize> = trainer::metrics::argmax_rows(&probs).into_iter().collect();
    assert!(predicted.len() >= 3, "{predicted:?}");
    for (k, class) in m["per_class"].as_array().unwrap().iter().enumerate() {
        let name = class["name"].as_str().unwrap();
        assert_eq!(name, ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"][k]);
        let auc = class["auc"].as_f64().unwrap();
        let want = scorer["per_class_auc"][name].as_f64().unwrap();
        assert!(
            (auc - want).abs() < 1e-9,
            "{name}: AUC {auc}, scorer {want}"
        );
    }
    let macro_auc = m["macro_auc"].as_f64().unwrap();
    assert!((macro_auc - scorer["macro_auc"].as_f64().unwrap()).abs() < 1e-9);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("ISIC2018_Task3_Validation_GroundTruth.csv"),
        "{md}"
    );
}

/// A copy of the validation set whose ground truth is `rows` (after the official header).
fn custom_set(dir: &Path, rows: &[&str]) -> (PathBuf, PathBuf) {
    let imgs = dir.join("input");
    std::fs::create_dir_all(&imgs).unwrap();
    for e in std::fs::read_dir(images()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, imgs.join(p.file_name().unwrap())).unwrap();
    }
    let csv = dir.join("gt.csv");
    let mut text = String::from("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(&csv, text).unwrap();
    (csv, imgs)
}

fn first_image_id() -> String {
    let text = std::fs::read_to_string(gt_csv()).unwrap();
    text.lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn unsafe_repeated_and_missing_images_are_refused_by_name() {
    let id = first_image_id();
    let good = format!("{id},1.0,0.0,0.0,0.0,0.0,0.0,0.0");
    for (rows, needles) in [
        (
            vec![
                good.clone(),
                "../../etc/passwd,0.0,1.0,0.0,0.0,0.0,0.0,0.0".to_string(),
            ],
            vec!["gt.csv", "row 3", "../../etc/passwd"],
        ),
        (
            vec![good.clone(), good.replace("1.0,0.0", "0.0,1.0")],
            vec!["gt.csv", "line 3", "listed twice"],
        ),
        (
            vec![
                good.clone(),
                "ISIC_9999999,0.0,1.0,0.0,0.0,0.0,0.0,0.0".to_string(),
            ],
            vec!["gt.csv", "line 3", "ISIC_9999999.jpg", "does not exist"],
        ),
        (
            vec![format!("{id},1.0,1.0,0.0,0.0,0.0,0.0,0.0")],
            vec!["gt.csv", "one-hot"],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let (csv, imgs) = custom_set(dir.path(), &rows);
        let out = dir.path().join("report");
        let o = eval(&csv, &imgs, &out);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
        assert!(!out.exists(), "no report for a refused set");
    }
}

#[test]
fn the_default_report_folder_is_inside_the_run_and_named_after_the_csv() {
    let p = trainer::eval_labelled::default_out_dir(
        Path::new("runs/r1"),
        Path::new("/data/ISIC2018_Task3_Validation_GroundTruth.csv"),
        trainer::checkpoint::Which::Best,
    );
    assert_eq!(
        p,
        Path::new("runs/r1/eval-labels-ISIC2018_Task3_Validation_GroundTruth-best")
    );
}
