//! PNG outputs: single images, sample grids and loss plots (drawn by hand into an RGB8 canvas),
//! and the f32 → byte conversion they share.

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

    /// A 2-pixel-thick line from `a` to `b` (Bresenham, each point drawn as a 2×2 block).
    fn line(&mut self, a: (i64, i64), b: (i64, i64), colour: [u8; 3]) {
        let (mut x, mut y) = a;
        let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
        let (sx, sy) = ((b.0 - x).signum(), (b.1 - y).signum());
        let mut err = dx + dy;
        loop {
            self.fill_rect(x, y, 2, 2, colour);
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` in the 3×5 font, each font pixel a `scale × scale` block, top-left at `(x, y)`;
    /// characters advance by `4 · scale`.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, colour: [u8; 3]) {
        for (k, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            let left = x + k as i64 * 4 * scale;
            for (r, bits) in rows.iter().enumerate() {
                for c in 0..3 {
                    if bits & (0b100 >> c) != 0 {
                        self.fill_rect(
                            left + c * scale,
                            y + r as i64 * scale,
                            scale,
                            scale,
                            colour,
                        );
                    }
                }
            }
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        save_png(path, &self.pixels, self.width, self.height, 3)
    }

    /// Width in pixels of `text` drawn at `scale`.
    fn text_width(text: &str, scale: i64) -> i64 {
        (text.chars().count() as i64 * 4 - 1).max(0) * scale
    }
}

/// The 3×5 bitmap of `ch`: five rows, top first, bit 2 = left column. Lower-case letters use the
/// capitals; characters without a glyph draw as a hollow box.
fn glyph(ch: char) -> [u8; 5] {
    match ch.to_ascii_uppercase() {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        'A' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'B' => [0b110, 0b101, 0b110, 0b101, 0b110],
        'C' => [0b011, 0b100, 0b100, 0b100, 0b011],
        'D' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'E' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'F' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'G' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'H' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'I' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'J' => [0b001, 0b001, 0b001, 0b101, 0b010],
        'K' => [0b101, 0b101, 0b110, 0b101, 0b101],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'M' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'N' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'P' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'Q' => [0b010, 0b101, 0b101, 0b110, 0b011],
        'R' => [0b110, 0b101, 0b110, 0b101, 0b101],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'T' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'U' => [0b101, 0b101, 0b101, 0b101, 0b111],
        'V' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'W' => [0b101, 0b101, 0b111, 0b111, 0b101],
        'X' => [0b101, 0b101, 0b010, 0b101, 0b101],
        'Y' => [0b101, 0b101, 0b010, 0b010, 0b010],
        'Z' => [0b111, 0b001, 0b010, 0b100, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        ',' => [0b000, 0b000, 0b000, 0b010, 0b100],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        '_' => [0b000, 0b000, 0b000, 0b000, 0b111],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        '(' => [0b001, 0b010, 0b010, 0b010, 0b001],
        ')' => [0b100, 0b010, 0b010, 0b010, 0b100],
        '=' => [0b000, 0b111, 0b000, 0b111, 0b000],
        ' ' => [0; 5],
        _ => [0b111, 0b101, 0b101, 0b101, 0b111],
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

/// Series colours, in order (a series past the end reuses them).
const SERIES_COLOURS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
];

/// A "nice" tick spacing (1, 2 or 5 × 10ᵏ) giving about `target` intervals over `span`.
fn tick_spacing(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mantissa = raw / magnitude;
    let nice = if mantissa < 1.5 {
        1.0
    } else if mantissa < 3.5 {
        2.0
    } else if mantissa < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Multiples of `spacing` inside `[lo, hi]`.
fn ticks(lo: f64, hi: f64, spacing: f64) -> Vec<f64> {
    let first = (lo / spacing).ceil() as i64;
    let last = (hi / spacing).floor() as i64;
    (first..=last).map(|k| k as f64 * spacing).collect()
}

/// `value` with as many decimals as `spacing` needs (scientific notation for extreme spacings).
fn tick_label(value: f64, spacing: f64) -> String {
    if !(1e-4..1e5).contains(&spacing) {
        return format!("{value:.1e}");
    }
    let decimals = (-spacing.log10().floor()).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        "0".into()
    } else {
        text
    }
}

/// Writes a line chart of `series` (`(name, [(step, value)])`) as a `width × height` RGB PNG:
/// white background, black axes with tick marks and numeric labels (3×5 bitmap font), each series
/// a line in its own colour, and a legend (colour square + name) in the top-right corner.
/// Non-finite values are skipped; the y range is the finite data's range plus 5 %. Written
/// atomically. `width` must be at least 120 and `height` at least 80.
pub fn save_loss_plot(
    path: &Path,
    series: &[(&str, &[(u64, f32)])],
    width: usize,
    height: usize,
) -> Result<()> {
    if width < 120 || height < 80 || width > 16384 || height > 16384 {
        return Err(Error::Other(format!(
            "{}: a loss plot must be between 120×80 and 16384×16384 pixels, not {width}×{height}",
            path.display()
        )));
    }
    let scale: i64 = if height >= 240 && width >= 360 { 2 } else { 1 };
    let black = [0, 0, 0];
    let mut canvas = Canvas::new(width, height, [255, 255, 255]);

    let points = || {
        series
            .iter()
            .flat_map(|(_, s)| s.iter())
            .filter(|(_, v)| v.is_finite())
    };
    let (mut x_lo, mut x_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(step, value) in points() {
        x_lo = x_lo.min(step as f64);
        x_hi = x_hi.max(step as f64);
        y_lo = y_lo.min(value as f64);
        y_hi = y_hi.max(value as f64);
    }
    if x_lo > x_hi {
        (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
    }
    if x_hi - x_lo < 1.0 {
        x_hi = x_lo + 1.0;
    }
    let y_margin = if y_hi > y_lo {
        0.05 * (y_hi - y_lo)
    } else {
        1.0
    };
    y_lo -= y_margin;
    y_hi += y_margin;

    let y_spacing = tick_spacing(y_hi - y_lo, 5.0);
    let y_ticks = ticks(y_lo, y_hi, y_spacing);
    let y_labels: Vec<String> = y_ticks.iter().map(|&v| tick_label(v, y_spacing)).collect();
    let label_width = y_labels
        .iter()
        .map(|l| Canvas::text_width(l, scale))
        .max()
        .unwrap_or(0);
    let glyph_height = 5 * scale;
    let left = label_width + 6 * scale + 4;
    let bottom = height as i64 - (glyph_height + 6 * scale + 4);
    let top = 4 * scale + 4;
    let right = width as i64 - 8 * scale - 4;
    let (plot_width, plot_height) = ((right - left).max(1), (bottom - top).max(1));
    let to_x =
        |step: f64| left + ((step - x_lo) / (x_hi - x_lo) * plot_width as f64).round() as i64;
    let to_y = |v: f64| bottom - ((v - y_lo) / (y_hi - y_lo) * plot_height as f64).round() as i64;

    // axes, ticks, labels
    canvas.fill_rect(left, top, 1, bottom - top + 1, black);
    canvas.fill_rect(left, bottom, right - left + 1, 1, black);
    for (&v, label) in y_ticks.iter().zip(&y_labels) {
        let y = to_y(v);
        canvas.fill_rect(left - 2 * scale, y, 2 * scale, 1, black);
        let text_left = left - 3 * scale - 1 - Canvas::text_width(label, scale);
        canvas.text(text_left, y - glyph_height / 2, label, scale, black);
    }
    let x_spacing = tick_spacing(x_hi - x_lo, 5.0).max(1.0);
    for v in ticks(x_lo, x_hi, x_spacing) {
        let x = to_x(v);
        canvas.fill_rect(x, bottom + 1, 1, 2 * scale, black);
        let label = tick_label(v, x_spacing);
        let text_left = x - Canvas::text_width(&label, scale) / 2;
        canvas.text(text_left, bottom + 3 * scale + 1, &label, scale, black);
    }

    // series
    for (k, (_, data)) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[k % SERIES_COLOURS.len()];
        let mut previous: Option<(i64, i64)> = None;
        for &(step, value) in data.iter() {
            if !value.is_finite() {
                previous = None;
                continue;
            }
            let point = (to_x(step as f64), to_y(value as f64));
            match previous {
                Some(p) => canvas.line(p, point, colour),
                None => canvas.fill_rect(point.0, point.1, 2, 2, colour),
            }
            previous = Some(point);
        }
    }

    // legend, top-right, one row per series
    let row_height = glyph_height + 3 * scale;
    let name_width = series
        .iter()
        .map(|(name, _)| Canvas::text_width(name, scale))
        .max()
        .unwrap_or(0);
    let legend_left = right - name_width - glyph_height - 3 * scale;
    if !series.is_empty() {
        // a white panel with a gray frame keeps the legend readable over the lines
        let pad = 2 * scale;
        let (panel_x, panel_y) = (legend_left - pad, top + 2 - pad);
        let panel_w = right - legend_left + 2 * pad;
        let panel_h = series.len() as i64 * row_height - 3 * scale + 2 * pad;
        canvas.fill_rect(
            panel_x - 1,
            panel_y - 1,
            panel_w + 2,
            panel_h + 2,
            [160, 160, 160],
        );
        canvas.fill_rect(panel_x, panel_y, panel_w, panel_h, [255, 255, 255]);
    }
    for (k, (name, _)) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[k % SERIES_COLOURS.len()];
        let y = top + 2 + k as i64 * row_height;
        canvas.fill_rect(legend_left, y, glyph_height, glyph_height, colour);
        canvas.text(
            legend_left + glyph_height + 2 * scale,
            y,
            name,
            scale,
            black,
        );
    }
    canvas.save(path)
}
