//! FID statistics and the Inception score against pytorch-fid / numpy fixtures
//! (`tests/fixtures/fid/*.json`, written by `scripts/fid_fixture.py`), closed forms for Gaussians,
//! the statistics cache, and the errors for bad input.
//!
//! The fixtures' inputs are not stored: `feature_set` and `logit_set` regenerate them with the
//! script's integer formulas, so both sides see the same f32 values exactly.
//!
//! The `n = 10,000`, `d = 2048` timing is `#[ignore]`d (it prints, it asserts nothing):
//! `cargo test --release --test fid -- --ignored --nocapture`.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vitgan::Error;
use vitgan::metrics::fid::{
    FeatureStatistics, STATISTICS_FORMAT, frechet_distance, frechet_distance_to_features,
};
use vitgan::metrics::inception_score::{DEFAULT_SPLITS, InceptionScore, inception_score};

// ---- the fixture formulas (scripts/fid_fixture.py) ----

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `hash(a, b, c) mod modulus` with `hash = mix(mix(mix(a) ^ b) ^ c)`.
fn grid(salt: u64, r: usize, c: usize, modulus: u64) -> i64 {
    (mix(mix(mix(salt) ^ r as u64) ^ c as u64) % modulus) as i64
}

const DIM: usize = 64;
const LATENT: usize = 64;

/// `x_rj = (Σ_k u_rk (1 + k mod 4) W_kj + 16 o_j) / 16`, exact integers / 16, with
/// `W_kj = hash mod 7 − 3 + 24·[k = j]` (see the script).
fn feature_set(u_salt: u64, w_salt: u64, offset_salt: u64, n: usize) -> Vec<f32> {
    let w: Vec<i64> = (0..LATENT * DIM)
        .map(|i| grid(1000 + w_salt, i / DIM, i % DIM, 7) - 3 + 24 * (i / DIM == i % DIM) as i64)
        .collect();
    let mut x = Vec::with_capacity(n * DIM);
    for r in 0..n {
        let u: Vec<i64> = (0..LATENT)
            .map(|k| (grid(u_salt, r, k, 17) - 8) * (1 + k as i64 % 4))
            .collect();
        for j in 0..DIM {
            let o = grid(2000 + offset_salt, 0, j, 33) - 16;
            let sum: i64 = (0..LATENT).map(|k| u[k] * w[k * DIM + j]).sum::<i64>() + 16 * o;
            x.push((sum as f64 / 16.0) as f32);
        }
    }
    x
}

/// `(hash(3000 + salt, r, c) mod 1025 − 512) / 256`, plus `peak` at class
/// `hash(4000 + salt, r, 0) mod modes`.
fn logit_set(salt: u64, n: usize, classes: usize, modes: u64, peak: f64) -> Vec<f32> {
    let mut z = Vec::with_capacity(n * classes);
    for r in 0..n {
        let top = grid(4000 + salt, r, 0, modes) as usize;
        for c in 0..classes {
            let mut v = (grid(3000 + salt, r, c, 1025) - 512) as f64 / 256.0;
            if c == top {
                v += peak;
            }
            z.push(v as f32);
        }
    }
    z
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fid")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fid_fixture.py", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn fixture_set(sets: &Value, name: &str) -> FeatureStatistics {
    let s = &sets[name];
    let u = |k: &str| s[k].as_u64().unwrap();
    let x = feature_set(u("u_salt"), u("w_salt"), u("offset_salt"), u("n") as usize);
    FeatureStatistics::from_features(&x, DIM).unwrap()
}

#[track_caller]
fn assert_rel(got: f64, want: f64, rtol: f64, what: &str) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        err <= rtol,
        "{what}: got {got:.12e}, want {want:.12e} (relative error {err:.2e} > {rtol:.0e})"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vitgan-fid-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Diagonal statistics `N(mean, diag(variance))` (n only labels them).
fn diagonal(mean: Vec<f64>, variance: &[f64]) -> FeatureStatistics {
    let d = mean.len();
    let mut covariance = vec![0.0; d * d];
    for (i, v) in variance.iter().enumerate() {
        covariance[i * d + i] = *v;
    }
    FeatureStatistics {
        n: 1000,
        dim: d,
        mean,
        covariance,
    }
}

/// `Q diag(v) Qᵀ` for the Householder reflection `Q = I − 2 h hᵀ / ‖h‖²`.
fn rotated(h: &[f64], variance: &[f64]) -> Vec<f64> {
    let d = h.len();
    let norm2: f64 = h.iter().map(|x| x * x).sum();
    let q = |i: usize, j: usize| (i == j) as u8 as f64 - 2.0 * h[i] * h[j] / norm2;
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            s[i * d + j] = (0..d).map(|k| q(i, k) * variance[k] * q(j, k)).sum();
        }
    }
    s
}

