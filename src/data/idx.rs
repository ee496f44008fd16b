//! MNIST-style IDX image files (`train-images-idx3-ubyte`, optionally gzip-compressed `.gz`), as
//! MNIST and Fashion-MNIST ship them (Debian: `apt-get install dataset-fashion-mnist` →
//! `/usr/share/datasets/fashion-mnist/`).
//!
//! Layout (all integers big-endian): bytes 0–1 zero, byte 2 the element type (0x08 = unsigned
//! byte, the only one accepted here), byte 3 the number of dimensions (3 for images); then one
//! `u32` per dimension (`count, rows, cols`), then `count · rows · cols` pixel bytes, row-major.
//! Images become 1-channel square images; anything else is an [`Error::Data`] naming the file and
//! the byte offset (of the decompressed stream for `.gz`).

use super::ImageDataset;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The image files looked for in a directory, in order of preference.
pub const IDX_TRAIN_FILES: [&str; 2] = ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"];

/// Largest image count accepted (70,000 for MNIST; a header beyond this is corrupt, not data).
const MAX_IMAGES: u64 = 100_000_000;

/// The IDX image file for `path`: the file itself, or in a directory `train-images-idx3-ubyte`
/// (or `.gz`), else the first file whose name contains `images-idx3-ubyte` (sorted).
pub fn idx_file_in(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    if let Some(f) = IDX_TRAIN_FILES
        .iter()
        .map(|n| path.join(n))
        .find(|f| f.is_file())
    {
        return Some(f);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("images-idx3-ubyte"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Loads an IDX image file (or a directory holding one, see [`idx_file_in`]) as 1-channel images.
pub fn load_idx_images(path: &Path) -> Result<ImageDataset> {
    let file = idx_file_in(path).ok_or_else(|| Error::Config {
        field: "--data".into(),
        detail: format!(
            "{} holds no IDX image file (looked for {})",
            path.display(),
            IDX_TRAIN_FILES.join(" or ")
        ),
    })?;
    let name = file.display().to_string();
    let raw = std::fs::read(&file).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(&raw, &name)?
    } else {
        raw
    };
    let mut ds = parse_idx_images(&bytes, &name)?;
    ds.source = name;
    Ok(ds)
}

/// Decompresses a gzip stream, refusing more than an IDX header could ever describe.
fn gunzip(raw: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let limit = 16 + MAX_IMAGES * 28 * 28;
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Error::Data {
            path: name.into(),
            offset: out.len() as u64,
            detail: format!("the gzip stream is corrupt or truncated ({e})"),
        })?;
    Ok(out)
}

/// Parses the bytes of an IDX image file (`name` is used in messages only).
pub fn parse_idx_images(bytes: &[u8], name: &str) -> Result<ImageDataset> {
    let bad = |offset: usize, detail: String| Error::Data {
        path: name.into(),
        offset: offset as u64,
        detail,
    };
    if bytes.len() < 4 {
        return Err(bad(
            bytes.len(),
            "file ends inside the 4-byte IDX magic number".into(),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            0,
            format!(
                "not an IDX file: magic starts {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(bad(
            2,
            format!(
                "element type 0x{:02x}; only unsigned bytes (0x08) are images",
                bytes[2]
            ),
        ));
    }
    if bytes[3] != 3 {
        return Err(bad(
            3,
            format!(
                "{} dimensions; an image file has 3 (count, rows, cols) — is this a label file?",
                bytes[3]
            ),
        ));
    }
    let header = 4 + 3 * 4;
    if bytes.len() < header {
        return Err(bad(
            bytes.len(),
            "file ends inside the dimension sizes".into(),
        ));
    }
    let dim = |k: usize| {
        let at = 4 + 4 * k;
        u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as u64
    };
    let (count, rows, cols) = (dim(0), dim(1), dim(2));
    if count == 0 || count > MAX_IMAGES {
        return Err(bad(
            4,
            format!("image count {count}; expected 1 to {MAX_IMAGES}"),
        ));
    }
    if rows == 0 || rows != cols || rows > 4096 {
        return Err(bad(
            8,
            format!("images of {rows}×{cols}; expected square images of at most 4096 pixels"),
        ));
    }
    let expected = count * rows * cols;
    let present = (bytes.len() - header) as u64;
    if present != expected {
        return Err(bad(
            bytes.len().min(header + expected as usize),
            format!(
                "the header describes {count} images of {rows}×{cols} ({expected} pixel bytes) but \
                 the file holds {present} pixel bytes"
            ),
        ));
    }
    Ok(ImageDataset {
        images: bytes[header..].to_vec().into(),
        len: count as usize,
        size: rows as usize,
        channels: 1,
        source: name.into(),
    })
}
