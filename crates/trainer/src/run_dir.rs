//! The run folder `runs/<name>-<UTC timestamp>/`:
//! - `config.toml`: the resolved configuration (defaults and `--set` overrides applied);
//! - `run.json`: [`RunInfo`] (seed, git revision, the split's manifest hash, method, start time);
//! - `metrics.csv`: one row per finished epoch (rewritten atomically after each epoch);
//! - `checkpoints/` (see [`crate::checkpoint`]), and after training `report.md`, `report.json`,
//!   `predictions.csv`, `confusion.png`, `curves.png`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::EpochRow;
use crate::config::Config;

/// Provenance of a run, saved as `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    pub method: String,
    pub seed: u64,
    /// `git rev-parse HEAD` of the working tree, or `unknown`.
    pub git_revision: String,
    /// SHA-256 (hex) of the split's `split.json`.
    pub split_manifest_sha256: String,
    pub split_dir: PathBuf,
    /// UTC start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
}

/// UTC date and time of `secs` since the Unix epoch: (year, month, day, hour, minute, second).
pub fn civil_time(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `git rev-parse HEAD` in the current folder, or `unknown`.
pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// SHA-256 (hex) of `<split_dir>/split.json`.
pub fn manifest_hash(split_dir: &Path) -> Result<String> {
    let p = split_dir.join(dataset::split_files::MANIFEST_FILE);
    let bytes =
        std::fs::read(&p).with_context(|| format!("reading the split manifest {}", p.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Creates a fresh run folder `<output_dir>/<name>-<timestamp>` (a `-2`, `-3`... suffix when that
/// name is taken: an existing run is never overwritten) and writes `config.toml` and `run.json`.
pub fn create(cfg: &Config) -> Result<(PathBuf, RunInfo)> {
    let out = &cfg.run.output_dir;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let secs = now_secs();
    let (y, mo, d, h, mi, s) = civil_time(secs);
    let base = format!("{}-{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}", cfg.run.name);
    let mut dir = out.join(&base);
    let mut n = 2;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                dir = out.join(format!("{base}-{n}"));
                n += 1;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create the run folder {} (is the output folder writable?)",
                        dir.display()
                    )
                })
            }
        }
    }
    // Remove the folder again when it cannot be filled: no orphan run folders.
    let filled = fill(cfg, &dir, (y, mo, d, h, mi, s));
    if filled.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((dir, filled?))
}

/// Writes `config.toml` and `run.json` into a new run folder.
fn fill(cfg: &Config, dir: &Path, time: (i64, u32, u32, u32, u32, u32)) -> Result<RunInfo> {
    let (y, mo, d, h, mi, s) = time;
    let info = RunInfo {
        name: cfg.run.name.clone(),
        method: cfg.method.name.as_str().into(),
        seed: cfg.run.seed,
        git_revision: git_revision(),
        split_manifest_sha256: manifest_hash(&cfg.data.split_dir)?,
        split_dir: cfg.data.split_dir.clone(),
        started: format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    };
    write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    write_atomic(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    Ok(info)
}

/// Reads an existing run folder's configuration and provenance.
pub fn open(dir: &Path) -> Result<(Config, RunInfo)> {
    if !dir.is_dir() {
        bail!("run folder {} does not exist", dir.display());
    }
    let cfg = Config::from_file(&dir.join("config.toml"), &[])
        .with_context(|| format!("reading the run's config in {}", dir.display()))?;
    let p = dir.join("run.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let info = serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    Ok((cfg, info))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename; the file
/// gets the mode of any new file (0644 under umask 022), not tempfile's 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = saliency::output_file::temp_file_beside(dir, ".tmp-", "")
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// `metrics.csv` text of the history.
pub fn metrics_csv(history: &[EpochRow]) -> String {
    let mut s = String::from(
        "epoch,lr,train_loss,train_accuracy,val_accuracy,val_many,val_medium,val_few,val_macro_f1,val_balanced_accuracy,seconds\n",
    );
    for r in history {
        s.push_str(&format!(
            "{},{:e},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.2}\n",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.val_accuracy,
            r.val_many,
            r.val_medium,
            r.val_few,
            r.val_macro_f1,
            r.val_balanced_accuracy,
            r.seconds
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_table() {
        for (secs, want) in [
            (0, (1970, 1, 1, 0, 0, 0)),
            (951_782_400, (2000, 2, 29, 0, 0, 0)),
            (1_700_000_000, (2023, 11, 14, 22, 13, 20)),
            (4_102_444_799, (2099, 12, 31, 23, 59, 59)),
        ] {
            assert_eq!(civil_time(secs), want, "{secs}");
        }
    }
}
