//! Parity with OpenCV 5.0's `StaticSaliencyFineGrained` on the fixtures written by
//! `scripts/make_fixtures.py`: zero differing u8 pixels, f32 maps equal bit for bit.
//!
//! `SALIENCY_EXTRA_FIXTURES=DIR` adds the cases of another fixture folder (e.g. the script's
//! `--all` output) to the same checks.

use std::fs;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, RgbImage};
use saliency::{
    fine_grained_saliency, fine_grained_saliency_dynamic, fine_grained_saliency_grey, map_to_f32,
    saliency_from_path,
};

struct Case {
    dir: PathBuf,
    name: String,
    width: u32,
    height: u32,
    channels: u8,
    has_raw_f32: bool,
}

impl Case {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}", self.name))
    }
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")];
    if let Some(extra) = std::env::var_os("SALIENCY_EXTRA_FIXTURES") {
        dirs.push(PathBuf::from(extra));
    }
    dirs
}

fn cases(dir: &Path) -> Vec<Case> {
    let manifest = fs::read_to_string(dir.join("manifest.txt"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("manifest.txt").display()));
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 5, "bad manifest line {line:?}");
            Case {
                dir: dir.to_owned(),
                name: f[0].to_owned(),
                width: f[1].parse().unwrap(),
                height: f[2].parse().unwrap(),
                channels: f[3].parse().unwrap(),
                has_raw_f32: f[4] == "1",
            }
        })
        .collect()
}

fn read_f32(path: &Path) -> Vec<u32> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}", path.display());
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn opencv_u8(case: &Case) -> GrayImage {
    image::open(case.file("opencv.png"))
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
        .into_luma8()
}

fn input(case: &Case) -> DynamicImage {
    let img = image::open(case.file("input.png")).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    assert_eq!(
        (img.width(), img.height()),
        (case.width, case.height),
        "{}",
        case.name
    );
    match (case.channels, &img) {
        (3, DynamicImage::ImageRgb8(_)) | (1, DynamicImage::ImageLuma8(_)) => {}
        _ => panic!("{}: decoded as {:?}", case.name, img.color()),
    }
    img
}

#[test]
fn u8_maps_equal_opencv_on_every_fixture() {
    let mut report = Vec::new();
    let mut checked = 0;
    for dir in fixture_dirs() {
        for case in cases(&dir) {
            let ours = fine_grained_saliency_dynamic(&input(&case));
            let theirs = opencv_u8(&case);
            assert_eq!(ours.dimensions(), theirs.dimensions(), "{}", case.name);
            let differing = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .filter(|(a, b)| a != b)
                .count();
            if differing > 0 {
                report.push(format!("{}: {differing} differing pixels", case.name));
            }
            checked += 1;
        }
    }
    assert!(checked >= 21, "only {checked} fixtures found");
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn f32_maps_equal_opencv_bit_for_bit() {
    let mut raw_checked = 0;
    for dir in fixture_dirs() {
        let table = read_f32(&dir.join("opencv_f32_of_u8.f32"));
        assert_eq!(table.len(), 256);
        for case in cases(&dir) {
            let ours = map_to_f32(&fine_grained_saliency_dynamic(&input(&case)));
            let ours: Vec<u32> = ours.as_raw().iter().map(|v| v.to_bits()).collect();
            // Every f32 map is stored losslessly as its u8 map plus OpenCV's value table (the
            // script asserts this); the small ones also as raw f32.
            let from_table: Vec<u32> = opencv_u8(&case)
                .as_raw()
                .iter()
                .map(|&k| table[usize::from(k)])
                .collect();
            assert!(ours == from_table, "{}: f32 map differs", case.name);
            if case.has_raw_f32 {
                assert!(
                    ours == read_f32(&case.file("opencv.f32")),
                    "{}: f32 map differs from the raw file",
                    case.name
                );
                raw_checked += 1;
            }
        }
    }
    assert!(raw_checked >= 10, "only {raw_checked} raw f32 maps found");
}

#[test]
fn fixtures_cover_the_edge_cases() {
    let dir = &fixture_dirs()[0];
    let names: Vec<String> = cases(dir).into_iter().map(|c| c.name).collect();
    for needed in [
        "astronaut_224x224",
        "camera_native",
        "astronaut_600x450",
        "flat_37x29",
        "tiny_1x1",
        "tiny_7x5",
        "row_9x1",
        "column_1x9",
        "dark_dot_50x40",
        "wrap_grey_161x3",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "fixture {needed} missing"
        );
    }
}

#[test]
fn flat_tiny_and_wrapping_fixtures_have_the_expected_maps() {
    let dir = &fixture_dirs()[0];
    let all = cases(dir);
    let case = |name: &str| all.iter().find(|c| c.name == name).unwrap();
    for flat in ["flat_37x29", "flat_grey_8x8", "tiny_1x1", "tiny_2x2"] {
        assert!(
            opencv_u8(case(flat)).as_raw().iter().all(|&v| v == 0),
            "{flat}"
        );
    }
    // The crafted image has pixels whose on + off exceeds 255: OpenCV keeps the low byte. A
    // saturating implementation would give 255 there; ours must give the wrapped value.
    let wrap = case("wrap_grey_161x3");
    let ours = fine_grained_saliency_dynamic(&input(wrap));
    assert_eq!(ours, opencv_u8(wrap));
}

#[test]
fn the_path_api_reads_the_same_pixels() {
    let dir = &fixture_dirs()[0];
    for case in cases(dir).iter().filter(|c| c.name.ends_with("224x224")) {
        let map = saliency_from_path(&case.file("input.png")).unwrap();
        assert_eq!(map, opencv_u8(case), "{}", case.name);
    }
}

#[test]
fn channel_order_matters_and_grey_equals_three_equal_channels() {
    let dir = &fixture_dirs()[0];
    let all = cases(dir);
    let astronaut = all.iter().find(|c| c.name == "astronaut_224x224").unwrap();
    let rgb = input(astronaut).into_rgb8();
    let mut bgr = rgb.clone();
    for p in bgr.pixels_mut() {
        p.0.swap(0, 2);
    }
    let reference = opencv_u8(astronaut);
    let swapped = fine_grained_saliency(&bgr);
    let differing = swapped
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing > reference.len() / 10,
        "swapping R and B changed only {differing} pixels"
    );

    let camera = all.iter().find(|c| c.name == "camera_224x224").unwrap();
    let grey = input(camera).into_luma8();
    let expanded = RgbImage::from_fn(grey.width(), grey.height(), |x, y| {
        let v = grey.get_pixel(x, y).0[0];
        image::Rgb([v, v, v])
    });
    assert_eq!(
        fine_grained_saliency(&expanded),
        fine_grained_saliency_grey(&grey)
    );
}
