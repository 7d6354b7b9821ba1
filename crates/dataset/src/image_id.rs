//! The one place where an image id read from a data file becomes a file name.
//!
//! Ids come from files users download (ISIC ground truth, HAM10000 metadata, split CSVs) and are
//! joined into paths both for reading (`<input dir>/<id>.jpg`) and writing
//! (`<split>/saliency/<id>.png`). An id is therefore accepted only when it is a plain file-name
//! stem: `[A-Za-z0-9._-]+`, at most [`MAX_ID_LEN`] bytes, not starting with a dot (dot files are
//! this crate's temporary files) and without `..`. Anything else (`../../victim/logo`, `/etc/x`,
//! `a\b`, an empty id) is refused with an error naming the file, row and id.
//!
//! ```
//! use dataset::image_id::{check_image_id, image_file};
//! use std::path::Path;
//! assert!(check_image_id("ISIC_0024306").is_ok());
//! assert!(check_image_id("../../victim/logo").is_err());
//! let csv = Path::new("gt.csv");
//! let p = image_file(Path::new("/data/in"), "ISIC_0024306", "jpg", csv, 2).unwrap();
//! assert_eq!(p, Path::new("/data/in/ISIC_0024306.jpg"));
//! let err = image_file(Path::new("/data/in"), "../x", "jpg", csv, 7).unwrap_err().to_string();
//! assert!(err.contains("gt.csv") && err.contains("row 7") && err.contains("\"../x\""));
//! ```

use std::path::{Path, PathBuf};

use crate::error::{DatasetError, Result};

/// Longest accepted id in bytes (file names are limited to 255 bytes; room for an extension).
pub const MAX_ID_LEN: usize = 200;

/// Why `id` cannot name a file, or Ok.
pub fn check_image_id(id: &str) -> std::result::Result<(), &'static str> {
    if id.is_empty() {
        return Err("the id is empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("the id is longer than 200 bytes");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(if matches!(c, '/' | '\\') {
            "the id contains a path separator"
        } else {
            "the id may only hold the characters A-Z a-z 0-9 . _ -"
        });
    }
    if id.contains("..") {
        return Err("the id contains `..`");
    }
    if id.starts_with('.') {
        return Err("the id starts with a dot");
    }
    Ok(())
}

/// Checks an id read from row `row` (1-based line) of `csv`; the error names all three.
pub fn checked_image_id(id: &str, csv: &Path, row: u64) -> Result<()> {
    check_image_id(id).map_err(|reason| DatasetError::UnsafeImageId {
        path: csv.to_owned(),
        row,
        id: id.to_owned(),
        reason,
    })
}

/// `dir/<id>.<extension>` for an id read from row `row` of `csv`, after [`checked_image_id`].
pub fn image_file(dir: &Path, id: &str, extension: &str, csv: &Path, row: u64) -> Result<PathBuf> {
    checked_image_id(id, csv, row)?;
    Ok(dir.join(format!("{id}.{extension}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused_ids() {
        for ok in ["ISIC_0024306", "a", "x.y", "HAM-1_2", "A.B-C_D"] {
            assert_eq!(check_image_id(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for (bad, why) in [
            ("", "empty"),
            ("../../victim/logo", "separator"),
            ("/etc/passwd", "separator"),
            ("a\\b", "separator"),
            ("..", ".."),
            ("a..b", ".."),
            (".hidden", "dot"),
            ("C:x", "characters"),
            ("ISIC 1", "characters"),
            ("ISIC_\u{e9}", "characters"),
            ("a\0b", "characters"),
            (long.as_str(), "longer"),
        ] {
            let reason = check_image_id(bad).unwrap_err();
            assert!(reason.contains(why), "{bad:?}: {reason}");
        }
    }
}
