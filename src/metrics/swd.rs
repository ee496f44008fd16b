//! Multi-scale sliced Wasserstein distance (Karras, Aila, Laine, Lehtinen 2018, "Progressive
//! growing of GANs", §5): how far apart two image sets are in the statistics of their local 7×7
//! patches, level by level of a Laplacian pyramid.
//!
//! 1. **Pyramid** of each image: `G₀ = x`, `G_{k+1} = ↓(blur(G_k))`, `L_k = G_k − ↑(G_{k+1})`, down to
//!    [`SwdOptions::min_size`]; the last level is `G` itself (the low-pass residue). `blur` is the
//!    separable binomial filter `[1 4 6 4 1]/16` with mirrored borders, `↓` keeps even pixels, `↑`
//!    inserts zeros and blurs with twice the filter per axis (Burt & Adelson 1983).
//! 2. **Descriptors**: per level, [`SwdOptions::descriptors_per_image`] 7×7×C windows at uniform
//!    random positions of every image, each set normalised per channel to zero mean and unit
//!    variance (over all its descriptors' values).
//! 3. **Sliced W₁**: for [`SwdOptions::directions`] random unit directions θ, the 1-D Wasserstein-1
//!    distance between the two projected sets, `mean_i |sort(a·θ)_i − sort(b·θ)_i|`, averaged over θ.
//!
//! Reported ×10³ per level (finest first) and as the mean of the levels, as Karras et al. report it.

use super::{ImageSet, products};
use crate::data::SplitMix64;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Side of a descriptor window.
pub const PATCH: usize = 7;

/// Settings of [`swd`].
#[derive(Clone, Copy, Debug)]
pub struct SwdOptions {
    /// Windows drawn per image and level.
    pub descriptors_per_image: usize,
    /// Random projection directions per level.
    pub directions: usize,
    /// Coarsest pyramid resolution (≥ 7).
    pub min_size: usize,
    /// Seed of the window positions and the directions.
    pub seed: u64,
}

impl Default for SwdOptions {
    fn default() -> Self {
        SwdOptions {
            descriptors_per_image: 32,
            directions: 256,
            min_size: 8,
            seed: 0,
        }
    }
}

/// The distance per pyramid level and their mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Swd {
    /// `(resolution, SWD × 10³)`, finest level first.
    pub levels: Vec<(usize, f64)>,
    /// Mean of the levels (× 10³).
    pub mean: f64,
}

impl std::fmt::Display for Swd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} (", self.mean)?;
        for (i, (res, v)) in self.levels.iter().enumerate() {
            write!(f, "{}{res}px {v:.2}", if i > 0 { ", " } else { "" })?;
        }
        write!(f, ")")
    }
}

const TAPS: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];

/// Mirrored index into `0..n` (`-1 → 1`, `n → n − 2`).
fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Separable `[1 4 6 4 1]/16 · gain` blur of a `size × size × c` image, mirrored borders: the
/// filter along x, then along y (`gain` applies per pass).
fn blur(img: &[f32], size: usize, c: usize, gain: f32) -> Vec<f32> {
    blur_axis(&blur_axis(img, size, c, gain, 1), size, c, gain, size)
}

/// The 5-tap filter along one axis; `step` is the index distance of neighbours (1: x, `size`: y).
fn blur_axis(img: &[f32], size: usize, c: usize, gain: f32, step: usize) -> Vec<f32> {
    let mut out = vec![0f32; img.len()];
    for y in 0..size {
        for x in 0..size {
            let along = if step == 1 { x } else { y };
            let base = (y * size + x) - along * step;
            for ch in 0..c {
                let mut s = 0f32;
                for (k, t) in TAPS.iter().enumerate() {
                    let i = mirror(along as isize + k as isize - 2, size);
                    s += t * img[(base + i * step) * c + ch];
                }
                out[(y * size + x) * c + ch] = s * gain;
            }
        }
    }
    out
}

fn downsample(img: &[f32], size: usize, c: usize) -> Vec<f32> {
    let b = blur(img, size, c, 1.0);
    let half = size / 2;
    let mut out = vec![0f32; half * half * c];
    for y in 0..half {
        for x in 0..half {
            let src = (2 * y * size + 2 * x) * c;
            out[(y * half + x) * c..(y * half + x + 1) * c].copy_from_slice(&b[src..src + c]);
        }
    }
    out
}

fn upsample(img: &[f32], size: usize, c: usize) -> Vec<f32> {
    let big = 2 * size;
    let mut z = vec![0f32; big * big * c];
    for y in 0..size {
        for x in 0..size {
            let dst = (2 * y * big + 2 * x) * c;
            z[dst..dst + c].copy_from_slice(&img[(y * size + x) * c..(y * size + x + 1) * c]);
        }
    }
    blur(&z, big, c, 2.0)
}

/// The Laplacian pyramid of one `size × size × c` image: `(resolution, level)`, finest first, the
/// last the low-pass residue; levels are halved while the resolution is even and above `min_size`.
/// `Σ` of the levels, each upsampled back, reconstructs the image exactly (up to rounding).
pub fn laplacian_pyramid(
    img: &[f32],
    size: usize,
    c: usize,
    min_size: usize,
) -> Vec<(usize, Vec<f32>)> {
    let mut levels = Vec::new();
    let mut g = img.to_vec();
    let mut s = size;
    while s > min_size && s.is_multiple_of(2) && s / 2 >= PATCH {
        let small = downsample(&g, s, c);
        let up = upsample(&small, s / 2, c);
        levels.push((s, g.iter().zip(&up).map(|(a, b)| a - b).collect()));
        g = small;
        s /= 2;
    }
    levels.push((s, g));
    levels
}

