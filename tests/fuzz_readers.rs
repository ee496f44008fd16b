//! Seeded mutation fuzzing of every file reader a user can point the programs at: CIFAR-10
//! binaries, IDX (plain and gzip), PNG, JPEG and WebP images, safetensors checkpoints, `.npy` arrays and cached FID
//! statistics. Each valid file is truncated at random lengths and has random bytes overwritten
//! (single flips, runs of 0x00 / 0xFF, header fields set to huge values); every read must return
//! (an error or a value), never panic, and never ask the allocator for a huge block.
//!
//! Bounded: a fixed number of mutations per reader from a fixed seed (about 2,000 reads, a few
//! seconds), so a failure reproduces exactly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, recording the largest single request since the last reset.
struct Watching;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Largest allocation a read of a small (≤ 100 KB) mutated file may make: image decoding is limited
/// to `MAX_DECODE_BYTES` (128 MiB), so 256 MiB means a bogus header drove an allocation.
const HUGE: usize = 256 << 20;

/// SplitMix64, so the mutations are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `good`: a truncation, byte flips, a run of 0x00/0xFF, or a 4/8-byte field in
/// the first 64 bytes set to a huge value (little and big endian).
fn mutate(good: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = good.to_vec();
    match rng.below(5) {
        0 => b.truncate(rng.below(good.len())),
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let i = rng.below(b.len());
            let len = (1 + rng.below(16)).min(b.len() - i);
            let v = if rng.below(2) == 0 { 0x00 } else { 0xFF };
            b[i..i + len].iter_mut().for_each(|x| *x = v);
        }
        3 => {
            let i = rng.below(b.len().min(64).saturating_sub(4).max(1));
            let v = [u32::MAX, 0x7FFF_FFFF, 0x0100_0000][rng.below(3)];
            let bytes = if rng.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let end = (i + 4).min(b.len());
            b[i..end].copy_from_slice(&bytes[..end - i]);
        }
        _ => {
            let i = rng.below(b.len().min(64).saturating_sub(8).max(1));
            let end = (i + 8).min(b.len());
            b[i..end].copy_from_slice(&u64::MAX.to_le_bytes()[..end - i]);
        }
    }
    b
}

