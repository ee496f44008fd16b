//! Plain-Rust f64 references (the spec every kernel is tested against) and test helpers.
#![allow(dead_code)]

use rand::{Rng, SeedableRng, rngs::StdRng};
use vitgan::{Gpu, Tensor};

thread_local! {
    static GPU: Gpu = Gpu::default_adapter().expect("tests need a GPU adapter (install mesa-vulkan-drivers)");
}

/// The shared test GPU (one per test thread).
pub fn gpu() -> Gpu {
    GPU.with(|g| g.clone())
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform random values in [lo, hi).
pub fn random(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

pub fn upload(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&gpu(), data, shape).unwrap()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Assert |got − want| ≤ atol + rtol·|want| elementwise, reporting the worst element.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs() - (atol + rtol * w.abs());
        assert!(
            g.is_finite() || !w.is_finite(),
            "{what}: element {i} is {g}, want {w}"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} but the reference is {} (atol {atol}, rtol {rtol})",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

/// Row-major (batched) matmul reference: C[b] = op(A[b]) op(B[b]); a batch of 1 broadcasts.
#[allow(clippy::too_many_arguments)]
pub fn matmul_ref(
    a: &[f64],
    b: &[f64],
    batch_a: usize,
    batch_b: usize,
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
) -> Vec<f64> {
    let batch = batch_a.max(batch_b);
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        let ao = if batch_a == 1 { 0 } else { bi * m * k };
        let bo = if batch_b == 1 { 0 } else { bi * k * n };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for kk in 0..k {
                    let av = if trans_a {
                        a[ao + kk * m + i]
                    } else {
                        a[ao + i * k + kk]
                    };
                    let bv = if trans_b {
                        b[bo + j * k + kk]
                    } else {
                        b[bo + kk * n + j]
                    };
                    s += av * bv;
                }
                c[bi * m * n + i * n + j] = s;
            }
        }
    }
    c
}

/// GELU, tanh form (the one the kernels use).
pub fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh())
}

pub fn softplus_ref(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

pub fn sigmoid_ref(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax over rows of length n.
pub fn softmax_ref(x: &[f64], n: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks(n).zip(y.chunks_mut(n)) {
        let m = xr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = xr.iter().map(|v| (v - m).exp()).sum();
        for (o, v) in yr.iter_mut().zip(xr) {
            *o = (v - m).exp() / s;
        }
    }
    y
}

/// Central finite-difference gradient of the scalar `f` at `x`.
pub fn numeric_grad(x: &[f64], eps: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let fp = f(&xp);
            xp[i] = orig - eps;
            let fm = f(&xp);
            xp[i] = orig;
            (fp - fm) / (2.0 * eps)
        })
        .collect()
}

/// Σ w ⊙ y, the scalar whose gradient w.r.t. y is w (the "random projection" used by the gradient checks).
pub fn dot(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}

pub mod attention;
pub mod inr;
pub mod layer_norm;
pub mod patches;
pub mod spectral_norm;

/// A fresh, empty directory under the system temp dir (unique per process and call), removed when
/// dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "vitgan-test-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// `dir/name`.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// `dir/name`, creating the folders on the way.
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `target/<profile>/examples/<name>`, next to the running test's `deps/` directory (a full
/// `cargo test --release` builds the examples).
pub fn example_binary(name: &str) -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: a full `cargo test --release` builds the examples (or run `cargo build \
         --release --example {name}` first)",
        path.display()
    );
    std::process::Command::new(path)
}

/// A smooth RGB test image (`width × height`), different for each `k`: JPEG keeps it within a few
/// levels.
pub fn smooth_rgb(width: usize, height: usize, k: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf, kf) = (x as f64, y as f64, k as f64);
            px.push((128.0 + 70.0 * (xf / 19.0 + kf).sin()).round() as u8);
            px.push((128.0 + 70.0 * (yf / 23.0 + 0.7 * kf).cos()).round() as u8);
            px.push((40.0 + 0.45 * (xf + yf) + 5.0 * kf).min(255.0) as u8);
        }
    }
    px
}

/// The path and offset of an [`vitgan::Error::Data`]; panics on any other error.
pub fn data_error(e: vitgan::Error) -> (String, u64) {
    match e {
        vitgan::Error::Data { path, offset, .. } => (path, offset),
        other => panic!("expected Error::Data, got {other:?}"),
    }
}
