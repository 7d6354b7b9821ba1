//! Temporary files for atomic writes (write, then rename onto the destination) whose mode is that
//! of any ordinary output file.
//!
//! `tempfile` creates files readable by the owner only (0600), so a rename would leave outputs
//! unreadable to the rest of a team sharing a run or split folder. Files made here are created
//! with mode 0666 minus the process umask (0644 with the usual umask 022), as `File::create` does.

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use tempfile::NamedTempFile;

/// A new temporary file `dir/<prefix>XXXXXX<suffix>`, mode 0666 & !umask on Unix; rename it onto
/// its destination with [`NamedTempFile::persist`]. It is deleted if dropped before that.
pub fn temp_file_beside(
    dir: &Path,
    prefix: impl AsRef<OsStr>,
    suffix: impl AsRef<OsStr>,
) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(&suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode goes to open(2) with O_CREAT, which applies the umask.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn persisted_file_has_the_umask_mode_not_0600() {
        let dir = tempfile::tempdir().unwrap();
        // The umask of this process, read back from a file made the ordinary way.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let tmp = temp_file_beside(dir.path(), ".t-", ".tmp").unwrap();
        let dest = dir.path().join("out");
        tmp.persist(&dest).unwrap();
        let got = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, want, "mode {got:o}, a plain file gets {want:o}");
    }
}
