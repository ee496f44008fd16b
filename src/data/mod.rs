//! Training images on the host: readers for CIFAR-10 binaries, IDX files (MNIST, Fashion-MNIST),
//! image folders (JPEG, PNG, WebP) and LSUN's LMDB exports, a built-in synthetic dataset, cropping,
//! resizing, channel conversion, and seeded batching.
//!
//! Storage is `u8` NHWC (`images[((i·H + y)·W + x)·C + c]`, square images `H = W = size`); the model
//! sees NHWC `f32` in [-1, 1] with `value = pixel / 127.5 − 1`.

pub mod cifar;
pub mod idx;
pub mod image_folder;
pub mod lsun;
pub mod synthetic;

use crate::error::{Error, Result};
pub use image_folder::Crop;
use image_folder::DecodeCache;
use std::sync::Mutex;

/// The pixel bytes of an [`ImageDataset`]: in memory, or a read-only memory map of a decode-cache
/// file, which the operating system keeps in memory when it fits and pages in as batches read it
/// when it does not (LSUN bedroom at 64×64 is 37 GB).
#[derive(Clone)]
pub enum Pixels {
    Owned(Vec<u8>),
    /// The bytes of a mapped file from `offset` on.
    Mapped {
        map: std::sync::Arc<memmap2::Mmap>,
        offset: usize,
    },
}

impl Pixels {
    /// Whether the bytes are a mapped file rather than memory of their own.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Pixels::Mapped { .. })
    }
}

impl std::ops::Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped { map, offset } => &map[*offset..],
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Self {
        Pixels::Owned(v)
    }
}

impl FromIterator<u8> for Pixels {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        Pixels::Owned(iter.into_iter().collect())
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Pixels) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for Pixels {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

impl PartialEq<[u8]> for Pixels {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "owned" };
        write!(
            f,
            "Pixels({kind}, {} bytes: {:?}",
            self.len(),
            &self[..self.len().min(32)]
        )?;
        f.write_str(if self.len() > 32 { " …)" } else { ")" })
    }
}

/// A set of square images, stored as bytes.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    /// Pixels, `len · size · size · channels` bytes, NHWC.
    pub images: Pixels,
    /// Number of images.
    pub len: usize,
    /// Height and width of every image.
    pub size: usize,
    /// Channels per pixel (3 for RGB).
    pub channels: usize,
    /// Where the images came from (a path or a description), for messages.
    pub source: String,
}

impl ImageDataset {
    /// Values in one image: `size · size · channels`.
    pub fn image_len(&self) -> usize {
        self.size * self.size * self.channels
    }

    /// The bytes of image `i` (HWC).
    ///
    /// # Panics
    /// If `i >= self.len`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len,
            "image {i} of a dataset with {} images",
            self.len
        );
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Writes image `i` to `out` as HWC `f32`, `pixel / 127.5 − 1` ∈ [-1, 1].
    ///
    /// # Panics
    /// If `i >= self.len` or `out.len() != self.image_len()`.
    pub fn get_f32(&self, i: usize, out: &mut [f32]) {
        let pixels = self.image(i);
        assert_eq!(
            out.len(),
            pixels.len(),
            "output slice length must be size·size·channels"
        );
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = p as f32 / 127.5 - 1.0;
        }
    }

    /// The same images at `size × size`: area-average when shrinking, bilinear (pixel centres at
    /// `x + ½`, edges clamped) when growing, a copy when the size is unchanged.
    pub fn resized(&self, size: usize) -> ImageDataset {
        if size == self.size {
            return self.clone();
        }
        let resampler = Resampler::new(self.size, self.size, size, size);
        let mut images = Vec::with_capacity(self.len * size * size * self.channels);
        for i in 0..self.len {
            images.extend(resampler.apply(self.image(i), self.channels));
        }
        ImageDataset {
            images: images.into(),
            len: self.len,
            size,
            channels: self.channels,
            source: self.source.clone(),
        }
    }
}

impl ImageDataset {
    /// The centred `side × side` square of every image (offset `⌊(size − side)/2⌋` on both axes).
    /// A side of 0 or larger than the images is an error.
    pub fn centre_cropped(&self, side: usize) -> Result<ImageDataset> {
        if side == 0 || side > self.size {
            return Err(Error::Config {
                field: "--crop".into(),
                detail: format!(
                    "{}: a center:{side} crop does not fit its {}×{} images",
                    self.source, self.size, self.size
                ),
            });
        }
        if side == self.size {
            return Ok(self.clone());
        }
        let offset = (self.size - side) / 2;
        let row = self.size * self.channels;
        let mut images = Vec::with_capacity(self.len * side * side * self.channels);
        for i in 0..self.len {
            let image = self.image(i);
            for y in offset..offset + side {
                let start = y * row + offset * self.channels;
                images.extend_from_slice(&image[start..start + side * self.channels]);
            }
        }
        Ok(ImageDataset {
            images: images.into(),
            len: self.len,
            size: side,
            channels: self.channels,
            source: self.source.clone(),
        })
    }

