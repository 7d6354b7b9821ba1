//! A prepared split read into an indexed data set: for each image its file, label, lesion and
//! saliency-map file; the class counts and the Many / Medium / Few groups.
//!
//! ```no_run
//! let train = dataset::data_set::DataSet::open("data/isic-split".as_ref(), "train").unwrap();
//! println!("{} images, per class {:?}", train.len(), train.class_counts());
//! let pair = train.load_pair(0, true).unwrap(); // image (H, W, 3) u8 + map (H, W) u8
//! ```

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};
use saliency::DecodeLimits;

use crate::augment::Pair;
use crate::classes::{groups_from_counts, Group, NUM_CLASSES};
use crate::error::{DatasetError, Result};
use crate::split_files::{
    read_split_csv, saliency_path, ClassCounts, SplitManifest, SplitRow, SPLIT_NAMES,
};

/// One image of a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Image id, e.g. `ISIC_0024306`.
    pub image: String,
    /// Image file.
    pub path: PathBuf,
    /// Saliency map file (8-bit grey PNG of the image's size).
    pub saliency: PathBuf,
    /// Class label 0..7.
    pub label: usize,
    /// Lesion id.
    pub lesion_id: String,
}

/// The images of one split, indexed 0..len.
#[derive(Debug, Clone)]
pub struct DataSet {
    split_dir: PathBuf,
    items: Vec<Item>,
    class_counts: ClassCounts,
    groups: [Group; NUM_CLASSES],
    limits: DecodeLimits,
}

impl DataSet {
    /// Reads `<split_dir>/<split>.csv` (`split` is `train`, `val` or `test`). The groups come from
    /// `split.json` when it exists (class totals over all splits), else from this split's counts.
    pub fn open(split_dir: &Path, split: &str) -> Result<Self> {
        if !SPLIT_NAMES.contains(&split) {
            return Err(DatasetError::Invalid(format!(
                "unknown split {split:?}; expected one of {SPLIT_NAMES:?}"
            )));
        }
        let rows = read_split_csv(&split_dir.join(format!("{split}.csv")))?;
        let manifest_path = split_dir.join(crate::split_files::MANIFEST_FILE);
        let groups = if manifest_path.exists() {
            let m = SplitManifest::read(split_dir)?;
            let g: [Group; NUM_CLASSES] = m.groups.as_slice().try_into().map_err(|_| {
                DatasetError::Invalid(format!(
                    "{}: `groups` has {} entries, expected {NUM_CLASSES}",
                    manifest_path.display(),
                    m.groups.len()
                ))
            })?;
            Some(g)
        } else {
            None
        };
        Ok(Self::from_rows(split_dir, &rows, groups))
    }

    /// Builds a data set from split rows; maps are looked up in `split_dir` by image id. `groups`
    /// defaults to the groups of these rows' class counts.
    pub fn from_rows(
        split_dir: &Path,
        rows: &[SplitRow],
        groups: Option<[Group; NUM_CLASSES]>,
    ) -> Self {
        let items: Vec<Item> = rows
            .iter()
            .map(|r| Item {
                image: r.image.clone(),
                path: r.path.clone(),
                saliency: saliency_path(split_dir, &r.image),
                label: r.label,
                lesion_id: r.lesion_id.clone(),
            })
            .collect();
        let mut class_counts = [0usize; NUM_CLASSES];
        for it in &items {
            class_counts[it.label] += 1;
        }
        DataSet {
            split_dir: split_dir.to_owned(),
            items,
            class_counts,
            groups: groups.unwrap_or_else(|| groups_from_counts(&class_counts)),
            limits: DecodeLimits::default(),
        }
    }

    /// This data set decoding its images under `limits` (default: 64 MP per image).
    pub fn with_decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The per-image decoding limits.
    pub fn decode_limits(&self) -> DecodeLimits {
        self.limits
    }

    /// The split folder.
    pub fn split_dir(&self) -> &Path {
        &self.split_dir
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// All items, by index.
    pub fn items(&self) -> &[Item] {
        &self.items
    }
    /// Item `i`. Panics if out of range.
    pub fn item(&self, i: usize) -> &Item {
        &self.items[i]
    }
    /// Labels by index.
    pub fn labels(&self) -> Vec<usize> {
        self.items.iter().map(|i| i.label).collect()
    }
    /// Images per class, by label.
    pub fn class_counts(&self) -> ClassCounts {
        self.class_counts
    }
    /// Many / Medium / Few per class, by label.
    pub fn groups(&self) -> [Group; NUM_CLASSES] {
        self.groups
    }

    /// Decodes image `i` as RGB and, with `with_saliency`, its map (else an all-zero map). Errors name
    /// the file that could not be read or decoded, or whose size does not match.
    pub fn load_pair(&self, i: usize, with_saliency: bool) -> Result<Pair> {
        let it = &self.items[i];
        let image = decode_with_limits(&it.path, &self.limits)?.to_rgb8();
        let saliency = if with_saliency {
            let m = decode_with_limits(&it.saliency, &self.limits)?.to_luma8();
            if m.dimensions() != image.dimensions() {
                return Err(DatasetError::Image {
                    path: it.saliency.clone(),
                    message: format!(
                        "saliency map is {:?} but image {} is {:?} (width, height)",
                        m.dimensions(),
                        it.path.display(),
                        image.dimensions()
                    ),
                });
            }
            m
        } else {
            GrayImage::new(image.width(), image.height())
        };
        Ok(Pair { image, saliency })
    }
}

/// Reads and decodes an image file under the default limits (format from its bytes, 64 MP budget
/// checked from the header, truncated JPEGs refused; see `saliency::decode`).
pub fn decode(path: &Path) -> Result<image::DynamicImage> {
    decode_with_limits(path, &DecodeLimits::default())
}

/// [`decode`] under explicit limits.
pub fn decode_with_limits(path: &Path, limits: &DecodeLimits) -> Result<image::DynamicImage> {
    Ok(saliency::decode_image_file(path, limits)?)
}

/// Decodes an RGB image file (H, W, 3) u8 under the default limits.
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    Ok(decode(path)?.to_rgb8())
}
