//! Reading a configuration: a TOML file, the files it `extends` (each layer states only what
//! differs from its parent), the `--set` overrides, then the defaults for every missing key and the
//! cross-field checks.
//!
//! ```toml
//! # configs/baselines/ce.toml
//! extends = "../spmix.toml"   # relative to this file
//! [run]
//! name = "ce"
//! [method]
//! name = "ce"
//! ```

use std::path::{Path, PathBuf};

use super::overrides::{apply_override, check_keys, merge};
use super::{Config, ConfigError, Result};

/// The top-level key naming a parent config.
pub const EXTENDS_KEY: &str = "extends";

/// Longest chain of `extends` followed; a longer one is almost surely a mistake.
const MAX_EXTENDS_DEPTH: usize = 8;

impl Config {
    /// Reads a TOML file (and the files it extends), applies `--set` overrides and validates.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = read(path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::from_layers(
            &text,
            &path.display().to_string(),
            base,
            overrides,
            vec![path.to_path_buf()],
        )
    }

    /// Parses TOML text (`origin` names it in errors; an `extends` path is relative to the current
    /// folder), applies overrides, validates.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        Self::from_layers(text, origin, Path::new(""), overrides, Vec::new())
    }

    fn from_layers(
        text: &str,
        origin: &str,
        base_dir: &Path,
        overrides: &[String],
        chain: Vec<PathBuf>,
    ) -> Result<Self> {
        let known =
            toml::Table::try_from(Config::default()).expect("the default config serialises");
        let mut value = resolve_layers(text, origin, base_dir, &known, chain)?;
        for o in overrides {
            apply_override(&mut value, &known, o)?;
        }
        // Missing keys take the defaults, inside `[model]` too (its type has no serde defaults).
        let mut full = known;
        merge(&mut full, value);
        let cfg: Config = toml::Value::Table(full)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                origin: origin.into(),
                message: e.to_string(),
            })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            origin: origin.into(),
            message,
        })?;
        Ok(cfg)
    }

    /// The resolved configuration as TOML (what a run folder stores: no `extends`, every key).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises")
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// One layer's table with its parents merged under it; every key checked against the schema.
/// `chain` holds the files already on the way down (to refuse cycles).
fn resolve_layers(
    text: &str,
    origin: &str,
    base_dir: &Path,
    known: &toml::Table,
    mut chain: Vec<PathBuf>,
) -> Result<toml::Table> {
    let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.into(),
        message: e.to_string(),
    })?;
    let parent = match value.remove(EXTENDS_KEY) {
        None => None,
        Some(toml::Value::String(rel)) => Some(base_dir.join(rel)),
        Some(other) => {
            return Err(ConfigError::Extends {
                origin: origin.into(),
                message: format!("`{EXTENDS_KEY}` must be a path string, not {other}"),
            })
        }
    };
    check_keys(&value, known, "", origin)?;
    let Some(parent) = parent else {
        return Ok(value);
    };
    let identity = std::fs::canonicalize(&parent).unwrap_or_else(|_| parent.clone());
    if chain
        .iter()
        .any(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()) == identity)
    {
        return Err(ConfigError::Extends {
            origin: origin.into(),
            message: format!("`{EXTENDS_KEY}` = {} makes a cycle", parent.display()),
        });
    }
    if chain.len() >= MAX_EXTENDS_DEPTH {
        return Err(ConfigError::Extends {
            origin: origin.into(),
            message: format!("more than {MAX_EXTENDS_DEPTH} levels of `{EXTENDS_KEY}`"),
        });
    }
    let parent_text = std::fs::read_to_string(&parent).map_err(|e| ConfigError::Extends {
        origin: origin.into(),
        message: format!("cannot read `{EXTENDS_KEY}` = {}: {e}", parent.display()),
    })?;
    chain.push(parent.clone());
    let mut layered = resolve_layers(
        &parent_text,
        &parent.display().to_string(),
        parent.parent().unwrap_or(Path::new("")),
        known,
        chain,
    )?;
    merge(&mut layered, value);
    Ok(layered)
}
