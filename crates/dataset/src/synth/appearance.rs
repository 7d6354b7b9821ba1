//! The synthetic lesions' appearance model.
//!
//! Appearance model. Coordinates: "lesion space", centred on the lesion, one unit = the image's
//! shorter side. A view maps pixels into lesion space; skin and hairs live in lesion space too, so
//! views of one lesion show the same patch of skin.

use std::f32::consts::PI;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};

use crate::classes::{IsicClass, NUM_CLASSES};

type Rgb = [f32; 3];

/// A class's typical appearance; lesions draw around it and borrow from other classes.
struct ClassLook {
    /// Lesion radius (fraction of the shorter side): mean, sd.
    radius: (f32, f32),
    /// Border irregularity amplitude: mean, sd.
    irregularity: (f32, f32),
    /// Centre and rim colour.
    inner: Rgb,
    outer: Rgb,
    /// Edge softness (fraction of the radius).
    softness: f32,
    /// Internal texture amplitude.
    texture: f32,
    /// Expected counts of dots, globules, streaks, vessels, white areas.
    structures: [f32; 5],
    /// Colour of globules.
    globule: Rgb,
}

fn class_look(class: IsicClass) -> ClassLook {
    match class {
        IsicClass::Nv => ClassLook {
            radius: (0.20, 0.05),
            irregularity: (0.04, 0.02),
            inner: [105., 70., 50.],
            outer: [150., 108., 82.],
            softness: 0.10,
            texture: 0.10,
            structures: [4., 5., 0.3, 0.2, 0.2],
            globule: [90., 58., 40.],
        },
        IsicClass::Mel => ClassLook {
            radius: (0.27, 0.06),
            irregularity: (0.15, 0.05),
            inner: [55., 38., 40.],
            outer: [125., 90., 80.],
            softness: 0.08,
            texture: 0.30,
            structures: [10., 3., 6., 0.5, 1.0],
            globule: [95., 100., 125.],
        },
        IsicClass::Bcc => ClassLook {
            radius: (0.21, 0.05),
            irregularity: (0.09, 0.04),
            inner: [160., 105., 105.],
            outer: [185., 135., 128.],
            softness: 0.12,
            texture: 0.12,
            structures: [1., 4., 0.3, 6., 1.5],
            globule: [100., 105., 128.],
        },
        IsicClass::Akiec => ClassLook {
            radius: (0.20, 0.05),
            irregularity: (0.12, 0.04),
            inner: [160., 88., 80.],
            outer: [180., 118., 105.],
            softness: 0.14,
            texture: 0.22,
            structures: [2., 1., 0.2, 3., 5.],
            globule: [150., 70., 70.],
        },
        IsicClass::Bkl => ClassLook {
            radius: (0.24, 0.06),
            irregularity: (0.07, 0.03),
            inner: [125., 92., 65.],
            outer: [155., 118., 88.],
            softness: 0.05,
            texture: 0.25,
            structures: [3., 1., 0.5, 0.3, 4.],
            globule: [110., 80., 55.],
        },
        IsicClass::Df => ClassLook {
            radius: (0.14, 0.04),
            irregularity: (0.05, 0.02),
            inner: [200., 170., 155.],
            outer: [140., 100., 78.],
            softness: 0.12,
            texture: 0.10,
            structures: [2., 0.5, 0.2, 0.5, 2.],
            globule: [120., 85., 60.],
        },
        IsicClass::Vasc => ClassLook {
            radius: (0.16, 0.04),
            irregularity: (0.05, 0.02),
            inner: [125., 40., 62.],
            outer: [160., 70., 85.],
            softness: 0.07,
            texture: 0.15,
            structures: [0.5, 7., 0.1, 1.0, 0.3],
            globule: [105., 25., 50.],
        },
    }
}

/// A disc (dot, globule, white area) in lesion space.
struct Disc {
    centre: [f32; 2],
    radius: f32,
    colour: Rgb,
    opacity: f32,
}

