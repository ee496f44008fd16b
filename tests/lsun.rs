//! LSUN's LMDB exports (a folder holding `data.mdb`, as `download.py` + unzip leave it): written here
//! with the same LMDB crate the reader uses (heed), then read back: values against decoding the same
//! bytes directly, key order, read-only opening, the decode cache, the errors, and the `lsun64`
//! preset training two steps through the trainer binary.

mod common;
use common::{TempDir, data_error, smooth_rgb};
use heed::types::Bytes;
use image::{DynamicImage, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vitgan::data::image_folder::{DecodeCache, RESIZE_FILTER};
use vitgan::data::lsun::{load_lsun, load_lsun_cached};
use vitgan::data::{Crop, ImageDataset, open_dataset_cropped};

#[derive(Clone, Copy)]
enum Colour {
    Rgb,
    Grey,
    Rgba,
}

/// The dozen test images: width, height, format, colour type — LSUN's shapes (short side 256) and
/// smaller ones, every format the reader takes.
const IMAGES: [(usize, usize, ImageFormat, Colour); 12] = [
    (340, 256, ImageFormat::WebP, Colour::Rgb),
    (256, 341, ImageFormat::Jpeg, Colour::Rgb),
    (256, 256, ImageFormat::Png, Colour::Rgb),
    (96, 80, ImageFormat::Png, Colour::Grey),
    (200, 256, ImageFormat::Jpeg, Colour::Grey),
    (64, 64, ImageFormat::WebP, Colour::Rgba),
    (300, 256, ImageFormat::Png, Colour::Rgba),
    (341, 256, ImageFormat::Jpeg, Colour::Rgb),
    (80, 120, ImageFormat::WebP, Colour::Grey),
    (256, 300, ImageFormat::WebP, Colour::Rgb),
    (128, 96, ImageFormat::Jpeg, Colour::Rgb),
    (70, 64, ImageFormat::Png, Colour::Rgb),
];

/// Image `k`'s id, like LSUN's: 40 hex digits, from a hash of `k` (so key order is not the order
/// the images were written in).
fn lsun_key(k: usize) -> Vec<u8> {
    let mut h = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1);
    let mut key = String::new();
    for _ in 0..5 {
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        key += &format!("{:08x}", (h >> 32) as u32);
    }
    key.into_bytes()
}

/// `pixels` (RGB, `width × height`) as `colour`, encoded as `format` by the `image` crate (WebP
/// lossless, JPEG quality 75, PNG).
fn encode(
    pixels: &[u8],
    width: usize,
    height: usize,
    format: ImageFormat,
    colour: Colour,
) -> Vec<u8> {
    let rgb = RgbImage::from_raw(width as u32, height as u32, pixels.to_vec()).unwrap();
    let image = match colour {
        Colour::Rgb => DynamicImage::ImageRgb8(rgb),
        Colour::Grey => DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb).to_luma8()),
        Colour::Rgba => {
            let mut rgba = DynamicImage::ImageRgb8(rgb).to_rgba8();
            rgba.pixels_mut().for_each(|p| p[3] = 200);
            DynamicImage::ImageRgba8(rgba)
        }
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// The dozen `(key, encoded image)` entries of [`IMAGES`], in the order written.
fn test_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    IMAGES
        .iter()
        .enumerate()
        .map(|(k, &(w, h, format, colour))| {
            (
                lsun_key(k),
                encode(&smooth_rgb(w, h, k), w, h, format, colour),
            )
        })
        .collect()
}

/// A new LMDB export in `dir` (`data.mdb` and `lock.mdb`, as LSUN's zip holds), its unnamed
/// database holding `entries`, put in the order given.
fn write_export(dir: &Path, entries: &[(Vec<u8>, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    // SAFETY: a fresh environment that only this function uses
    let env = unsafe { heed::EnvOpenOptions::new().map_size(64 << 20).open(dir) }.unwrap();
    let wtxn = env.write_txn().unwrap();
    let database: heed::Database<Bytes, Bytes> = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener
                .create_database(wtxn, None)
                .map(heed::CommitOrAbort::<_, ()>::Commit)
        })
        .unwrap()
        .unwrap_commit();
    let mut wtxn = env.write_txn().unwrap();
    for (key, value) in entries {
        database.put(&mut wtxn, key, value).unwrap();
    }
    wtxn.commit().unwrap();
}

