//! A folder of images (JPEG, PNG, WebP) as a dataset.
//!
//! Every `*.jpg`, `*.jpeg`, `*.png` and `*.webp` file (extension case-insensitive) in the folder or
//! any folder below it is loaded, sorted by path; other files are ignored, and so are files and
//! folders whose names start with `.` (hidden, e.g. macOS `._*` resource forks). The format is taken
//! from the file's first bytes, not its name. Each image is decoded by the `image` crate to 8-bit
//! RGB (grey replicated to R = G = B, alpha dropped, 16 bits rounded to 8, palettes expanded, EXIF
//! orientation applied), cut to a centred square ([`Crop`]), and resized to `size × size` with the
//! `image` crate's antialiased triangle filter ([`RESIZE_FILTER`]). Files are decoded in parallel on
//! every core; the result does not depend on the number of threads.

use super::{ImageDataset, Pixels};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The file extensions read (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The most memory one image's decoder may allocate (its output included): 128 MiB, e.g. an
/// 8-bit RGB image of 44 megapixels. Larger files are refused with a message instead of exhausting
/// memory on a corrupt header.
pub const MAX_DECODE_BYTES: u64 = 128 << 20;

/// The resize filter: a triangle (tent) whose support is widened by the shrink factor, i.e. a
/// linear interpolation when growing and an antialiased average when shrinking — what PIL's
/// `BILINEAR` and torchvision's `Resize` (the usual CelebA-64 pipeline) compute. Measured on
/// 140 → 64 (`tests/image_folder.rs`, `decode_speed_and_resize_filters`): a grating above the output's
/// Nyquist frequency keeps 12% of its amplitude (area averaging: 28%, Catmull–Rom: 9%), one at half
/// of it 81% (area: 88%, Catmull–Rom: 94%); it is about as fast as the area average (Catmull–Rom
/// takes about 1.4× as long and rings). Within 1 level of PIL 13's `BILINEAR` (measured, 178×218 →
/// crop 140 or 108 → 64).
pub const RESIZE_FILTER: image::imageops::FilterType = image::imageops::FilterType::Triangle;

/// Images handed to a decoding thread at a time.
const CHUNK: usize = 16;

/// How an image is cut to a square before it is resized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Crop {
    /// The centred square of the short side (`min(width, height)` pixels).
    #[default]
    ShortSide,
    /// The centred `S × S` square (CelebA-64 uses 140 or 108 of its 178×218 images); an image
    /// narrower or shorter than `S` is an error.
    Centre(usize),
}

impl Crop {
    /// Parses the trainer's `--crop`: `center:S` (or `centre:S`) with `S ≥ 1`, or `short-side`.
    pub fn parse(spec: &str) -> Result<Crop> {
        let error = || Error::Config {
            field: "--crop".into(),
            detail: format!(
                "`{spec}` is not `center:S` (a centred S×S crop, S ≥ 1 pixels, e.g. center:140) \
                 or `short-side`"
            ),
        };
        if spec.eq_ignore_ascii_case("short-side") {
            return Ok(Crop::ShortSide);
        }
        let (kind, side) = spec.split_once(':').ok_or_else(error)?;
        if !(kind.eq_ignore_ascii_case("center") || kind.eq_ignore_ascii_case("centre")) {
            return Err(error());
        }
        match side.parse::<usize>() {
            Ok(s) if s >= 1 => Ok(Crop::Centre(s)),
            _ => Err(error()),
        }
    }

    /// The crop of a `width × height` image: `(x0, y0, side)`, centred with offsets
    /// `⌊(width − side)/2⌋, ⌊(height − side)/2⌋`; `None` if the image is smaller than the crop.
    pub fn window(self, width: usize, height: usize) -> Option<(usize, usize, usize)> {
        let side = match self {
            Crop::ShortSide => width.min(height),
            Crop::Centre(s) => s,
        };
        (side <= width && side <= height).then(|| ((width - side) / 2, (height - side) / 2, side))
    }
}

impl std::fmt::Display for Crop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Crop::ShortSide => write!(f, "short-side"),
            Crop::Centre(s) => write!(f, "center:{s}"),
        }
    }
}

