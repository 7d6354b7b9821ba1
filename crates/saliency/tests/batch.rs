//! The file API and the binary: per-file results, errors naming the file, atomic writes,
//! up-to-date outputs skipped.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use image::{GrayImage, Rgb, RgbImage};
use saliency::{fine_grained_saliency, write_map, write_maps, MapJob, MapOutcome, SaliencyError};

fn photo_like(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) ^ (x * y + seed);
        Rgb([v as u8, (v >> 3) as u8, (x + y + seed) as u8])
    })
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn batch_writes_good_files_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    fs::create_dir(&inputs).unwrap();
    let good: Vec<_> = (0..5)
        .map(|i| {
            let p = inputs.join(format!("img{i}.png"));
            photo_like(40 + i * 9, 30 + i * 5, i).save(&p).unwrap();
            p
        })
        .collect();
    let corrupt = inputs.join("corrupt.png");
    let mut bytes = fs::read(&good[0]).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&corrupt, &bytes).unwrap();
    let not_an_image = inputs.join("notes.jpg");
    fs::write(&not_an_image, b"this is text").unwrap();
    let missing = inputs.join("missing.png");

    // Nested, not yet existing output folder.
    let out = dir.path().join("maps/train");
    let mut jobs: Vec<MapJob> = good.iter().map(|p| MapJob::into_folder(p, &out)).collect();
    jobs.insert(2, MapJob::into_folder(&corrupt, &out));
    jobs.push(MapJob::into_folder(&not_an_image, &out));
    jobs.push(MapJob::into_folder(&missing, &out));

    let results = write_maps(&jobs);
    assert_eq!(results.len(), jobs.len());
    for (job, result) in jobs.iter().zip(&results) {
        let bad = [&corrupt, &not_an_image, &missing].contains(&&job.input);
        match result {
            Ok(outcome) => {
                assert!(!bad, "{} should fail", job.input.display());
                assert_eq!(*outcome, MapOutcome::Written);
                let written = image::open(&job.output).unwrap();
                assert!(written.as_luma8().is_some(), "8-bit grey PNG expected");
                let expected = fine_grained_saliency(&image::open(&job.input).unwrap().to_rgb8());
                assert_eq!(written.into_luma8(), expected);
            }
            Err(e) => {
                assert!(bad, "{} failed: {e}", job.input.display());
                let msg = e.to_string();
                assert!(
                    msg.contains(&job.input.display().to_string()),
                    "error does not name the file: {msg}"
                );
                assert!(!job.output.exists());
            }
        }
    }
    assert!(matches!(results[2], Err(SaliencyError::Decode { .. })));
    assert!(matches!(results[7], Err(SaliencyError::ReadInput { .. })));
    // Only the five maps: no temporary files left behind.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 5);

    // A rerun computes nothing.
    let again = write_maps(&jobs[..2]);
    assert!(again.iter().all(|r| matches!(r, Ok(MapOutcome::Skipped))));

    // An input newer than its map is recomputed; a map as new as its input is not.
    let later = SystemTime::now() + Duration::from_secs(10);
    set_mtime(&jobs[0].input, later);
    set_mtime(&jobs[1].input, later);
    set_mtime(&jobs[1].output, later);
    let third = write_maps(&jobs[..2]);
    assert!(matches!(third[0], Ok(MapOutcome::Written)));
    assert!(matches!(third[1], Ok(MapOutcome::Skipped)));
}

#[test]
fn single_job_errors_and_output_naming() {
    let dir = tempfile::tempdir().unwrap();
    let job = MapJob::into_folder("/some/where/ISIC_0000001.jpg", dir.path());
    assert_eq!(job.output, dir.path().join("ISIC_0000001.png"));
    let err = write_map(&job).unwrap_err();
    assert!(err.to_string().contains("ISIC_0000001.jpg"), "{err}");

    let input = dir.path().join("a.png");
    photo_like(20, 10, 1).save(&input).unwrap();
    let bad_output = MapJob {
        input,
        output: "/".into(),
    };
    assert!(matches!(
        write_map(&bad_output),
        Err(SaliencyError::InvalidOutput { .. })
    ));
}

#[test]
fn binary_writes_the_others_and_fails_listing_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    let bad = dir.path().join("bad.png");
    photo_like(50, 40, 3).save(&a).unwrap();
    GrayImage::from_fn(33, 17, |x, y| image::Luma([(x * y) as u8]))
        .save(&b)
        .unwrap();
    fs::write(&bad, b"not a png").unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_saliency"))
        .args([&a, &bad, &b])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("bad.png"), "{stderr}");
    assert!(stderr.contains("2 written"), "{stderr}");
    assert!(out.join("a.png").exists() && out.join("b.png").exists());
    assert!(!out.join("bad.png").exists());

    let ok = Command::new(env!("CARGO_BIN_EXE_saliency"))
        .args([&a, &b])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert!(stderr.contains("0 written, 2 up to date"), "{stderr}");
}
