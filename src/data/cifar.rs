//! CIFAR-10, binary version (`cifar-10-batches-bin` from <https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! A batch file is a sequence of 3073-byte records: 1 label byte (0..=9), then 3072 pixel bytes as
//! three 32×32 row-major planes, R (1024 bytes), G (1024), B (1024). The training set is
//! `data_batch_1.bin` … `data_batch_5.bin` (10 000 records each), the test set `test_batch.bin`.
//! Labels are checked and dropped; pixels are converted from planes to NHWC.

use super::ImageDataset;
use crate::error::{Error, Result};
use std::path::Path;

/// Height and width of a CIFAR-10 image.
pub const CIFAR10_SIZE: usize = 32;
/// Bytes per record: 1 label + 3 · 32 · 32 pixels.
pub const CIFAR10_RECORD_BYTES: usize = 1 + 3 * CIFAR10_SIZE * CIFAR10_SIZE;
/// The training batch files looked for in a directory, in load order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// Loads CIFAR-10 images (32×32×3).
///
/// `path` is one batch file (`data_batch_*.bin`, `test_batch.bin`), or a directory from which every
/// present `data_batch_{1..5}.bin` is loaded in order (an error names the directory if none is).
/// A file whose length is not a multiple of 3073, or a label above 9, is an [`Error::Data`] with
/// the file and the byte offset of the bad record.
pub fn load_cifar10(path: &Path) -> Result<ImageDataset> {
    let metadata = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let files: Vec<_> = if metadata.is_dir() {
        let present: Vec<_> = CIFAR10_TRAIN_FILES
            .iter()
            .map(|name| path.join(name))
            .filter(|file| file.is_file())
            .collect();
        if present.is_empty() {
            return Err(Error::Other(format!(
                "{}: no CIFAR-10 training batches (data_batch_1.bin … data_batch_5.bin) in this \
                 directory; download and extract the binary version (cifar-10-binary.tar.gz) or \
                 pass one batch file",
                path.display()
            )));
        }
        present
    } else {
        vec![path.to_path_buf()]
    };
    let mut images = Vec::new();
    let mut len = 0;
    for file in &files {
        len += read_batch_file(file, &mut images)?;
    }
    Ok(ImageDataset {
        images: images.into(),
        len,
        size: CIFAR10_SIZE,
        channels: 3,
        source: path.display().to_string(),
    })
}

/// Appends the images of one batch file to `images` (NHWC) and returns how many it held.
fn read_batch_file(path: &Path, images: &mut Vec<u8>) -> Result<usize> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    let records = bytes.len() / CIFAR10_RECORD_BYTES;
    let remainder = bytes.len() % CIFAR10_RECORD_BYTES;
    if remainder != 0 {
        return Err(Error::Data {
            path: name,
            offset: (records * CIFAR10_RECORD_BYTES) as u64,
            detail: format!(
                "record {records} is incomplete ({remainder} of {CIFAR10_RECORD_BYTES} bytes); the \
                 file is {} bytes, not a multiple of {CIFAR10_RECORD_BYTES} — it is truncated or \
                 not a CIFAR-10 binary batch",
                bytes.len()
            ),
        });
    }
    if records == 0 {
        return Err(Error::Data {
            path: name,
            offset: 0,
            detail: "the file is empty; expected 3073-byte CIFAR-10 records".into(),
        });
    }
    let plane = CIFAR10_SIZE * CIFAR10_SIZE;
    images.reserve(records * 3 * plane);
    for (index, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
        let label = record[0];
        if label > 9 {
            return Err(Error::Data {
                path: name,
                offset: (index * CIFAR10_RECORD_BYTES) as u64,
                detail: format!(
                    "corrupt label {label} at record {index} (labels are 0..=9); not a CIFAR-10 \
                     binary batch, or the file is damaged"
                ),
            });
        }
        let (red, rest) = record[1..].split_at(plane);
        let (green, blue) = rest.split_at(plane);
        for p in 0..plane {
            images.extend_from_slice(&[red[p], green[p], blue[p]]);
        }
    }
    Ok(records)
}
