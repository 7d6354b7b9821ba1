//! Report files: report.json round trip and field names, report.md content, predictions.csv
//! format and parsing (with its errors), PNG plots that decode and show what they should, atomic
//! writes.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use dataset::Group::{self, Few, Many, Medium};
use image::RgbImage;
use trainer::epoch_record::EpochRecord;
use trainer::metrics::{argmax_rows, evaluate, evaluate_probabilities, EvalMetrics};
use trainer::plots::{plot_confusion, plot_curves};
use trainer::report::{
    read_predictions_csv, read_predictions_csv_full, read_report, write_predictions_csv,
    write_report, ReportContext, ReportError, REPORT_SCHEMA_VERSION,
};

const ISIC: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
const ISIC_GROUPS: [Group; 7] = [Medium, Many, Medium, Few, Medium, Few, Few];

fn isic_names() -> Vec<String> {
    ISIC.iter().map(|s| s.to_string()).collect()
}

fn context() -> ReportContext {
    ReportContext {
        run_name: "spmix-20260101-120000".into(),
        split: "test".into(),
        checkpoint: "best".into(),
        epoch: 17,
        method: "spmix".into(),
        seed: u64::MAX - 1,
        git_revision: "1a2a40e".into(),
    }
}

/// 7 classes x 4 samples with a few mistakes; DF (5) is never predicted.
fn sample_metrics() -> (Vec<usize>, Vec<usize>, EvalMetrics) {
    let labels: Vec<usize> = (0..28).map(|i| i / 4).collect();
    let mut predictions = labels.clone();
    predictions[1] = 1; // MEL -> NV
    predictions[9] = 1; // BCC -> NV
    for p in &mut predictions[20..24] {
        *p = 3; // all DF -> AKIEC
    }
    let m = evaluate(&labels, &predictions, &isic_names(), &ISIC_GROUPS);
    (labels, predictions, m)
}

fn close(a: f64, b: f64) -> bool {
    // serde_json's default float parser may be 1 ulp off.
    (a - b).abs() <= 1e-15 * a.abs().max(1.0)
}

fn assert_metrics_close(a: &EvalMetrics, b: &EvalMetrics) {
    assert_eq!(a.num_samples, b.num_samples);
    assert_eq!(a.confusion, b.confusion);
    assert_eq!(a.group_support, b.group_support);
    assert!(close(a.total_accuracy, b.total_accuracy));
    assert!(close(a.macro_f1, b.macro_f1));
    assert!(close(a.balanced_accuracy, b.balanced_accuracy));
    assert!(close(a.groups.many, b.groups.many));
    assert!(close(a.groups.medium, b.groups.medium));
    assert!(close(a.groups.few, b.groups.few));
    assert!(close_auc(a.macro_auc, b.macro_auc));
    assert_eq!(a.per_class.len(), b.per_class.len());
    for (x, y) in a.per_class.iter().zip(&b.per_class) {
        assert_eq!((&x.name, x.group, x.support), (&y.name, y.group, y.support));
        assert!(close(x.precision, y.precision) && close(x.recall, y.recall) && close(x.f1, y.f1));
        assert!(
            close_auc(x.auc, y.auc),
            "{}: AUC {:?} vs {:?}",
            x.name,
            x.auc,
            y.auc
        );
    }
}

fn close_auc(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (a, b) => a == b,
    }
}

/// [`sample_metrics`] with probabilities: 0.55 on the predicted class, and MEL's probability
/// `0.9 - i / 100` on image `i`, so MEL's ranking is not that of the argmax.
fn sample_probabilities() -> (Vec<usize>, Vec<Vec<f32>>, EvalMetrics) {
    let (labels, predictions, _) = sample_metrics();
    let probabilities: Vec<Vec<f32>> = predictions
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let mut row: Vec<f32> = (0..7).map(|c| if c == p { 0.55 } else { 0.075 }).collect();
            if p != 0 {
                row[0] = 0.3 - i as f32 / 100.0;
            }
            row
        })
        .collect();
    let m = evaluate_probabilities(&labels, &probabilities, &isic_names(), &ISIC_GROUPS);
    (labels, probabilities, m)
}