// ---- fixtures ----

#[test]
fn statistics_match_numpy_mean_and_cov() {
    let fx = fixture("fid.json");
    let sets = &fx["sets"];
    for name in ["a", "b", "c"] {
        let stats = fixture_set(sets, name);
        let want = &sets[name];
        assert_eq!(stats.n as u64, want["n"].as_u64().unwrap());
        assert_eq!(stats.dim, DIM);
        for (j, (got, w)) in stats
            .mean
            .iter()
            .zip(want["mean"].as_array().unwrap())
            .enumerate()
        {
            let w = w.as_f64().unwrap();
            assert!(
                (got - w).abs() <= 1e-12 * w.abs().max(1.0),
                "{name} mean[{j}]: {got} vs {w}"
            );
        }
        let cov = |i: usize, j: usize| stats.covariance[i * DIM + j];
        let mut trace = 0.0;
        let (mut sum, mut weighted, mut frobenius) = (0.0, 0.0, 0.0);
        for i in 0..DIM {
            trace += cov(i, i);
            for j in 0..DIM {
                assert_eq!(cov(i, j), cov(j, i), "{name}: covariance not symmetric");
                let w = ((31 * i + 17 * j) % 11) as f64 - 5.0;
                sum += cov(i, j);
                weighted += w * cov(i, j);
                frobenius += cov(i, j) * cov(i, j);
            }
        }
        let c = &want["covariance"];
        let check = |got: f64, key: &str| {
            assert_rel(
                got,
                c[key].as_f64().unwrap(),
                1e-10,
                &format!("{name} cov {key}"),
            )
        };
        check(trace, "trace");
        check(sum, "sum");
        check(weighted, "weighted_sum");
        check(frobenius, "frobenius_squared");
        check(cov(0, 1), "entry_0_1");
        check(cov(40, 5), "entry_40_5");
    }
}

#[test]
fn fid_matches_pytorch_fid() {
    let fx = fixture("fid.json");
    for pair in fx["pairs"].as_array().unwrap() {
        let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
        let sa = fixture_set(&fx["sets"], a);
        let sb = fixture_set(&fx["sets"], b);
        let fid = frechet_distance(&sa, &sb).unwrap();
        let reverse = frechet_distance(&sb, &sa).unwrap();
        let what = format!("FID({a}, {b})");
        assert_rel(fid, pair["fid_pytorch_fid"].as_f64().unwrap(), 1e-6, &what);
        assert_rel(fid, pair["fid_eigen"].as_f64().unwrap(), 1e-9, &what);
        assert_rel(reverse, fid, 1e-9, &format!("{what} reversed"));
    }
}

#[test]
fn inception_score_matches_numpy() {
    let fx = fixture("inception_score.json");
    for case in fx["cases"].as_array().unwrap() {
        let u = |k: &str| case[k].as_u64().unwrap();
        let classes = u("classes") as usize;
        let logits = logit_set(
            u("salt"),
            u("n") as usize,
            classes,
            u("modes"),
            case["peak"].as_f64().unwrap(),
        );
        let splits = u("splits") as usize;
        let score = inception_score(&logits, classes, splits).unwrap();
        let (mean, std) = (
            case["mean"].as_f64().unwrap(),
            case["std"].as_f64().unwrap(),
        );
        assert_eq!(score.splits, splits);
        assert_rel(score.mean, mean, 1e-6, &format!("IS mean, case {case}"));
        assert!(
            (score.std - std).abs() <= 1e-6 * mean,
            "IS std {} vs {std}, case {case}",
            score.std
        );
    }
}