    /// The same images with `channels` channels: grey → RGB repeats the value; RGB(A) → grey is the
    /// luma `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601), rounded; RGBA → RGB drops alpha; any other
    /// conversion is an error.
    pub fn with_channels(&self, channels: usize) -> Result<ImageDataset> {
        if channels == self.channels {
            return Ok(self.clone());
        }
        let pixels = self.images.chunks_exact(self.channels);
        let images: Vec<u8> = match (self.channels, channels) {
            (1, c) if c == 3 || c == 4 => pixels
                .flat_map(|p| {
                    let mut v = vec![p[0]; c];
                    if c == 4 {
                        v[3] = 255;
                    }
                    v
                })
                .collect(),
            (3 | 4, 1) => pixels
                .map(|p| {
                    (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
                        .round()
                        .clamp(0.0, 255.0) as u8
                })
                .collect(),
            (4, 3) => pixels.flat_map(|p| [p[0], p[1], p[2]]).collect(),
            (from, to) => {
                return Err(Error::Config {
                    field: "channels".into(),
                    detail: format!(
                        "{}: cannot convert {from}-channel images to {to} channels (1, 3 and 4 \
                         convert)",
                        self.source
                    ),
                });
            }
        };
        Ok(ImageDataset {
            images: images.into(),
            len: self.len,
            size: self.size,
            channels,
            source: self.source.clone(),
        })
    }
}

/// Opens what the trainer's `--data` names, as `size × size × channels` images: `synthetic` (4,096
/// built-in shapes drawn from `seed`), an LSUN LMDB export (a folder holding `data.mdb`, or that
/// file, [`lsun`]), a CIFAR-10 `.bin` file or directory, an IDX image file (MNIST / Fashion-MNIST,
/// `.gz` or not) or a directory holding one, or a folder of JPEG, PNG and WebP images (searched
/// recursively, [`image_folder`]). Images are cut to their short side's centred square, resized
/// (image folders and LSUN with [`image_folder::RESIZE_FILTER`], the others by
/// [`ImageDataset::resized`]) and converted to `channels` ([`ImageDataset::with_channels`]).
pub fn open_dataset(spec: &str, size: usize, channels: usize, seed: u64) -> Result<ImageDataset> {
    open_dataset_cropped(spec, size, channels, seed, Crop::ShortSide)
}

/// [`open_dataset`] with the square cut from each image chosen by `crop` (the trainer's `--crop`):
/// image folders and LSUN crop every decoded image before resizing; the square datasets (CIFAR,
/// IDX, synthetic) are cropped with [`ImageDataset::centre_cropped`], then resized.
pub fn open_dataset_cropped(
    spec: &str,
    size: usize,
    channels: usize,
    seed: u64,
    crop: Crop,
) -> Result<ImageDataset> {
    Ok(open_dataset_cached(spec, size, channels, seed, crop, None)?.0)
}

/// [`open_dataset_cropped`], with image folders and LSUN exports decoded through a cache of decoded
/// pixels in `cache_dir` when one is given ([`image_folder::load_image_folder_cached`],
/// [`lsun::load_lsun_cached`]; the trainer's `--decode-cache`); also returns what was done with the
/// cache (`None` for other datasets, which are binary files read as fast as a cache would be).
pub fn open_dataset_cached(
    spec: &str,
    size: usize,
    channels: usize,
    seed: u64,
    crop: Crop,
    cache_dir: Option<&std::path::Path>,
) -> Result<(ImageDataset, Option<DecodeCache>)> {
    use std::path::Path;
    let mut cache_use = None;
    let (ds, decoded) = if spec == "synthetic" {
        (synthetic::synthetic_shapes(4096, size, seed), false)
    } else {
        let path = Path::new(spec);
        if !path.exists() {
            return Err(Error::Config {
                field: "--data".into(),
                detail: format!(
                    "{spec} does not exist; give a CIFAR-10 .bin file or directory, an IDX file \
                     or directory (MNIST, Fashion-MNIST), a folder of JPEG/PNG/WebP images, an \
                     unzipped LSUN export (a folder holding data.mdb), or `synthetic`"
                ),
            });
        }
        let is_lsun = lsun::data_file_of(path).is_some();
        if !is_lsun && let Some(e) = lsun::not_ready(path) {
            return Err(e);
        }
        let name_has = |p: &Path, s: &str| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(s))
        };
        let is_idx = !is_lsun
            && if path.is_file() {
                name_has(path, "idx3-ubyte")
            } else {
                idx::idx_file_in(path).is_some()
            };
        let is_cifar = !is_lsun
            && !is_idx
            && (path.is_file()
                || std::fs::read_dir(path)
                    .map_err(|e| Error::Io {
                        path: spec.into(),
                        source: e,
                    })?
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".bin")));
        // LSUN exports and image folders are decoded, through the cache when there is one
        type Cached = fn(&Path, usize, Crop, &Path) -> Result<(ImageDataset, DecodeCache)>;
        type Uncached = fn(&Path, usize, Crop) -> Result<ImageDataset>;
        let mut decode = |cached: Cached, uncached: Uncached| match cache_dir {
            Some(cache_dir) => {
                let (ds, used) = cached(path, size, crop, cache_dir)?;
                cache_use = Some(used);
                Ok::<_, Error>((ds, true))
            }
            None => Ok((uncached(path, size, crop)?, true)),
        };
        if is_lsun {
            decode(lsun::load_lsun_cached, lsun::load_lsun)?
        } else if is_idx {
            (idx::load_idx_images(path)?, false)
        } else if is_cifar {
            (cifar::load_cifar10(path)?, false)
        } else {
            decode(
                image_folder::load_image_folder_cached,
                image_folder::load_image_folder,
            )?
        }
    };
    // image folders and LSUN are cropped as they are decoded; the square datasets here
    let ds = match crop {
        Crop::Centre(side) if !decoded => ds.centre_cropped(side)?,
        _ => ds,
    };
    // (a conversion only when needed: all of CelebA at 64×64 is 2.5 GB)
    let ds = if ds.channels != channels {
        ds.with_channels(channels)?
    } else {
        ds
    };
    let ds = if ds.size != size {
        ds.resized(size)
    } else {
        ds
    };
    Ok((ds, cache_use))
}

