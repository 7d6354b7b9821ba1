//! The seven ISIC2018 Task 3 diagnosis classes, in the fixed label order, and the paper's
//! Many / Medium / Few groups.

use serde::{Deserialize, Serialize};

/// Number of ISIC2018 classes.
pub const NUM_CLASSES: usize = 7;

/// An ISIC2018 Task 3 diagnosis. The discriminant is the label (0..7), in the order of the official
/// ground-truth CSV header: MEL, NV, BCC, AKIEC, BKL, DF, VASC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IsicClass {
    Mel = 0,
    Nv = 1,
    Bcc = 2,
    Akiec = 3,
    Bkl = 4,
    Df = 5,
    Vasc = 6,
}

impl IsicClass {
    /// All classes in label order.
    pub const ALL: [IsicClass; NUM_CLASSES] = [
        IsicClass::Mel,
        IsicClass::Nv,
        IsicClass::Bcc,
        IsicClass::Akiec,
        IsicClass::Bkl,
        IsicClass::Df,
        IsicClass::Vasc,
    ];

    /// Label index 0..7.
    pub fn label(self) -> usize {
        self as usize
    }

    /// The class with this label, if any.
    pub fn from_label(label: usize) -> Option<Self> {
        Self::ALL.get(label).copied()
    }

    /// Upper-case name as in the ISIC ground-truth header (`MEL`, `NV`, ...).
    pub fn name(self) -> &'static str {
        match self {
            IsicClass::Mel => "MEL",
            IsicClass::Nv => "NV",
            IsicClass::Bcc => "BCC",
            IsicClass::Akiec => "AKIEC",
            IsicClass::Bkl => "BKL",
            IsicClass::Df => "DF",
            IsicClass::Vasc => "VASC",
        }
    }

    /// Parses an ISIC header name (`MEL`) or a HAM10000 `dx` code (`mel`, `akiec`), case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        let upper = name.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|c| c.name() == upper)
    }

    /// Number of images of this class in ISIC2018 Task 3 training (= HAM10000).
    pub fn isic2018_count(self) -> usize {
        match self {
            IsicClass::Mel => 1113,
            IsicClass::Nv => 6705,
            IsicClass::Bcc => 514,
            IsicClass::Akiec => 327,
            IsicClass::Bkl => 1099,
            IsicClass::Df => 115,
            IsicClass::Vasc => 142,
        }
    }
}

impl std::fmt::Display for IsicClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Frequency group of a class, by its share of the whole data set (the paper's Table 1 columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Many,
    Medium,
    Few,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Many => "Many",
            Group::Medium => "Medium",
            Group::Few => "Few",
        }
    }
}

/// Groups classes by size rank, as the paper groups ISIC2018: the largest class is Many, the next
/// three are Medium, the three smallest are Few (ties broken by label). On ISIC2018's counts (NV 6705;
/// MEL 1113, BKL 1099, BCC 514; AKIEC 327, VASC 142, DF 115) this is the paper's grouping, and it stays so
/// on the scaled synthetic set, whose per-class floor would confuse thresholds on class shares.
///
/// `counts[label]` is the number of images of each class (all splits together).
pub fn groups_from_counts(counts: &[usize; NUM_CLASSES]) -> [Group; NUM_CLASSES] {
    let mut order: Vec<usize> = (0..NUM_CLASSES).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut groups = [Group::Few; NUM_CLASSES];
    for (rank, &label) in order.iter().enumerate() {
        groups[label] = match rank {
            0 => Group::Many,
            1..=3 => Group::Medium,
            _ => Group::Few,
        };
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isic_counts_give_the_papers_groups() {
        let counts = IsicClass::ALL.map(|c| c.isic2018_count());
        let g = groups_from_counts(&counts);
        assert_eq!(g[IsicClass::Nv.label()], Group::Many);
        for c in [IsicClass::Mel, IsicClass::Bkl, IsicClass::Bcc] {
            assert_eq!(g[c.label()], Group::Medium, "{c}");
        }
        for c in [IsicClass::Akiec, IsicClass::Vasc, IsicClass::Df] {
            assert_eq!(g[c.label()], Group::Few, "{c}");
        }
    }

    #[test]
    fn scaled_synthetic_counts_keep_the_grouping() {
        // Scale 0.05 with a floor of 24: AKIEC, DF and VASC tie at the floor.
        let counts = crate::synth::synth_class_counts(0.05, 24);
        let g = groups_from_counts(&counts);
        let expected = [
            Group::Medium,
            Group::Many,
            Group::Medium,
            Group::Few,
            Group::Medium,
            Group::Few,
            Group::Few,
        ];
        assert_eq!(g, expected);
    }

    #[test]
    fn parse_accepts_isic_and_ham_names() {
        assert_eq!(IsicClass::parse("akiec"), Some(IsicClass::Akiec));
        assert_eq!(IsicClass::parse("VASC"), Some(IsicClass::Vasc));
        assert_eq!(IsicClass::parse("xyz"), None);
        for c in IsicClass::ALL {
            assert_eq!(IsicClass::from_label(c.label()), Some(c));
        }
    }
}
