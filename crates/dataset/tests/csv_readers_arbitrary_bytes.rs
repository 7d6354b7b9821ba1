//! Property test of every CSV reader over arbitrary bytes: no panic, every failure an error value
//! that names the file. Inputs mix pure noise with mutations of valid files (a valid header
//! followed by noise), so the row parsing is reached, not only the header check.

use std::path::Path;

use dataset::index::{ham_names, isic_names, read_ground_truth, read_lesion_groupings};
use dataset::split_files::{read_split_csv, SPLIT_CSV_HEADER};
use proptest::prelude::*;

/// Field-ish bytes: CSV punctuation, digits, separators, quotes, CR, BOM pieces, high bytes.
fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop::sample::select(vec![
        b',', b'\n', b'\r', b'"', b'1', b'0', b'.', b'/', b'\\', b'a', b'Z', b'_', b'-', 0xEF,
        0xBB, 0xBF, 0xFF, 0x00, b' ',
    ]);
    prop::collection::vec(prop_oneof![any::<u8>(), interesting], 0..300)
}

fn with_header(header: &str) -> impl Strategy<Value = Vec<u8>> {
    let header = format!("{header}\n").into_bytes();
    csv_bytes().prop_map(move |tail| {
        let mut v = header.clone();
        v.extend(tail);
        v
    })
}

/// Runs `read` on `bytes` written to `name`; an error must name the file.
fn check<T>(name: &str, bytes: &[u8], read: impl Fn(&Path) -> dataset::Result<T>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    if let Err(e) = read(&path) {
        let msg = e.to_string();
        assert!(msg.contains(name), "error does not name {name}: {msg}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ground_truth_reader_never_panics(
        bytes in prop_oneof![csv_bytes(), with_header(&isic_names::GT_HEADER.join(","))]
    ) {
        check("gt.csv", &bytes, read_ground_truth);
    }

    #[test]
    fn lesion_groupings_reader_never_panics(
        bytes in prop_oneof![csv_bytes(), with_header(&isic_names::GROUPINGS_HEADER.join(","))]
    ) {
        check("groupings.csv", &bytes, read_lesion_groupings);
    }

    #[test]
    fn split_reader_never_panics(
        bytes in prop_oneof![csv_bytes(), with_header(&SPLIT_CSV_HEADER.join(","))]
    ) {
        check("train.csv", &bytes, read_split_csv);
    }

    #[test]
    fn ham_metadata_reader_never_panics(
        bytes in prop_oneof![csv_bytes(), with_header(&ham_names::HEADER.join(","))]
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ham_names::METADATA), &bytes).unwrap();
        if let Err(e) = dataset::index::IsicIndex::read(dir.path(), &Default::default()) {
            let msg = e.to_string();
            prop_assert!(msg.contains(ham_names::METADATA), "{}", msg);
        }
    }
}
