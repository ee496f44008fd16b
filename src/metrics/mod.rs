//! Sample-quality metrics that need no download: the multi-scale sliced Wasserstein distance of
//! Karras et al. 2018 ([`swd`]) and the kernel inception distance's estimator (unbiased polynomial
//! MMD², [`kid`]) over a fixed random convolutional feature map ([`features`]); and the statistics
//! behind the Inception-based metrics, which consume the outputs of pytorch-fid's InceptionV3 run on
//! the engine ([`inception`]; its weights are a download): the Fréchet distance of feature means and
//! covariances ([`fid`]) and the Inception score of logits ([`inception_score`]).
//!
//! Images are NHWC `f32` in [-1, 1] on the host (`n · size · size · channels` values), as
//! `Trainer::sample_ema` reads back and `data::Batcher::fill_batch` writes. The large products
//! (projections, Gram matrices) run on the GPU through [`crate::ops::matmul`] when a [`Gpu`] is
//! given, else on the host; every sum that decides a result is taken in f64.

pub mod features;
pub mod fid;
pub mod inception;
pub mod inception_score;
pub mod kid;
pub mod swd;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// A set of square images on the host.
#[derive(Clone, Copy, Debug)]
pub struct ImageSet<'a> {
    /// NHWC values in [-1, 1].
    pub pixels: &'a [f32],
    pub n: usize,
    pub size: usize,
    pub channels: usize,
}

impl<'a> ImageSet<'a> {
    /// Checks that `pixels` holds `n` images of `size × size × channels`.
    pub fn new(pixels: &'a [f32], n: usize, size: usize, channels: usize) -> Result<Self> {
        if n == 0 || size == 0 || channels == 0 || pixels.len() != n * size * size * channels {
            return Err(Error::shape(
                "metrics",
                format!(
                    "{} values for {n} images of {size}×{size}×{channels}",
                    pixels.len()
                ),
            ));
        }
        Ok(ImageSet {
            pixels,
            n,
            size,
            channels,
        })
    }

    /// The values of image `i`.
    pub fn image(&self, i: usize) -> &'a [f32] {
        let len = self.size * self.size * self.channels;
        &self.pixels[i * len..(i + 1) * len]
    }
}

/// `A · Bᵀ` for row-major `a` `[rows_a, d]`, `b` `[rows_b, d]` → `[rows_a, rows_b]`; on the GPU when
/// `gpu` is given (in row blocks that keep every buffer under 128 MiB), else on the host (f64 sums).
pub fn products(gpu: Option<&Gpu>, a: &[f32], b: &[f32], d: usize) -> Result<Vec<f32>> {
    let (rows_a, rows_b) = (a.len() / d.max(1), b.len() / d.max(1));
    let mut out = vec![0f32; rows_a * rows_b];
    let Some(gpu) = gpu else {
        for (i, ra) in a.chunks_exact(d).enumerate() {
            for (j, rb) in b.chunks_exact(d).enumerate() {
                out[i * rows_b + j] = ra
                    .iter()
                    .zip(rb)
                    .map(|(x, y)| *x as f64 * *y as f64)
                    .sum::<f64>() as f32;
            }
        }
        return Ok(out);
    };
    let bt = Tensor::from_slice(gpu, b, &[rows_b, d])?;
    let budget = (128usize << 20) / 4;
    let block = (budget / rows_b.max(d).max(1)).clamp(1, rows_a.max(1));
    for start in (0..rows_a).step_by(block) {
        let rows = block.min(rows_a - start);
        let at = Tensor::from_slice(gpu, &a[start * d..(start + rows) * d], &[rows, d])?;
        let p = crate::ops::matmul::matmul_t(&at, &bt, false, true)?.to_vec()?;
        out[start * rows_b..(start + rows) * rows_b].copy_from_slice(&p);
    }
    Ok(out)
}
