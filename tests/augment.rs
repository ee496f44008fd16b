mod common;
use common::*;
use vitgan::Tape;
use vitgan::ops::augment::{
    AugmentOps, PARAMS_PER_SAMPLE, augment_params, geometric_backward, geometric_forward,
};
use vitgan::train::augment::diff_augment;

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

/// The WGSL's `pcg` hash (PCG-RXS-M-XS on one 32-bit word).
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The WGSL's `rand01`: uniform in [0, 1) with 24 bits, for (seed, sample, slot).
fn rand01(seed: u32, sample: u32, slot: u32) -> f32 {
    let h = pcg(seed ^ pcg(sample.wrapping_mul(64).wrapping_add(slot)));
    (h >> 8) as f32 / 16777216.0
}

/// Reference of `augment_params` (the layout of `shaders/augment.wgsl`'s header), recomputed from the
/// seed on the host: op k is drawn when enabled and `rand01(b, k) < prob`, its value from slot 10 + k.
fn params_ref(shape: [usize; 4], seed: u32, prob: f32, ops: AugmentOps) -> Vec<f32> {
    let [b, h, w, _] = shape;
    let (h, w) = (h as u32, w as u32);
    let mut out = Vec::with_capacity(b * PARAMS_PER_SAMPLE);
    for s in 0..b as u32 {
        let r = |slot| rand01(seed, s, slot);
        let on = |k: u32| ops.0 & (1 << k) != 0 && r(k) < prob;
        let mut row = [0.0f32; PARAMS_PER_SAMPLE];
        row[1] = 1.0;
        row[2] = 1.0;
        row[5] = 1.0;
        if on(0) {
            row[0] = r(10) - 0.5;
        }
        if on(1) {
            row[1] = r(11) * 2.0;
        }
        if on(2) {
            row[2] = r(12) + 0.5;
        }
        if on(3) {
            let (ry, rx) = ((h / 8) as i32, (w / 8) as i32);
            row[3] = ((r(13) * (2 * ry + 1) as f32).floor() as i32 - ry) as f32;
            row[4] = ((r(14) * (2 * rx + 1) as f32).floor() as i32 - rx) as f32;
        }
        if on(4) {
            row[5] = 0.8 + r(15) * 0.45;
        }
        if on(5) {
            row[6] = (r(16) * h as f32).floor();
            row[7] = (r(17) * w as f32).floor();
            row[8] = (h / 2) as f32;
        }
        out.extend_from_slice(&row);
    }
    out
}

/// f64 reference of `diff_augment`'s colour steps with per-sample β (brightness), s (saturation),
/// c (contrast) from `params` (slots 0, 1, 2):
///   x₁ = x + β;  x₂ = (x₁ − mean_C x₁)·s + mean_C x₁ (per pixel);  x₃ = (x₂ − m)·c + m, m = mean over
///   the whole image (H·W·C values).
fn colour_ref(params: &[f32], x: &[f64], [b, h, w, c]: [usize; 4]) -> Vec<f64> {
    let per_image = h * w * c;
    let mut out = x.to_vec();
    for (bi, img) in out.chunks_mut(per_image).enumerate().take(b) {
        let p = &params[bi * PARAMS_PER_SAMPLE..];
        let (beta, sat, con) = (p[0] as f64, p[1] as f64, p[2] as f64);
        for v in img.iter_mut() {
            *v += beta;
        }
        for px in img.chunks_mut(c) {
            let m = px.iter().sum::<f64>() / c as f64;
            for v in px.iter_mut() {
                *v = (*v - m) * sat + m;
            }
        }
        let m = img.iter().sum::<f64>() / per_image as f64;
        for v in img.iter_mut() {
            *v = (*v - m) * con + m;
        }
    }
    out
}

/// f64 reference of the whole `diff_augment`: the colour steps, then the geometric part.
fn diff_augment_ref(params: &[f32], x: &[f64], shape: [usize; 4]) -> Vec<f64> {
    geometric_ref(params, &colour_ref(params, x, shape), shape)
}

