//! `trainer predict` on files and folders: a folder gives its images sorted by name (not its
//! sub-folders, not other files); `--out` writes the CSV atomically; an unreadable image gets a row
//! naming the file and exit status 1 while the others are predicted; probabilities round-trip as
//! exact `f32` and `predicted` is their argmax; batching does not change a prediction.
//!
//! Uses the committed tiny run of `tests/fixtures/user_data/` (see tests/export_timm.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/user_data")
}

fn predict(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .env("RUST_LOG", "warn")
        .args(["predict", "--device", "cpu", "--run"])
        .arg(fixtures().join("run"))
        .args(args)
        .output()
        .unwrap()
}

struct Row {
    image: String,
    probs: Vec<f32>,
    predicted: String,
    file: String,
    error: String,
}

fn parse(text: &str) -> Vec<Row> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            Row {
                image: rec[0].to_string(),
                probs: (1..8).filter_map(|j| rec[j].parse().ok()).collect(),
                predicted: rec[8].to_string(),
                file: rec[9].to_string(),
                error: rec[10].to_string(),
            }
        })
        .collect()
}

#[test]
fn folders_files_out_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let src = fixtures().join("export_images");
    // Names chosen so that sorted order differs from creation order.
    std::fs::copy(src.join("image_2.png"), folder.join("b.PNG")).unwrap();
    std::fs::copy(src.join("image_1.png"), folder.join("a.png")).unwrap();
    std::fs::copy(src.join("image_3.png"), folder.join("sub/c.png")).unwrap();
    std::fs::copy(src.join("image_3.png"), folder.join(".hidden.png")).unwrap();
    std::fs::write(folder.join("notes.txt"), "not an image").unwrap();
    std::fs::write(folder.join("broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    let single = src.join("image_3.png");

    let out = dir.path().join("pred.csv");
    std::fs::write(&out, "old").unwrap();
    let o = predict(&[&folder, &single, Path::new("--out"), &out]);
    assert_eq!(o.status.code(), Some(1), "one image is broken: exit 1");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    let rows = parse(&std::fs::read_to_string(&out).unwrap());
    let images: Vec<&str> = rows.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(images, ["a", "b", "broken", "image_3"]);
    assert!(rows[2].error.contains("broken.jpg") && rows[2].probs.is_empty());
    assert_eq!(
        rows[2].file,
        folder.join("broken.jpg").display().to_string()
    );
    assert!(rows[2].predicted.is_empty());
    let classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
    for r in rows.iter().filter(|r| r.error.is_empty()) {
        assert_eq!(r.probs.len(), 7);
        let sum: f32 = r.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        let best = trainer::metrics::argmax_rows(std::slice::from_ref(&r.probs))[0];
        assert_eq!(r.predicted, classes[best]);
    }

    // Stdout gives the same rows; each image alone (a batch of one) gives the same numbers as
    // in a batch (the run's eval.batch_size is 2, so the 4 inputs made batches of 2).
    let o = predict(&[&folder.join("a.png")]);
    assert!(o.status.success());
    let alone = parse(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(alone.len(), 1);
    for (a, b) in alone[0].probs.iter().zip(&rows[0].probs) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
}

#[test]
fn a_missing_path_or_an_empty_folder_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pred.csv");
    let missing = dir.path().join("nope.jpg");
    let o = predict(&[&missing, Path::new("--out"), &out]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(missing.to_str().unwrap()));
    assert!(!out.exists());

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("readme.txt"), "x").unwrap();
    let o = predict(&[&empty, Path::new("--out"), &out]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(empty.to_str().unwrap()) && err.contains("no image"),
        "{err}"
    );
    assert!(!out.exists());
}
