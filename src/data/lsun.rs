//! LSUN as distributed: the LMDB export, read where it was unzipped.
//!
//! LSUN's `download.py -c <category>` fetches `<category>_train_lmdb.zip` (and `_val_`); unzipped it
//! is a folder `<category>_train_lmdb/` holding `data.mdb` (an LMDB data file) and `lock.mdb` (its
//! lock file). `data.mdb` holds one unnamed LMDB database: one entry per image, the key its id
//! (ASCII hex), the value the encoded image (WebP in the current export, JPEG in older ones; any
//! JPEG, PNG or WebP is read, the format taken from the value's first bytes).
//!
//! The entries are read in the database's key order (bytewise, the same on every run) and each value
//! goes through the image-folder path ([`super::image_folder`]): decoded to 8-bit RGB, cut to a
//! square by [`Crop`], resized with [`super::image_folder::RESIZE_FILTER`], in parallel on every core
//! with the result independent of the thread count, optionally through the same decode cache
//! (`<cache_dir>/<key>.u8`, the key covering `data.mdb`'s path, length and modification time, the
//! size and the crop).
//!
//! The file is opened read-only without LMDB's lock file (see [`open_environment`]): nothing is
//! written next to it, so a read-only copy of the export works.

use super::ImageDataset;
use super::image_folder::{
    DecodeCache, cache_key_start, check_request, crop_and_resize, decode_in_order_into, decode_rgb,
    image_files_in, pixel_buffer, stamp_file, through_cache,
};
use crate::data::Crop;
use crate::error::{Error, Result};
use heed::types::Bytes;
use std::path::{Path, PathBuf};

/// The LMDB data file of an export folder.
pub const DATA_FILE: &str = "data.mdb";

/// LMDB's lock file, beside [`DATA_FILE`] (not used here).
pub const LOCK_FILE: &str = "lock.mdb";

/// The `data.mdb` that `path` names: `path` itself when it is a file called `data.mdb`, or
/// `path/data.mdb` when `path` is a folder holding one; `None` otherwise.
pub fn data_file_of(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return (path.file_name()? == DATA_FILE).then(|| path.to_path_buf());
    }
    let file = path.join(DATA_FILE);
    file.is_file().then_some(file)
}

/// An error saying what to do when `path` looks like an LSUN download that is not ready to read: a
/// `.zip` archive (unzip it), a folder with `lock.mdb` or named `*_lmdb` but no `data.mdb` (the
/// unzip did not finish), LMDB's lock file itself, or a folder with no image that holds unzipped
/// exports or their archives (point `--data` at one). `None` when it does not look like one.
pub fn not_ready(path: &Path) -> Option<Error> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file_name.to_lowercase();
    let error = |detail: String| {
        Some(Error::Config {
            field: "--data".into(),
            detail: format!("{}: {detail}", path.display()),
        })
    };
    if path.is_file() {
        return if name.ends_with(".zip") {
            let folder = &file_name[..file_name.len() - 4];
            error(format!(
                "a zip archive (LSUN's download.py fetches <category>_train_lmdb.zip); unzip it \
                 (`unzip {file_name}`) and give the folder it makes (e.g. --data {folder})"
            ))
        } else if name == LOCK_FILE {
            error(format!(
                "LMDB's lock file; give the {DATA_FILE} beside it, or the folder holding both"
            ))
        } else {
            None
        };
    }
    if !path.is_dir() || path.join(DATA_FILE).exists() {
        return None;
    }
    if path.join(LOCK_FILE).exists() || name.ends_with("_lmdb") {
        return error(format!(
            "an LMDB export folder without its {DATA_FILE} (the data file, gigabytes for LSUN); \
             the download or unzip did not finish: unzip the archive again (`unzip \
             <category>_train_lmdb.zip`)"
        ));
    }
    let mut exports: Vec<String> = std::fs::read_dir(path)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let n = n.to_lowercase();
            n.ends_with("_lmdb") || n.ends_with("_lmdb.zip")
        })
        .collect();
    if exports.is_empty() || image_files_in(path).is_ok() {
        return None;
    }
    exports.sort();
    error(format!(
        "holds no image but LSUN exports ({}); give one of them to --data, unzipped (e.g. --data \
         {})",
        exports.join(", "),
        path.join(exports[0].trim_end_matches(".zip")).display()
    ))
}

