//! The saliency map must cover the same pixels as the image after every geometric transform and the
//! full query/key presets; colour ops never touch the map; the evaluation transform is fixed.

use dataset::augment::geometry::{
    crop_resize, hflip, random_resized_crop_box, warp_affine, Affine,
};
use dataset::augment::{ColourOps, EvalConfig, Pair, RandAugmentOp, ViewConfig};
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BG: [u8; 3] = [40, 160, 60];
const DISC: [u8; 3] = [220, 30, 30];

/// A 160 x 120 image with three red discs placed asymmetrically (so a flip or shift of one plane
/// alone misaligns them) and its map: 255 inside the discs, 0 outside.
fn disc_pair() -> Pair {
    let discs = [
        (45.0f32, 40.0f32, 22.0f32),
        (115.0, 80.0, 16.0),
        (120.0, 25.0, 9.0),
    ];
    let inside = |x: u32, y: u32| {
        discs.iter().any(|&(cx, cy, r)| {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            dx * dx + dy * dy <= r * r
        })
    };
    let image = RgbImage::from_fn(160, 120, |x, y| Rgb(if inside(x, y) { DISC } else { BG }));
    let saliency = GrayImage::from_fn(160, 120, |x, y| Luma([if inside(x, y) { 255 } else { 0 }]));
    Pair::new(image, saliency).unwrap()
}

/// Agreement between "the image pixel is disc-red" and "the map says salient", over pixels whose
/// map is uniform (all >= 128 or all < 128) in the surrounding 5 x 5 window, i.e. away from the
/// interpolated disc edges. Returns (fraction agreeing, salient pixels counted).
fn agreement(p: &Pair) -> (f64, usize) {
    let (w, h) = p.image.dimensions();
    let (mut agree, mut total, mut salient) = (0usize, 0usize, 0usize);
    for y in 0..h {
        for x in 0..w {
            let on = p.saliency.get_pixel(x, y)[0] >= 128;
            let mut uniform = true;
            'win: for yy in y.saturating_sub(2)..(y + 3).min(h) {
                for xx in x.saturating_sub(2)..(x + 3).min(w) {
                    if (p.saliency.get_pixel(xx, yy)[0] >= 128) != on {
                        uniform = false;
                        break 'win;
                    }
                }
            }
            if !uniform {
                continue;
            }
            let px = p.image.get_pixel(x, y);
            let red = px[0] > 150 && px[1] < 100 && px[2] < 100;
            total += 1;
            agree += (red == on) as usize;
            salient += on as usize;
        }
    }
    (agree as f64 / total.max(1) as f64, salient)
}

fn assert_aligned(p: &Pair, what: &str) {
    let (a, salient) = agreement(p);
    assert!(
        salient >= 20,
        "{what}: only {salient} salient interior pixels; the test saw no disc"
    );
    assert!(
        a >= 0.99,
        "{what}: image and map agree on {:.4} of pixels",
        a
    );
}

#[test]
fn untouched_pair_is_aligned_and_a_one_sided_flip_is_caught() {
    let p = disc_pair();
    assert_aligned(&p, "input");
    // Negative control: flipping only the image must fail the check.
    let mut bad = p.clone();
    image::imageops::flip_horizontal_in_place(&mut bad.image);
    let (a, _) = agreement(&bad);
    assert!(a < 0.95, "one-sided flip still agrees on {a}");
}

#[test]
fn random_resized_crop_keeps_alignment() {
    let p = disc_pair();
    let mut checked = 0;
    for seed in 0..40 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let b = random_resized_crop_box(160, 120, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng);
        assert!(
            b.left >= 0.0 && b.top >= 0.0 && b.left + b.width <= 160.0 && b.top + b.height <= 120.0
        );
        let out = crop_resize(&p, b, 64, 64);
        if agreement(&out).1 >= 20 {
            assert_aligned(&out, &format!("rrc seed {seed} {b:?}"));
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} crops contained a disc");
}

#[test]
fn hflip_keeps_alignment() {
    let mut p = disc_pair();
    hflip(&mut p);
    assert_aligned(&p, "hflip");
    assert_eq!(
        p.image.get_pixel(159 - 45, 40).0,
        DISC,
        "flip moved the disc"
    );
}