fn no_temp_files(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            !name.starts_with(".tmp"),
            "temporary file left behind: {name}"
        );
    }
}

#[test]
fn report_json_round_trip_and_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_metrics();
    write_report(dir.path(), &context(), &m).unwrap();

    let back = read_report(&dir.path().join("report.json")).unwrap();
    assert_eq!(back.schema_version, REPORT_SCHEMA_VERSION);
    assert_eq!(back.context, context());
    assert_metrics_close(&back.metrics, &m);

    // The field names scripts rely on.
    let text = fs::read_to_string(dir.path().join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["context"]["seed"].as_u64(), Some(u64::MAX - 1));
    assert_eq!(v["context"]["split"], "test");
    assert_eq!(v["metrics"]["num_samples"], 28);
    // 22 of 28 right: 2 single mistakes and the 4 DF images.
    assert!(close(
        v["metrics"]["total_accuracy"].as_f64().unwrap(),
        22.0 / 28.0
    ));
    // Few = AKIEC (4/4), DF (0/4), VASC (4/4): 8/12.
    assert!(close(
        v["metrics"]["groups"]["few"].as_f64().unwrap(),
        8.0 / 12.0
    ));
    assert_eq!(v["metrics"]["group_support"]["medium"], 12);
    let df = &v["metrics"]["per_class"][5];
    assert_eq!(df["name"], "DF");
    assert_eq!(df["group"], "few");
    assert_eq!(df["precision"].as_f64(), Some(0.0));
    assert_eq!(df["support"], 4);
    for key in ["precision", "recall", "f1", "support", "name", "group"] {
        assert!(df.get(key).is_some(), "per_class entry lacks {key}");
    }
    for key in ["macro_f1", "balanced_accuracy", "confusion"] {
        assert!(v["metrics"].get(key).is_some(), "metrics lacks {key}");
    }
    assert_eq!(v["metrics"]["confusion"][5][3], 4);
    no_temp_files(dir.path());
}

#[test]
fn report_md_in_percent() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_metrics();
    write_report(dir.path(), &context(), &m).unwrap();
    let md = fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.starts_with("# Evaluation report: spmix-20260101-120000\n"),
        "{md}"
    );
    assert!(md.contains("| Split | `test` |"));
    assert!(md.contains("| Epoch | `17` |"));
    // Summary: Many NV 4/4, Medium (MEL 3, BCC 3, BKL 4)/12, Few 8/12, Total 22/28.
    assert!(md.contains("| 100.00 |"), "{md}");
    assert!(md.contains("83.33"), "{md}");
    assert!(md.contains("66.67"), "{md}");
    assert!(md.contains("78.57"), "{md}");
    // DF: never predicted, precision and recall 0.
    // No probabilities here: AUC is n/a.
    assert!(
        md.contains("| DF | Few | 0.00 | 0.00 | 0.00 | n/a | 4 |"),
        "{md}"
    );
    // NV: precision 4/6, recall 1.
    assert!(
        md.contains("| NV | Many | 66.67 | 100.00 | 80.00 | n/a | 4 |"),
        "{md}"
    );
    assert!(
        md.contains("| **DF** | 0 | 0 | 0 | 4 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert!(md.contains("![confusion matrix](confusion.png)"));
}

fn load_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn distinct_colors(img: &RgbImage) -> usize {
    img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
}

fn count_color(img: &RgbImage, rgb: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == rgb).count()
}