/// The export `bedroom_train_lmdb` of the dozen test images in `dir`; returns its path.
fn bedroom_export(dir: &TempDir) -> PathBuf {
    let export = dir.join("bedroom_train_lmdb");
    write_export(&export, &test_entries());
    export
}

/// `bytes` decoded by the `image` crate directly, cut to the centred `crop` square (the short
/// side's when `None`) and resized to `size` with the reader's filter: what the reader must give.
fn decode_directly(bytes: &[u8], size: usize, crop: Option<usize>) -> Vec<u8> {
    let rgb = image::load_from_memory(bytes).unwrap().to_rgb8();
    let (w, h) = (rgb.width(), rgb.height());
    let side = crop.map_or(w.min(h), |s| s as u32);
    let square = image::imageops::crop_imm(&rgb, (w - side) / 2, (h - side) / 2, side, side);
    let square = square.to_image();
    if side as usize == size {
        return square.into_raw();
    }
    image::imageops::resize(&square, size as u32, size as u32, RESIZE_FILTER).into_raw()
}

/// The entries sorted by key: the order the reader must give.
fn in_key_order(mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries.sort();
    entries
}

fn assert_same(a: &ImageDataset, b: &ImageDataset, what: &str) {
    assert_eq!(
        (a.len, a.size, a.channels),
        (b.len, b.size, b.channels),
        "{what}"
    );
    assert!(a.images == b.images, "{what}: the pixels differ");
}

#[test]
fn reads_every_entry_in_key_order_as_decoding_it_directly_gives() {
    let dir = TempDir::new("lsun-read");
    let export = bedroom_export(&dir);
    let sorted = in_key_order(test_entries());
    assert!(
        sorted
            .iter()
            .map(|e| &e.0)
            .ne(test_entries().iter().map(|e| &e.0)),
        "the keys should not sort in the order they were written"
    );
    // through open_dataset, as the trainer's --data: the folder, and the data.mdb file itself
    let ds = open_dataset_cropped(export.to_str().unwrap(), 64, 3, 0, Crop::ShortSide).unwrap();
    assert_eq!((ds.len, ds.size, ds.channels), (12, 64, 3));
    assert_eq!(ds.source, export.display().to_string());
    for (i, (key, bytes)) in sorted.iter().enumerate() {
        assert!(
            ds.image(i) == decode_directly(bytes, 64, None).as_slice(),
            "image {i} (key {}) differs from decoding its bytes directly",
            String::from_utf8_lossy(key)
        );
    }
    let data_mdb = export.join("data.mdb");
    let by_file = open_dataset_cropped(data_mdb.to_str().unwrap(), 64, 3, 0, Crop::ShortSide);
    assert_same(&ds, &by_file.unwrap(), "--data bedroom_train_lmdb/data.mdb");
    // a lossless 64×64 image at 64 is its source pixels (alpha dropped); a grey one is R = G = B
    let slot = |k: usize| sorted.iter().position(|e| e.0 == lsun_key(k)).unwrap();
    assert!(ds.image(slot(5)) == smooth_rgb(64, 64, 5).as_slice());
    assert!(
        ds.image(slot(3))
            .chunks(3)
            .all(|p| p[0] == p[1] && p[1] == p[2])
    );
    // a centre crop, and grey training data (converted after decoding)
    let cropped = load_lsun(&export, 32, Crop::Centre(64)).unwrap();
    for (i, (_, bytes)) in sorted.iter().enumerate() {
        assert!(
            cropped.image(i) == decode_directly(bytes, 32, Some(64)).as_slice(),
            "{i}"
        );
    }
    let grey = open_dataset_cropped(export.to_str().unwrap(), 32, 1, 0, Crop::Centre(64)).unwrap();
    assert_same(&grey, &cropped.with_channels(1).unwrap(), "1 channel");
}