// ---- closed forms ----

#[test]
fn fid_of_identical_statistics_is_zero() {
    let fx = fixture("fid.json");
    let a = fixture_set(&fx["sets"], "a");
    let trace: f64 = (0..DIM).map(|i| a.covariance[i * DIM + i]).sum();
    let fid = frechet_distance(&a, &a).unwrap();
    assert!(
        fid.abs() <= 1e-10 * trace,
        "FID(a, a) = {fid} (tr Σ = {trace})"
    );

    // singular covariance: 20 samples in 64 dimensions (rank 19); round-off eigenvalues clip to 0
    let x = feature_set(7, 7, 7, 20);
    let s = FeatureStatistics::from_features(&x, DIM).unwrap();
    let trace: f64 = (0..DIM).map(|i| s.covariance[i * DIM + i]).sum();
    let fid = frechet_distance(&s, &s).unwrap();
    assert!(
        fid.abs() <= 1e-6 * trace,
        "singular FID(s, s) = {fid} (tr Σ = {trace})"
    );
}

#[test]
fn fid_of_gaussians_matches_closed_forms() {
    // diagonal: Σ_j (μ1_j − μ2_j)² + (√v1_j − √v2_j)²  (tr of diag(v1 + v2 − 2√(v1 v2)))
    let d = 6;
    let (m1, m2): (Vec<f64>, Vec<f64>) = (0..d)
        .map(|j| (j as f64 * 0.3 - 1.0, 0.5 - 0.2 * j as f64))
        .unzip();
    let v1: Vec<f64> = (0..d).map(|j| 0.5 + j as f64).collect();
    let v2: Vec<f64> = (0..d).map(|j| 4.0 / (1.0 + j as f64)).collect();
    let closed: f64 = (0..d)
        .map(|j| (m1[j] - m2[j]).powi(2) + (v1[j].sqrt() - v2[j].sqrt()).powi(2))
        .sum();
    let (a, b) = (diagonal(m1.clone(), &v1), diagonal(m2.clone(), &v2));
    assert_rel(frechet_distance(&a, &b).unwrap(), closed, 1e-12, "diagonal");

    // commuting: Σᵢ = Q diag(vᵢ) Qᵀ with one rotation Q: the same value
    let h: Vec<f64> = (0..d).map(|j| 1.0 + (j * j) as f64 * 0.25).collect();
    let (mut ra, mut rb) = (a.clone(), b.clone());
    ra.covariance = rotated(&h, &v1);
    rb.covariance = rotated(&h, &v2);
    assert_rel(
        frechet_distance(&ra, &rb).unwrap(),
        closed,
        1e-12,
        "commuting",
    );

    // scaled: Σ₂ = c Σ₁ (full, non-diagonal): tr (Σ₁ c Σ₁)^½ = √c tr Σ₁, FID = ‖Δμ‖² + (1 − √c)² tr Σ₁
    let fx = fixture("fid.json");
    let s1 = fixture_set(&fx["sets"], "c");
    let c = 2.25;
    let mut s2 = s1.clone();
    s2.covariance.iter_mut().for_each(|v| *v *= c);
    s2.mean
        .iter_mut()
        .enumerate()
        .for_each(|(j, m)| *m += j as f64 * 0.1);
    let trace: f64 = (0..DIM).map(|i| s1.covariance[i * DIM + i]).sum();
    let mean_term: f64 = (0..DIM).map(|j| (j as f64 * 0.1).powi(2)).sum();
    let closed = mean_term + (1.0 - c.sqrt()).powi(2) * trace;
    assert_rel(frechet_distance(&s1, &s2).unwrap(), closed, 1e-10, "scaled");
}