#[test]
fn confusion_png_shows_cells_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_metrics();
    write_report(dir.path(), &context(), &m).unwrap();
    let img = load_png(&dir.path().join("confusion.png"));
    assert!(
        img.width() >= 400 && img.height() >= 400,
        "{:?}",
        img.dimensions()
    );
    // Cells holding a whole row (NV, AKIEC, BKL, VASC, DF->AKIEC) have the darkest colour.
    let full = count_color(&img, [8, 48, 107]);
    assert!(
        full > 6 * 40 * 40,
        "only {full} pixels of full-recall colour"
    );
    // Zero cells are the lightest colour.
    assert!(count_color(&img, [247, 251, 255]) > 20 * 40 * 40);
    // Anti-aliased text gives many grey levels: the font was found and used.
    assert!(
        distinct_colors(&img) > 50,
        "{} colours",
        distinct_colors(&img)
    );
    let title_ink = (0..img.width())
        .flat_map(|x| (5..45).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 128)
        .count();
    assert!(title_ink > 200, "title has {title_ink} dark pixels");
}

#[test]
fn confusion_png_rejects_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("confusion.png");
    let err = plot_confusion(&path, &[vec![1, 0], vec![0, 1]], &isic_names()).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<ReportError>(),
        Some(ReportError::ConfusionShape {
            rows: 2,
            cols: 2,
            classes: 7,
            ..
        })
    ));
    assert!(err.to_string().contains("confusion.png"), "{err}");
    assert!(!path.exists());
}

fn epochs(n: usize) -> Vec<EpochRecord> {
    (1..=n)
        .map(|e| {
            let t = e as f64 / n as f64;
            EpochRecord {
                epoch: e,
                lr: 1e-3 * (1.0 - t * 0.9),
                train_loss: 2.0 - 1.5 * t,
                train_accuracy: 0.3 + 0.6 * t,
                val_accuracy: 0.25 + 0.5 * t,
                val_many: 0.5 + 0.4 * t,
                val_medium: 0.2 + 0.5 * t,
                val_few: 0.05 + 0.4 * t,
                val_macro_f1: 0.2 + 0.45 * t,
                val_balanced_accuracy: 0.25 + 0.5 * t,
                seconds: 12.5,
            }
        })
        .collect()
}

#[test]
fn curves_png_has_every_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    let mut records = epochs(12);
    records.reverse(); // order does not matter
    plot_curves(&path, &records).unwrap();
    let img = load_png(&path);
    assert_eq!(img.dimensions(), (1500, 480));
    for rgb in [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [23, 190, 207],
    ] {
        let n = count_color(&img, rgb);
        assert!(n > 50, "series colour {rgb:?}: {n} pixels");
    }
    assert!(distinct_colors(&img) > 50);
    no_temp_files(dir.path());
}

#[test]
fn curves_png_single_epoch_and_nan_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    plot_curves(&path, &epochs(1)).unwrap();
    assert_eq!(load_png(&path).dimensions(), (1500, 480));

    let mut records = epochs(4);
    records[3].train_loss = f64::NAN; // the NaN guard stopped the run at epoch 4
    plot_curves(&path, &records).unwrap();
    assert!(distinct_colors(&load_png(&path)) > 50);

    let err = plot_curves(&path, &[]).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<ReportError>(),
        Some(ReportError::NoEpochs { .. })
    ));
}

#[test]
fn epoch_record_csv_round_trip() {
    let records = epochs(3);
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &records {
        w.serialize(r).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with(
        "epoch,lr,train_loss,train_accuracy,val_accuracy,val_many,val_medium,val_few,val_macro_f1,val_balanced_accuracy,seconds\n"
    ));
    let back: Vec<EpochRecord> = csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back, records);
}