#[test]
fn the_order_is_the_keys_not_the_writes_and_nothing_is_written() {
    let dir = TempDir::new("lsun-order");
    let export = bedroom_export(&dir);
    let first = load_lsun(&export, 32, Crop::ShortSide).unwrap();
    assert_same(
        &first,
        &load_lsun(&export, 32, Crop::ShortSide).unwrap(),
        "a second read",
    );
    // the same entries written in the reverse order
    let reversed = dir.join("reversed_lmdb");
    let mut entries = test_entries();
    entries.reverse();
    write_export(&reversed, &entries);
    assert_same(
        &first,
        &load_lsun(&reversed, 32, Crop::ShortSide).unwrap(),
        "reversed writes",
    );

    // read-only: no lock file is created (NO_LOCK) and data.mdb is left as it was
    std::fs::remove_file(export.join("lock.mdb")).unwrap();
    let data_mdb = export.join("data.mdb");
    let (bytes, modified) = (
        std::fs::read(&data_mdb).unwrap(),
        std::fs::metadata(&data_mdb).unwrap().modified().unwrap(),
    );
    use std::os::unix::fs::PermissionsExt;
    let set_mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(&data_mdb, 0o444);
    set_mode(&export, 0o555);
    let read = load_lsun(&export, 32, Crop::ShortSide);
    set_mode(&export, 0o755);
    assert_same(
        &first,
        &read.unwrap(),
        "a read-only export without lock.mdb",
    );
    assert!(!export.join("lock.mdb").exists(), "a lock file was created");
    assert!(
        !dir.join("data.mdb-lock").exists(),
        "a lock file was created"
    );
    assert!(
        std::fs::read(&data_mdb).unwrap() == bytes,
        "data.mdb changed"
    );
    assert_eq!(
        std::fs::metadata(&data_mdb).unwrap().modified().unwrap(),
        modified
    );
}

/// Panics unless `text` contains every one of `parts`.
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "no `{part}` in: {text}");
    }
}