#[test]
fn fid_of_sampled_gaussians_approaches_closed_form() {
    // features ~ N(μᵢ, diag(σᵢ²)): FID → Σ_j (μ1 − μ2)² + (σ1 − σ2)²; sampling error ~ 1e-2 here
    let (d, n) = (8, 100_000);
    let mut rng = StdRng::seed_from_u64(5);
    let mut normal = || {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let sigma1: Vec<f64> = (0..d).map(|j| 0.5 + 0.25 * j as f64).collect();
    let sigma2: Vec<f64> = (0..d).map(|j| 1.5 - 0.1 * j as f64).collect();
    let mu2: Vec<f64> = (0..d)
        .map(|j| if j % 2 == 0 { 0.3 } else { -0.2 })
        .collect();
    let mut x1 = Vec::with_capacity(n * d);
    let mut x2 = Vec::with_capacity(n * d);
    for _ in 0..n {
        for j in 0..d {
            x1.push((sigma1[j] * normal()) as f32);
            x2.push((mu2[j] + sigma2[j] * normal()) as f32);
        }
    }
    let s1 = FeatureStatistics::from_features(&x1, d).unwrap();
    let s2 = FeatureStatistics::from_features(&x2, d).unwrap();
    let closed: f64 = (0..d)
        .map(|j| mu2[j].powi(2) + (sigma1[j] - sigma2[j]).powi(2))
        .sum();
    let fid = frechet_distance(&s1, &s2).unwrap();
    assert!(
        (fid - closed).abs() < 0.03,
        "FID of sampled Gaussians {fid}, closed form {closed}"
    );
}

#[test]
fn statistics_match_plain_loop_past_block_sizes() {
    // n and d past the 512-row chunks and 256-column blocks, neither a multiple of them
    let (n, d) = (1100, 300);
    let mut rng = StdRng::seed_from_u64(3);
    let x: Vec<f32> = (0..n * d)
        .map(|i| rng.random_range(-1.0f32..1.0) + (i % d) as f32 * 0.01 + 5.0)
        .collect();
    let s = FeatureStatistics::from_features(&x, d).unwrap();
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[i * d + j] as f64).sum::<f64>() / n as f64)
        .collect();
    for (j, (got, want)) in s.mean.iter().zip(&mean).enumerate() {
        assert!((got - want).abs() < 1e-12, "mean[{j}]: {got} vs {want}");
    }
    let mut worst = 0f64;
    for j in 0..d {
        for k in 0..d {
            let want = (0..n)
                .map(|i| (x[i * d + j] as f64 - mean[j]) * (x[i * d + k] as f64 - mean[k]))
                .sum::<f64>()
                / (n - 1) as f64;
            worst = worst.max((s.covariance[j * d + k] - want).abs());
        }
    }
    assert!(
        worst < 1e-13,
        "covariance differs from the plain loop by {worst}"
    );
}

#[test]
fn inception_score_closed_forms() {
    // identical rows: p(y|x) = p(y), every KL is 0, IS = 1
    let logits: Vec<f32> = (0..40 * 5).map(|i| (i % 5) as f32).collect();
    let s = inception_score(&logits, 5, 4).unwrap();
    assert!((s.mean - 1.0).abs() < 1e-12 && s.std < 1e-12, "{s:?}");

    // one-hot rows spread evenly over k classes in every split: IS = k (up to e^-100 leakage)
    let (k, classes, n) = (4, 10, 80);
    let mut logits = vec![0f32; n * classes];
    for r in 0..n {
        logits[r * classes + r % k] = 100.0;
    }
    let s = inception_score(&logits, classes, DEFAULT_SPLITS).unwrap();
    assert!((s.mean - k as f64).abs() < 1e-9 && s.std < 1e-9, "{s:?}");
    assert_eq!(s.to_string(), "4.00 ± 0.00");
    let shown = InceptionScore {
        mean: 4.5612,
        std: 0.0731,
        splits: 10,
    };
    assert_eq!(shown.to_string(), "4.56 ± 0.07");
}

// ---- the cache ----

