//! The CSV `trainer predict` writes: one row per input image, in input order, with the class
//! probabilities (full `f32` precision, as in `predictions.csv`), the predicted class, the file
//! and an `error` column for images that could not be read.
//!
//! ```
//! use std::path::PathBuf;
//! let rows = vec![
//!     (PathBuf::from("in/a.jpg"), Ok(vec![0.25f32, 0.5, 0.125, 0.0625, 0.0625, 0.0, 0.0])),
//!     (PathBuf::from("b.jpg"), Err("cannot decode image b.jpg: bad, really".to_string())),
//! ];
//! let text = trainer::predict_csv::predictions_text(&rows).unwrap();
//! let mut lines = text.lines();
//! assert_eq!(lines.next().unwrap(), "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC,predicted,file,error");
//! assert_eq!(lines.next().unwrap(), "a,0.25,0.5,0.125,0.0625,0.0625,0,0,NV,in/a.jpg,");
//! assert_eq!(lines.next().unwrap(), "b,,,,,,,,,b.jpg,\"cannot decode image b.jpg: bad, really\"");
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One input of `predict`: the image file and its probabilities `[C]` (label order) or why it
/// failed.
pub type PredictionRow = (PathBuf, std::result::Result<Vec<f32>, String>);

/// The header: `image`, the class names, `predicted`, `file`, `error`.
pub fn header() -> Vec<String> {
    let mut header: Vec<String> = vec!["image".into()];
    header.extend(dataset::IsicClass::ALL.iter().map(|c| c.name().to_string()));
    header.extend(["predicted", "file", "error"].map(String::from));
    header
}

/// Writes the header and one row per input: `image` is the file stem; probabilities in Rust's
/// shortest round-trip form (parsing gives the exact `f32`); `predicted` the class of the highest
/// probability (the first on a tie); `file` the path as given; `error` empty for good images. A
/// failed image has empty probabilities and class.
pub fn write_predictions(out: impl Write, rows: &[PredictionRow]) -> Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    w.write_record(header())?;
    for (path, result) in rows {
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        let mut record = vec![id];
        match result {
            Ok(p) => {
                record.extend(p.iter().map(|v| format!("{v}")));
                let best = crate::metrics::argmax_rows(std::slice::from_ref(p))[0];
                record.push(
                    dataset::IsicClass::ALL
                        .get(best)
                        .map_or_else(|| best.to_string(), |c| c.name().to_string()),
                );
                record.push(path.display().to_string());
                record.push(String::new());
            }
            Err(message) => {
                record.extend(std::iter::repeat_n(String::new(), dataset::NUM_CLASSES + 1));
                record.push(path.display().to_string());
                record.push(message.clone());
            }
        }
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

/// The whole CSV as text (see [`write_predictions`]).
pub fn predictions_text(rows: &[PredictionRow]) -> Result<String> {
    let mut buf = Vec::new();
    write_predictions(&mut buf, rows)?;
    String::from_utf8(buf).context("predictions CSV is not UTF-8")
}

/// Writes the CSV to `path` atomically (temporary file beside it, then rename): a failed write
/// leaves an earlier file untouched.
pub fn write_predictions_file(path: &Path, rows: &[PredictionRow]) -> Result<()> {
    let text = predictions_text(rows)?;
    Ok(crate::atomic_file::write_atomic(path, text.as_bytes())?)
}
