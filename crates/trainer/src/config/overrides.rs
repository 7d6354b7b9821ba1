//! The TOML-level operations behind layered configs and `--set`: deep merge, the check that every
//! key exists in the schema (with a suggestion for typos), and `--set a.b=value` overrides.

use super::{ConfigError, Result};

/// Deep-merges `over` onto `base` (tables merge, other values replace).
pub(super) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Every key of `value` must exist in `known` (the default config's tree).
pub(super) fn check_keys(
    value: &toml::Table,
    known: &toml::Table,
    prefix: &str,
    origin: &str,
) -> Result<()> {
    for (k, v) in value {
        let path = format!("{prefix}{k}");
        match known.get(k) {
            None => {
                return Err(ConfigError::UnknownKey {
                    origin: origin.into(),
                    key: path,
                    suggestion: suggest(k, known, prefix),
                })
            }
            Some(toml::Value::Table(kt)) => {
                if let toml::Value::Table(vt) = v {
                    check_keys(vt, kt, &format!("{path}."), origin)?;
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `; did you mean `...`?` for the nearest known key (edit distance), or the list of valid keys.
fn suggest(key: &str, known: &toml::Table, prefix: &str) -> String {
    let best = known
        .keys()
        .map(|k| (strsim::levenshtein(key, k), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= key.len().max(3) / 2 + 1 => format!("; did you mean `{prefix}{k}`?"),
        _ => {
            let all: Vec<String> = known.keys().map(|k| format!("{prefix}{k}")).collect();
            format!("; valid keys here: {}", all.join(", "))
        }
    }
}

/// Applies `a.b.c=value`: the key must exist; the value is TOML (`3`, `1e-4`, `true`, `[1, 2]`,
/// `"x"`) or, failing that, a bare string.
pub(super) fn apply_override(
    value: &mut toml::Table,
    known: &toml::Table,
    arg: &str,
) -> Result<()> {
    let bad = |reason: String| ConfigError::BadOverride {
        arg: arg.into(),
        reason,
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE, e.g. optim.lr=1e-4".into()))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {}", raw.trim())) {
        Ok(mut t) => t.remove("v").expect("parsed key v"),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let mut kt = known;
    let mut vt = value;
    let mut prefix = String::new();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match kt.get(*p) {
            None => {
                return Err(bad(format!(
                    "unknown key `{prefix}{p}`{}",
                    suggest(p, kt, &prefix)
                )))
            }
            Some(toml::Value::Table(sub)) if !last => {
                kt = sub;
                let entry = vt
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                vt = entry
                    .as_table_mut()
                    .ok_or_else(|| bad(format!("`{prefix}{p}` is not a table in the file")))?;
                prefix.push_str(p);
                prefix.push('.');
            }
            Some(toml::Value::Table(_)) => {
                return Err(bad(format!(
                    "`{prefix}{p}` is a table; set one of its keys"
                )))
            }
            Some(_) if !last => return Err(bad(format!("`{prefix}{p}` is not a table"))),
            Some(default) => {
                // A float key given as an integer (`optim.lr=1`) is still a float.
                let v = match (default, parsed) {
                    (toml::Value::Float(_), toml::Value::Integer(n)) => {
                        toml::Value::Float(n as f64)
                    }
                    (_, v) => v,
                };
                vt.insert(p.to_string(), v);
                return Ok(());
            }
        }
    }
    Err(bad("empty key".into()))
}
