//! Deterministic, lesion-aware train / val / test splits.
//!
//! Whole lesions are assigned, never split: every image of a lesion lands in the same split. Per
//! class, lesions are shuffled with a generator seeded by (seed, class) and taken greedily for the
//! validation set, then the test set, while they fit the remaining quota; everything left goes to
//! training. Any lesion of a class fits a quota of its size, so the quotas are met exactly unless the
//! class's lesions are too large to add up to them; then the shortfall is reported.
//! The result depends only on the set of (image, class, lesion) triples and the seed, not on the order
//! they are given in.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::classes::{IsicClass, NUM_CLASSES};
use crate::error::{DatasetError, Result};
use crate::split_files::{SplitCounts, SplitProtocol};

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// What the split algorithm needs of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitItem {
    pub image: String,
    pub class: IsicClass,
    pub lesion_id: String,
}

/// A quota that could not be met exactly because of multi-image lesions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub class: IsicClass,
    pub split: Split,
    pub requested: usize,
    pub got: usize,
}

/// The split: one [`Split`] per input item, in input order, and the quotas missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAssignment {
    pub splits: Vec<Split>,
    pub shortfalls: Vec<Shortfall>,
}

impl SplitAssignment {
    /// Images per class in each split.
    pub fn counts(&self, items: &[SplitItem]) -> SplitCounts {
        let mut c = SplitCounts::default();
        for (item, s) in items.iter().zip(&self.splits) {
            let row = match s {
                Split::Train => &mut c.train,
                Split::Val => &mut c.val,
                Split::Test => &mut c.test,
            };
            row[item.class.label()] += 1;
        }
        c
    }
}

/// A lesion: its id and the indices of its images in the input.
struct Lesion<'a> {
    id: &'a str,
    members: Vec<usize>,
}

/// Splits `items` by lesion under `protocol`, deterministically for a given `seed`.
///
/// Errors: a lesion whose images have different classes; a class too small for the requested
/// balanced val + test counts (it must keep at least one training image).
pub fn split_by_lesion(
    items: &[SplitItem],
    protocol: &SplitProtocol,
    seed: u64,
) -> Result<SplitAssignment> {
    // Lesions per class, in lesion-id order (a BTreeMap), so input order does not matter.
    let mut lesions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        lesions.entry(it.lesion_id.as_str()).or_default().push(i);
    }
    let mut per_class: Vec<Vec<Lesion>> = (0..NUM_CLASSES).map(|_| Vec::new()).collect();
    for (id, mut members) in lesions {
        members.sort_by(|&a, &b| items[a].image.cmp(&items[b].image));
        let class = items[members[0]].class;
        if let Some(&other) = members.iter().find(|&&m| items[m].class != class) {
            return Err(DatasetError::Invalid(format!(
                "lesion {id} mixes classes: {} is {} but {} is {}",
                items[members[0]].image, class, items[other].image, items[other].class
            )));
        }
        per_class[class.label()].push(Lesion { id, members });
    }

    let mut splits = vec![Split::Train; items.len()];
    let mut shortfalls = Vec::new();
    for class in IsicClass::ALL {
        let mut class_lesions = std::mem::take(&mut per_class[class.label()]);
        let total: usize = class_lesions.iter().map(|l| l.members.len()).sum();
        if total == 0 {
            continue;
        }
        let (val_quota, test_quota) = match *protocol {
            SplitProtocol::Balanced {
                val_per_class,
                test_per_class,
            } => {
                if val_per_class + test_per_class >= total {
                    return Err(DatasetError::ClassTooSmall {
                        class: class.name().to_owned(),
                        available: total,
                        lesions: class_lesions.len(),
                        requested: val_per_class + test_per_class,
                        val: val_per_class,
                        test: test_per_class,
                    });
                }
                (val_per_class, test_per_class)
            }
            SplitProtocol::Stratified { ratios } => stratified_quotas(total, ratios)?,
        };
        // Shuffle in a per-class stream so adding a class does not change the others' splits.
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed ^ (class.label() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        class_lesions.shuffle(&mut rng);
        let mut taken = vec![false; class_lesions.len()];
        for (split, quota) in [(Split::Val, val_quota), (Split::Test, test_quota)] {
            let mut remaining = quota;
            for (k, lesion) in class_lesions.iter().enumerate() {
                if remaining == 0 {
                    break;
                }
                if !taken[k] && lesion.members.len() <= remaining {
                    taken[k] = true;
                    remaining -= lesion.members.len();
                    for &m in &lesion.members {
                        splits[m] = split;
                    }
                }
            }
            if remaining > 0 {
                shortfalls.push(Shortfall {
                    class,
                    split,
                    requested: quota,
                    got: quota - remaining,
                });
            }
        }
        debug_assert!(class_lesions.iter().all(|l| !l.id.is_empty()));
    }
    Ok(SplitAssignment { splits, shortfalls })
}

/// Refuses a split that would leave any of train / val / test without images, or any class
/// without training images; the error names the split or class and the counts.
pub fn refuse_empty(counts: &SplitCounts, protocol: &SplitProtocol) -> Result<()> {
    let describe = || match protocol {
        SplitProtocol::Balanced {
            val_per_class,
            test_per_class,
        } => format!("balanced, {val_per_class} val and {test_per_class} test images per class"),
        SplitProtocol::Stratified { ratios } => {
            format!("stratified {}:{}:{}", ratios[0], ratios[1], ratios[2])
        }
    };
    for (split, per_class) in [
        (Split::Train, &counts.train),
        (Split::Val, &counts.val),
        (Split::Test, &counts.test),
    ] {
        if per_class.iter().sum::<usize>() == 0 {
            return Err(DatasetError::EmptySplit {
                split: split.name(),
                protocol: describe(),
                train: counts.train.to_vec(),
                val: counts.val.to_vec(),
                test: counts.test.to_vec(),
            });
        }
    }
    for class in IsicClass::ALL {
        let k = class.label();
        if counts.train[k] == 0 {
            let (train, val, test) = (counts.train[k], counts.val[k], counts.test[k]);
            return Err(DatasetError::EmptyClass {
                class: class.name().to_owned(),
                train,
                val,
                test,
                total: train + val + test,
            });
        }
    }
    Ok(())
}