/// For each output index along one axis, the input indices it reads and their weights (summing to 1).
///
/// Shrinking: output cell `x` covers input interval `[x·s, (x+1)·s)` with `s = in/out`; each input
/// pixel is weighted by its overlap with that interval divided by `s` (area average).
/// Growing: bilinear at `u = (x + ½)·in/out − ½`, clamped to `[0, in − 1]`.
fn axis_weights(in_len: usize, out_len: usize) -> Vec<Vec<(usize, f32)>> {
    if in_len == 0 {
        return vec![Vec::new(); out_len]; // nothing to read: zeros
    }
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|x| {
            if in_len == out_len {
                vec![(x, 1.0)]
            } else if out_len < in_len {
                let lo = x as f64 * scale;
                let hi = (x + 1) as f64 * scale;
                let first = lo.floor() as usize;
                let last = (hi.ceil() as usize).min(in_len);
                (first..last)
                    .map(|i| {
                        let overlap = hi.min(i as f64 + 1.0) - lo.max(i as f64);
                        (i, (overlap / scale) as f32)
                    })
                    .filter(|&(_, w)| w > 0.0)
                    .collect()
            } else {
                let u = ((x as f64 + 0.5) * scale - 0.5).clamp(0.0, (in_len - 1) as f64);
                let i0 = u.floor() as usize;
                let i1 = (i0 + 1).min(in_len - 1);
                let f = (u - i0 as f64) as f32;
                vec![(i0, 1.0 - f), (i1, f)]
            }
        })
        .collect()
}

/// Resamples HWC `u8` images of `width × height` to `out_width × out_height`, separably (rows, then
/// columns) with precomputed [`axis_weights`]; results are rounded to the nearest byte.
struct Resampler {
    width: usize,
    height: usize,
    columns: Vec<Vec<(usize, f32)>>,
    rows: Vec<Vec<(usize, f32)>>,
}

impl Resampler {
    fn new(width: usize, height: usize, out_width: usize, out_height: usize) -> Self {
        Resampler {
            width,
            height,
            columns: axis_weights(width, out_width),
            rows: axis_weights(height, out_height),
        }
    }

