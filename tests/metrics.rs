//! The download-free sample metrics against plain references on known distributions.

mod common;

use vitgan::metrics::features::{FEATURE_DIM, RandomConvFeatures};
use vitgan::metrics::kid::{KidOptions, kid};
use vitgan::metrics::swd::{SwdOptions, laplacian_pyramid, sliced_wasserstein, swd};
use vitgan::metrics::{ImageSet, products};

/// Standard normals from a seeded std RNG (Box–Muller).
fn normals(seed: u64, n: usize) -> Vec<f32> {
    use rand::Rng;
    let mut r = common::rng(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = r.random_range(f64::EPSILON..1.0);
            let u2: f64 = r.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// `E_θ|θ·μ|` for θ uniform on the unit sphere of `R^d`: `‖μ‖ r(d)/√π` with
/// `r(d) = Γ(d/2)/Γ((d+1)/2)`: `r(1) = √π`, `r(2) = 2/√π`, `r(k+2) = r(k)·k/(k+1)`.
fn mean_abs_projection(norm: f64, d: usize) -> f64 {
    let sqrt_pi = std::f64::consts::PI.sqrt();
    let (mut r, mut k) = if d % 2 == 1 {
        (sqrt_pi, 1)
    } else {
        (2.0 / sqrt_pi, 2)
    };
    while k < d {
        r *= k as f64 / (k + 1) as f64;
        k += 2;
    }
    norm * r / sqrt_pi
}

fn set(v: &[f32], n: usize) -> ImageSet<'_> {
    ImageSet::new(v, n, 16, 3).unwrap()
}

#[test]
fn sphere_projection_formula() {
    // d = 1: E|θ| = 1; d = 3: E|θ₁| = 1/2
    assert!((mean_abs_projection(1.0, 1) - 1.0).abs() < 1e-12);
    assert!((mean_abs_projection(1.0, 3) - 0.5).abs() < 1e-12);
    // d = 2: 2/π
    assert!((mean_abs_projection(1.0, 2) - 2.0 / std::f64::consts::PI).abs() < 1e-12);
}

#[test]
fn sliced_wasserstein_zero_for_identical_and_known_for_shifted() {
    let gpu = common::gpu();
    let (n, d) = (4000, 8);
    let a = normals(1, n * d);
    assert_eq!(
        sliced_wasserstein(Some(&gpu), &a, &a, d, 64, 3).unwrap(),
        0.0
    );
    // b = fresh N(μ, I) with μ = (1.5, 0, …): SW₁ = E|θ·μ| (+ O(1/√n) sampling noise)
    let mut b = normals(2, n * d);
    for row in b.chunks_exact_mut(d) {
        row[0] += 1.5;
    }
    let want = mean_abs_projection(1.5, d);
    for gpu in [Some(&gpu), None] {
        let got = sliced_wasserstein(gpu, &a, &b, d, 256, 3).unwrap();
        assert!((got - want).abs() < 0.04, "SW {got} vs E|θ·μ| = {want}");
    }
    // two draws of the same distribution: only the sampling noise
    let c = normals(3, n * d);
    let noise = sliced_wasserstein(Some(&gpu), &a, &c, d, 256, 3).unwrap();
    assert!(noise < 0.04, "{noise}");
}

#[test]
fn laplacian_pyramid_reconstructs_and_flat_images_have_no_detail() {
    let (s, c) = (16, 3);
    let img: Vec<f32> = common::random(&mut common::rng(5), s * s * c, -1.0, 1.0);
    let levels = laplacian_pyramid(&img, s, c, 8);
    assert_eq!(levels.iter().map(|l| l.0).collect::<Vec<_>>(), vec![16, 8]);
    // x = L₀ + ↑(G₁): upsample the residue by the pyramid's own rule (zeros, blur ×2 per axis) —
    // checked via a constant: a flat image has zero detail and a flat residue of the same value
    let flat = vec![0.25f32; s * s * c];
    let fl = laplacian_pyramid(&flat, s, c, 8);
    assert!(
        fl[0].1.iter().all(|v| v.abs() < 1e-6),
        "detail of a flat image"
    );
    assert!(
        fl[1].1.iter().all(|v| (v - 0.25).abs() < 1e-6),
        "residue of a flat image"
    );
    // a 32×32 image has three levels; detail sums to ~0 for smooth ramps away from the border
    assert_eq!(laplacian_pyramid(&vec![0.0; 32 * 32], 32, 1, 8).len(), 3);
    // the detail level carries the fine structure: a checkerboard is all detail
    let checker: Vec<f32> = (0..s * s)
        .map(|p| if (p / s + p % s) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let ch = laplacian_pyramid(&checker, s, 1, 8);
    let energy = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64;
    assert!(
        energy(&ch[0].1) > 0.5 && energy(&ch[1].1) < 0.05,
        "{} {}",
        energy(&ch[0].1),
        energy(&ch[1].1)
    );
}

/// `n` 16×16 RGB images: noise of amplitude `noise` over a smooth per-image gradient.
fn images(seed: u64, n: usize, noise: f32) -> Vec<f32> {
    let mut r = common::rng(seed);
    let mut out = Vec::with_capacity(n * 16 * 16 * 3);
    for _ in 0..n {
        let g = common::random(&mut r, 3, -0.5, 0.5);
        let e = common::random(&mut r, 16 * 16 * 3, -1.0, 1.0);
        for p in 0..256 {
            for ch in 0..3 {
                out.push(g[ch] * (p % 16) as f32 / 16.0 + noise * e[p * 3 + ch]);
            }
        }
    }
    out
}

#[test]
fn swd_orders_sets_by_distance_from_the_reference() {
    let gpu = common::gpu();
    let n = 400;
    let (a, a2) = (images(1, n, 0.05), images(2, n, 0.05));
    let (near, far) = (images(3, n, 0.15), images(4, n, 0.6));
    let o = SwdOptions::default();
    let same = swd(Some(&gpu), &set(&a, n), &set(&a, n), &o).unwrap();
    let floor = swd(Some(&gpu), &set(&a, n), &set(&a2, n), &o).unwrap();
    let d_near = swd(Some(&gpu), &set(&a, n), &set(&near, n), &o).unwrap();
    let d_far = swd(Some(&gpu), &set(&a, n), &set(&far, n), &o).unwrap();
    assert_eq!(same.levels.len(), 2);
    // identical sets: only the different window positions of the two sets separate them
    assert!(
        floor.mean < d_near.mean && d_near.mean < d_far.mean,
        "{floor} < {d_near} < {d_far}"
    );
    // both sets' fine detail is white noise, which the per-channel normalisation makes alike: the
    // far set differs at the coarse level
    assert!(d_far.mean > 1.5 * floor.mean, "{d_far} vs {floor}");
    assert!(same.mean < 0.5 * floor.mean, "{same} vs {floor}");
    // host and GPU agree
    let host = swd(None, &set(&a, n), &set(&near, n), &o).unwrap();
    assert!(
        (host.mean - d_near.mean).abs() < 1e-3 * d_near.mean,
        "{host} vs {d_near}"
    );
}

#[test]
fn products_on_gpu_match_the_host() {
    let gpu = common::gpu();
    let (ra, rb, d) = (37, 53, 19);
    let a = common::random(&mut common::rng(1), ra * d, -1.0, 1.0);
    let b = common::random(&mut common::rng(2), rb * d, -1.0, 1.0);
    let want: Vec<f64> = products(None, &a, &b, d)
        .unwrap()
        .iter()
        .map(|v| *v as f64)
        .collect();
    common::assert_close(
        &products(Some(&gpu), &a, &b, d).unwrap(),
        &want,
        1e-5,
        1e-5,
        "A·Bᵀ",
    );
}

fn cubic(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    (dot / a.len() as f64 + 1.0).powi(3)
}

/// The unbiased MMD² of the cubic kernel over all of `x` and `y` (`[n, d]` each), in f64: the
/// expectation of every subset estimate.
fn full_mmd2_u(x: &[f32], y: &[f32], d: usize) -> f64 {
    let (xs, ys): (Vec<&[f32]>, Vec<&[f32]>) =
        (x.chunks_exact(d).collect(), y.chunks_exact(d).collect());
    let within = |p: &[&[f32]]| {
        let mut t = 0.0;
        for i in 0..p.len() {
            for j in 0..p.len() {
                if i != j {
                    t += cubic(p[i], p[j]);
                }
            }
        }
        t / (p.len() * (p.len() - 1)) as f64
    };
    let mut cross = 0.0;
    for a in &xs {
        for b in &ys {
            cross += cubic(a, b);
        }
    }
    within(&xs) + within(&ys) - 2.0 * cross / (xs.len() * ys.len()) as f64
}

#[test]
fn kid_matches_the_full_sample_estimate() {
    let gpu = common::gpu();
    let (n, d) = (1500, 6);
    let x = normals(1, n * d);
    // y: shifted and scaled, so MMD² is clearly positive
    let y: Vec<f32> = normals(2, n * d)
        .iter()
        .enumerate()
        .map(|(i, v)| if i % d == 0 { 1.3 * v + 0.8 } else { *v })
        .collect();
    let x2 = normals(3, n * d);
    // subsets of 500 of 1,500: each subset's own Gram matrices; of 750: the full Gram matrices once
    for subset_size in [500, 750] {
        let o = KidOptions {
            subsets: 100,
            subset_size,
            seed: 0,
        };
        for (other, what) in [(&y, "shifted"), (&x2, "same distribution")] {
            let want = full_mmd2_u(&x, other, d);
            let got = kid(Some(&gpu), &x, other, d, &o).unwrap();
            // subsets are independent draws given the data: the mean's error is std/√subsets
            let se = got.std / (o.subsets as f64).sqrt();
            assert!(
                (got.mean - want).abs() < 4.0 * se + 1e-6,
                "{what}, subsets of {subset_size}: KID {got} vs full-sample {want}"
            );
            let host = kid(None, &x, other, d, &o).unwrap();
            assert!(
                (host.mean - got.mean).abs() < 1e-4 * want.abs().max(1e-3),
                "{what}: host {host} vs GPU {got}"
            );
        }
    }
    let o = KidOptions {
        subsets: 100,
        subset_size: 500,
        seed: 0,
    };
    let shifted = kid(Some(&gpu), &x, &y, d, &o).unwrap();
    let same = kid(Some(&gpu), &x, &x2, d, &o).unwrap();
    assert!(
        shifted.mean > 0.05 && shifted.mean > 20.0 * same.mean.abs(),
        "{shifted} vs {same}"
    );
    let small = KidOptions {
        subsets: 3,
        subset_size: 100,
        seed: 0,
    };
    assert!(kid(None, &x[..4 * d], &y[..4 * d], d, &small).is_ok());
    assert!(
        kid(None, &x[..d], &y[..d], d, &small).is_err(),
        "one sample per set"
    );
}

#[test]
fn random_features_are_fixed_and_separate_image_sets() {
    let gpu = common::gpu();
    let n = 300;
    let (a, a2, far) = (images(1, n, 0.05), images(2, n, 0.05), images(4, n, 0.6));
    let f = RandomConvFeatures::new(3);
    let fa = f.set(&set(&a, n));
    assert_eq!(fa.len(), n * FEATURE_DIM);
    assert_eq!(
        fa,
        RandomConvFeatures::new(3).set(&set(&a, n)),
        "the map is a constant"
    );
    assert!(fa.iter().all(|v| v.is_finite() && *v >= 0.0));
    let spread = fa.iter().map(|v| *v as f64).sum::<f64>() / fa.len() as f64;
    assert!(
        spread > 0.01 && spread < 10.0,
        "features are O(1): mean {spread}"
    );
    let o = KidOptions {
        subsets: 20,
        subset_size: 300,
        seed: 0,
    };
    let floor = kid(Some(&gpu), &fa, &f.set(&set(&a2, n)), FEATURE_DIM, &o).unwrap();
    let apart = kid(Some(&gpu), &fa, &f.set(&set(&far, n)), FEATURE_DIM, &o).unwrap();
    assert!(
        apart.mean > 10.0 * floor.mean.abs().max(1e-4),
        "{apart} vs {floor}"
    );
}
