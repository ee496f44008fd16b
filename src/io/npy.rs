//! NumPy `.npy` files of unsigned bytes (`numpy.load` reads them as `uint8` arrays).
//!
//! Layout (format version 1.0): the magic `\x93NUMPY`, the version bytes `1, 0`, a little-endian
//! `u16` header length `n`, `n` bytes of ASCII header — a Python dict literal
//! `{'descr': '|u1', 'fortran_order': False, 'shape': (N, H, W, C), }` padded with spaces and
//! ending in `\n` so that the data starts at a multiple of 64 bytes — then the values in C
//! (row-major) order, one byte each.

use super::{commit_temp_file, create_parent_dir, io_error, temp_path_for};
use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The first six bytes of every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The whole preamble of a version-1.0 `.npy` file of `uint8` values of `shape`: magic, version,
/// header length and the padded header; its length is a multiple of 64.
///
/// Errors: a shape whose header would not fit the 65,535 bytes version 1.0 allows.
pub fn npy_u8_header(shape: &[usize]) -> Result<Vec<u8>> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let Ok(len) = u16::try_from(dict.len()) else {
        return Err(Error::shape(
            "npy_u8_header",
            format!(
                "a shape of {} dimensions does not fit a .npy header",
                shape.len()
            ),
        ));
    };
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    Ok(out)
}

/// Writes a `uint8` `.npy` file piece by piece: [`NpyU8Writer::create`] writes the header,
/// [`NpyU8Writer::write`] appends values in C order, [`NpyU8Writer::finish`] checks that exactly
/// `product(shape)` values came and renames the file into place. The file is written as
/// `<path>.tmp` until then (and removed if the writer is dropped unfinished), so `path` is never
/// a partial array.
pub struct NpyU8Writer {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    expected: usize,
    written: usize,
}

impl NpyU8Writer {
    /// Starts `path` (parent directories created if missing) for an array of `shape`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<NpyU8Writer> {
        let header = npy_u8_header(shape)?;
        create_parent_dir(path)?;
        let tmp = temp_path_for(path);
        let file = BufWriter::new(File::create(&tmp).map_err(io_error(&tmp))?);
        let mut writer = NpyU8Writer {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            expected: shape.iter().product(),
            written: 0,
        };
        writer.write_raw(&header)?;
        Ok(writer)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().expect("the file is open until finish");
        file.write_all(bytes).map_err(io_error(&self.tmp))
    }

    /// Appends `values` (the next ones in C order).
    pub fn write(&mut self, values: &[u8]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::shape(
                "NpyU8Writer::write",
                format!(
                    "{} values would exceed the {} of the array's shape",
                    self.written + values.len(),
                    self.expected
                ),
            ));
        }
        self.write_raw(values)?;
        self.written += values.len();
        Ok(())
    }

    /// Flushes, fsyncs and renames the finished file to its path.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::shape(
                "NpyU8Writer::finish",
                format!(
                    "{} values written for an array of {}",
                    self.written, self.expected
                ),
            ));
        }
        let file = self.file.take().expect("the file is open until finish");
        if let Err(e) = file.into_inner() {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(io_error(&self.tmp)(e.into_error()));
        }
        commit_temp_file(&self.tmp, &self.path)
    }
}

impl Drop for NpyU8Writer {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `values` as a `uint8` `.npy` array of `shape`, atomically.
pub fn save_npy_u8(path: &Path, shape: &[usize], values: &[u8]) -> Result<()> {
    let mut writer = NpyU8Writer::create(path, shape)?;
    writer.write(values)?;
    writer.finish()
}

/// Reads a `.npy` file of `uint8` values (format version 1.0, 2.0 or 3.0, C order) as
/// `(shape, values)`.
///
/// Errors: a file that is not `.npy`, is truncated, or holds another dtype or Fortran order, as
/// an [`Error::Data`] naming the file and the byte offset.
pub fn load_npy_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let corrupt = |offset: usize, detail: String| Error::Data {
        path: name.clone(),
        offset: offset as u64,
        detail,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(corrupt(0, "no `\\x93NUMPY` magic; not a .npy file".into()));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(corrupt(6, format!("format version {v} is not supported"))),
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err(corrupt(
            bytes.len(),
            format!("the header of {header_len} bytes runs past the end of the file"),
        ));
    }
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| corrupt(header_start, "the header is not text".into()))?;
    let entry = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}':"))
            .ok_or_else(|| corrupt(header_start, format!("the header has no '{key}'")))?;
        Ok(header[at + key.len() + 3..].trim_start())
    };
    if !(entry("descr")?.starts_with("'|u1'") || entry("descr")?.starts_with("'<u1'")) {
        return Err(corrupt(
            header_start,
            format!("dtype is not uint8 (header: {})", header.trim_end()),
        ));
    }
    if !entry("fortran_order")?.starts_with("False") {
        return Err(corrupt(
            header_start,
            "Fortran-order arrays are not supported".into(),
        ));
    }
    let shape_text = entry("shape")?;
    let tuple = shape_text
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .map(|(inside, _)| inside)
        .ok_or_else(|| corrupt(header_start, "the shape is not a tuple".into()))?;
    let shape = tuple
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| corrupt(header_start, format!("the shape ({tuple}) is not numbers")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .ok_or_else(|| corrupt(header_start, format!("the shape {shape:?} overflows")))?;
    if bytes.len() - data_start != count {
        return Err(corrupt(
            data_start,
            format!(
                "shape {shape:?} needs {count} bytes of data but the file holds {}",
                bytes.len() - data_start
            ),
        ));
    }
    Ok((shape, bytes[data_start..].to_vec()))
}