    fn apply(&self, pixels: &[u8], channels: usize) -> Vec<u8> {
        let (width, height) = (self.width, self.height);
        let (out_width, out_height) = (self.columns.len(), self.rows.len());
        // horizontal pass: height × out_width × channels
        let mut horizontal = vec![0f32; height * out_width * channels];
        for y in 0..height {
            for (x, taps) in self.columns.iter().enumerate() {
                for c in 0..channels {
                    let mut sum = 0f32;
                    for &(i, w) in taps {
                        sum += w * pixels[(y * width + i) * channels + c] as f32;
                    }
                    horizontal[(y * out_width + x) * channels + c] = sum;
                }
            }
        }
        let mut out = vec![0u8; out_height * out_width * channels];
        for (y, taps) in self.rows.iter().enumerate() {
            for x in 0..out_width {
                for c in 0..channels {
                    let mut sum = 0f32;
                    for &(i, w) in taps {
                        sum += w * horizontal[(i * out_width + x) * channels + c];
                    }
                    out[(y * out_width + x) * channels + c] = sum.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose output is fixed by this code, so
/// datasets and batch orders do not change when a dependency is upgraded.
/// `state += 0x9E3779B97F4A7C15; z = state; z = (z ⊕ z≫30)·0xBF58476D1CE4E5B9;
/// z = (z ⊕ z≫27)·0x94D049BB133111EB; output z ⊕ z≫31`.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator for stream `stream` of `seed` (e.g. image `i`, epoch `e`).
    pub(crate) fn for_stream(seed: u64, stream: u64) -> Self {
        let mixed = SplitMix64::new(seed).next_u64() ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        SplitMix64::new(SplitMix64::new(mixed).next_u64())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 24 bits over 2²⁴.
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in [0, 1): the top 53 bits over 2⁵³.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller on two uniforms).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform integer in `0..n` (`n > 0`) by Lemire's multiply-shift: `(r · n) ≫ 64`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Seeded batch order without stored RNG state.
///
/// The sample stream is the concatenation of permutations of `0..len`, one per epoch; batch `step`
/// takes stream positions `p = step·batch + j` for `j < batch`, i.e. index `perm_e[p mod len]` of
/// epoch `e = ⌊p / len⌋`. `perm_e` is a Fisher–Yates shuffle driven by SplitMix64 seeded from
/// `(seed, e)`. So every epoch visits each index exactly once, and the batch of any step is a pure
/// function of `(len, batch, seed, step)`: resuming at step `s` replays the same batches.
#[derive(Debug)]
pub struct Batcher {
    len: usize,
    batch: usize,
    seed: u64,
    /// The last permutation computed, by epoch (a cache; results never depend on it).
    last_epoch: Mutex<Option<(u64, Vec<usize>)>>,
}

impl Batcher {
    /// A batcher over `len` samples, `batch` per step.
    pub fn new(len: usize, batch: usize, seed: u64) -> Self {
        Batcher {
            len,
            batch,
            seed,
            last_epoch: Mutex::new(None),
        }
    }

    /// Number of samples it draws from.
    pub fn dataset_len(&self) -> usize {
        self.len
    }

    /// Samples per step.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The shuffle seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The order of epoch `epoch`: a permutation of `0..len`.
    pub fn epoch_permutation(&self, epoch: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.len).collect();
        let mut rng = SplitMix64::for_stream(self.seed, epoch);
        for i in (1..perm.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            perm.swap(i, j);
        }
        perm
    }

    /// The dataset indices of step `step` (`batch` of them; empty if the dataset is empty).
    pub fn indices_for_step(&self, step: u64) -> Vec<usize> {
        if self.len == 0 {
            return Vec::new();
        }
        let len = self.len as u128;
        let mut cache = self.last_epoch.lock().unwrap_or_else(|e| e.into_inner());
        (0..self.batch)
            .map(|j| {
                let position = step as u128 * self.batch as u128 + j as u128;
                let epoch = (position / len) as u64;
                let within = (position % len) as usize;
                match cache.as_ref() {
                    Some((e, perm)) if *e == epoch => perm[within],
                    _ => {
                        let perm = self.epoch_permutation(epoch);
                        let index = perm[within];
                        *cache = Some((epoch, perm));
                        index
                    }
                }
            })
            .collect()
    }

    /// Fills `out` with images `indices` of `ds` as NHWC `f32` in [-1, 1] (resized to
    /// `indices.len() · size · size · channels`).
    ///
    /// # Panics
    /// If an index is out of range for `ds`.
    pub fn fill_batch(ds: &ImageDataset, indices: &[usize], out: &mut Vec<f32>) {
        let n = ds.image_len();
        out.resize(indices.len() * n, 0.0);
        if n == 0 {
            return;
        }
        for (chunk, &i) in out.chunks_exact_mut(n).zip(indices) {
            ds.get_f32(i, chunk);
        }
    }
}

/// Opens a set of generated images as written by `examples/generate.rs`: a `.npy` file of uint8
/// NHWC `[N, S, S, C]`, or a folder of PNGs (or any images [`image_folder`] reads; resized to the
/// size of the first one; 1 channel when every pixel is grey, else RGB).
pub fn open_sample_images(path: &std::path::Path) -> Result<ImageDataset> {
    let source = path.display().to_string();
    if !path.exists() {
        return Err(Error::Config {
            field: "--images".into(),
            detail: format!("{source} does not exist; give a folder of PNGs or a .npy file"),
        });
    }
    if path.is_file() {
        if path.extension().and_then(|e| e.to_str()) != Some("npy") {
            return Err(Error::Config {
                field: "--images".into(),
                detail: format!(
                    "{source} is a file but not a .npy array; give a folder of PNGs or a .npy file"
                ),
            });
        }
        let (shape, images) = crate::io::npy::load_npy_u8(path)?;
        return match shape[..] {
            [n, h, w, c] if h == w && (c == 1 || c == 3) && n > 0 => Ok(ImageDataset {
                images: images.into(),
                len: n,
                size: h,
                channels: c,
                source,
            }),
            _ => Err(Error::Data {
                path: source,
                offset: 0,
                detail: format!(
                    "the array has shape {shape:?}; expected [N, S, S, C] with square images and \
                     C = 1 or 3"
                ),
            }),
        };
    }
    let files = image_folder::image_files_in(path)?;
    let first = files.first().ok_or_else(|| Error::Config {
        field: "--images".into(),
        detail: format!("{source} holds no .png file"),
    })?;
    let (w, h, _) = image_folder::decode_image_rgb8(first)?;
    let rgb = image_folder::load_image_folder(path, w.min(h), Crop::ShortSide)?;
    // grey PNGs (as generate writes for 1-channel models) are read back as 1 channel
    if rgb
        .images
        .chunks_exact(3)
        .all(|p| p[0] == p[1] && p[1] == p[2])
    {
        rgb.with_channels(1)
    } else {
        Ok(rgb)
    }
}

/// Batches prepared on a background thread ahead of the training loop: the host side of the data
/// (indices for the step, u8 → f32 conversion of every image) runs while the GPU works on earlier
/// steps, `depth` batches ahead. Batch `k` it yields is exactly what
/// `Batcher::fill_batch(data, &batcher.indices_for_step(first_step + k), ..)` gives.
pub struct Prefetcher {
    batches: Option<std::sync::mpsc::Receiver<(u64, Vec<f32>)>>,
    spent: std::sync::mpsc::SyncSender<Vec<f32>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Time [`Prefetcher::next_batch`] spent waiting for a batch that was not ready yet.
    pub waited: std::time::Duration,
}

impl Prefetcher {
    /// Start preparing the batches of steps `first_step`, `first_step + 1`, … (`depth` ≥ 1 ahead).
    pub fn start(
        data: std::sync::Arc<ImageDataset>,
        batcher: std::sync::Arc<Batcher>,
        first_step: u64,
        depth: usize,
    ) -> Prefetcher {
        let depth = depth.max(1);
        let (send, batches) = std::sync::mpsc::sync_channel(depth);
        // buffers handed back by the loop are refilled instead of allocating per step
        let (spent, recycled) = std::sync::mpsc::sync_channel::<Vec<f32>>(depth + 1);
        let thread = std::thread::spawn(move || {
            for step in first_step.. {
                let mut host = recycled.try_recv().unwrap_or_default();
                Batcher::fill_batch(&data, &batcher.indices_for_step(step), &mut host);
                if send.send((step, host)).is_err() {
                    return; // the loop is gone
                }
            }
        });
        Prefetcher {
            batches: Some(batches),
            spent,
            thread: Some(thread),
            waited: std::time::Duration::ZERO,
        }
    }

    /// The next batch and its step, waiting when it is not ready yet.
    pub fn next_batch(&mut self) -> Result<(u64, Vec<f32>)> {
        let t = std::time::Instant::now();
        let got = self.batches.as_ref().and_then(|b| b.recv().ok());
        self.waited += t.elapsed();
        got.ok_or_else(|| Error::Data {
            path: "(batch prefetch thread)".into(),
            offset: 0,
            detail: "the thread preparing batches stopped".into(),
        })
    }

    /// Hand a batch's buffer back for reuse (optional).
    pub fn recycle(&self, buffer: Vec<f32>) {
        let _ = self.spent.try_send(buffer);
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // closing the channel makes the thread's next send fail, so it returns
        drop(self.batches.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