/// Loads every image below `dir` as `size × size` RGB, cut by `crop`, in [`image_files_in`]'s order.
///
/// Errors: the folder holds no image (naming the folder); a file fails to decode ([`Error::Data`]
/// naming it; when several do, the first in sorted order); an image is smaller than the crop, or its
/// crop is below `size / 2` (naming the file and its dimensions) — upscaling more than 2× would mostly
/// train on blur.
pub fn load_image_folder(dir: &Path, size: usize, crop: Crop) -> Result<ImageDataset> {
    check_request(size, crop)?;
    let files = image_files_in(dir)?;
    let mut images = pixel_buffer(files.len(), size * size * 3)?;
    decode_files_into(&files, size, crop, &mut images)?;
    Ok(ImageDataset {
        images: images.into(),
        len: files.len(),
        size,
        channels: 3,
        source: dir.display().to_string(),
    })
}

/// Refuses a request that no image could satisfy, before anything is decoded: a size of 0, or a
/// `--crop center:S` that would be upscaled more than 2× to `size`.
pub(crate) fn check_request(size: usize, crop: Crop) -> Result<()> {
    if size == 0 {
        return Err(Error::Config {
            field: "size".into(),
            detail: "the image size must be at least 1 pixel".into(),
        });
    }
    if let Crop::Centre(side) = crop {
        check_upscale(
            side,
            size,
            || format!("--crop {crop}"),
            "use a larger crop or train at a smaller size",
        )?;
    }
    Ok(())
}

/// A zeroed buffer for `n` images of `image_len` bytes, or an error saying how much memory that is.
pub(crate) fn pixel_buffer(n: usize, image_len: usize) -> Result<Vec<u8>> {
    let bytes = n.saturating_mul(image_len);
    let mut images = Vec::new();
    images.try_reserve_exact(bytes).map_err(|_| {
        Error::Other(format!(
            "{n} images of {image_len} bytes need {:.1} GB of memory, more than can be allocated; \
             keep the decode cache on (it is written and read through a memory map), train at a \
             smaller size or on fewer images",
            bytes as f64 / 1e9
        ))
    })?;
    images.resize(bytes, 0u8);
    Ok(images)
}

/// Runs `decode(item, out)` for every item into consecutive `image_len`-byte slices of `images`
/// on every core: chunks of [`CHUNK`] items are handed out in order, so the result does not depend
/// on the thread count. A thread stops at the first failure it can see, so every item before the
/// earliest failing one is decoded and that one's error is returned.
pub(crate) fn decode_in_order_into<T: Sync>(
    items: &[T],
    image_len: usize,
    images: &mut [u8],
    decode: impl Fn(&T, &mut [u8]) -> Result<()> + Sync,
) -> Result<()> {
    debug_assert_eq!(images.len(), items.len() * image_len);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().div_ceil(CHUNK))
        .max(1);
    let work = Mutex::new(
        items
            .chunks(CHUNK)
            .zip(images.chunks_mut(CHUNK * image_len))
            .enumerate(),
    );
    let first_failure = AtomicUsize::new(usize::MAX);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let next = work.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((chunk, (items, pixels))) = next else {
                        return;
                    };
                    for (k, (item, out)) in items
                        .iter()
                        .zip(pixels.chunks_exact_mut(image_len))
                        .enumerate()
                    {
                        let index = chunk * CHUNK + k;
                        if index > first_failure.load(Ordering::Relaxed) {
                            return;
                        }
                        if let Err(e) = decode(item, out) {
                            first_failure.fetch_min(index, Ordering::Relaxed);
                            failures
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((index, e));
                            return;
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    match failures.into_iter().min_by_key(|(index, _)| *index) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Every file of `files`, decoded, cropped and resized, into consecutive images of `images`.
fn decode_files_into(files: &[PathBuf], size: usize, crop: Crop, images: &mut [u8]) -> Result<()> {
    decode_in_order_into(files, size * size * 3, images, |file, out| {
        load_image(file, size, crop, out)
    })
}

/// Decodes `file`, crops it and resizes it into `out` (`size · size · 3` bytes).
fn load_image(file: &Path, size: usize, crop: Crop, out: &mut [u8]) -> Result<()> {
    let rgb = read_rgb(file)?;
    crop_and_resize(&rgb, &file.display().to_string(), size, crop, out)
}

/// Cuts `rgb` to its [`Crop::window`] and resizes that square to `size × size` with
/// [`RESIZE_FILTER`] into `out` (`size · size · 3` bytes). An image smaller than the crop, or whose
/// crop would be upscaled more than 2×, is an error naming the image as `name`.
pub(crate) fn crop_and_resize(
    rgb: &image::RgbImage,
    name: &str,
    size: usize,
    crop: Crop,
    out: &mut [u8],
) -> Result<()> {
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let Some((x0, y0, side)) = crop.window(width, height) else {
        return Err(Error::Other(format!(
            "{name}: image is {width}×{height}, smaller than the {crop} crop; remove it or use a \
             smaller --crop"
        )));
    };
    check_upscale(
        side,
        size,
        || format!("{name}: image is {width}×{height}"),
        "remove it or train at a smaller size",
    )?;
    let (x0, y0, side) = (x0 as u32, y0 as u32, side as u32);
    let square = image::imageops::crop_imm(rgb, x0, y0, side, side).to_image();
    if side as usize == size {
        out.copy_from_slice(square.as_raw());
    } else {
        let resized = image::imageops::resize(&square, size as u32, size as u32, RESIZE_FILTER);
        out.copy_from_slice(resized.as_raw());
    }
    Ok(())
}

/// Refuses a crop of `side` pixels resized up to `size` by more than 2×; `what` names the crop in
/// the message, `remedy` says what to do.
fn check_upscale(
    side: usize,
    size: usize,
    what: impl FnOnce() -> String,
    remedy: &str,
) -> Result<()> {
    if side * 2 >= size {
        return Ok(());
    }
    Err(Error::Other(format!(
        "{}, too small for {size}×{size} training (the square cut from it, {side}×{side}, must be at \
         least {} pixels: upscaling more than 2× trains on blur); {remedy}",
        what(),
        size.div_ceil(2)
    )))
}

/// Whether `path`'s extension is one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().is_some_and(|ext| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| ext.eq_ignore_ascii_case(known))
    })
}