#[test]
fn statistics_save_load_round_trip() {
    let fx = fixture("fid.json");
    let a = fixture_set(&fx["sets"], "a");
    let path = scratch("round_trip/a.safetensors");
    let source = "data/cifar10 n=300 inception=sha256:0123abcd";
    a.save(&path, source).unwrap();
    let (back, saved_source) = FeatureStatistics::load(&path).unwrap();
    assert_eq!(back, a, "statistics change through save/load");
    assert_eq!(saved_source, source);
    assert_eq!(
        FeatureStatistics::load_cached(&path, source).unwrap(),
        Some(a)
    );
    assert_eq!(
        FeatureStatistics::load_cached(&path, "data/other n=300").unwrap(),
        None
    );
    assert_eq!(
        FeatureStatistics::load_cached(&scratch("absent.safetensors"), source).unwrap(),
        None
    );
    assert!(!scratch("round_trip/a.safetensors.tmp").exists());
}

#[test]
fn statistics_load_errors_say_what_is_wrong() {
    let message = |path: &Path| FeatureStatistics::load(path).unwrap_err().to_string();

    let missing = scratch("missing.safetensors");
    assert!(matches!(
        FeatureStatistics::load(&missing),
        Err(Error::Io { .. })
    ));

    let garbage = scratch("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let m = message(&garbage);
    assert!(m.contains("not a readable safetensors file"), "{m}");

    let good = scratch("good.safetensors");
    let s = FeatureStatistics::from_features(&feature_set(0, 0, 0, 30), DIM).unwrap();
    s.save(&good, "x").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = scratch("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let m = message(&truncated);
    assert!(
        m.contains("truncated or corrupt") && m.contains("delete the file"),
        "{m}"
    );
    assert!(matches!(
        FeatureStatistics::load(&truncated),
        Err(Error::Data { .. })
    ));

    // a safetensors file of another kind: a training checkpoint (no format tag)
    let checkpoint = scratch("checkpoint.safetensors");
    vitgan::io::checkpoint::Checkpoint {
        tensors: vec![("mean".into(), vec![2], vec![1.0, 2.0])],
        metadata: Default::default(),
    }
    .save(&checkpoint)
    .unwrap();
    let m = message(&checkpoint);
    assert!(m.contains("not a feature-statistics file"), "{m}");

    // the right tag on the wrong layout
    let wrong = scratch("wrong_dtype.safetensors");
    let mut metadata = vitgan::io::checkpoint::Checkpoint {
        tensors: vec![
            ("mean".into(), vec![2], vec![1.0, 2.0]),
            ("covariance".into(), vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]),
        ],
        metadata: Default::default(),
    };
    metadata
        .metadata
        .insert("format".into(), STATISTICS_FORMAT.into());
    metadata.metadata.insert("n".into(), "10".into());
    metadata.save(&wrong).unwrap();
    let m = message(&wrong);
    assert!(m.contains("not F64"), "{m}");

    // another version's tag
    metadata
        .metadata
        .insert("format".into(), "vitgan.feature_statistics.v0".into());
    metadata.save(&wrong).unwrap();
    let m = message(&wrong);
    assert!(
        m.contains("format tag is `vitgan.feature_statistics.v0`"),
        "{m}"
    );
}

// ---- bad input ----

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let err = |r: Result<FeatureStatistics, Error>| r.unwrap_err().to_string();
    let m = err(FeatureStatistics::from_features(&[0.0; 10], 3));
    assert!(m.contains("not whole rows of 3"), "{m}");
    let m = err(FeatureStatistics::from_features(&[0.0; 3], 3));
    assert!(m.contains("at least 2"), "{m}");
    let m = err(FeatureStatistics::from_features(&[0.0; 0], 0));
    assert!(m.contains("rows of 0"), "{m}");
    let mut x = vec![0.5f32; 12];
    x[7] = f32::NAN;
    let m = err(FeatureStatistics::from_features(&x, 3));
    assert!(m.contains("feature 1 of row 2 is NaN"), "{m}");

    let a = diagonal(vec![0.0; 3], &[1.0; 3]);
    let b = diagonal(vec![0.0; 4], &[1.0; 4]);
    let m = frechet_distance(&a, &b).unwrap_err().to_string();
    assert!(m.contains("3-dimensional and 4-dimensional"), "{m}");
    let mut one = a.clone();
    one.n = 1;
    let m = frechet_distance(&a, &one).unwrap_err().to_string();
    assert!(
        m.contains("second statistics are over 1 feature vector"),
        "{m}"
    );
    let mut short = a.clone();
    short.covariance.pop();
    let m = frechet_distance(&short, &a).unwrap_err().to_string();
    assert!(
        m.contains("first statistics: dim 3 with 3 mean and 8 covariance"),
        "{m}"
    );
    let m = short
        .save(&scratch("short.safetensors"), "")
        .unwrap_err()
        .to_string();
    assert!(m.contains("8 covariance"), "{m}");

    let m = inception_score(&[0.0; 10], 3, 1).unwrap_err().to_string();
    assert!(m.contains("not whole rows of 3 classes"), "{m}");
    let m = inception_score(&[0.0; 9], 3, 4).unwrap_err().to_string();
    assert!(m.contains("3 rows, 4 splits"), "{m}");
    let m = inception_score(&[0.0; 9], 3, 0).unwrap_err().to_string();
    assert!(m.contains("0 splits"), "{m}");
    let m = inception_score(&[0.0, f32::INFINITY, 0.0], 3, 1)
        .unwrap_err()
        .to_string();
    assert!(m.contains("logit 1 of row 0 is inf"), "{m}");
}