/// Val and test image quotas of a class of `total` images under train:val:test `ratios`
/// (rounded to the nearest image; training keeps the rest).
fn stratified_quotas(total: usize, ratios: [u32; 3]) -> Result<(usize, usize)> {
    let sum: u32 = ratios.iter().sum();
    if sum == 0 || ratios[0] == 0 {
        return Err(DatasetError::Invalid(format!(
            "stratified ratios {}:{}:{} must have a non-zero train part",
            ratios[0], ratios[1], ratios[2]
        )));
    }
    let share = |r: u32| ((total as f64) * r as f64 / sum as f64).round() as usize;
    Ok((share(ratios[1]), share(ratios[2])))
}

/// Parses `7:1:2` into train:val:test weights.
pub fn parse_ratios(text: &str) -> Result<[u32; 3]> {
    let parts: Vec<&str> = text.split(':').collect();
    let bad = || {
        DatasetError::Invalid(format!(
            "--stratified {text:?}: expected three numbers like 7:1:2"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut r = [0u32; 3];
    for (slot, p) in r.iter_mut().zip(parts) {
        *slot = p.trim().parse().map_err(|_| bad())?;
    }
    if r[0] == 0 {
        return Err(bad());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(image: &str, class: IsicClass, lesion: &str) -> SplitItem {
        SplitItem {
            image: image.into(),
            class,
            lesion_id: lesion.into(),
        }
    }

    #[test]
    fn balanced_quotas_are_exact_with_singletons() {
        let items: Vec<_> = (0..30)
            .map(|i| item(&format!("img{i:02}"), IsicClass::Df, &format!("les{i:02}")))
            .collect();
        let protocol = SplitProtocol::Balanced {
            val_per_class: 5,
            test_per_class: 10,
        };
        let a = split_by_lesion(&items, &protocol, 0).unwrap();
        let c = a.counts(&items);
        assert_eq!((c.train[5], c.val[5], c.test[5]), (15, 5, 10));
        assert!(a.shortfalls.is_empty());
    }

    #[test]
    fn a_lesion_of_three_cannot_fill_a_quota_of_two() {
        // One class: a 3-image lesion and a 1-image lesion; val asks for 2, test 0.
        let items = vec![
            item("a1", IsicClass::Mel, "L1"),
            item("a2", IsicClass::Mel, "L1"),
            item("a3", IsicClass::Mel, "L1"),
            item("b1", IsicClass::Mel, "L2"),
        ];
        let protocol = SplitProtocol::Balanced {
            val_per_class: 2,
            test_per_class: 0,
        };
        let a = split_by_lesion(&items, &protocol, 3).unwrap();
        assert_eq!(a.counts(&items).val[0], 1);
        assert_eq!(
            a.shortfalls,
            vec![Shortfall {
                class: IsicClass::Mel,
                split: Split::Val,
                requested: 2,
                got: 1
            }]
        );
    }

    #[test]
    fn too_small_class_is_named() {
        let items: Vec<_> = (0..4)
            .map(|i| item(&format!("i{i}"), IsicClass::Vasc, &format!("l{i}")))
            .collect();
        let protocol = SplitProtocol::Balanced {
            val_per_class: 2,
            test_per_class: 2,
        };
        let err = split_by_lesion(&items, &protocol, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("VASC") && err.contains("has 4 images"),
            "{err}"
        );
    }

    #[test]
    fn mixed_class_lesion_is_an_error() {
        let items = vec![
            item("a", IsicClass::Mel, "L"),
            item("b", IsicClass::Nv, "L"),
        ];
        let protocol = SplitProtocol::Stratified { ratios: [7, 1, 2] };
        assert!(split_by_lesion(&items, &protocol, 0).is_err());
    }

    #[test]
    fn empty_splits_and_classes_are_refused_with_their_numbers() {
        let full = SplitCounts {
            train: [5; NUM_CLASSES],
            val: [1; NUM_CLASSES],
            test: [2; NUM_CLASSES],
        };
        let stratified = SplitProtocol::Stratified { ratios: [10, 0, 0] };
        assert!(refuse_empty(&full, &stratified).is_ok());
        let no_val = SplitCounts {
            val: [0; NUM_CLASSES],
            ..full.clone()
        };
        let err = refuse_empty(&no_val, &stratified).unwrap_err().to_string();
        assert!(
            err.contains("the val split would be empty") && err.contains("stratified 10:0:0"),
            "{err}"
        );
        let mut no_df = full.clone();
        no_df.train[IsicClass::Df.label()] = 0;
        let err = refuse_empty(&no_df, &stratified).unwrap_err().to_string();
        assert!(
            err.contains("class DF would have no training images")
                && err.contains("train 0, val 1, test 2"),
            "{err}"
        );
    }

    #[test]
    fn ratios_parse() {
        assert_eq!(parse_ratios("7:1:2").unwrap(), [7, 1, 2]);
        assert!(parse_ratios("7:1").is_err());
        assert!(parse_ratios("0:1:1").is_err());
    }
}