#[test]
fn errors_name_the_export_or_the_key_and_say_what_to_do() {
    let dir = TempDir::new("lsun-errors");
    let open =
        |path: &Path| open_dataset_cropped(path.to_str().unwrap(), 64, 3, 0, Crop::ShortSide);
    let refused =
        |path: &Path, parts: &[&str]| assert_mentions(&open(path).unwrap_err().to_string(), parts);
    // the zip as downloaded
    let zip = dir.join("bedroom_train_lmdb.zip");
    std::fs::write(&zip, b"PK\x03\x04").unwrap();
    refused(
        &zip,
        &["unzip bedroom_train_lmdb.zip", "--data bedroom_train_lmdb"],
    );
    // an export folder without its data file: known by its name, or by its lock file
    let unfinished = dir.join("bedroom_train_lmdb");
    std::fs::create_dir_all(&unfinished).unwrap();
    refused(&unfinished, &["without its data.mdb", "unzip"]);
    let other = dir.join("exports/some_folder");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("lock.mdb"), b"").unwrap();
    refused(&other, &["without its data.mdb"]);
    refused(
        &other.join("lock.mdb"),
        &["lock file", "data.mdb beside it"],
    );
    // the folder the export was unzipped into
    std::fs::remove_dir_all(&unfinished).unwrap();
    std::fs::remove_file(&zip).unwrap();
    write_export(&unfinished, &test_entries()[..2]);
    let suggestion = format!("--data {}", unfinished.display());
    refused(
        &dir.0,
        &[
            "holds no image but LSUN exports (bedroom_train_lmdb",
            &suggestion,
        ],
    );

    // a data.mdb that is not an LMDB file, or empty; an export with no entry
    let fake = dir.join("fake_lmdb");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("data.mdb"), vec![b'x'; 20_000]).unwrap();
    let failed = |err: vitgan::Error| {
        let text = err.to_string();
        let (path, offset) = data_error(err);
        (path, offset, text)
    };
    let (path, _, text) = failed(open(&fake).unwrap_err());
    assert!(path.ends_with("fake_lmdb/data.mdb"), "{path}");
    assert_mentions(&text, &["LMDB cannot open it", "unzip"]);
    std::fs::write(fake.join("data.mdb"), b"").unwrap();
    refused(&fake, &["empty (0 bytes)"]);
    let empty = dir.join("empty_lmdb");
    write_export(&empty, &[]);
    refused(&empty, &["empty_lmdb/data.mdb", "holds no entries"]);

    // values that do not decode: bytes that are no image, an image cut short; the first in key
    // order is named, by its key (in hex when it is not text)
    let mut entries = test_entries();
    let webp = entries[0].1.clone();
    entries.push((b"ffff_truncated".to_vec(), webp[..webp.len() / 2].to_vec()));
    entries.push((vec![0x00, 0xff], b"not an image".to_vec()));
    let bad = dir.join("bad_lmdb");
    write_export(&bad, &entries);
    let (path, offset, text) = failed(load_lsun(&bad, 64, Crop::ShortSide).unwrap_err());
    assert!(
        path.ends_with("bad_lmdb/data.mdb entry 0x00ff") && offset == 0,
        "{text}"
    );
    assert_mentions(&text, &["not a JPEG, PNG or WebP", "download and unzip"]);
    entries.pop();
    let bad = dir.join("bad2_lmdb");
    write_export(&bad, &entries);
    let (path, _, text) = failed(load_lsun(&bad, 64, Crop::ShortSide).unwrap_err());
    assert!(path.ends_with("entry `ffff_truncated`"), "{text}");
    assert_mentions(&text, &["cannot decode WebP"]);
    // an image smaller than the crop is named by its key: the first in key order of the two
    // narrower than 72 pixels (64×64 and 70×64)
    let good = dir.join("good_lmdb");
    write_export(&good, &test_entries());
    let text = load_lsun(&good, 64, Crop::Centre(72))
        .unwrap_err()
        .to_string();
    let (k, (w, h, ..)) = (0..12)
        .map(|k| (k, IMAGES[k]))
        .filter(|(_, (w, h, ..))| w.min(h) < &72)
        .min_by_key(|(k, _)| lsun_key(*k))
        .unwrap();
    let key = String::from_utf8(lsun_key(k)).unwrap();
    assert_mentions(
        &text,
        &[&format!("entry `{key}`: image is {w}×{h}"), "center:72"],
    );
}

#[test]
fn decode_cache_is_reused_until_data_mdb_changes() {
    let dir = TempDir::new("lsun-cache");
    let export = bedroom_export(&dir);
    let cache = dir.join("decode-cache");
    let load = || load_lsun_cached(&export, 32, Crop::ShortSide, &cache).unwrap();
    let (first, used) = load();
    let DecodeCache::Written(path) = used else {
        panic!("{used:?}")
    };
    assert!(path.starts_with(&cache) && path.extension().is_some_and(|e| e == "u8"));
    let (again, used) = load();
    assert_eq!(used, DecodeCache::Reused(path.clone()));
    assert_same(&first, &again, "from the cache");
    assert_eq!(again.source, export.display().to_string());
    // another crop is another key
    let (_, used) = load_lsun_cached(&export, 32, Crop::Centre(64), &cache).unwrap();
    assert!(matches!(used, DecodeCache::Written(p) if p != path));
    // touched: the modification time is in the key
    let data_mdb = export.join("data.mdb");
    let later = std::fs::metadata(&data_mdb).unwrap().modified().unwrap()
        + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&data_mdb)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (touched, used) = load();
    let DecodeCache::Written(touched_path) = used else {
        panic!("{used:?}")
    };
    assert!(touched_path != path);
    assert_same(&first, &touched, "touched");
    // grown by an entry
    let mut entries = test_entries();
    entries.push((b"0123".to_vec(), entries[2].1.clone()));
    write_export(&export, &entries);
    let (grown, used) = load();
    assert!(
        matches!(used, DecodeCache::Written(p) if p != touched_path),
        "grown"
    );
    assert_eq!(grown.len, 13);
}