/// A line segment (streak, vessel piece, hair) in lesion space.
struct Segment {
    a: [f32; 2],
    b: [f32; 2],
    half_width: f32,
    colour: Rgb,
    opacity: f32,
}

/// Everything about one lesion and the patient's skin around it.
pub(super) struct LesionParams {
    skin: Rgb,
    skin_texture: f32,
    noise_seed: u32,
    vignette: f32,
    /// Radius of the dermoscope's field (lesion space), or infinity.
    scope_radius: f32,
    radius: f32,
    /// Upper bound of the border radius over all angles (radius times the harmonics' largest product).
    max_radius: f32,
    aspect: f32,
    angle: f32,
    /// Border harmonics: (amplitude, phase) for k = 2..
    harmonics: Vec<(f32, f32)>,
    inner: Rgb,
    outer: Rgb,
    softness: f32,
    texture: f32,
    /// Darkening towards one side (asymmetry): direction and amount.
    asym: ([f32; 2], f32),
    discs: Vec<Disc>,
    segments: Vec<Segment>,
    hairs: Vec<Segment>,
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn jitter(c: Rgb, rng: &mut ChaCha8Rng, sd: f32) -> Rgb {
    let n = Normal::new(0.0f32, sd).expect("positive sd");
    [
        c[0] + n.sample(rng),
        c[1] + n.sample(rng),
        c[2] + n.sample(rng),
    ]
}

fn normal(rng: &mut ChaCha8Rng, mean: f32, sd: f32) -> f32 {
    Normal::new(mean, sd.max(1e-6))
        .expect("positive sd")
        .sample(rng)
}

fn poisson(rng: &mut ChaCha8Rng, mean: f32) -> usize {
    if mean <= 0.0 {
        return 0;
    }
    (Poisson::new(mean as f64)
        .expect("positive mean")
        .sample(rng) as usize)
        .min(40)
}

impl LesionParams {
    pub(super) fn draw(class: IsicClass, rng: &mut ChaCha8Rng) -> Self {
        let look = class_look(class);
        // Borrow from another class: the main source of overlap between classes.
        let other = class_look(IsicClass::ALL[rng.random_range(0..NUM_CLASSES)]);
        let borrow = rng.random_range(0.0f32..0.45);

        let tone = rng.random_range(0.0f32..1.0);
        let skin = jitter(mix([238., 204., 186.], [188., 140., 112.], tone), rng, 6.0);
        let radius = normal(
            rng,
            mix3(look.radius.0, other.radius.0, borrow * 0.5),
            look.radius.1,
        )
        .clamp(0.07, 0.40);
        let irregularity = normal(
            rng,
            mix3(look.irregularity.0, other.irregularity.0, borrow),
            look.irregularity.1,
        )
        .clamp(0.0, 0.3);
        let harmonics: Vec<(f32, f32)> = (2..8)
            .map(|k| {
                (
                    irregularity * rng.random_range(0.3f32..1.0) / (k as f32 - 1.0).sqrt(),
                    rng.random_range(0.0..2.0 * PI),
                )
            })
            .collect();
        // Lesions stay darker than the skin: cap each channel below the skin's.
        let darker = |c: Rgb, f: f32| {
            [
                c[0].min(skin[0] * f),
                c[1].min(skin[1] * f),
                c[2].min(skin[2] * f),
            ]
        };
        let inner = darker(
            jitter(mix(look.inner, other.inner, borrow), rng, 12.0),
            0.85,
        );
        let outer = darker(
            jitter(mix(look.outer, other.outer, borrow), rng, 12.0),
            0.92,
        );
        let angle_a = rng.random_range(0.0f32..2.0 * PI);
        let asym_amount = rng.random_range(0.0f32..0.35) * (look.irregularity.0 / 0.15).min(1.0);

        let mut discs = Vec::new();
        let mut segments = Vec::new();
        let expected =
            |i: usize| look.structures[i] * (1.0 - borrow) + other.structures[i] * borrow;
        let inside = |rng: &mut ChaCha8Rng, frac: f32| {
            let r = radius * frac * rng.random_range(0.0f32..1.0).sqrt();
            let t = rng.random_range(0.0f32..2.0 * PI);
            [r * t.cos(), r * t.sin()]
        };
        for _ in 0..poisson(rng, expected(0)) {
            discs.push(Disc {
                centre: inside(rng, 0.9),
                radius: radius * rng.random_range(0.02f32..0.05),
                colour: jitter([45., 30., 28.], rng, 8.0),
                opacity: 0.85,
            });
        }
        let globule = mix(look.globule, other.globule, borrow);
        for _ in 0..poisson(rng, expected(1)) {
            discs.push(Disc {
                centre: inside(rng, 0.8),
                radius: radius * rng.random_range(0.06f32..0.14),
                colour: jitter(globule, rng, 10.0),
                opacity: 0.8,
            });
        }
        for _ in 0..poisson(rng, expected(2)) {
            let t = rng.random_range(0.0f32..2.0 * PI);
            let (r0, r1) = (
                radius * rng.random_range(0.6f32..0.85),
                radius * rng.random_range(1.0f32..1.2),
            );
            segments.push(Segment {
                a: [r0 * t.cos(), r0 * t.sin()],
                b: [r1 * t.cos(), r1 * t.sin()],
                half_width: radius * 0.025,
                colour: jitter([50., 35., 32.], rng, 8.0),
                opacity: 0.85,
            });
        }
        for _ in 0..poisson(rng, expected(3)) {
            // A wavy vessel: a short chain of segments.
            let mut p = inside(rng, 0.8);
            let mut heading = rng.random_range(0.0f32..2.0 * PI);
            let colour = jitter([170., 45., 55.], rng, 10.0);
            for _ in 0..rng.random_range(3..7) {
                heading += rng.random_range(-0.9f32..0.9);
                let len = radius * rng.random_range(0.08f32..0.18);
                let q = [p[0] + len * heading.cos(), p[1] + len * heading.sin()];
                segments.push(Segment {
                    a: p,
                    b: q,
                    half_width: radius * 0.012,
                    colour,
                    opacity: 0.9,
                });
                p = q;
            }
        }
        for _ in 0..poisson(rng, expected(4)) {
            let white = mix(skin, [235., 230., 228.], 0.6);
            discs.push(Disc {
                centre: inside(rng, 0.6),
                radius: radius * rng.random_range(0.05f32..0.2),
                colour: jitter(white, rng, 6.0),
                opacity: 0.55,
            });
        }
        let mut hairs = Vec::new();
        let n_hairs = if rng.random_bool(0.45) {
            0
        } else {
            rng.random_range(1..6)
        };
        for _ in 0..n_hairs {
            let mut p = [
                rng.random_range(-0.8f32..0.8),
                rng.random_range(-0.8f32..0.8),
            ];
            let mut heading = rng.random_range(0.0f32..2.0 * PI);
            let colour = jitter([70., 50., 40.], rng, 10.0);
            for _ in 0..8 {
                heading += rng.random_range(-0.12f32..0.12);
                let q = [p[0] + 0.06 * heading.cos(), p[1] + 0.06 * heading.sin()];
                hairs.push(Segment {
                    a: p,
                    b: q,
                    half_width: 0.0025,
                    colour,
                    opacity: 0.75,
                });
                p = q;
            }
        }
        LesionParams {
            skin,
            skin_texture: rng.random_range(0.02f32..0.08),
            noise_seed: rng.random(),
            vignette: rng.random_range(0.0f32..0.35),
            scope_radius: if rng.random_bool(0.3) {
                rng.random_range(0.75f32..0.95)
            } else {
                f32::INFINITY
            },
            radius,
            max_radius: radius
                * harmonics
                    .iter()
                    .map(|&(a, _)| 1.0 + a.abs())
                    .product::<f32>(),
            aspect: rng.random_range(1.0f32..1.35),
            angle: rng.random_range(0.0f32..PI),
            harmonics,
            inner,
            outer,
            softness: mix3(look.softness, other.softness, borrow),
            texture: mix3(look.texture, other.texture, borrow),
            asym: ([angle_a.cos(), angle_a.sin()], asym_amount),
            discs,
            segments,
            hairs,
        }
    }
}

fn mix3(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// How one photograph frames its lesion: lesion space = rotate(pixel offset / (zoom * side)) - shift.
pub(super) struct View {
    shift: [f32; 2],
    angle: f32,
    zoom: f32,
}

impl View {
    pub(super) fn identity() -> Self {
        View {
            shift: [0.0, 0.0],
            angle: 0.0,
            zoom: 1.0,
        }
    }

    pub(super) fn draw(rng: &mut ChaCha8Rng) -> Self {
        View {
            shift: [
                rng.random_range(-0.12f32..0.12),
                rng.random_range(-0.1f32..0.1),
            ],
            angle: rng.random_range(-PI..PI),
            zoom: rng.random_range(0.8f32..1.25),
        }
    }
}

/// Smooth value noise in [0, 1] on an integer lattice, hashed from `seed`.
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    fn hash(ix: i32, iy: i32, seed: u32) -> f32 {
        let mut h = (ix as u32).wrapping_mul(0x8da6_b343)
            ^ (iy as u32).wrapping_mul(0xd816_3841)
            ^ seed.wrapping_mul(0xcb1a_b31f);
        h ^= h >> 13;
        h = h.wrapping_mul(0x5bd1_e995);
        h ^= h >> 15;
        (h & 0xffff) as f32 / 65535.0
    }
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = hash(ix, iy, seed) + (hash(ix + 1, iy, seed) - hash(ix, iy, seed)) * sx;
    let b = hash(ix, iy + 1, seed) + (hash(ix + 1, iy + 1, seed) - hash(ix, iy + 1, seed)) * sx;
    a + (b - a) * sy
}

/// Coverage in [0, 1] of a soft-edged shape at signed distance `d` (negative inside), edge width `w`.
fn coverage(d: f32, w: f32) -> f32 {
    (0.5 - d / w).clamp(0.0, 1.0)
}

/// Whether `p` is within `margin` of the segment's bounding box (a cheap test before the distance).
fn near_segment(p: [f32; 2], s: &Segment, margin: f32) -> bool {
    let m = margin + s.half_width;
    p[0] >= s.a[0].min(s.b[0]) - m
        && p[0] <= s.a[0].max(s.b[0]) + m
        && p[1] >= s.a[1].min(s.b[1]) - m
        && p[1] <= s.a[1].max(s.b[1]) + m
}

fn segment_distance(p: [f32; 2], s: &Segment) -> f32 {
    let (dx, dy) = (s.b[0] - s.a[0], s.b[1] - s.a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p[0] - s.a[0]) * dx + (p[1] - s.a[1]) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (ex, ey) = (p[0] - s.a[0] - t * dx, p[1] - s.a[1] - t * dy);
    (ex * ex + ey * ey).sqrt()
}

fn blend(c: &mut Rgb, over: Rgb, alpha: f32) {
    for k in 0..3 {
        c[k] += (over[k] - c[k]) * alpha;
    }
}

pub(super) fn render(
    l: &LesionParams,
    view: &View,
    width: u32,
    height: u32,
    pixel_seed: u64,
) -> RgbImage {
    let side = width.min(height) as f32;
    let pixel = 1.0 / side; // one pixel in lesion space (before zoom)
    let (cos_v, sin_v) = (view.angle.cos(), view.angle.sin());
    let (cos_l, sin_l) = (l.angle.cos(), l.angle.sin());
    let mut img = RgbImage::new(width, height);
    let mut noise_rng = ChaCha8Rng::seed_from_u64(pixel_seed);
    let sensor = Normal::new(0.0f32, 2.5).expect("positive sd");
    for (x, y, px) in img.enumerate_pixels_mut() {
        // Image-centred offsets in units of the shorter side.
        let ox = (x as f32 + 0.5 - width as f32 / 2.0) / side;
        let oy = (y as f32 + 0.5 - height as f32 / 2.0) / side;
        let (zx, zy) = (ox / view.zoom, oy / view.zoom);
        let q = [
            cos_v * zx - sin_v * zy - view.shift[0],
            sin_v * zx + cos_v * zy - view.shift[1],
        ];
        let edge = pixel / view.zoom * 1.5;

        let n1 = value_noise(q[0] * 9.0, q[1] * 9.0, l.noise_seed);
        let n2 = value_noise(q[0] * 40.0, q[1] * 40.0, l.noise_seed ^ 0x55);
        let shade = 1.0 + l.skin_texture * (n1 - 0.5) * 2.0 + 0.03 * (n2 - 0.5);
        let mut c = [l.skin[0] * shade, l.skin[1] * shade, l.skin[2] * shade];

        // Lesion body: an irregular ellipse.
        let (ex, ey) = (cos_l * q[0] + sin_l * q[1], -sin_l * q[0] + cos_l * q[1]);
        let (ex, ey) = (ex / l.aspect, ey);
        let r = (ex * ex + ey * ey).sqrt();
        let soft = l.softness.max(0.02);
        // Far outside the largest possible border the harmonics need not be evaluated.
        let (body, d) = if r > l.max_radius * (1.0 + soft) {
            (0.0, f32::INFINITY)
        } else {
            let theta = ey.atan2(ex);
            let mut rad = l.radius;
            for (k, &(amp, phase)) in l.harmonics.iter().enumerate() {
                rad *= 1.0 + amp * ((k as f32 + 2.0) * theta + phase).sin();
            }
            let d = r / rad.max(1e-3);
            (((1.0 + soft - d) / (2.0 * soft)).clamp(0.0, 1.0), d)
        };
        if body > 0.0 {
            let t = d.clamp(0.0, 1.0).powf(1.5);
            let mut lc = mix(l.inner, l.outer, t);
            let tex = value_noise(q[0] * 60.0, q[1] * 60.0, l.noise_seed ^ 0xabc);
            let dir = (q[0] * l.asym.0[0] + q[1] * l.asym.0[1]) / l.radius;
            let dark =
                (1.0 - l.texture * (tex - 0.5) * 2.0) * (1.0 - l.asym.1 * dir.clamp(0.0, 1.0));
            for v in lc.iter_mut() {
                *v *= dark;
            }
            let a = body * body * (3.0 - 2.0 * body);
            blend(&mut c, lc, a);
            for disc in &l.discs {
                let dd = ((q[0] - disc.centre[0]).powi(2) + (q[1] - disc.centre[1]).powi(2)).sqrt()
                    - disc.radius;
                if dd < edge {
                    blend(&mut c, disc.colour, disc.opacity * coverage(dd, edge) * a);
                }
            }
        }
        for s in l.segments.iter().chain(&l.hairs) {
            if !near_segment(q, s, edge) {
                continue;
            }
            let dd = segment_distance(q, s) - s.half_width;
            if dd < edge {
                blend(&mut c, s.colour, s.opacity * coverage(dd, edge));
            }
        }
        // Vignette and the dermoscope's field, in image space.
        let rr = (ox * ox + oy * oy).sqrt();
        let v = 1.0 - l.vignette * (rr / 0.8).powi(2);
        let scope = coverage(rr - l.scope_radius, 0.02);
        for (k, out) in px.0.iter_mut().enumerate() {
            let value = c[k] * v * scope + 8.0 * (1.0 - scope) + sensor.sample(&mut noise_rng);
            *out = value.round().clamp(0.0, 255.0) as u8;
        }
    }
    img
}
