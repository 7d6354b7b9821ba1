//! A reproducible corpus of bad (and awkward but valid) inputs, generated into a temporary folder
//! at test time, and the outcome each must have: accepted with the right size, or refused with an
//! error naming the file (and, for CSVs, the row and id).
//!
//! Images go through the one decoder every command uses (`dataset::data_set::decode_with_limits`,
//! i.e. `saliency::decode`); label CSVs through `IsicIndex::read`. Nothing here is large: a header
//! bomb is a few hundred bytes that claim 100000 x 100000 pixels.

mod common_isic;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use common_isic::png_header_bomb;
use dataset::data_set::decode_with_limits;
use dataset::index::{isic_names, IndexOptions, IsicIndex};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use saliency::DecodeLimits;

/// What decoding one corpus file must do.
enum Expect {
    /// Decodes to this (width, height).
    Accept(u32, u32),
    /// Fails; the message names the file and contains every one of these words.
    Refuse(&'static [&'static str]),
}

struct ImageCase {
    name: &'static str,
    bytes: Vec<u8>,
    limits: DecodeLimits,
    expect: Expect,
}

fn noisy_rgb(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ (x * y);
        Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    }))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .unwrap();
    out
}

/// A baseline 8x8 CMYK JPEG (Adobe APP14, 4 components, DC-only blocks), written byte by byte:
/// the `image` crate cannot encode CMYK.
fn cmyk_jpeg() -> Vec<u8> {
    let mut s = vec![0xFF, 0xD8];
    // APP14 "Adobe", version 100, flags 0, transform 0 (plain CMYK).
    s.extend([0xFF, 0xEE, 0x00, 0x0E]);
    s.extend(b"Adobe");
    s.extend([0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00]);
    // One quantisation table of ones.
    s.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]);
    s.extend([1u8; 64]);
    // SOF0: 8 bits, 8x8, 4 components with 1x1 sampling and table 0.
    s.extend([0xFF, 0xC0, 0x00, 0x14, 0x08, 0x00, 0x08, 0x00, 0x08, 0x04]);
    for id in 1..=4u8 {
        s.extend([id, 0x11, 0x00]);
    }
    // Huffman tables with a single 1-bit code "0": DC category 0, AC end-of-block.
    for class in [0x00u8, 0x10] {
        s.extend([0xFF, 0xC4, 0x00, 0x14, class, 1]);
        s.extend([0u8; 15]);
        s.push(0x00);
    }
    // SOS over the 4 components, then 4 blocks x ("0" DC + "0" EOB) = one zero byte.
    s.extend([0xFF, 0xDA, 0x00, 0x0E, 0x04]);
    for id in 1..=4u8 {
        s.extend([id, 0x00]);
    }
    s.extend([0x00, 0x3F, 0x00, 0x00]);
    s.extend([0xFF, 0xD9]);
    s
}

