//! Files the trainer writes and reads: safetensors checkpoints, PNG images and sample grids, SVG
//! plots of the run, `.npy` arrays of generated images.
//!
//! Every writer is atomic: it writes `<path>.tmp` in the same directory, fsyncs it, and renames it
//! over `<path>`, so a crash leaves either the old file or the new one, never a torn one.

pub mod checkpoint;
pub mod image;
pub mod npy;
pub mod plot;

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `<path>.tmp`: the temporary sibling an atomic write goes through.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `path`'s parent directory (and its parents) if missing.
pub(crate) fn create_parent_dir(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(io_error(parent))
        }
        _ => Ok(()),
    }
}

/// Fsyncs the finished temporary file `tmp` and renames it to `path`, then fsyncs the directory
/// (best effort: not every platform can open a directory). Removes `tmp` on failure.
pub(crate) fn commit_temp_file(tmp: &Path, path: &Path) -> Result<()> {
    let result = File::options()
        .write(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_error(tmp))
        .and_then(|()| std::fs::rename(tmp, path).map_err(io_error(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
        return result;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes `path` atomically: `write` fills `<path>.tmp` (parent directory created if missing),
/// which is then fsynced and renamed over `path`.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    create_parent_dir(path)?;
    let tmp = temp_path_for(path);
    let written = File::create(&tmp).and_then(|file| {
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        writer.flush()
    });
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(&tmp)(source));
    }
    commit_temp_file(&tmp, path)
}
