//! A built-in dataset of simple shapes, so training runs on a fresh machine without a download.
//!
//! Image `i` of seed `s` depends only on `(s, i, size)` (its own SplitMix64 stream), so the first
//! `k` images are the same whatever `n` is. Geometry is drawn in units of the image size, so the
//! same seed gives the same scenes at every resolution. Each image is grey (stored as RGB with
//! equal channels):
//!
//! - a **dark background**: a linear gradient between two grey levels `c₀, c₁` uniform in
//!   [0, 0.4] along a random direction `θ`: `bg(p) = c₀ + (c₁ − c₀)·t`,
//!   `t = ((p − centre)·(cos θ, sin θ)) / size + ½` clamped to [0, 1];
//! - **one bright shape** over it: a disc, an axis-aligned square or a ring (inner radius
//!   `0.55·r`), each with probability ⅓, of grey level uniform in [0.6, 1], centre uniform in
//!   `[0.35, 0.65]·size`, radius (half-side for squares) uniform in `[0.25, 0.4]·size`. Edges are
//!   anti-aliased with coverage `α = clamp(½ − d, 0, 1)` from the signed distance `d` (pixels) to
//!   the shape's boundary, and `pixel = (1 − α)·background + α·level`.
//!
//! Sized so that a 16×16 image shows which shape it is (a ring is ≥ 1.8 px thick) and the shape
//! always stands out from its background. An earlier version (random colours, 1–3 shapes of radius
//! 0.08–0.25·size anywhere) was not learnt in a 5-minute CPU run by the ViTGAN nor by a plain
//! convolutional GAN: both painted colour fields and blobs (README, *Recipe*).

use super::{ImageDataset, SplitMix64};

/// The kinds of shape drawn.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Disc,
    Square,
    Ring,
}

/// `n` deterministic grey images of `size × size`, stored as RGB (see the module docs for the
/// distribution).
pub fn synthetic_shapes(n: usize, size: usize, seed: u64) -> ImageDataset {
    let mut images = Vec::with_capacity(n * size * size * 3);
    let mut canvas = vec![0f32; size * size];
    for i in 0..n {
        let mut rng = SplitMix64::for_stream(seed, i as u64);
        draw_scene(&mut rng, size, &mut canvas);
        images.extend(canvas.iter().flat_map(|&v| {
            let level = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            [level; 3]
        }));
    }
    ImageDataset {
        images: images.into(),
        len: n,
        size,
        channels: 3,
        source: format!("synthetic shapes (seed {seed})"),
    }
}

/// Paints one scene into `canvas` (`size²` grey levels in [0, 1]).
fn draw_scene(rng: &mut SplitMix64, size: usize, canvas: &mut [f32]) {
    let s = size as f32;
    let (c0, c1) = (rng.range_f32(0.0, 0.4), rng.range_f32(0.0, 0.4));
    let angle = rng.range_f32(0.0, std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let shape = match rng.below(3) {
        0 => Shape::Disc,
        1 => Shape::Square,
        _ => Shape::Ring,
    };
    let level = rng.range_f32(0.6, 1.0);
    let cx = rng.range_f32(0.35, 0.65) * s;
    let cy = rng.range_f32(0.35, 0.65) * s;
    let r = rng.range_f32(0.25, 0.4) * s;
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = (((fx - s / 2.0) * dx + (fy - s / 2.0) * dy) / s + 0.5).clamp(0.0, 1.0);
            let background = c0 + (c1 - c0) * t;
            let (px, py) = (fx - cx, fy - cy);
            let distance = match shape {
                Shape::Disc => (px * px + py * py).sqrt() - r,
                Shape::Square => px.abs().max(py.abs()) - r,
                Shape::Ring => {
                    let rho = (px * px + py * py).sqrt();
                    (rho - r).max(0.55 * r - rho)
                }
            };
            let alpha = (0.5 - distance).clamp(0.0, 1.0);
            canvas[y * size + x] = background + alpha * (level - background);
        }
    }
}
