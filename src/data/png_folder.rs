//! A folder of PNG images as a dataset.
//!
//! Every `*.png` file (extension case-insensitive) directly inside the folder is loaded, in file-name
//! order; other files and subfolders are ignored. Each image is decoded to RGB8 (any colour type and
//! bit depth: palettes expanded, 16-bit reduced to 8, grayscale replicated to R = G = B, alpha
//! dropped), centre-cropped to a square of its short side, and resized to `size × size`
//! (area average down, bilinear up).

use super::{ImageDataset, resample};
use crate::error::{Error, Result};
use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The 8-byte signature every PNG file starts with.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Loads every PNG in `dir` (not recursive) as `size × size` RGB.
///
/// Errors: the folder holds no `.png` file (naming the folder); a file fails to decode
/// ([`Error::Data`] naming it); an image's short side is below `size / 2` (naming the file and its
/// dimensions) — upscaling more than 2× would mostly train on blur.
pub fn load_png_folder(dir: &Path, size: usize) -> Result<ImageDataset> {
    if size == 0 {
        return Err(Error::Config {
            field: "size".into(),
            detail: "the image size must be at least 1 pixel".into(),
        });
    }
    let files = png_files_in(dir)?;
    let mut images = Vec::with_capacity(files.len() * size * size * 3);
    for file in &files {
        let (width, height, rgb) = decode_png_rgb8(file)?;
        let side = width.min(height);
        if side * 2 < size {
            return Err(Error::Other(format!(
                "{}: image is {width}×{height}, too small for {size}×{size} training (its short side \
                 must be at least {} pixels); remove it or train at a smaller size",
                file.display(),
                size.div_ceil(2)
            )));
        }
        let square = centre_crop(&rgb, width, height, 3);
        images.extend(resample(&square, side, side, 3, size, size));
    }
    Ok(ImageDataset {
        images,
        len: files.len(),
        size,
        channels: 3,
        source: dir.display().to_string(),
    })
}

/// The `*.png` files (case-insensitive extension) directly inside `dir`, sorted by name.
pub fn png_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let io_error = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    let mut others = 0usize;
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let is_png = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
        if is_png && path.is_file() {
            files.push(path);
        } else {
            others += 1;
        }
    }
    if files.is_empty() {
        return Err(Error::Other(format!(
            "{}: this folder has no PNG files (*.png), only {others} other entries; point --data at \
             a folder of .png images, a CIFAR-10 binary batch, or use `synthetic`",
            dir.display()
        )));
    }
    files.sort();
    Ok(files)
}

/// Decodes the PNG at `path` to `(width, height, RGB8 pixels row-major)`.
///
/// A file that is not a PNG or fails to decode is an [`Error::Data`]: offset 0 for a missing
/// signature, the file length when it ends early, otherwise how far the decoder had read (it reads
/// ahead in blocks, so the bad byte is at or before that offset).
pub fn decode_png_rgb8(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    if !bytes.starts_with(&PNG_SIGNATURE) {
        return Err(Error::Data {
            path: name,
            offset: 0,
            detail: "not a PNG file (the 8-byte PNG signature is missing)".into(),
        });
    }
    let consumed = Rc::new(Cell::new(0u64));
    let reader = CountingReader {
        inner: bytes.as_slice(),
        consumed: consumed.clone(),
    };
    let file_len = bytes.len() as u64;
    let decode_error = |e: png::DecodingError| {
        let truncated = matches!(&e, png::DecodingError::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof);
        Error::Data {
            path: name.clone(),
            offset: if truncated { file_len } else { consumed.get() },
            detail: if truncated {
                format!("the file ends before the image is complete ({e})")
            } else {
                format!("cannot decode PNG: {e}")
            },
        }
    };
    let mut decoder = png::Decoder::new(reader);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let mut buffer = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(decode_error)?;
    let (width, height) = (frame.width as usize, frame.height as usize);
    let samples = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(Error::Data {
                path: name,
                offset: 0,
                detail: "palette image was not expanded to RGB by the decoder".into(),
            });
        }
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for row in buffer.chunks(frame.line_size).take(height) {
        for pixel in row[..width * samples].chunks_exact(samples) {
            match samples {
                1 | 2 => rgb.extend_from_slice(&[pixel[0]; 3]),
                _ => rgb.extend_from_slice(&pixel[..3]),
            }
        }
    }
    Ok((width, height, rgb))
}

/// The centred `s × s` square of an HWC image, `s = min(width, height)`, offset
/// `(⌊(width − s)/2⌋, ⌊(height − s)/2⌋)`.
fn centre_crop(pixels: &[u8], width: usize, height: usize, channels: usize) -> Vec<u8> {
    let side = width.min(height);
    let (x0, y0) = ((width - side) / 2, (height - side) / 2);
    let mut out = Vec::with_capacity(side * side * channels);
    for y in y0..y0 + side {
        let start = (y * width + x0) * channels;
        out.extend_from_slice(&pixels[start..start + side * channels]);
    }
    out
}

/// A reader that records how many bytes have been taken from it.
struct CountingReader<'a> {
    inner: &'a [u8],
    consumed: Rc<Cell<u64>>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}