/// Each colour op alone, the three together, and everything (colour + geometric).
const OP_SETS: [(&str, AugmentOps); 5] = [
    ("brightness", AugmentOps::BRIGHTNESS),
    ("saturation", AugmentOps::SATURATION),
    ("contrast", AugmentOps::CONTRAST),
    ("colour", AugmentOps(1 | 2 | 4)),
    ("all", AugmentOps::ALL),
];

#[test]
fn parameters_match_the_hash_reference() {
    let g = gpu();
    for (shape, seed, prob) in [
        ([257usize, 16, 16, 3], 5u32, 1.0f32),
        ([257, 16, 16, 3], 0xdead_beef, 0.6),
        ([3, 5, 7, 3], 11, 1.0),
        ([5, 9, 17, 1], 12, 0.5),
    ] {
        for (name, ops) in OP_SETS {
            let got = augment_params(&g, &shape, seed, prob, ops)
                .unwrap()
                .to_vec()
                .unwrap();
            let want = params_ref(shape, seed, prob, ops);
            // integer slots (translation, cutout) exactly; the others to an ulp or two (FMA contraction)
            assert_close(
                &got,
                &to_f64(&want),
                2e-7,
                0.0,
                &format!("{name} parameters, {shape:?}, seed {seed}, p {prob}"),
            );
        }
    }
}

#[test]
fn diff_augment_matches_reference_for_each_op_and_all() {
    let g = gpu();
    for (i, shape) in [[3usize, 5, 7, 3], [2, 9, 4, 2]].into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = random(&mut rng(40 + i as u64), n, -1.0, 1.0);
        let x64 = to_f64(&x);
        for (j, (name, ops)) in OP_SETS.into_iter().enumerate() {
            for prob in [1.0, 0.5] {
                let seed = 1000 + 10 * i as u32 + j as u32;
                let tape = Tape::new(&g);
                let xv = tape.constant(upload(&x, &shape));
                let y = diff_augment(&tape, xv, seed, prob, ops).unwrap();
                let params = params_ref(shape, seed, prob, ops);
                let want = diff_augment_ref(&params, &x64, shape);
                let what = format!("{name}, {shape:?}, p {prob}");
                if prob == 1.0 {
                    // the op really does something (the comparison is not identity against identity)
                    let moved = want.iter().zip(&x64).any(|(a, b)| (a - b).abs() > 1e-2);
                    assert!(moved, "{what}: the reference leaves the images unchanged");
                }
                assert_close(&tape.value(y).to_vec().unwrap(), &want, 1e-5, 1e-5, &what);
            }
        }
    }
}

#[test]
fn diff_augment_backward_matches_finite_differences() {
    let g = gpu();
    let shape = [3usize, 5, 7, 3];
    let n: usize = shape.iter().product();
    for (j, (name, ops)) in OP_SETS.into_iter().enumerate() {
        let mut r = rng(60 + j as u64);
        let x = random(&mut r, n, -1.0, 1.0);
        let w = random(&mut r, n, -1.0, 1.0);
        let seed = 2000 + j as u32;
        let tape = Tape::new(&g);
        let xv = tape.leaf(upload(&x, &shape), true);
        let y = diff_augment(&tape, xv, seed, 1.0, ops).unwrap();
        tape.backward_with(y, upload(&w, &shape)).unwrap();
        let dx = tape.grad(xv).unwrap().to_vec().unwrap();
        // loss Σ w ⊙ aug(x) on the f64 reference, differenced at every coordinate
        let params = params_ref(shape, seed, 1.0, ops);
        let w64 = to_f64(&w);
        let num = numeric_grad(&to_f64(&x), 1e-3, |x| {
            dot(&w64, &diff_augment_ref(&params, x, shape))
        });
        assert_close(
            &dx,
            &num,
            1e-5,
            1e-4,
            &format!("d/dx of Σ w·aug(x), {name}"),
        );
    }
}
