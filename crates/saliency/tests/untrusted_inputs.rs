//! The `saliency` binary on hostile inputs: a pixel budget from the header (`--max-pixels`), a
//! truncated JPEG and a PNG named `.jpg` treated by content; the good inputs still get their maps.

use std::fs;
use std::process::Command;

use image::{Rgb, RgbImage};

fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 5) as u8, (y * 9) as u8, (x ^ y) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut out)
        .encode_image(&img)
        .unwrap();
    out
}

#[test]
fn binary_refuses_over_budget_and_truncated_images_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jpg");
    fs::write(&good, jpeg_bytes(40, 30)).unwrap();
    let png_as_jpg = dir.path().join("png_inside.jpg");
    RgbImage::from_pixel(20, 10, Rgb([9, 99, 199]))
        .save_with_format(&png_as_jpg, image::ImageFormat::Png)
        .unwrap();
    let big = dir.path().join("big.jpg");
    fs::write(&big, jpeg_bytes(80, 60)).unwrap();
    let cut = dir.path().join("cut.jpg");
    let bytes = jpeg_bytes(64, 64);
    fs::write(&cut, &bytes[..bytes.len() - 25]).unwrap();
    let out = dir.path().join("maps");

    let run = Command::new(env!("CARGO_BIN_EXE_saliency"))
        .args([&good, &png_as_jpg, &big, &cut])
        .arg("--out-dir")
        .arg(&out)
        .args(["--max-pixels", "4096"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 written, 0 up to date, 2 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "image {} is 80x60 = 4800 pixels, over the limit of 4096",
            big.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&cut.display().to_string()) && stderr.contains("end-of-image marker"),
        "{stderr}"
    );
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        ["good.png", "png_inside.png"],
        "no partial or temporary output"
    );
}
