mod common;
use common::*;
use vitgan::ops::augment::{
    AugmentOps, PARAMS_PER_SAMPLE, augment_params, geometric_backward, geometric_forward,
};

fn tent(d: f64) -> f64 {
    (1.0 - d.abs()).max(0.0)
}

/// f64 reference of the geometric augmentation (translation, bilinear scaling, cutout).
fn geometric_ref(aug: &[f32], img: &[f64], [b, h, w, c]: [usize; 4]) -> Vec<f64> {
    let mut out = vec![0.0; img.len()];
    for bi in 0..b {
        let a = &aug[bi * PARAMS_PER_SAMPLE..];
        let (ty, tx, sc) = (a[3] as f64, a[4] as f64, a[5] as f64);
        let (cy, cx) = ((h - 1) as f64 / 2.0, (w - 1) as f64 / 2.0);
        for y in 0..h {
            for x in 0..w {
                let uy = (y as f64 - cy) / sc + cy - ty;
                let ux = (x as f64 - cx) / sc + cx - tx;
                let size = a[8] as f64;
                let cut = size > 0.0
                    && (y as f64 - a[6] as f64).abs() < size / 2.0
                    && (x as f64 - a[7] as f64).abs() < size / 2.0;
                for ch in 0..c {
                    let mut acc = 0.0;
                    for sy in 0..h {
                        for sx in 0..w {
                            let wgt = tent(uy - sy as f64) * tent(ux - sx as f64);
                            if wgt > 0.0 {
                                acc += wgt * img[((bi * h + sy) * w + sx) * c + ch];
                            }
                        }
                    }
                    out[((bi * h + y) * w + x) * c + ch] = if cut { 0.0 } else { acc };
                }
            }
        }
    }
    out
}

#[test]
fn parameters_respect_probability_and_ranges() {
    let g = gpu();
    let shape = [257, 16, 16, 3];
    let none = augment_params(&g, &shape, 5, 0.0, AugmentOps::ALL)
        .unwrap()
        .to_vec()
        .unwrap();
    for row in none.chunks(PARAMS_PER_SAMPLE) {
        assert_eq!(&row[..9], &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }
    let all = augment_params(&g, &shape, 5, 1.0, AugmentOps::ALL)
        .unwrap()
        .to_vec()
        .unwrap();
    for row in all.chunks(PARAMS_PER_SAMPLE) {
        assert!(
            (-0.5..0.5).contains(&row[0])
                && (0.0..2.0).contains(&row[1])
                && (0.5..1.5).contains(&row[2])
        );
        assert!(row[3].abs() <= 2.0 && row[4].abs() <= 2.0 && row[3].fract() == 0.0);
        assert!((0.8..1.25).contains(&row[5]) && row[8] == 8.0);
    }
    // different seeds give different draws; p = 0.8 applies each op to roughly 80% of samples
    let other = augment_params(&g, &shape, 6, 1.0, AugmentOps::ALL)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_ne!(all, other);
    let shift = augment_params(&g, &shape, 5, 1.0, AugmentOps::SHIFT)
        .unwrap()
        .to_vec()
        .unwrap();
    for row in shift.chunks(PARAMS_PER_SAMPLE) {
        assert_eq!(
            (row[0], row[1], row[2], row[8]),
            (0.0, 1.0, 1.0, 0.0),
            "only translation and scale"
        );
    }
    assert!(shift.chunks(PARAMS_PER_SAMPLE).any(|r| r[5] != 1.0));
    let some = augment_params(&g, &shape, 7, 0.8, AugmentOps::ALL)
        .unwrap()
        .to_vec()
        .unwrap();
    let applied = some
        .chunks(PARAMS_PER_SAMPLE)
        .filter(|r| r[0] != 0.0)
        .count() as f64
        / 257.0;
    assert!(
        (0.7..0.9).contains(&applied),
        "brightness applied to {applied} of samples"
    );
}

#[test]
fn geometric_matches_reference_and_backward_is_its_transpose() {
    let g = gpu();
    for (i, shape) in [[3usize, 8, 8, 3], [2, 11, 7, 1], [5, 16, 16, 3]]
        .into_iter()
        .enumerate()
    {
        let n: usize = shape.iter().product();
        let mut r = rng(i as u64);
        let x = random(&mut r, n, -1.0, 1.0);
        let aug = augment_params(&g, &shape, 100 + i as u32, 1.0, AugmentOps::ALL).unwrap();
        let augv = aug.to_vec().unwrap();
        let y = geometric_forward(&aug, &upload(&x, &shape))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_close(
            &y,
            &geometric_ref(&augv, &to_f64(&x), shape),
            1e-5,
            1e-5,
            &format!("forward {shape:?}"),
        );
        // the op is linear in the image, so the gradient of Σ w⊙f(x) is fᵀ(w); check against finite
        // differences of the reference on a few coordinates and against the adjoint identity overall
        let wv = random(&mut r, n, -1.0, 1.0);
        let dx = geometric_backward(&aug, &upload(&wv, &shape))
            .unwrap()
            .to_vec()
            .unwrap();
        let xf = to_f64(&x);
        let wf = to_f64(&wv);
        let lhs = dot(&wf, &geometric_ref(&augv, &xf, shape));
        let rhs = dot(&to_f64(&dx), &xf);
        assert!(
            (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
            "adjoint identity {lhs} vs {rhs}"
        );
        for &k in &[0, n / 3, n / 2, n - 1] {
            let mut xp = xf.clone();
            xp[k] += 1e-3;
            let fp = dot(&wf, &geometric_ref(&augv, &xp, shape));
            xp[k] -= 2e-3;
            let fm = dot(&wf, &geometric_ref(&augv, &xp, shape));
            let num = (fp - fm) / 2e-3;
            assert!(
                (dx[k] as f64 - num).abs() < 1e-4,
                "d/dx[{k}]: {} vs {num}",
                dx[k]
            );
        }
    }
}

#[test]
fn neutral_parameters_are_the_identity() {
    let g = gpu();
    let shape = [2, 9, 9, 3];
    let x = random(&mut rng(1), 486, -1.0, 1.0);
    let aug = augment_params(&g, &shape, 1, 0.0, AugmentOps::ALL).unwrap();
    let y = geometric_forward(&aug, &upload(&x, &shape))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&y, &to_f64(&x), 1e-6, 0.0, "identity");
    assert!(geometric_forward(&aug, &upload(&x, &[2, 81, 3])).is_err());
}
