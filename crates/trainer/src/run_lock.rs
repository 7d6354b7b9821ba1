//! An advisory lock on a run folder, so two processes never write checkpoints into one run.
//!
//! `train` (new or `--resume`) holds an exclusive lock on `<run>/run.lock` for its whole life; the
//! file holds the holder's process id. A second writer fails at once with an error naming that
//! process. The operating system drops the lock when the holder exits, even when it is killed, so
//! a stale file never blocks a later resume. The file itself stays (removing it would race with a
//! process about to lock it).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// File name of the lock inside a run folder.
pub const LOCK_FILE: &str = "run.lock";

/// A held lock on a run folder; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    // Held for its lock; closing the file releases it.
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `run_dir` for writing, recording this process's id; fails naming the holder when
    /// another process has it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                bail!(
                    "run folder {} is in use by {holder} (lock file {}); wait for it to finish or stop it",
                    run_dir.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|_| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_naming_the_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let recorded = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(recorded.trim(), std::process::id().to_string());
        // A second open file description conflicts even within one process.
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("in use by process {}", std::process::id()))
                && err.contains("run.lock"),
            "{err}"
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }
}
