//! Property tests of the lesion-aware split: whatever the lesion structure and seed, no image and no
//! lesion is in two splits, the splits cover every image, balanced quotas hold whenever enough
//! single-image lesions exist, and the same inputs give the same split in any input order.

use std::collections::{HashMap, HashSet};

use dataset::split::{split_by_lesion, Split, SplitItem};
use dataset::split_files::SplitProtocol;
use dataset::IsicClass;
use proptest::prelude::*;

/// Per class: lesion sizes (1-5 images each).
fn lesion_structure() -> impl Strategy<Value = Vec<Vec<usize>>> {
    prop::collection::vec(prop::collection::vec(1usize..=5, 18..60), 7)
}

fn items_of(structure: &[Vec<usize>]) -> Vec<SplitItem> {
    let mut items = Vec::new();
    for (c, sizes) in structure.iter().enumerate() {
        for (l, &n) in sizes.iter().enumerate() {
            for v in 0..n {
                items.push(SplitItem {
                    image: format!("img_{c}_{l}_{v}"),
                    class: IsicClass::ALL[c],
                    lesion_id: format!("les_{c}_{l}"),
                });
            }
        }
    }
    items
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lesions_never_straddle_and_union_is_everything(structure in lesion_structure(), seed in 0u64..1000,
                                                       stratified in any::<bool>()) {
        let items = items_of(&structure);
        let protocol = if stratified {
            SplitProtocol::Stratified { ratios: [7, 1, 2] }
        } else {
            SplitProtocol::Balanced { val_per_class: 5, test_per_class: 10 }
        };
        let min_class: usize = structure.iter().map(|s| s.iter().sum::<usize>()).min().unwrap();
        let result = split_by_lesion(&items, &protocol, seed);
        if !stratified && min_class <= 15 {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let a = result.unwrap();
        prop_assert_eq!(a.splits.len(), items.len());
        let mut lesion_split: HashMap<&str, Split> = HashMap::new();
        for (it, s) in items.iter().zip(&a.splits) {
            let prev = lesion_split.insert(&it.lesion_id, *s);
            prop_assert!(prev.is_none() || prev == Some(*s), "lesion {} in two splits", it.lesion_id);
        }
        let images: HashSet<&str> = items.iter().map(|i| i.image.as_str()).collect();
        prop_assert_eq!(images.len(), items.len());
        let c = a.counts(&items);
        let total: usize = c.train.iter().chain(&c.val).chain(&c.test).sum();
        prop_assert_eq!(total, items.len());
        if !stratified {
            for (k, sizes) in structure.iter().enumerate() {
                let singles = sizes.iter().filter(|&&n| n == 1).count();
                if singles >= 15 {
                    prop_assert_eq!((c.val[k], c.test[k]), (5, 10), "class {}", k);
                }
                prop_assert!(c.val[k] <= 5 && c.test[k] <= 10);
                prop_assert!(c.train[k] > 0);
            }
        }
    }

    #[test]
    fn same_seed_same_split_in_any_order(structure in lesion_structure(), seed in 0u64..1000, rot in 0usize..500) {
        let items = items_of(&structure);
        let protocol = SplitProtocol::Stratified { ratios: [7, 1, 2] };
        let a = split_by_lesion(&items, &protocol, seed).unwrap();
        let mut rotated = items.clone();
        let r = rot % rotated.len();
        rotated.rotate_left(r);
        let b = split_by_lesion(&rotated, &protocol, seed).unwrap();
        let by_image = |items: &[SplitItem], splits: &[Split]| -> HashMap<String, Split> {
            items.iter().zip(splits).map(|(i, s)| (i.image.clone(), *s)).collect()
        };
        prop_assert_eq!(by_image(&items, &a.splits), by_image(&rotated, &b.splits));
    }
}

#[test]
fn different_seeds_give_different_splits() {
    let structure: Vec<Vec<usize>> = (0..7).map(|_| vec![1; 40]).collect();
    let items = items_of(&structure);
    let protocol = SplitProtocol::Balanced {
        val_per_class: 5,
        test_per_class: 10,
    };
    let a = split_by_lesion(&items, &protocol, 1).unwrap();
    let b = split_by_lesion(&items, &protocol, 2).unwrap();
    assert_ne!(a.splits, b.splits);
}