/// Opens the LMDB environment of `data_file` for reading only.
///
/// Flags: `READ_ONLY` (the file is opened and mapped read-only; nothing can be written) and
/// `NO_LOCK` (the lock file is neither opened nor created: it coordinates readers with a writer, and
/// an export is not written while it is read for training), with `NO_SUB_DIR` so the path opened is
/// the data file itself, whatever the folder holds. No map size is set: LMDB maps what the file's
/// header records.
pub fn open_environment(data_file: &Path) -> Result<heed::Env> {
    let mut options = heed::EnvOpenOptions::new();
    // SAFETY: LMDB memory-maps the file, and the slices it hands out are only valid while nothing
    // rewrites those pages. The lock file is what keeps an LMDB writer from reusing pages a reader
    // still sees; without it (`NO_LOCK`) this relies on no one writing the export while it is read
    // — a download is written once, and this process opens it `READ_ONLY`.
    let opened = unsafe {
        options.flags(
            heed::EnvFlags::READ_ONLY | heed::EnvFlags::NO_LOCK | heed::EnvFlags::NO_SUB_DIR,
        );
        options.open(data_file)
    };
    opened.map_err(|e| {
        let detail = match std::fs::metadata(data_file) {
            Ok(meta) if meta.len() == 0 => "the file is empty (0 bytes)".to_string(),
            _ => format!("LMDB cannot open it ({e})"),
        };
        Error::Data {
            path: data_file.display().to_string(),
            offset: 0,
            detail: format!(
                "{detail}; it should be the {DATA_FILE} of an unzipped LSUN export: unzip the \
                 archive again"
            ),
        }
    })
}

/// An LMDB export opened for reading: its folder, its data file, the environment and the number of
/// entries of its unnamed database.
struct Export {
    folder: PathBuf,
    data_file: PathBuf,
    env: heed::Env,
    len: usize,
}

impl Export {
    /// Opens the export `path` names (a folder holding `data.mdb`, or that file); an export with no
    /// entry is an error.
    fn open(path: &Path) -> Result<Export> {
        let data_file = data_file_of(path).ok_or_else(|| {
            not_ready(path).unwrap_or_else(|| Error::Config {
                field: "--data".into(),
                detail: format!(
                    "{}: no {DATA_FILE} there; give an unzipped LSUN export folder (e.g. \
                     bedroom_train_lmdb) or its {DATA_FILE}",
                    path.display()
                ),
            })
        })?;
        let folder = data_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let env = open_environment(&data_file)?;
        let len = env.unnamed_database_stat().entries;
        if len == 0 {
            return Err(Error::Other(format!(
                "{}: the LMDB database holds no entries (no image); give a complete LSUN export \
                 (unzip the archive again if this one should have images)",
                data_file.display()
            )));
        }
        Ok(Export {
            folder,
            data_file,
            env,
            len,
        })
    }

