//! Augmentation settings as serde config: presets by name, defaults, unknown keys rejected.

use dataset::augment::{AugmentConfig, Normalization, Pair, Step, ViewConfig};
use image::{GrayImage, Luma, Rgb, RgbImage};

#[test]
fn presets_by_name_match_the_design() {
    let q = ViewConfig::preset("query", 224).unwrap();
    assert_eq!(q, ViewConfig::query(224));
    assert!(matches!(q.steps[0], Step::RandomResizedCrop { scale: [s0, 1.0], .. } if s0 == 0.08));
    assert!(
        matches!(q.steps[3], Step::RandAugment { n: 2, m, mstd, p, fill } if m == 10.0 && mstd == 0.5 && p == 0.5 && fill == [195, 139, 145])
    );
    let k = ViewConfig::preset("key", 224).unwrap();
    assert!(matches!(k.steps[2], Step::RandomGrayscale { p } if p == 0.2));
    assert!(
        matches!(k.steps[3], Step::GaussianBlur { p, sigma: [a, b] } if p == 0.5 && a == 0.1 && b == 2.0)
    );
    let err = ViewConfig::preset("querry", 224).unwrap_err();
    assert!(err.contains("querry") && err.contains("query"), "{err}");
}

#[test]
fn config_round_trips_and_rejects_unknown_keys() {
    let cfg = AugmentConfig::default();
    cfg.validate().unwrap();
    let json = serde_json::to_string(&cfg).unwrap();
    let back: AugmentConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    // Partial config: missing parts take the defaults.
    let part: AugmentConfig =
        serde_json::from_str(r#"{"eval": {"resize": 64, "crop": 56}}"#).unwrap();
    assert_eq!(part.eval.crop, 56);
    assert_eq!(part.query, ViewConfig::query(224));
    for bad in [
        r#"{"qeury": {"size": 1, "steps": []}}"#,
        r#"{"query": {"size": 32, "steps": [{"op": "horizontal_flip", "p": 0.5, "q": 1}]}}"#,
        r#"{"query": {"size": 32, "steps": [{"op": "rand_augment", "n": 2, "m": 9, "extra": 1}]}}"#,
        r#"{"query": {"size": 32, "steps": [{"op": "spin", "p": 0.5}]}}"#,
    ] {
        assert!(
            serde_json::from_str::<AugmentConfig>(bad).is_err(),
            "accepted {bad}"
        );
    }
    let step: Step = serde_json::from_str(r#"{"op": "rand_augment", "n": 1, "m": 5}"#).unwrap();
    assert!(matches!(step, Step::RandAugment { n: 1, mstd, p, .. } if mstd == 0.0 && p == 0.5));
}

#[test]
fn validation_names_the_key() {
    let mut v = ViewConfig::key(32);
    v.steps.push(Step::HorizontalFlip { p: 1.5 });
    let e = v.validate().unwrap_err();
    assert!(e.contains("horizontal_flip.p"), "{e}");
    let mut a = AugmentConfig::default();
    a.eval.crop = 300;
    assert!(a.validate().unwrap_err().contains("eval"));
}

#[test]
fn normalisation_uses_isic_constants() {
    let n = Normalization::isic();
    let image = RgbImage::from_pixel(2, 2, Rgb([255, 0, 128]));
    let sal = GrayImage::from_pixel(2, 2, Luma([255]));
    let p = Pair::new(image, sal).unwrap();
    let (mut i, mut s) = (vec![0f32; 12], vec![0f32; 4]);
    n.write_chw(&p, &mut i, &mut s);
    let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
    assert!(close(i[0], (1.0 - 0.765) / 0.140));
    assert!(close(i[4], (0.0 - 0.545) / 0.151));
    assert!(close(i[8], (128.0 / 255.0 - 0.569) / 0.169));
    assert!(close(s[3], (1.0 - 0.144) / 0.137));
    assert!(Pair::new(RgbImage::new(3, 2), GrayImage::new(2, 3)).is_err());
}
