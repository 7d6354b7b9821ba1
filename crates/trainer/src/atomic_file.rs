//! The one way the trainer writes a file: a temporary file in the same folder, flushed and synced,
//! then renamed over the target, so a crash or a full disk never leaves a half-written file and an
//! earlier version stays intact until the new one is complete.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed atomic write; names the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {error}")]
pub struct WriteError {
    pub path: PathBuf,
    /// Shown in the message, deliberately not a `source()` (printed once by `{:#}`).
    pub error: std::io::Error,
}

/// Writes `bytes` to `path` atomically. The file gets the mode of any new file (0644 under umask
/// 022), not tempfile's 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |error| WriteError {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = saliency::output_file::temp_file_beside(dir, ".tmp-", "").map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let err = write_atomic(&dir.path().join("missing/a.txt"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing/a.txt"), "{err}");
    }
}
