//! The saliency-map cache of a split folder, keyed on image content.
//!
//! `saliency/manifest.json` records for each map (by image id) the image file it was computed
//! from: canonical path, size in bytes and SHA-256 of the bytes. `prepare-isic` reuses a map only
//! when all three match the image it is preparing now; file times play no part, so maps survive
//! unpacking an archive (old times) and are never reused for another image with the same id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DatasetError, Result};

/// File name of the cache manifest inside the `saliency/` folder.
pub const MAP_MANIFEST_FILE: &str = "manifest.json";

/// What a map was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSource {
    /// The image file (canonical path).
    pub source: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
}

impl MapSource {
    /// The key of an image file whose bytes are `bytes`.
    pub fn of(source: &Path, bytes: &[u8]) -> Self {
        MapSource {
            source: source.to_owned(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }
}

/// `saliency/manifest.json`: the source of every map in the folder, by image id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapManifest {
    /// Format version of this file.
    pub version: u32,
    /// Image id -> what its map was computed from.
    pub maps: BTreeMap<String, MapSource>,
}

impl MapManifest {
    /// The manifest in `saliency_dir`; an empty one (nothing reusable) when the folder or file is
    /// missing, or when the file cannot be parsed (then also a warning naming it).
    pub fn read_or_empty(saliency_dir: &Path) -> (Self, Option<String>) {
        let path = saliency_dir.join(MAP_MANIFEST_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return (Self::default(), None);
        };
        match serde_json::from_str(&text) {
            Ok(m) => (m, None),
            Err(e) => (
                Self::default(),
                Some(format!(
                    "{}: {e}; recomputing every saliency map",
                    path.display()
                )),
            ),
        }
    }

    /// Whether the map of `image` was computed from exactly `source`.
    pub fn is_map_of(&self, image: &str, source: &MapSource) -> bool {
        self.maps.get(image) == Some(source)
    }

    /// Writes the manifest into `saliency_dir` (a folder being staged: written directly).
    pub fn write(&self, saliency_dir: &Path) -> Result<()> {
        let path = saliency_dir.join(MAP_MANIFEST_FILE);
        let json = serde_json::to_string_pretty(self).map_err(|error| DatasetError::Json {
            path: path.clone(),
            error,
        })?;
        std::fs::write(&path, json + "\n").map_err(|e| DatasetError::io(&path, e))
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_matches_only_the_same_path_size_and_content() {
        let a = MapSource::of(Path::new("/d/a.jpg"), b"abc");
        let mut m = MapManifest {
            version: 1,
            ..Default::default()
        };
        m.maps.insert("a".into(), a.clone());
        assert!(m.is_map_of("a", &a));
        assert!(!m.is_map_of("b", &a));
        assert!(!m.is_map_of("a", &MapSource::of(Path::new("/e/a.jpg"), b"abc")));
        assert!(!m.is_map_of("a", &MapSource::of(Path::new("/d/a.jpg"), b"abd")));
        assert!(!m.is_map_of("a", &MapSource::of(Path::new("/d/a.jpg"), b"abcd")));
    }
}