/// Writes `mutations` mutated copies of `good` to `path` and reads each with `read`, which must
/// not panic or allocate a huge block. Returns how many reads were refused with an error.
fn fuzz(
    what: &str,
    good: &[u8],
    path: &Path,
    mutations: usize,
    seed: u64,
    read: &dyn Fn(&Path) -> bool,
) -> usize {
    std::fs::write(path, good).unwrap();
    assert!(read(path), "{what}: the unmutated file must read");
    let mut rng = Rng(seed);
    let mut refused = 0;
    for k in 0..mutations {
        let bad = mutate(good, &mut rng);
        std::fs::write(path, &bad).unwrap();
        LARGEST.store(0, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(path)));
        let largest = LARGEST.load(Ordering::Relaxed);
        match outcome {
            Ok(ok) => refused += usize::from(!ok),
            Err(_) => {
                let keep = path.with_extension("crash");
                std::fs::write(&keep, &bad).unwrap();
                panic!(
                    "{what}: mutation {k} (seed {seed}) panicked; the input is in {}",
                    keep.display()
                );
            }
        }
        assert!(
            largest < HUGE,
            "{what}: mutation {k} (seed {seed}) allocated {largest} bytes for a {}-byte file",
            bad.len()
        );
    }
    refused
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("vitgan-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx_file(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        b.extend((d as u32).to_be_bytes());
    }
    b.extend((0..n * rows * cols).map(|i| (i * 7 % 256) as u8));
    b
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// One test for all readers: the allocation watch is process-wide, so no other test may run
/// beside it in this binary.
#[test]
fn mutated_files_give_errors_not_panics_or_huge_allocations() {
    let dir = scratch();
    let mut report = Vec::new();

    // CIFAR-10 binary: records of 1 label byte + 3,072 pixel bytes
    let cifar: Vec<u8> = (0..3 * 3073)
        .map(|i| {
            if i % 3073 == 0 {
                (i / 3073) as u8
            } else {
                (i % 251) as u8
            }
        })
        .collect();
    let p = dir.join("data_batch_1.bin");
    let r = fuzz("cifar", &cifar, &p, 300, 1, &|p| {
        vitgan::data::cifar::load_cifar10(p).is_ok()
    });
    report.push(("cifar", r));

    // IDX, plain and gzip-compressed
    let idx = idx_file(5, 28, 28);
    let p = dir.join("train-images-idx3-ubyte");
    let r = fuzz("idx", &idx, &p, 300, 2, &|p| {
        vitgan::data::idx::load_idx_images(p).is_ok()
    });
    report.push(("idx", r));
    let p = dir.join("train-images-idx3-ubyte.gz");
    let r = fuzz("idx.gz", &gzip(&idx), &p, 300, 3, &|p| {
        vitgan::data::idx::load_idx_images(p).is_ok()
    });
    report.push(("idx.gz", r));

    // PNG (as generate and the sample grids write them)
    let p = dir.join("image.png");
    let pixels: Vec<u8> = (0..12 * 10 * 3).map(|i| (i * 5 % 256) as u8).collect();
    vitgan::io::image::save_png(&p, &pixels, 12, 10, 3).unwrap();
    let png = std::fs::read(&p).unwrap();
    let r = fuzz("png", &png, &p, 300, 4, &|p| {
        vitgan::data::image_folder::decode_image_rgb8(p).is_ok()
    });
    report.push(("png", r));

    // JPEG (CelebA's format) and lossless WebP, as the `image` crate's encoders write them
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&pixels, 12, 10, image::ExtendedColorType::Rgb8)
        .unwrap();
    let p = dir.join("image.jpg");
    let r = fuzz("jpeg", &jpeg, &p, 300, 8, &|p| {
        vitgan::data::image_folder::decode_image_rgb8(p).is_ok()
    });
    report.push(("jpeg", r));
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .encode(&pixels, 12, 10, image::ExtendedColorType::Rgb8)
        .unwrap();
    let p = dir.join("image.webp");
    let r = fuzz("webp", &webp, &p, 300, 9, &|p| {
        vitgan::data::image_folder::decode_image_rgb8(p).is_ok()
    });
    report.push(("webp", r));

    // safetensors checkpoint (also the Inception weights' and reference caches' format)
    let p = dir.join("checkpoint.safetensors");
    vitgan::io::checkpoint::Checkpoint {
        tensors: vec![
            (
                "a.weight".into(),
                vec![3, 4],
                (0..12).map(|i| i as f32).collect(),
            ),
            ("b".into(), vec![5], vec![0.5; 5]),
        ],
        metadata: [("format".to_string(), "test".to_string())]
            .into_iter()
            .collect(),
    }
    .save(&p)
    .unwrap();
    let st = std::fs::read(&p).unwrap();
    let r = fuzz("safetensors", &st, &p, 300, 5, &|p| {
        vitgan::io::checkpoint::Checkpoint::load(p).is_ok()
    });
    report.push(("safetensors", r));

    // .npy (generate's output, evaluate's input)
    let p = dir.join("samples.npy");
    vitgan::io::npy::save_npy_u8(&p, &[2, 4, 4, 3], &[9; 96]).unwrap();
    let npy = std::fs::read(&p).unwrap();
    let r = fuzz("npy", &npy, &p, 300, 6, &|p| {
        vitgan::io::npy::load_npy_u8(p).is_ok() && vitgan::data::open_sample_images(p).is_ok()
    });
    report.push(("npy", r));

    // cached FID statistics
    let p = dir.join("stats.safetensors");
    let features: Vec<f32> = (0..10 * 4).map(|i| ((i * 37) % 11) as f32).collect();
    vitgan::metrics::fid::FeatureStatistics::from_features(&features, 4)
        .unwrap()
        .save(&p, "fuzz")
        .unwrap();
    let stats = std::fs::read(&p).unwrap();
    let r = fuzz("fid statistics", &stats, &p, 300, 7, &|p| {
        vitgan::metrics::fid::FeatureStatistics::load(p).is_ok()
    });
    report.push(("fid statistics", r));

    println!("mutations refused (of 300 each): {report:?}");
    // the mutations must exercise the error paths (measured: CIFAR 71, IDX 96 — pixel bytes can
    // take any value, so most of their mutations are valid files —, JPEG 151 — its decoder is
    // lenient with damaged scan data —, the others 234–296)
    for (what, refused) in &report {
        assert!(
            *refused >= 50,
            "{what}: only {refused} of 300 mutations were refused"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
