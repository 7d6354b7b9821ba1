//! The CSV `trainer predict` prints: one row per input image, in input order, with the class
//! probabilities of the images that could be read and an `error` column for those that could not.
//!
//! ```
//! let rows = vec![
//!     ("a.jpg".into(), Ok(vec![0.5f32, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0])),
//!     ("b.jpg".into(), Err("cannot decode image b.jpg: bad, really".to_string())),
//! ];
//! let mut out = Vec::new();
//! trainer::predict_csv::write_predictions(&mut out, &rows).unwrap();
//! let text = String::from_utf8(out).unwrap();
//! assert_eq!(text.lines().next().unwrap(), "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC,error");
//! assert_eq!(text.lines().nth(1).unwrap(), "a,0.500000,0.500000,0.000000,0.000000,0.000000,0.000000,0.000000,");
//! assert_eq!(text.lines().nth(2).unwrap(), "b,,,,,,,,\"cannot decode image b.jpg: bad, really\"");
//! ```

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

/// One input of `predict`: the image file and its probabilities (label order) or why it failed.
pub type PredictionRow = (PathBuf, std::result::Result<Vec<f32>, String>);

/// Writes the header and one row per input: `image` is the file stem, probabilities with six
/// decimals, and `error` empty for good images; a failed image has empty probabilities.
pub fn write_predictions(out: impl Write, rows: &[PredictionRow]) -> Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    let mut header: Vec<String> = vec!["image".into()];
    header.extend(dataset::IsicClass::ALL.iter().map(|c| c.name().to_string()));
    header.push("error".into());
    w.write_record(&header)?;
    for (path, result) in rows {
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        let mut record = vec![id];
        match result {
            Ok(p) => {
                record.extend(p.iter().map(|v| format!("{v:.6}")));
                record.push(String::new());
            }
            Err(message) => {
                record.extend(std::iter::repeat_n(String::new(), dataset::NUM_CLASSES));
                record.push(message.clone());
            }
        }
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}