    /// An LMDB failure while reading the export (`doing` says what was being done).
    fn lmdb_error(&self, doing: &'static str) -> impl Fn(heed::Error) -> Error + '_ {
        move |e| Error::Data {
            path: self.data_file.display().to_string(),
            offset: 0,
            detail: format!("LMDB failed to {doing}: {e}; unzip the archive again"),
        }
    }

    /// Every entry decoded, cropped and resized to `size × size` RGB, in key order.
    fn decode(&self, size: usize, crop: Crop) -> Result<ImageDataset> {
        check_request(size, crop)?;
        let mut images = pixel_buffer(self.len, size * size * 3)?;
        self.decode_into(size, crop, &mut images)?;
        Ok(ImageDataset {
            images: images.into(),
            len: self.len,
            size,
            channels: 3,
            source: self.folder.display().to_string(),
        })
    }

    /// [`Export::decode`] into `images` (`len · size · size · 3` bytes, e.g. a mapped cache file).
    fn decode_into(&self, size: usize, crop: Crop, images: &mut [u8]) -> Result<()> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(self.lmdb_error("begin a read transaction"))?;
        let database: heed::Database<Bytes, Bytes> = self
            .env
            .open_databases_and_commit(rtxn, |opener, rtxn| {
                opener
                    .open_database(rtxn, None)
                    .map(heed::CommitOrAbort::<_, ()>::Commit)
            })
            .map_err(self.lmdb_error("open the unnamed database"))?
            .unwrap_commit()
            .ok_or_else(|| Error::Data {
                path: self.data_file.display().to_string(),
                offset: 0,
                detail: "LMDB found no unnamed database in it; unzip the archive again".into(),
            })?;
        let rtxn = self
            .env
            .read_txn()
            .map_err(self.lmdb_error("begin a read transaction"))?;
        // keys and values are slices of the memory map, valid while `rtxn` lives
        let entries = database
            .iter(&rtxn)
            .and_then(|entries| entries.collect::<heed::Result<Vec<(&[u8], &[u8])>>>())
            .map_err(self.lmdb_error("read the entries"))?;
        let data_file = self.data_file.display();
        if entries.len() != self.len {
            return Err(Error::Data {
                path: self.data_file.display().to_string(),
                offset: 0,
                detail: format!(
                    "LMDB counted {} entries but {} were read; unzip the archive again",
                    self.len,
                    entries.len()
                ),
            });
        }
        decode_in_order_into(&entries, size * size * 3, images, |(key, value), out| {
            let name = format!("{data_file} entry {}", key_text(key));
            let rgb = decode_rgb(value, &name).map_err(|e| match e {
                Error::Data {
                    path,
                    offset,
                    detail,
                } => Error::Data {
                    path,
                    offset,
                    detail: format!(
                        "{detail} (an export whose images do not decode is damaged: download and \
                         unzip it again)"
                    ),
                },
                other => other,
            })?;
            crop_and_resize(&rgb, &name, size, crop, out)
        })
    }
}

/// A key as it is named in messages: the text when it is printable ASCII (LSUN's hex ids), else
/// `0x` and its bytes in hex.
fn key_text(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| b.is_ascii_graphic()) {
        format!("`{}`", String::from_utf8_lossy(key))
    } else {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }
}

/// Loads every image of the LSUN export `path` names (its folder or its `data.mdb`) as
/// `size × size` RGB, cut by `crop`, in key order.
///
/// Errors: no `data.mdb` ([`not_ready`] says what to do when the path looks like an LSUN download);
/// a file LMDB cannot open; a database with no entry; a value that does not decode ([`Error::Data`]
/// naming its key; when several do, the first in key order); an image smaller than the crop or
/// upscaled more than 2×, as for image folders.
pub fn load_lsun(path: &Path, size: usize, crop: Crop) -> Result<ImageDataset> {
    Export::open(path)?.decode(size, crop)
}

/// [`load_lsun`] through the decode cache in `cache_dir` (as
/// [`super::image_folder::load_image_folder_cached`]); the key covers `data.mdb`'s canonical path,
/// length and modification time, the size and the crop, so a replaced or touched export decodes
/// again.
pub fn load_lsun_cached(
    path: &Path,
    size: usize,
    crop: Crop,
    cache_dir: &Path,
) -> Result<(ImageDataset, DecodeCache)> {
    let export = Export::open(path)?;
    let canonical = export
        .data_file
        .canonicalize()
        .unwrap_or_else(|_| export.data_file.clone());
    let key = stamp_file(cache_key_start(&canonical, size, crop), &canonical)?;
    check_request(size, crop)?;
    through_cache(cache_dir, key, export.len, size, &export.folder, |images| {
        export.decode_into(size, crop, images)
    })
}