/// The image files (extensions [`IMAGE_EXTENSIONS`]) in `dir` and every folder below it, sorted by
/// path; entries whose names start with `.` are skipped, symbolic links followed (each folder once).
pub fn image_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let io_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    let mut files = Vec::new();
    let mut others = 0usize;
    let mut visited = HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        if let Ok(canonical) = folder.canonicalize()
            && !visited.insert(canonical)
        {
            continue; // reached again through a link
        }
        for entry in std::fs::read_dir(&folder).map_err(io_error(&folder))? {
            let entry = entry.map_err(io_error(&folder))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // follows links; a dangling link is neither and is skipped with the other entries
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() && has_image_extension(&path) {
                files.push(path);
            } else {
                others += 1;
            }
        }
    }
    if files.is_empty() {
        return Err(Error::Other(format!(
            "no .png/.jpg/.jpeg/.webp image in {} (searched recursively; {others} other entries); \
             point --data at a folder of images, a CIFAR-10 binary batch, an IDX file, or use \
             `synthetic`",
            dir.display()
        )));
    }
    files.sort();
    Ok(files)
}

/// Decodes the JPEG, PNG or WebP image at `path` to `(width, height, RGB8 pixels row-major)`.
///
/// The format comes from the first bytes. A file that is none of the three or fails to decode is
/// an [`Error::Data`] naming it: offset 0 when the format is not recognised, otherwise how far the
/// decoder had read (decoders read ahead, so the bad byte is at or before that offset).
pub fn decode_image_rgb8(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let rgb = read_rgb(path)?;
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok((width, height, rgb.into_raw()))
}

/// Reads the file at `path` and decodes it to RGB8 ([`decode_rgb`]); errors name the file.
fn read_rgb(path: &Path) -> Result<image::RgbImage> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    decode_rgb(&bytes, &name)
}

/// [`decode_image_rgb8`] of a file's bytes; `name` is the file named in errors.
pub(crate) fn decode_rgb(bytes: &[u8], name: &str) -> Result<image::RgbImage> {
    use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
    let error = |offset: u64, detail: String| Error::Data {
        path: name.into(),
        offset,
        detail,
    };
    let mut cursor = Cursor::new(bytes);
    let reader = ImageReader::new(&mut cursor)
        .with_guessed_format()
        .map_err(|e| error(0, format!("cannot read the file: {e}")))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => f,
        other => {
            let what = other.map_or(
                "its first bytes match no known image signature".into(),
                |f| format!("it holds a {f:?} image"),
            );
            return Err(error(
                0,
                format!("not a JPEG, PNG or WebP file ({what}); convert it or remove it"),
            ));
        }
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = reader;
    reader.limits(limits);
    let too_large = |width: u32, height: u32| {
        format!(
            "its header says {width}×{height} pixels: decoding it would need more than the {} MiB \
             allowed; shrink it or remove it",
            MAX_DECODE_BYTES >> 20
        )
    };
    let cannot = |e: image::ImageError| format!("cannot decode {format:?}: {e}");
    // a decoder bug must not take the whole dataset (and the other threads) down: it is this file's error
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut decoder = reader.into_decoder().map_err(cannot)?;
        let (width, height) = decoder.dimensions();
        // not every decoder honours `max_alloc` (the JPEG one allocates what its header claims)
        if decoder.total_bytes() > MAX_DECODE_BYTES {
            return Err(too_large(width, height));
        }
        let orientation = decoder.orientation().map_err(cannot)?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
            image::ImageError::Limits(_) => too_large(width, height),
            other => cannot(other),
        })?;
        image.apply_orientation(orientation);
        Ok(image)
    }))
    .map_err(|_| {
        error(
            0,
            format!("the {format:?} decoder panicked on this file; remove it"),
        )
    })?;
    let image = decoded.map_err(|detail| error(cursor.position(), detail))?;
    Ok(image.into_rgb8())
}