/// A JPEG whose frame header is patched to claim `w x h` (JPEG's maximum is 65535).
fn jpeg_header_bomb(w: u16, h: u16) -> Vec<u8> {
    let mut s = jpeg(&noisy_rgb(16, 16));
    let sof = s
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline frame header");
    s[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    s[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    s
}

fn image_corpus() -> Vec<ImageCase> {
    let default = DecodeLimits::default();
    let good = jpeg(&noisy_rgb(96, 64));
    let png_good = encode(&noisy_rgb(40, 30), ImageFormat::Png);
    let case = |name, bytes, expect| ImageCase {
        name,
        bytes,
        limits: default,
        expect,
    };
    vec![
        case("good.jpg", good.clone(), Expect::Accept(96, 64)),
        // The headers are whole, the scan is cut: the decoder alone would fill in grey.
        case(
            "truncated_scan.jpg",
            good[..good.len() - 40].to_vec(),
            Expect::Refuse(&["end-of-image", "truncated"]),
        ),
        case(
            "first_1600_bytes.jpg",
            good[..1600.min(good.len() - 2)].to_vec(),
            Expect::Refuse(&["truncated"]),
        ),
        case(
            "truncated.png",
            png_good[..png_good.len() / 2].to_vec(),
            Expect::Refuse(&["cannot decode"]),
        ),
        case(
            "zero_bytes.jpg",
            Vec::new(),
            Expect::Refuse(&["empty file"]),
        ),
        case(
            "text.jpg",
            b"this is not an image".to_vec(),
            Expect::Refuse(&["no known image signature"]),
        ),
        case(
            "gif_named.jpg",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            Expect::Refuse(&["Gif", "expected a PNG or JPEG"]),
        ),
        // Chosen by content: a PNG named .jpg is the PNG it is.
        case("png_named.jpg", png_good.clone(), Expect::Accept(40, 30)),
        case("cmyk.jpg", cmyk_jpeg(), Expect::Accept(8, 8)),
        case(
            "rgb16.png",
            encode(
                &DynamicImage::ImageRgb16(ImageBuffer::from_fn(20, 10, |x, y| {
                    Rgb([x as u16 * 3000, y as u16 * 6000, 65535])
                })),
                ImageFormat::Png,
            ),
            Expect::Accept(20, 10),
        ),
        case(
            "rgba.png",
            encode(
                &DynamicImage::ImageRgba8(ImageBuffer::from_fn(12, 9, |x, y| {
                    Rgba([x as u8 * 20, y as u8 * 25, 7, (x * y) as u8])
                })),
                ImageFormat::Png,
            ),
            Expect::Accept(12, 9),
        ),
        case(
            "grey.png",
            encode(
                &DynamicImage::ImageLuma8(ImageBuffer::from_fn(15, 11, |x, _| Luma([x as u8 * 9]))),
                ImageFormat::Png,
            ),
            Expect::Accept(15, 11),
        ),
        case(
            "grey.jpg",
            jpeg(&DynamicImage::ImageLuma8(ImageBuffer::from_fn(
                33,
                17,
                |x, y| Luma([(x * y) as u8]),
            ))),
            Expect::Accept(33, 17),
        ),
        case(
            "bomb_100000x100000.png",
            png_header_bomb(100_000, 100_000),
            Expect::Refuse(&[
                "100000x100000",
                "over the limit of 64000000",
                "--max-pixels",
            ]),
        ),
        case(
            "bomb_65535x65535.jpg",
            jpeg_header_bomb(65_535, 65_535),
            Expect::Refuse(&["65535x65535", "over the limit"]),
        ),
        // A valid image over a lowered budget is refused from its header; the same file under
        // the default budget is fine.
        ImageCase {
            name: "large_over_budget.png",
            bytes: encode(
                &DynamicImage::ImageLuma8(ImageBuffer::new(1500, 1000)),
                ImageFormat::Png,
            ),
            limits: DecodeLimits::with_max_pixels(1_000_000),
            expect: Expect::Refuse(&["1500x1000", "over the limit of 1000000"]),
        },
        case(
            "large_within_budget.png",
            encode(
                &DynamicImage::ImageLuma8(ImageBuffer::new(1500, 1000)),
                ImageFormat::Png,
            ),
            Expect::Accept(1500, 1000),
        ),
    ]
}

#[test]
fn every_image_case_is_accepted_or_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for case in image_corpus() {
        let path = dir.path().join(case.name);
        std::fs::write(&path, &case.bytes).unwrap();
        let result = decode_with_limits(&path, &case.limits);
        match (case.expect, result) {
            (Expect::Accept(w, h), Ok(img)) => {
                assert_eq!((img.width(), img.height()), (w, h), "{}", case.name);
                // Every accepted format reaches the 8-bit RGB the loader uses.
                assert_eq!(img.to_rgb8().dimensions(), (w, h), "{}", case.name);
            }
            (Expect::Accept(..), Err(e)) => panic!("{} should decode: {e}", case.name),
            (Expect::Refuse(words), Ok(_)) => {
                panic!("{} should be refused (expected {words:?})", case.name)
            }
            (Expect::Refuse(words), Err(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&path.display().to_string()),
                    "{}: error does not name the file: {msg}",
                    case.name
                );
                for w in words {
                    assert!(msg.contains(w), "{}: {msg:?} lacks {w:?}", case.name);
                }
            }
        }
    }
}

/// What reading an ISIC ground truth must do.
enum CsvExpect {
    /// Reads this many images.
    Accept(usize),
    /// Fails naming the CSV and containing these words.
    Refuse(&'static [&'static str]),
}

