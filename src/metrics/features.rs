//! A fixed random convolutional feature map for KID without a download: two 3×3 convolutions with
//! ReLU, He-initialised from a constant seed (so every run, checkpoint and machine uses the same
//! map), read out at two scales.
//!
//! For an image `x` (resized by 2×2 averaging to at most 32×32 first): `h₁ = relu(conv₁(x))`
//! (32 maps), `p₁ = avgpool₂(h₁)`, `h₂ = relu(conv₂(p₁))` (64 maps); the features are the spatial
//! means of `h₁` (32) and of `h₂` (64) and `h₂` averaged over a 2×2 grid of quadrants (256): 352
//! values. Convolutions pad with zeros; weights ~ N(0, 2/fan_in).
//!
//! Why this space: KID needs features in which the two distributions differ where images differ.
//! Random convolutional features respond to local edges, blobs and texture at two scales and keep
//! coarse layout (the quadrants), and are known to rank generative models sensibly where no
//! pretrained network is at hand (Naeem et al. 2020 evaluate with randomly initialised embeddings).
//! Values are not comparable with Inception-based KID (issue 10 brings that).

use super::ImageSet;
use crate::data::SplitMix64;

/// Seed of the feature map (fixed forever: changing it changes every reported KID).
pub const FEATURE_SEED: u64 = 0x4B49_445F_7631;
/// Channels of the two convolutions.
const C1: usize = 32;
const C2: usize = 64;
/// Largest resolution the features are computed at.
const MAX_SIZE: usize = 32;
/// Feature width.
pub const FEATURE_DIM: usize = C1 + C2 + 4 * C2;

fn he_weights(rng: &mut SplitMix64, out: usize, fan_in: usize) -> Vec<f32> {
    let std = (2.0 / fan_in as f64).sqrt();
    (0..out * fan_in)
        .map(|_| (rng.normal() * std) as f32)
        .collect()
}

/// `relu(conv3x3(x))`, x `[s, s, cin]`, w `[cout][3][3][cin]`, zero padding.
fn conv_relu(x: &[f32], s: usize, cin: usize, w: &[f32], cout: usize) -> Vec<f32> {
    let mut out = vec![0f32; s * s * cout];
    for y in 0..s {
        for xx in 0..s {
            let o = &mut out[(y * s + xx) * cout..(y * s + xx + 1) * cout];
            for ky in 0..3 {
                let sy = y as isize + ky as isize - 1;
                if sy < 0 || sy >= s as isize {
                    continue;
                }
                for kx in 0..3 {
                    let sx = xx as isize + kx as isize - 1;
                    if sx < 0 || sx >= s as isize {
                        continue;
                    }
                    let px = &x[(sy as usize * s + sx as usize) * cin..][..cin];
                    for (co, v) in o.iter_mut().enumerate() {
                        let wk = &w[((co * 3 + ky) * 3 + kx) * cin..][..cin];
                        *v += px.iter().zip(wk).map(|(a, b)| a * b).sum::<f32>();
                    }
                }
            }
            for v in o.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
    out
}

/// 2×2 average pooling of `[s, s, c]`.
fn avg_pool2(x: &[f32], s: usize, c: usize) -> Vec<f32> {
    let h = s / 2;
    let mut out = vec![0f32; h * h * c];
    for y in 0..h {
        for xx in 0..h {
            for ch in 0..c {
                let at = |yy: usize, xs: usize| x[(yy * s + xs) * c + ch];
                out[(y * h + xx) * c + ch] = 0.25
                    * (at(2 * y, 2 * xx)
                        + at(2 * y, 2 * xx + 1)
                        + at(2 * y + 1, 2 * xx)
                        + at(2 * y + 1, 2 * xx + 1));
            }
        }
    }
    out
}

/// The random feature map for images of `channels` channels.
pub struct RandomConvFeatures {
    channels: usize,
    w1: Vec<f32>,
    w2: Vec<f32>,
}

impl RandomConvFeatures {
    /// The map for `channels`-channel images (the weights depend only on `channels`).
    pub fn new(channels: usize) -> Self {
        let mut rng = SplitMix64::for_stream(FEATURE_SEED, channels as u64);
        RandomConvFeatures {
            channels,
            w1: he_weights(&mut rng, C1, 9 * channels),
            w2: he_weights(&mut rng, C2, 9 * C1),
        }
    }

    /// Features of one `size × size × channels` image (`size ≥ 4`).
    pub fn image(&self, img: &[f32], size: usize) -> Vec<f32> {
        let c = self.channels;
        let (mut x, mut s) = (img.to_vec(), size);
        while s > MAX_SIZE && s.is_multiple_of(2) {
            x = avg_pool2(&x, s, c);
            s /= 2;
        }
        let h1 = conv_relu(&x, s, c, &self.w1, C1);
        let p1 = avg_pool2(&h1, s, C1);
        let s2 = s / 2;
        let h2 = conv_relu(&p1, s2, C1, &self.w2, C2);
        let mut f = vec![0f32; FEATURE_DIM];
        let mean_into = |dst: &mut [f32], h: &[f32], ch: usize, n: usize| {
            for px in h.chunks_exact(ch) {
                for (d, v) in dst.iter_mut().zip(px) {
                    *d += v / n as f32;
                }
            }
        };
        mean_into(&mut f[..C1], &h1, C1, s * s);
        mean_into(&mut f[C1..C1 + C2], &h2, C2, s2 * s2);
        let half = s2.div_ceil(2);
        for y in 0..s2 {
            for xx in 0..s2 {
                let q = (y / half) * 2 + xx / half;
                let count = {
                    let rows = if y / half == 0 { half } else { s2 - half };
                    let cols = if xx / half == 0 { half } else { s2 - half };
                    (rows * cols) as f32
                };
                let base = C1 + C2 + q * C2;
                for (k, v) in h2[(y * s2 + xx) * C2..(y * s2 + xx + 1) * C2]
                    .iter()
                    .enumerate()
                {
                    f[base + k] += v / count;
                }
            }
        }
        f
    }

    /// Features of every image of `set`, `[n, FEATURE_DIM]`, computed on all CPU threads.
    pub fn set(&self, set: &ImageSet) -> Vec<f32> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(set.n)
            .max(1);
        let per = set.n.div_ceil(threads);
        let mut out = vec![0f32; set.n * FEATURE_DIM];
        std::thread::scope(|scope| {
            for (t, chunk) in out.chunks_mut(per * FEATURE_DIM).enumerate() {
                scope.spawn(move || {
                    for (k, f) in chunk.chunks_exact_mut(FEATURE_DIM).enumerate() {
                        f.copy_from_slice(&self.image(set.image(t * per + k), set.size));
                    }
                });
            }
        });
        out
    }
}