#[test]
fn every_geometric_rand_augment_op_keeps_alignment() {
    let p = disc_pair();
    let fill = [195, 139, 145];
    for op in RandAugmentOp::ALL.into_iter().filter(|o| o.is_geometric()) {
        for level in [2.0, 5.0, 10.0] {
            for negate in [false, true] {
                let mut q = p.clone();
                op.apply(&mut q, level, negate, fill);
                assert_ne!(
                    q.saliency, p.saliency,
                    "{op:?} {level} did not move the map"
                );
                assert_aligned(&q, &format!("{op:?} level {level} negate {negate}"));
            }
        }
    }
    // Chained warps: each keeps the pair together.
    let mut q = p.clone();
    for (op, l) in [
        (RandAugmentOp::Rotate, 7.0),
        (RandAugmentOp::ShearX, 9.0),
        (RandAugmentOp::TranslateYRel, 4.0),
    ] {
        op.apply(&mut q, l, true, fill);
    }
    assert_aligned(&q, "rotate + shear + translate");
}

#[test]
fn affine_conventions_match_pil() {
    // TranslateX by +10 (PIL: output x samples input x + 10) moves content 10 px to the left.
    let p = disc_pair();
    let q = warp_affine(&p, Affine::translate_x(10.0), [0, 0, 0]);
    assert_eq!(q.image.get_pixel(35, 40).0, DISC);
    assert_eq!(
        q.image.get_pixel(159, 60).0,
        [0, 0, 0],
        "uncovered pixels take the fill"
    );
    assert_eq!(q.saliency.get_pixel(159, 60)[0], 0);
    // Rotating by 90 degrees about the centre keeps the centre pixel.
    let r = warp_affine(&p, Affine::rotate(90.0, 160, 120), [0, 0, 0]);
    assert_eq!(r.image.get_pixel(80, 60), p.image.get_pixel(80, 60));
}

#[test]
fn full_presets_keep_alignment_and_colour_never_reaches_the_map() {
    let p = disc_pair();
    for (name, view) in [
        ("query", ViewConfig::query(64)),
        ("key", ViewConfig::key(64)),
    ] {
        let mut checked = 0;
        for seed in 0..60 {
            let geo = view.apply_with(&p, &mut ChaCha8Rng::seed_from_u64(seed), ColourOps::Skip);
            let full = view.apply_with(&p, &mut ChaCha8Rng::seed_from_u64(seed), ColourOps::Apply);
            assert_eq!(geo.image.dimensions(), (64, 64));
            // Same draws, same geometry: the map is bit-identical with or without colour ops.
            assert_eq!(
                geo.saliency, full.saliency,
                "{name} seed {seed}: colour ops changed the map"
            );
            if agreement(&geo).1 >= 20 {
                assert_aligned(&geo, &format!("{name} seed {seed}"));
                checked += 1;
            }
        }
        assert!(
            checked >= 20,
            "{name}: only {checked} views contained a disc"
        );
    }
}

#[test]
fn colour_ops_leave_the_map_untouched() {
    let p = disc_pair();
    for op in RandAugmentOp::ALL.into_iter().filter(|o| !o.is_geometric()) {
        let mut q = p.clone();
        op.apply(&mut q, 8.0, false, [0, 0, 0]);
        assert_eq!(q.saliency, p.saliency, "{op:?} changed the map");
        if op != RandAugmentOp::Equalize {
            assert_ne!(q.image, p.image, "{op:?} did nothing to the image");
        }
    }
}

#[test]
fn eval_transform_is_deterministic_and_aligned() {
    let p = disc_pair();
    let eval = EvalConfig {
        resize: 72,
        crop: 64,
    };
    let a = eval.apply(&p);
    let b = eval.apply(&p);
    assert_eq!(a, b);
    assert_eq!(a.image.dimensions(), (64, 64));
    assert_aligned(&a, "eval");
    // Shorter side 120 -> 72: scale 0.6; the 64 x 64 centre of the 96 x 72 resized image.
    let big = disc_pair();
    let c = EvalConfig {
        resize: 120,
        crop: 120,
    }
    .apply(&big);
    assert_eq!(c.image.dimensions(), (120, 120));
    assert_eq!(
        c.image.get_pixel(45 - 20, 40).0,
        DISC,
        "centre crop offset is (160 - 120) / 2"
    );
}

#[test]
fn views_are_fixed_by_the_seed() {
    let p = disc_pair();
    let v = ViewConfig::query(48);
    let a = v.apply(&p, &mut ChaCha8Rng::seed_from_u64(3));
    let b = v.apply(&p, &mut ChaCha8Rng::seed_from_u64(3));
    let c = v.apply(&p, &mut ChaCha8Rng::seed_from_u64(4));
    assert_eq!(a, b);
    assert_ne!(a, c);
}