/// The "done when": the `lsun64` preset trains two steps at batch 2 on an LMDB export through
/// the trainer binary, as `--data bedroom_train_lmdb`.
#[test]
fn lsun64_trains_two_steps_on_an_lmdb_export() {
    let dir = TempDir::new("lsun64");
    let export = bedroom_export(&dir);
    let out = dir.join("run");
    let start = Instant::now();
    let run = common::example_binary("train")
        .args([
            "--preset", "lsun64", "--batch", "2", "--steps", "2", "--eval-n", "0",
        ])
        .arg("--data")
        .arg(&export)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert!(
        err.contains("(12 images, 64x64x3, crop short-side, read in"),
        "{err}"
    );
    assert!(err.contains("decode cache written to"), "{err}");
    assert!(err.contains("model: lsun64"), "{err}");
    assert!(out.join("checkpoint.safetensors").exists(), "{err}");
    println!(
        "lsun64, 2 steps at batch 2 through the trainer: {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// Decode speed on 1,000 LSUN-shaped images (short side 256, long side 256–450, smooth content plus
/// fine noise so the files are about LSUN's size): lossy WebP at quality 75 (written by `cwebp`,
/// Debian's `webp` package: the `image` crate only writes lossless WebP) and JPEG at quality 75, each
/// in an LMDB export, read to 64×64. Run by hand:
/// `cargo test --release --test lsun -- --ignored --nocapture decode_speed`.
#[test]
#[ignore = "a measurement (about a minute; needs cwebp for the WebP half): run by hand"]
fn decode_speed() {
    let dir = TempDir::new("lsun-speed");
    let n = 1000;
    let mut noise = 0x9E37_79B9_7F4A_7C15u64;
    let mut sources = Vec::new();
    for k in 0..n {
        let long = 256 + (k * 37) % 195;
        let (w, h) = if k % 4 == 0 { (256, long) } else { (long, 256) };
        let mut px = smooth_rgb(w, h, k);
        for v in px.iter_mut() {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            *v = v.saturating_add((noise % 36) as u8);
        }
        sources.push((w, h, px));
    }
    let jpeg: Vec<(Vec<u8>, Vec<u8>)> = sources
        .iter()
        .enumerate()
        .map(|(k, (w, h, px))| {
            (
                lsun_key(k),
                encode(px, *w, *h, ImageFormat::Jpeg, Colour::Rgb),
            )
        })
        .collect();
    let mut sets = vec![("JPEG q75", jpeg)];
    let png = dir.join("source.png");
    let webp_file = dir.join("source.webp");
    let webp: Option<Vec<(Vec<u8>, Vec<u8>)>> = sources
        .iter()
        .enumerate()
        .map(|(k, (w, h, px))| {
            std::fs::write(&png, encode(px, *w, *h, ImageFormat::Png, Colour::Rgb)).unwrap();
            let status = std::process::Command::new("cwebp")
                .args(["-quiet", "-q", "75"])
                .arg(&png)
                .arg("-o")
                .arg(&webp_file)
                .status()
                .ok()?;
            status
                .success()
                .then(|| (lsun_key(k), std::fs::read(&webp_file).unwrap()))
        })
        .collect();
    match webp {
        Some(webp) => sets.insert(0, ("lossy WebP q75 (cwebp)", webp)),
        None => println!("cwebp not found: WebP not measured (apt-get install webp)"),
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, entries) in sets {
        let bytes: usize = entries.iter().map(|e| e.1.len()).sum();
        let export = dir.join(&format!("{}_lmdb", name.split(' ').next().unwrap()));
        write_export(&export, &entries);
        let t = Instant::now();
        let ds = load_lsun(&export, 64, Crop::ShortSide).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(ds.len, n);
        println!(
            "{name}: {n} images, mean {:.1} KB, read to 64×64 in {s:.2} s: {:.0} images/s on \
             {threads} threads",
            bytes as f64 / n as f64 / 1e3,
            n as f64 / s
        );
        let t = Instant::now();
        for (_, value) in &entries[..300] {
            image::load_from_memory(value).unwrap();
        }
        println!(
            "  decode alone, one thread: {:.0} images/s",
            300.0 / t.elapsed().as_secs_f64()
        );
    }
}
