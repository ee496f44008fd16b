//! A built-in dataset of simple shapes, so training runs on a fresh machine without a download.
//!
//! Image `i` of seed `s` depends only on `(s, i, size)` (its own SplitMix64 stream), so the first
//! `k` images are the same whatever `n` is. Geometry is drawn in units of the image size, so the
//! same seed gives the same scenes at every resolution. Each RGB image is:
//!
//! - a **background**: a linear gradient between two random colours `c₀, c₁` along a random
//!   direction `θ`: `bg(p) = c₀ + (c₁ − c₀)·t`, `t = ((p − centre)·(cos θ, sin θ)) / size + ½`
//!   clamped to [0, 1], with colour channels uniform in [0, 1];
//! - **1 to 3 shapes** painted in order over it, each a disc, an axis-aligned square or a ring
//!   (inner radius `0.55·r`), with a random colour, centre uniform in `[0.2, 0.8]·size`, and radius
//!   (half-side for squares) uniform in `[0.08, 0.25]·size`. Edges are anti-aliased with coverage
//!   `α = clamp(½ − d, 0, 1)` from the signed distance `d` (pixels) to the shape's boundary, and
//!   `pixel = (1 − α)·below + α·colour`.
//!
//! Smooth backgrounds plus sharp, varied foreground objects give a GAN visible global and local
//! structure to learn within minutes.

use super::{ImageDataset, SplitMix64};

/// The kinds of shape drawn.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Disc,
    Square,
    Ring,
}

/// `n` deterministic RGB images of `size × size` (see the module docs for the distribution).
pub fn synthetic_shapes(n: usize, size: usize, seed: u64) -> ImageDataset {
    let mut images = Vec::with_capacity(n * size * size * 3);
    let mut canvas = vec![[0f32; 3]; size * size];
    for i in 0..n {
        let mut rng = SplitMix64::for_stream(seed, i as u64);
        draw_scene(&mut rng, size, &mut canvas);
        images.extend(
            canvas
                .iter()
                .flat_map(|rgb| rgb.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)),
        );
    }
    ImageDataset {
        images: images.into(),
        len: n,
        size,
        channels: 3,
        source: format!("synthetic shapes (seed {seed})"),
    }
}

fn random_colour(rng: &mut SplitMix64) -> [f32; 3] {
    [rng.next_f32(), rng.next_f32(), rng.next_f32()]
}

/// Paints one scene into `canvas` (`size²` RGB values in [0, 1]).
fn draw_scene(rng: &mut SplitMix64, size: usize, canvas: &mut [[f32; 3]]) {
    let s = size as f32;
    let (c0, c1) = (random_colour(rng), random_colour(rng));
    let angle = rng.range_f32(0.0, std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5 - s / 2.0, y as f32 + 0.5 - s / 2.0);
            let t = ((px * dx + py * dy) / s + 0.5).clamp(0.0, 1.0);
            canvas[y * size + x] = std::array::from_fn(|c| c0[c] + (c1[c] - c0[c]) * t);
        }
    }
    let count = 1 + rng.below(3);
    for _ in 0..count {
        let shape = match rng.below(3) {
            0 => Shape::Disc,
            1 => Shape::Square,
            _ => Shape::Ring,
        };
        let colour = random_colour(rng);
        let cx = rng.range_f32(0.2, 0.8) * s;
        let cy = rng.range_f32(0.2, 0.8) * s;
        let r = rng.range_f32(0.08, 0.25) * s;
        for y in 0..size {
            for x in 0..size {
                let (px, py) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let distance = match shape {
                    Shape::Disc => (px * px + py * py).sqrt() - r,
                    Shape::Square => px.abs().max(py.abs()) - r,
                    Shape::Ring => {
                        let rho = (px * px + py * py).sqrt();
                        (rho - r).max(0.55 * r - rho)
                    }
                };
                let alpha = (0.5 - distance).clamp(0.0, 1.0);
                if alpha > 0.0 {
                    let pixel = &mut canvas[y * size + x];
                    for c in 0..3 {
                        pixel[c] += alpha * (colour[c] - pixel[c]);
                    }
                }
            }
        }
    }
}
