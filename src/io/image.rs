//! PNG outputs: single images and sample grids, and the f32 → byte conversion they share.

use super::write_atomically;
use crate::error::{Error, Result};
use std::path::Path;

/// Pixels between tiles of a sample grid.
pub const GRID_GAP: usize = 2;

/// An RGB8 image being drawn.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, background: [u8; 3]) -> Self {
        Canvas {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// Sets pixel `(x, y)`; points outside the canvas are ignored.
    fn set(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let at = (y as usize * self.width + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    fn fill_rect(&mut self, x: i64, y: i64, width: i64, height: i64, colour: [u8; 3]) {
        for yy in y..y + height {
            for xx in x..x + width {
                self.set(xx, yy, colour);
            }
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        save_png(path, &self.pixels, self.width, self.height, 3)
    }
}

/// `v ∈ [-1, 1]` → byte `⌊(v + 1)/2 · 255 + ½⌋` (round half up, computed exactly in f64),
/// clamped to 0..=255; NaN → 0, −∞ → 0, +∞ → 255.
pub fn to_byte(v: f32) -> u8 {
    let x = (f64::from(v) + 1.0) * 127.5;
    if x.is_nan() {
        0
    } else {
        (x + 0.5).floor().clamp(0.0, 255.0) as u8
    }
}

/// [`to_byte`] of every value: NHWC f32 images in [-1, 1] → NHWC bytes.
pub fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&v| to_byte(v)).collect()
}

/// Writes one `width × height` image of 8-bit `pixels` (row-major, `channels` interleaved) as a
/// PNG: 1 channel grey, 2 grey + alpha, 3 RGB, 4 RGBA. Written atomically.
pub fn save_png(
    path: &Path,
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
) -> Result<()> {
    let colour = match channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        _ => {
            return Err(Error::shape(
                "save_png",
                format!("{channels} channels per pixel; a PNG holds 1, 2, 3 or 4"),
            ));
        }
    };
    if pixels.len() != width * height * channels {
        return Err(Error::shape(
            "save_png",
            format!(
                "{} bytes given for a {width}×{height}×{channels} image ({} bytes)",
                pixels.len(),
                width * height * channels
            ),
        ));
    }
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(Error::Other(format!(
            "{}: a {width}×{height} image is too large for PNG",
            path.display()
        )));
    };
    write_atomically(path, |writer| {
        let mut encoder = png::Encoder::new(writer, w, h);
        encoder.set_color(colour);
        encoder.set_depth(png::BitDepth::Eight);
        let mut png_writer = encoder.write_header().map_err(std::io::Error::other)?;
        png_writer
            .write_image_data(pixels)
            .map_err(std::io::Error::other)?;
        png_writer.finish().map_err(std::io::Error::other)
    })
}

/// Writes `n` NHWC images (`images.len() = n · size · size · channels`, values in [-1, 1], clamped)
/// as one RGB PNG: `min(cols, n)` tiles per row, `⌈n / cols⌉` rows, [`GRID_GAP`] black pixels
/// between tiles (none around the border), so the width is `c·size + (c − 1)·2` for `c` columns.
/// One channel is shown as gray, three as RGB, four as RGB without alpha. Written atomically.
pub fn save_image_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    size: usize,
    channels: usize,
    cols: usize,
) -> Result<()> {
    save_image_grid_scaled(path, images, n, size, channels, cols, 1)
}

/// The tile magnification that shows a `size × size` image at least 64 screen pixels wide.
pub fn grid_scale(size: usize) -> usize {
    (64 / size.max(1)).max(1)
}

/// [`save_image_grid`] with every image pixel drawn as a `scale × scale` block (nearest
/// neighbour), so that small samples can be seen; the gaps stay [`GRID_GAP`] pixels.
pub fn save_image_grid_scaled(
    path: &Path,
    images: &[f32],
    n: usize,
    size: usize,
    channels: usize,
    cols: usize,
    scale: usize,
) -> Result<()> {
    if n == 0 || size == 0 || cols == 0 || scale == 0 || size * scale > 4096 {
        return Err(Error::Other(format!(
            "{}: cannot draw a grid of {n} images of {size}×{size} in {cols} columns",
            path.display()
        )));
    }
    if !matches!(channels, 1 | 3 | 4) {
        return Err(Error::shape(
            "save_image_grid",
            format!("{channels} channels per pixel; expected 1, 3 or 4"),
        ));
    }
    let expected = n * size * size * channels;
    if images.len() != expected {
        return Err(Error::shape(
            "save_image_grid",
            format!(
                "{} values given for {n} images of {size}×{size}×{channels} ({expected} values)",
                images.len()
            ),
        ));
    }
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let tile = size * scale;
    let width = cols * tile + (cols - 1) * GRID_GAP;
    let height = rows * tile + (rows - 1) * GRID_GAP;
    let mut canvas = Canvas::new(width, height, [0, 0, 0]);
    for (i, image) in images.chunks_exact(size * size * channels).enumerate() {
        let left = (i % cols) * (tile + GRID_GAP);
        let top = (i / cols) * (tile + GRID_GAP);
        for (p, pixel) in image.chunks_exact(channels).enumerate() {
            let rgb = if channels == 1 {
                [to_byte(pixel[0]); 3]
            } else {
                [to_byte(pixel[0]), to_byte(pixel[1]), to_byte(pixel[2])]
            };
            canvas.fill_rect(
                (left + (p % size) * scale) as i64,
                (top + (p / size) * scale) as i64,
                scale as i64,
                scale as i64,
                rgb,
            );
        }
    }
    canvas.save(path)
}
