//! Kernel inception distance's estimator (Bińkowski, Sutherland, Arbel, Gretton 2018): the unbiased
//! MMD² between two feature sets under the cubic polynomial kernel
//! `k(x, y) = (xᵀy / d + 1)³`, averaged over random subsets:
//!
//! `MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (m(m−1)) − 2 Σ_{i,j} k(x_i, y_j) / m²`
//!
//! for `m` = [`KidOptions::subset_size`] samples drawn without replacement from each set, repeated
//! [`KidOptions::subsets`] times; reported as mean ± standard deviation over the subsets. It is
//! unbiased for the population MMD², so it can be slightly negative for matching distributions.

use super::products;
use crate::data::SplitMix64;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Settings of [`kid`].
#[derive(Clone, Copy, Debug)]
pub struct KidOptions {
    /// Subsets drawn (100 in the literature).
    pub subsets: usize,
    /// Samples per subset from each set (1,000 in the literature; capped at the smaller set).
    pub subset_size: usize,
    pub seed: u64,
}

impl Default for KidOptions {
    fn default() -> Self {
        KidOptions {
            subsets: 100,
            subset_size: 1000,
            seed: 0,
        }
    }
}

/// Mean and standard deviation of the subsets' MMD².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kid {
    pub mean: f64,
    pub std: f64,
}

impl std::fmt::Display for Kid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.5} ± {:.5}", self.mean, self.std)
    }
}

/// `m` distinct indices of `0..n` (partial Fisher–Yates).
fn subset(rng: &mut SplitMix64, n: usize, m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(m);
    idx
}

/// KID between feature sets `x` `[n_x, d]` and `y` `[n_y, d]` (row-major).
pub fn kid(gpu: Option<&Gpu>, x: &[f32], y: &[f32], d: usize, o: &KidOptions) -> Result<Kid> {
    if d == 0 || !x.len().is_multiple_of(d) || !y.len().is_multiple_of(d) {
        return Err(Error::shape(
            "kid",
            format!("{} and {} values in {d} dimensions", x.len(), y.len()),
        ));
    }
    let (nx, ny) = (x.len() / d, y.len() / d);
    let m = o.subset_size.min(nx).min(ny);
    if m < 2 || o.subsets == 0 {
        return Err(Error::Config {
            field: "kid".into(),
            detail: format!("needs at least 2 samples per set and one subset (got {nx} and {ny})"),
        });
    }
    let kernel = |g: f32| (g as f64 / d as f64 + 1.0).powi(3);
    // unbiased MMD² of one subset pair from its Gram matrices (row strides given), indices `sx`, `sy`
    let estimate = |kxx: &[f32],
                    sx: &[usize],
                    nx: usize,
                    kyy: &[f32],
                    sy: &[usize],
                    ny: usize,
                    kxy: &[f32]| {
        let within = |k: &[f32], s: &[usize], n: usize| {
            let mut t = 0f64;
            for (a, &i) in s.iter().enumerate() {
                for &j in &s[a + 1..] {
                    t += kernel(k[i * n + j]);
                }
            }
            2.0 * t / (m * (m - 1)) as f64
        };
        let mut cross = 0f64;
        for &i in sx {
            for &j in sy {
                cross += kernel(kxy[i * ny + j]);
            }
        }
        within(kxx, sx, nx) + within(kyy, sy, ny) - 2.0 * cross / (m * m) as f64
    };
    let mut rng = SplitMix64::for_stream(o.seed, 0x4b1d);
    let mut values = Vec::with_capacity(o.subsets);
    // Small sets: the full Gram matrices once. Large sets (n ≫ m, e.g. 10k–50k samples): the
    // three m × m Gram matrices of each subset, so host memory stays O(m²) instead of O(n²).
    let full = nx.max(ny) <= 2 * m;
    let grams = if full {
        Some((
            products(gpu, x, x, d)?,
            products(gpu, y, y, d)?,
            products(gpu, x, y, d)?,
        ))
    } else {
        None
    };
    let local: Vec<usize> = (0..m).collect();
    for _ in 0..o.subsets {
        let (sx, sy) = (subset(&mut rng, nx, m), subset(&mut rng, ny, m));
        values.push(match &grams {
            Some((kxx, kyy, kxy)) => estimate(kxx, &sx, nx, kyy, &sy, ny, kxy),
            None => {
                let rows = |v: &[f32], s: &[usize]| -> Vec<f32> {
                    s.iter()
                        .flat_map(|&i| v[i * d..(i + 1) * d].iter().copied())
                        .collect()
                };
                let (xs, ys) = (rows(x, &sx), rows(y, &sy));
                let (kxx, kyy, kxy) = (
                    products(gpu, &xs, &xs, d)?,
                    products(gpu, &ys, &ys, d)?,
                    products(gpu, &xs, &ys, d)?,
                );
                estimate(&kxx, &local, m, &kyy, &local, m, &kxy)
            }
        });
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    Ok(Kid {
        mean,
        std: var.sqrt(),
    })
}