#[test]
fn predictions_csv_header_and_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.csv");
    let images: Vec<String> = vec![
        "ISIC_0034524".into(),
        "ISIC_0034525".into(),
        "synth_0003".into(),
    ];
    let probabilities = vec![
        vec![0.1, 0.7, 0.05, 0.05, 0.05, 0.025, 0.025],
        vec![1.0 / 3.0, 1e-8, 0.0, 0.2, 0.15, 0.3, 0.016_666_668],
        vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ];
    write_predictions_csv(&path, &images, &probabilities, &isic_names()).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"));
    assert_eq!(
        lines.next(),
        Some("ISIC_0034524,0.1,0.7,0.05,0.05,0.05,0.025,0.025")
    );
    assert_eq!(text.lines().count(), 4);

    let (img_back, prob_back) = read_predictions_csv(&path).unwrap();
    assert_eq!(img_back, images);
    // Bit-exact: the CSV is the source for re-scoring and must agree with report.json.
    let bits = |p: &[Vec<f32>]| -> Vec<Vec<u32>> {
        p.iter()
            .map(|r| r.iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&prob_back), bits(&probabilities));
    let full = read_predictions_csv_full(&path).unwrap();
    assert_eq!(full.class_names, isic_names());
    assert_eq!(argmax_rows(&prob_back), vec![1, 0, 6]);
    no_temp_files(dir.path());
}

#[test]
fn predictions_csv_consistent_with_report() {
    // What the end-to-end test does: scores recomputed from predictions.csv equal report.json.
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, m) = sample_metrics();
    let images: Vec<String> = (0..labels.len()).map(|i| format!("img_{i:04}")).collect();
    let probabilities: Vec<Vec<f32>> = predictions
        .iter()
        .map(|&p| (0..7).map(|c| if c == p { 0.55 } else { 0.075 }).collect())
        .collect();
    write_predictions_csv(
        &dir.path().join("predictions.csv"),
        &images,
        &probabilities,
        &isic_names(),
    )
    .unwrap();
    write_report(dir.path(), &context(), &m).unwrap();
    let (_, probs) = read_predictions_csv(&dir.path().join("predictions.csv")).unwrap();
    let rescored = evaluate(&labels, &argmax_rows(&probs), &isic_names(), &ISIC_GROUPS);
    let report = read_report(&dir.path().join("report.json")).unwrap();
    assert_metrics_close(&report.metrics, &rescored);
}

#[test]
fn predictions_csv_write_errors_keep_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.csv");
    let names = isic_names();
    let row = vec![1.0 / 7.0; 7];
    write_predictions_csv(&path, &["a".into()], std::slice::from_ref(&row), &names).unwrap();
    let before = fs::read(&path).unwrap();

    let err = write_predictions_csv(
        &path,
        &["a".into(), "b".into()],
        std::slice::from_ref(&row),
        &names,
    )
    .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<ReportError>(),
        Some(ReportError::RowCountMismatch {
            images: 2,
            rows: 1,
            ..
        })
    ));
    let err = write_predictions_csv(
        &path,
        &["a".into(), "b".into()],
        &[row.clone(), vec![0.5; 6]],
        &names,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("row 1 (image \"b\") has 6 probabilities, expected 7"),
        "{err}"
    );
    let err = write_predictions_csv(&path, &["a,b".into()], std::slice::from_ref(&row), &names)
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<ReportError>(),
        Some(ReportError::BadImageName { .. })
    ));
    assert!(err.to_string().contains("predictions.csv"), "{err}");

    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "a failed write changed the old file"
    );
    no_temp_files(dir.path());
}

#[test]
fn predictions_csv_read_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("name,MEL,NV\na,0.5,0.5\n", "bad header"),
        ("image\na\n", "bad header"),
        (
            "image,MEL,NV\na,0.5,0.5\nb,0.5\n",
            "line 3: 2 fields, expected 3",
        ),
        (
            "image,MEL,NV\na,0.5,zero\n",
            "line 2: column 3 (NV): \"zero\" is not a number",
        ),
        (
            "image,MEL,NV\na,0.5,0.5\nb,NaN,0.5\n",
            "line 3: column 2 (MEL): \"NaN\" is not finite",
        ),
    ];
    for (i, (content, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.csv"));
        fs::write(&path, content).unwrap();
        let err = read_predictions_csv(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("bad{i}.csv")), "{err}");
        assert!(
            err.contains(expected),
            "case {i}: {err:?} lacks {expected:?}"
        );
    }
    let missing = dir.path().join("missing.csv");
    let err = format!("{:#}", read_predictions_csv(&missing).unwrap_err());
    assert!(err.contains("missing.csv"), "{err}");
}