// ---- timing (prints, asserts nothing) ----

#[test]
#[ignore = "timing: 10,000 × 2048 statistics and a 2048-dimensional FID (tens of seconds)"]
fn time_statistics_and_fid_at_inception_size() {
    let (n, d) = (10_000, 2048);
    let features = |salt: u64| -> Vec<f32> {
        (0..n * d)
            .map(|i| {
                let (r, c) = (i / d, i % d);
                // a shared factor per row and column correlates the features
                let f = grid(salt, r, d, 1 << 16) as f32 / 65536.0;
                grid(salt, r, c, 1 << 16) as f32 / 65536.0 + f * (c % 7) as f32 * 0.1
            })
            .collect()
    };
    let (x1, x2) = (features(1), features(2));
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let t = Instant::now();
    let s1 = FeatureStatistics::from_features(&x1, d).unwrap();
    let stats_s = t.elapsed().as_secs_f64();
    let s2 = FeatureStatistics::from_features(&x2, d).unwrap();
    let flop = n as f64 * d as f64 * d as f64; // upper triangle of XᵀX: n·d²/2 FMAs
    println!(
        "FeatureStatistics::from_features n = {n}, d = {d}: {stats_s:.2} s \
         ({:.1} GFLOP/s, {threads} threads available)",
        flop / stats_s / 1e9
    );
    let t = Instant::now();
    let fid = frechet_distance(&s1, &s2).unwrap();
    println!(
        "frechet_distance d = {d}: {:.2} s (FID = {fid:.6})",
        t.elapsed().as_secs_f64()
    );
    let path = scratch("timing.safetensors");
    let t = Instant::now();
    s1.save(&path, "timing").unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = FeatureStatistics::load(&path).unwrap();
    println!(
        "save {save_s:.3} s, load {:.3} s ({} MB)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&path).unwrap().len() / 1_000_000
    );
    let _ = std::fs::remove_file(&path);
}

/// The route without Σ₂ (`n < dim`: eigenvalues of `Yᵀ Σ₁ Y`) equals the full one, and with
/// `n ≥ dim` it is the full one.
#[test]
fn fid_to_features_without_their_covariance_matches() {
    let reference = FeatureStatistics::from_features(&feature_set(1, 1, 1, 300), DIM).unwrap();
    for (n, salts) in [
        (10, (5, 2, 3)),
        (40, (6, 1, 1)),
        (63, (7, 3, 2)),
        (90, (8, 2, 2)),
    ] {
        let x = feature_set(salts.0, salts.1, salts.2, n);
        let full = frechet_distance(
            &reference,
            &FeatureStatistics::from_features(&x, DIM).unwrap(),
        )
        .unwrap();
        let fast = frechet_distance_to_features(&reference, &x, DIM).unwrap();
        // the full route squares the condition number of a singular Σ₂ (see frechet_distance)
        assert_rel(fast, full, 1e-6, &format!("n = {n}"));
    }
    assert!(frechet_distance_to_features(&reference, &[0.0; 10 * 8], 8).is_err());
}
