//! The stem max-pool (3x3, stride 2, padding 1): forward and backward against a direct
//! reference with many ties (the gradient goes to the first maximum only), and the gradient
//! against finite differences.

use candle_core::{DType, Device, Tensor, Var};
use ops::max_pool::stem_max_pool;

/// Direct reference of the pool: for each output, the first max of its clipped window.
fn reference_pool(x: &[f32], h: usize, w: usize) -> (Vec<f32>, Vec<usize>) {
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let (mut out, mut arg) = (vec![], vec![]);
    for oh in 0..ho {
        for ow in 0..wo {
            let mut best = (usize::MAX, f32::NEG_INFINITY);
            for ih in (2 * oh).saturating_sub(1)..(2 * oh + 2).min(h) {
                for iw in (2 * ow).saturating_sub(1)..(2 * ow + 2).min(w) {
                    if best.0 == usize::MAX || x[ih * w + iw] > best.1 {
                        best = (ih * w + iw, x[ih * w + iw]);
                    }
                }
            }
            out.push(best.1);
            arg.push(best.0);
        }
    }
    (out, arg)
}

#[test]
fn stem_max_pool_forward_and_backward_match_reference_with_ties() {
    let dev = Device::Cpu;
    for &(h, w) in &[(7usize, 6usize), (8, 9), (1, 1), (2, 5)] {
        // Small integers give many ties; the gradient must go to the first max only.
        let data: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 7919 + 13) % 5) as f32)
            .collect();
        let x =
            Var::from_tensor(&Tensor::from_vec(data.clone(), (1, 2, h, w), &dev).unwrap()).unwrap();
        let y = stem_max_pool(x.as_tensor()).unwrap();
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        assert_eq!(y.dims(), &[1, 2, ho, wo]);
        let gy = Tensor::randn(0f32, 1., (1, 2, ho, wo), &dev).unwrap();
        let grads = (y.clone() * &gy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let gyv: Vec<f32> = gy.flatten_all().unwrap().to_vec1().unwrap();
        for p in 0..2 {
            let plane = &data[p * h * w..(p + 1) * h * w];
            let (out, arg) = reference_pool(plane, h, w);
            assert_eq!(
                &yv[p * ho * wo..(p + 1) * ho * wo],
                out.as_slice(),
                "forward {h}x{w}"
            );
            let mut want = vec![0f32; h * w];
            for (o, &a) in arg.iter().enumerate() {
                want[a] += gyv[p * ho * wo + o];
            }
            for (i, (g, e)) in gx[p * h * w..(p + 1) * h * w].iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() < 1e-6,
                    "grad {h}x{w} plane {p} elem {i}: {g} vs {e}"
                );
            }
        }
    }
}

#[test]
fn stem_max_pool_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let (h, w) = (9, 8);
    // Distinct values (a random permutation scaled) so the max is unique and differentiable.
    let n = 2 * 3 * h * w;
    let mut vals: Vec<f32> = (0..n).map(|i| ((i * 37) % n) as f32 * 0.01).collect();
    vals.rotate_left(5);
    let x = Var::from_tensor(&Tensor::from_vec(vals.clone(), (2, 3, h, w), &dev).unwrap()).unwrap();
    let gy = Tensor::randn(0f32, 1., (2, 3, 5, 4), &dev).unwrap();
    let loss = |t: &Tensor| -> f64 {
        (stem_max_pool(t).unwrap() * &gy)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = (stem_max_pool(x.as_tensor()).unwrap() * &gy)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<f32> = grads
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let eps = 1e-3f32; // values are 0.01 apart: a perturbation never changes the argmax
    for i in 0..n {
        let mut plus = vals.clone();
        plus[i] += eps;
        let mut minus = vals.clone();
        minus[i] -= eps;
        let fd = (loss(&Tensor::from_vec(plus, (2, 3, h, w), &dev).unwrap())
            - loss(&Tensor::from_vec(minus, (2, 3, h, w), &dev).unwrap()))
            / (2.0 * eps as f64);
        assert!(
            (fd - g[i] as f64).abs() < 1e-2,
            "element {i}: analytic {} vs fd {fd}",
            g[i]
        );
    }
    assert!(g.iter().any(|&v| v != 0.0));
}