#[test]
fn unwritable_run_dir_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_metrics();
    let missing = dir.path().join("no-such-run");
    let err = write_report(&missing, &context(), &m)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-run") && err.contains("report.json"),
        "{err}"
    );

    // A file where the run directory should be.
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = write_predictions_csv(&file.join("predictions.csv"), &[], &[], &isic_names())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not-a-dir"), "{err}");
}

#[test]
fn report_overwrites_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_metrics();
    write_report(dir.path(), &context(), &m).unwrap();
    let mut ctx = context();
    ctx.split = "val".into();
    write_report(dir.path(), &ctx, &m).unwrap();
    assert_eq!(
        read_report(&dir.path().join("report.json"))
            .unwrap()
            .context
            .split,
        "val"
    );
    let names: HashSet<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let expected: HashSet<String> = ["report.json", "report.md", "confusion.png"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn report_shows_per_class_and_macro_auc_of_the_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_probabilities();
    // Argmax metrics are those of the predicted labels alone.
    let (_, _, labels_only) = sample_metrics();
    assert_eq!(m.confusion, labels_only.confusion);
    assert_eq!(labels_only.macro_auc, None);
    // MEL (images 0-3; image 1 predicted NV): positives 0.55, 0.29, 0.55, 0.55 against 24
    // negatives, 0.3 - i/100 for i >= 4 (0.26 .. 0.03) -> every pair right.
    assert_eq!(m.per_class[0].auc, Some(1.0));
    // DF is never predicted: every image scores 0.075 on DF, all tie: 0.5.
    assert_eq!(m.per_class[5].auc, Some(0.5));
    let macro_auc = m.macro_auc.unwrap();
    let mean = m.per_class.iter().map(|c| c.auc.unwrap()).sum::<f64>() / 7.0;
    assert!(close(macro_auc, mean));

    write_report(dir.path(), &context(), &m).unwrap();
    let md = fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| Class | Group | Precision (%) | Recall (%) | F1 (%) | AUC | Support |"));
    assert!(
        md.contains("| MEL | Medium | 100.00 | 75.00 | 85.71 | 1.0000 | 4 |"),
        "{md}"
    );
    assert!(
        md.contains("| DF | Few | 0.00 | 0.00 | 0.00 | 0.5000 | 4 |"),
        "{md}"
    );
    assert!(
        md.contains(&format!("ISIC 2018's definition): {macro_auc:.4}.")),
        "{md}"
    );

    let text = fs::read_to_string(dir.path().join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(close(
        v["metrics"]["macro_auc"].as_f64().unwrap(),
        macro_auc
    ));
    assert_eq!(v["metrics"]["per_class"][0]["auc"].as_f64(), Some(1.0));
    let back = read_report(&dir.path().join("report.json")).unwrap();
    assert_metrics_close(&back.metrics, &m);
}

#[test]
fn a_report_json_without_auc_fields_still_reads() {
    // report.json files written before the AUCs existed.
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = sample_probabilities();
    write_report(dir.path(), &context(), &m).unwrap();
    let path = dir.path().join("report.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    v["metrics"].as_object_mut().unwrap().remove("macro_auc");
    for class in v["metrics"]["per_class"].as_array_mut().unwrap() {
        class.as_object_mut().unwrap().remove("auc");
    }
    fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let back = read_report(&path).unwrap();
    assert_eq!(back.metrics.macro_auc, None);
    assert!(back.metrics.per_class.iter().all(|c| c.auc.is_none()));
}