/// What [`load_image_folder_cached`] did with its cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeCache {
    /// The images were read from this file: nothing was decoded.
    Reused(PathBuf),
    /// The images were decoded and written to this file for later runs.
    Written(PathBuf),
    /// The images were decoded; the cache file could not be written (why), and the run goes on.
    NotWritten(String),
}

/// First bytes of a decode-cache file, then the format version (u32), the key (u64), the number of
/// images, their size and channels (u64 each, little-endian), then the pixels (NHWC, u8).
const CACHE_MAGIC: &[u8; 16] = b"vitgan-decoded\0\0";
const CACHE_VERSION: u32 = 1;
const CACHE_HEADER: usize = 16 + 4 + 8 * 4;

/// FNV-1a (64-bit) of `bytes`, continuing from `h`.
fn fnv1a64(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The start of a cache key: FNV-1a over the format version, `source`'s canonical path, the size and
/// the crop. [`stamp_file`] adds the files it was read from.
pub(crate) fn cache_key_start(source: &Path, size: usize, crop: Crop) -> u64 {
    let canonical = source
        .canonicalize()
        .unwrap_or_else(|_| source.to_path_buf());
    let h = fnv1a64(0xCBF2_9CE4_8422_2325, &CACHE_VERSION.to_le_bytes());
    let h = fnv1a64(h, canonical.to_string_lossy().as_bytes());
    fnv1a64(h, format!("\0{size}\0{crop}\0").as_bytes())
}

/// Cache key `h` continued with `file`'s path, length and modification time, so that replacing or
/// touching the file gives another key.
pub(crate) fn stamp_file(h: u64, file: &Path) -> Result<u64> {
    let meta = std::fs::metadata(file).map_err(|source| Error::Io {
        path: file.display().to_string(),
        source,
    })?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let h = fnv1a64(h, file.to_string_lossy().as_bytes());
    let h = fnv1a64(h, &meta.len().to_le_bytes());
    Ok(fnv1a64(h, &modified.to_le_bytes()))
}

/// The cache key of a folder at `size` and `crop`: [`cache_key_start`] of the folder, then every
/// image file's [`stamp_file`], so that adding, removing, replacing or touching a file (or asking
/// for another size or crop) gives another key.
fn cache_key(dir: &Path, files: &[PathBuf], size: usize, crop: Crop) -> Result<u64> {
    files
        .iter()
        .try_fold(cache_key_start(dir, size, crop), |h, file| {
            stamp_file(h, file)
        })
}

/// The images of a cache file, mapped, when it is one for `key` and complete; `None` otherwise (a
/// missing, truncated, foreign or stale file is decoded again and rewritten, never an error).
fn read_cache(path: &Path, key: u64, len: usize, size: usize) -> Option<Pixels> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: cache files are only ever created whole under a temporary name and renamed into
    // place (never written in place), so the mapped file does not change while it is mapped
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let (header, pixels) = map.split_at_checked(CACHE_HEADER)?;
    let u64_at = |i: usize| u64::from_le_bytes(header[20 + 8 * i..28 + 8 * i].try_into().unwrap());
    let fits = &header[..16] == CACHE_MAGIC
        && header[16..20] == CACHE_VERSION.to_le_bytes()
        && u64_at(0) == key
        && u64_at(1) == len as u64
        && u64_at(2) == size as u64
        && u64_at(3) == 3
        && pixels.len() == len * size * size * 3;
    fits.then(|| Pixels::Mapped {
        map: std::sync::Arc::new(map),
        offset: CACHE_HEADER,
    })
}