fn gt_row(image: &str, class: usize) -> String {
    let onehot: Vec<&str> = (0..7)
        .map(|k| if k == class { "1.0" } else { "0.0" })
        .collect();
    format!("{image},{}", onehot.join(","))
}

/// Ground-truth CSVs (as bytes) for an ISIC layout whose input folder holds `ISIC_0`..`ISIC_2`.
fn csv_corpus() -> Vec<(&'static str, Vec<u8>, CsvExpect)> {
    let header = isic_names::GT_HEADER.join(",");
    let rows = [
        gt_row("ISIC_0", 0),
        gt_row("ISIC_1", 1),
        gt_row("ISIC_2", 2),
    ];
    let lf = format!("{header}\n{}\n", rows.join("\n"));
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(lf.as_bytes());
    let mut latin1 = format!("{header}\n{}\n", rows[..2].join("\n")).into_bytes();
    latin1.extend(b"ISIC_\xe9,0.0,0.0,1.0,0.0,0.0,0.0,0.0\n");
    vec![
        ("plain", lf.clone().into_bytes(), CsvExpect::Accept(3)),
        ("bom", bom, CsvExpect::Accept(3)),
        (
            "crlf",
            lf.replace('\n', "\r\n").into_bytes(),
            CsvExpect::Accept(3),
        ),
        ("non_utf8", latin1, CsvExpect::Refuse(&["row 4", "UTF-8"])),
        (
            "multi_hot",
            format!(
                "{header}\n{}\nISIC_2,1.0,1.0,0.0,0.0,0.0,0.0,0.0\n",
                rows[..2].join("\n")
            )
            .into_bytes(),
            CsvExpect::Refuse(&["row 4", "ISIC_2", "more than one class"]),
        ),
        (
            "header_only",
            format!("{header}\n").into_bytes(),
            CsvExpect::Refuse(&["no images", "header but no rows"]),
        ),
        (
            "traversal_id",
            format!(
                "{header}\n{}\n{}\n",
                rows[0],
                gt_row("../../victim/logo", 1)
            )
            .into_bytes(),
            CsvExpect::Refuse(&["row 3", "\"../../victim/logo\"", "path separator"]),
        ),
        (
            "absolute_id",
            format!("{header}\n{}\n", gt_row("/etc/passwd", 1)).into_bytes(),
            CsvExpect::Refuse(&["row 2", "\"/etc/passwd\"", "cannot name a file"]),
        ),
        (
            "dot_dot_id",
            format!("{header}\n{}\n", gt_row("..", 1)).into_bytes(),
            CsvExpect::Refuse(&["row 2", "\"..\""]),
        ),
    ]
}

fn isic_root_with(dir: &Path, gt: &[u8]) -> PathBuf {
    let root = dir.join("isic");
    let gt_dir = root.join(isic_names::TRAIN_GT_DIR);
    std::fs::create_dir_all(&gt_dir).unwrap();
    for i in 0..3 {
        common_isic::write_jpeg(
            &root
                .join(isic_names::TRAIN_INPUT)
                .join(format!("ISIC_{i}.jpg")),
            i as u8,
        );
    }
    std::fs::write(gt_dir.join(isic_names::TRAIN_GT_CSV), gt).unwrap();
    root
}

#[test]
fn every_ground_truth_case_is_read_or_refused_naming_the_csv() {
    for (name, bytes, expect) in csv_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let root = isic_root_with(dir.path(), &bytes);
        let result = IsicIndex::read(&root, &IndexOptions::default());
        match (expect, result) {
            (CsvExpect::Accept(n), Ok(index)) => {
                assert_eq!(index.entries.len(), n, "{name}");
                assert_eq!(
                    index.entries[0].image, "ISIC_0",
                    "{name}: BOM kept in the id?"
                );
            }
            (CsvExpect::Accept(_), Err(e)) => panic!("{name} should be read: {e}"),
            (CsvExpect::Refuse(words), Ok(_)) => panic!("{name} should be refused ({words:?})"),
            (CsvExpect::Refuse(words), Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(isic_names::TRAIN_GT_CSV), "{name}: {msg}");
                for w in words {
                    assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
                }
            }
        }
    }
}
