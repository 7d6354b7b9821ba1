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

use crate::atomic_file::write_atomic;
use crate::config::Config;

/// Provenance of a run, saved as `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    pub method: String,
    pub seed: u64,
    /// `git rev-parse HEAD` of the working tree, with `-dirty` appended when tracked files differ
    /// from that commit (the run's code is then not exactly the commit's), or `unknown`.
    pub git_revision: String,
    /// SHA-256 (hex) of the split's `split.json`.
    pub split_manifest_sha256: String,
    pub split_dir: PathBuf,
    /// UTC start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
}

/// The UTC time `t` as a folder suffix `YYYYMMDD-HHMMSS` and as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_stamps(t: std::time::SystemTime) -> (String, String) {
    let rfc3339 = humantime::format_rfc3339_seconds(t).to_string();
    let compact = rfc3339
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    (compact, rfc3339)
}

/// `git rev-parse HEAD` in the current folder, `-dirty` appended when tracked files have
/// uncommitted changes; `unknown` outside a git work tree.
pub fn git_revision() -> String {
    git_revision_in(Path::new("."))
}

/// [`git_revision`] of the work tree that holds `dir`.
pub fn git_revision_in(dir: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty()) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
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
    let (compact, started) = utc_stamps(std::time::SystemTime::now());
    let base = format!("{}-{compact}", cfg.run.name);
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
    let filled = fill(cfg, &dir, started);
    if filled.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((dir, filled?))
}

/// Writes `config.toml` and `run.json` into a new run folder.
fn fill(cfg: &Config, dir: &Path, started: String) -> Result<RunInfo> {
    let info = RunInfo {
        name: cfg.run.name.clone(),
        method: cfg.method.name.as_str().into(),
        seed: cfg.run.seed,
        git_revision: git_revision(),
        split_manifest_sha256: manifest_hash(&cfg.data.split_dir)?,
        split_dir: cfg.data.split_dir.clone(),
        started,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_timestamp_is_compact_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(
            utc_stamps(t),
            (
                "20000229-010203".to_string(),
                "2000-02-29T01:02:03Z".to_string()
            )
        );
    }
}