/// Per level, the normalised descriptors `[n · per_image, 7·7·c]` of a set.
fn descriptors(set: &ImageSet, n: usize, o: &SwdOptions, stream: u64) -> Vec<(usize, Vec<f32>)> {
    let c = set.channels;
    let dim = PATCH * PATCH * c;
    let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut rng = SplitMix64::for_stream(o.seed, stream);
    for i in 0..n {
        for (level, (res, img)) in laplacian_pyramid(set.image(i), set.size, c, o.min_size)
            .into_iter()
            .enumerate()
        {
            if out.len() <= level {
                out.push((res, Vec::with_capacity(n * o.descriptors_per_image * dim)));
            }
            let d = &mut out[level].1;
            let span = (res - PATCH + 1) as u64;
            for _ in 0..o.descriptors_per_image {
                let (y0, x0) = (rng.below(span) as usize, rng.below(span) as usize);
                for y in y0..y0 + PATCH {
                    let row = (y * res + x0) * c;
                    d.extend_from_slice(&img[row..row + PATCH * c]);
                }
            }
        }
    }
    for (_, d) in &mut out {
        // per channel: zero mean, unit variance over every value of that channel
        for ch in 0..c {
            let (mut s, mut s2, mut k) = (0f64, 0f64, 0f64);
            for v in d.iter().skip(ch).step_by(c) {
                s += *v as f64;
                s2 += (*v as f64).powi(2);
                k += 1.0;
            }
            let mean = s / k;
            let std = (s2 / k - mean * mean).max(0.0).sqrt().max(1e-8);
            for v in d.iter_mut().skip(ch).step_by(c) {
                *v = ((*v as f64 - mean) / std) as f32;
            }
        }
    }
    out
}

/// Sliced Wasserstein-1 distance between point sets `a`, `b` (`[n, d]` each, the same `n`): the mean
/// over `directions` random unit θ of `mean_i |sort(a·θ)_i − sort(b·θ)_i|`. Identical sets give 0;
/// for `b = a + μ` it is `E_θ|θ·μ|`.
pub fn sliced_wasserstein(
    gpu: Option<&Gpu>,
    a: &[f32],
    b: &[f32],
    d: usize,
    directions: usize,
    seed: u64,
) -> Result<f64> {
    if d == 0 || a.len() != b.len() || a.is_empty() || !a.len().is_multiple_of(d) || directions == 0
    {
        return Err(Error::shape(
            "sliced_wasserstein",
            format!(
                "sets of {} and {} values in {d} dimensions, {directions} directions",
                a.len(),
                b.len()
            ),
        ));
    }
    let n = a.len() / d;
    let mut rng = SplitMix64::for_stream(seed, 0x51ced);
    let mut dirs = Vec::with_capacity(directions * d);
    for _ in 0..directions {
        let v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        dirs.extend(v.iter().map(|x| (x / norm) as f32));
    }
    // [directions, n]: one row of projections per direction
    let mut pa = products(gpu, &dirs, a, d)?;
    let mut pb = products(gpu, &dirs, b, d)?;
    let mut total = 0f64;
    for (ra, rb) in pa.chunks_exact_mut(n).zip(pb.chunks_exact_mut(n)) {
        ra.sort_unstable_by(f32::total_cmp);
        rb.sort_unstable_by(f32::total_cmp);
        total += ra
            .iter()
            .zip(rb.iter())
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / n as f64;
    }
    Ok(total / directions as f64)
}

/// The multi-scale SWD between two image sets of the same size and channels (the first
/// `min(a.n, b.n)` images of each).
pub fn swd(gpu: Option<&Gpu>, a: &ImageSet, b: &ImageSet, o: &SwdOptions) -> Result<Swd> {
    if a.size != b.size || a.channels != b.channels {
        return Err(Error::shape(
            "swd",
            format!(
                "images {0}×{0}×{1} vs {2}×{2}×{3}",
                a.size, a.channels, b.size, b.channels
            ),
        ));
    }
    if a.size < PATCH || o.descriptors_per_image == 0 || o.min_size < PATCH {
        return Err(Error::Config {
            field: "swd".into(),
            detail: format!(
                "needs images of at least {PATCH}×{PATCH} (got {0}×{0}), min_size ≥ {PATCH} and at \
                 least one descriptor per image",
                a.size
            ),
        });
    }
    let n = a.n.min(b.n);
    let da = descriptors(a, n, o, 1);
    let db = descriptors(b, n, o, 2);
    let dim = PATCH * PATCH * a.channels;
    let mut levels = Vec::new();
    for (level, ((res, xa), (_, xb))) in da.iter().zip(&db).enumerate() {
        let w = sliced_wasserstein(gpu, xa, xb, dim, o.directions, o.seed ^ level as u64)?;
        levels.push((*res, 1e3 * w));
    }
    let mean = levels.iter().map(|l| l.1).sum::<f64>() / levels.len() as f64;
    Ok(Swd { levels, mean })
}