/// `<cache_dir>/<key>.u8` when it holds `len` RGB images of `size × size` for `key`; otherwise
/// `decode(pixels)` fills the images straight into a new cache file for later runs, written through
/// a memory map (so a dataset larger than memory never has to fit in it) under a temporary name and
/// renamed when complete. Either way the images are that file, mapped. A cache file that cannot be
/// created is reported in the result, not an error: the images are then decoded into memory.
/// `source` names the dataset in the result.
pub(crate) fn through_cache(
    cache_dir: &Path,
    key: u64,
    len: usize,
    size: usize,
    source: &Path,
    decode: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<(ImageDataset, DecodeCache)> {
    let path = cache_dir.join(format!("{key:016x}.u8"));
    let dataset = |images: Pixels| ImageDataset {
        images,
        len,
        size,
        channels: 3,
        source: source.display().to_string(),
    };
    if size > 0
        && let Some(images) = read_cache(&path, key, len, size)
    {
        return Ok((dataset(images), DecodeCache::Reused(path)));
    }
    let bytes = len.saturating_mul(size * size * 3);
    let tmp = crate::io::temp_path_for(&path);
    let mapped = crate::io::create_parent_dir(&path)
        .map_err(|e| e.to_string())
        .and_then(|()| new_cache_file(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display())));
    let mut map = match mapped {
        Ok(map) => map,
        Err(why) => {
            let mut images = pixel_buffer(len, size * size * 3)?;
            decode(&mut images)?;
            return Ok((dataset(images.into()), DecodeCache::NotWritten(why)));
        }
    };
    let header = cache_header(key, len, size);
    map[..CACHE_HEADER].copy_from_slice(&header);
    if let Err(e) = decode(&mut map[CACHE_HEADER..]) {
        drop(map);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let flushed = map.flush();
    drop(map);
    let committed = flushed
        .map_err(|e| format!("{}: {e}", tmp.display()))
        .and_then(|()| crate::io::commit_temp_file(&tmp, &path).map_err(|e| e.to_string()));
    let outcome = match committed {
        Ok(()) => DecodeCache::Written(path.clone()),
        Err(why) => DecodeCache::NotWritten(why),
    };
    // the complete file, mapped read-only (or, if it could not be committed, the temporary one)
    let file = if matches!(outcome, DecodeCache::Written(_)) {
        path
    } else {
        tmp.clone()
    };
    let images = read_cache(&file, key, len, size).ok_or_else(|| {
        Error::Other(format!(
            "the decode cache {} was written but cannot be read back; remove it, or pass \
             --decode-cache off",
            file.display()
        ))
    })?;
    if file == tmp {
        // unlinking a mapped file keeps its pages until the map goes
        let _ = std::fs::remove_file(&tmp);
    }
    Ok((dataset(images), outcome))
}

/// A new file of `CACHE_HEADER + bytes` bytes at `tmp`, mapped for writing.
fn new_cache_file(tmp: &Path, bytes: usize) -> std::io::Result<memmap2::MmapMut> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    file.set_len((CACHE_HEADER + bytes) as u64)?;
    // SAFETY: the file was just created under a temporary name that only this process writes
    unsafe { memmap2::MmapMut::map_mut(&file) }
}

/// The first [`CACHE_HEADER`] bytes of a cache file (see [`CACHE_MAGIC`]).
fn cache_header(key: u64, len: usize, size: usize) -> [u8; CACHE_HEADER] {
    let mut h = [0u8; CACHE_HEADER];
    h[..16].copy_from_slice(CACHE_MAGIC);
    h[16..20].copy_from_slice(&CACHE_VERSION.to_le_bytes());
    for (i, v) in [key, len as u64, size as u64, 3].into_iter().enumerate() {
        h[20 + 8 * i..28 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    h
}

/// [`load_image_folder`] through a cache of the decoded pixels in `cache_dir`
/// (`<cache_dir>/<key>.u8`, key from [`cache_key`]): a later run over the same files at the same size
/// and crop reads that file instead of decoding (CelebA's 202,599 JPEGs at 64×64: a 2.5 GB read
/// instead of minutes of decoding). A cache that cannot be written is reported in the result, not an
/// error.
pub fn load_image_folder_cached(
    dir: &Path,
    size: usize,
    crop: Crop,
    cache_dir: &Path,
) -> Result<(ImageDataset, DecodeCache)> {
    let files = image_files_in(dir)?;
    let key = cache_key(dir, &files, size, crop)?;
    check_request(size, crop)?;
    through_cache(cache_dir, key, files.len(), size, dir, |images| {
        decode_files_into(&files, size, crop, images)
    })
}
