//! Helpers shared by the split and preparation tests: tiny ISIC2018 / HAM10000 layouts on disk.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dataset::index::{ham_names, isic_names};

/// Writes a small valid JPEG.
pub fn write_jpeg(path: &Path, seed: u8) {
    let img = image::RgbImage::from_fn(24, 18, |x, y| {
        image::Rgb([200u8.wrapping_add(seed), (x * 7) as u8, (y * 11) as u8])
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// An ISIC2018 Task 3 layout with the given (image, class index, lesion) rows; returns the root.
pub fn isic_layout(dir: &Path, rows: &[(&str, usize, &str)]) -> PathBuf {
    let root = dir.join("isic");
    let gt_dir = root.join(isic_names::TRAIN_GT_DIR);
    std::fs::create_dir_all(&gt_dir).unwrap();
    let mut gt = String::from("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n");
    let mut groups = String::from("image,lesion_id,diagnosis_confirm_type\n");
    for (i, (image, class, lesion)) in rows.iter().enumerate() {
        let onehot: Vec<&str> = (0..7)
            .map(|k| if k == *class { "1.0" } else { "0.0" })
            .collect();
        gt += &format!("{image},{}\n", onehot.join(","));
        groups += &format!("{image},{lesion},histopathology\n");
        write_jpeg(
            &root
                .join(isic_names::TRAIN_INPUT)
                .join(format!("{image}.jpg")),
            i as u8,
        );
    }
    std::fs::write(gt_dir.join(isic_names::TRAIN_GT_CSV), gt).unwrap();
    std::fs::write(root.join(isic_names::LESION_GROUPINGS), groups).unwrap();
    root
}

/// `n` single-image lesions per class.
pub fn balanced_rows(n: usize) -> Vec<(String, usize, String)> {
    let mut rows = Vec::new();
    for c in 0..7 {
        for i in 0..n {
            rows.push((format!("ISIC_{c}{i:04}"), c, format!("L{c}{i:04}")));
        }
    }
    rows
}

pub fn as_refs(rows: &[(String, usize, String)]) -> Vec<(&str, usize, &str)> {
    rows.iter()
        .map(|(a, b, c)| (a.as_str(), *b, c.as_str()))
        .collect()
}

/// Rewrites an ISIC2018 layout as a HAM10000 one (metadata CSV, images hard-linked into two parts).
pub fn ham_from_isic(isic_root: &Path, ham_root: &Path) {
    let gt = std::fs::read_to_string(
        isic_root
            .join(isic_names::TRAIN_GT_DIR)
            .join(isic_names::TRAIN_GT_CSV),
    )
    .unwrap();
    let groups = std::fs::read_to_string(isic_root.join(isic_names::LESION_GROUPINGS)).unwrap();
    let lesion: std::collections::HashMap<&str, &str> = groups
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[1])
        })
        .collect();
    let dx = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"];
    let mut meta = format!("{},dataset\n", ham_names::HEADER.join(","));
    for (i, line) in gt.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let k = f[1..].iter().position(|v| *v == "1.0").unwrap();
        meta += &format!(
            "{},{},{},histo,50.0,male,back,vidir_modern\n",
            lesion[f[0]], f[0], dx[k]
        );
        let part = ham_root.join(if i % 2 == 0 {
            "HAM10000_images_part_1"
        } else {
            "HAM10000_images_part_2"
        });
        std::fs::create_dir_all(&part).unwrap();
        let src = isic_root
            .join(isic_names::TRAIN_INPUT)
            .join(format!("{}.jpg", f[0]));
        std::fs::hard_link(&src, part.join(format!("{}.jpg", f[0]))).unwrap();
    }
    std::fs::write(ham_root.join(ham_names::METADATA), meta).unwrap();
}

/// CRC-32 (IEEE) for PNG chunks.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A PNG whose header claims `w x h` RGB pixels, with a tiny (far too short) image data chunk.
pub fn png_header_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut s = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut s, b"IHDR", &ihdr);
    png_chunk(
        &mut s,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut s, b"IEND", &[]);
    s
}
