//! Image folders (JPEG, PNG, WebP; CelebA as downloaded): discovery, decoding, `--crop`, errors, and
//! the `celeba64` preset training on a JPEG folder through the library.

mod common;
use common::{TempDir, data_error, smooth_rgb};
use image::{ExtendedColorType, ImageFormat};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vitgan::data::image_folder::{
    Crop, DecodeCache, decode_image_rgb8, image_files_in, load_image_folder,
    load_image_folder_cached,
};
use vitgan::data::{Batcher, ImageDataset, open_dataset_cropped};

fn write_jpeg(path: &Path, pixels: &[u8], width: usize, height: usize, colour: ExtendedColorType) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 95)
        .encode(pixels, width as u32, height as u32, colour)
        .unwrap();
}

fn write_rgb(path: &Path, pixels: &[u8], width: usize, height: usize, format: ImageFormat) {
    image::RgbImage::from_raw(width as u32, height as u32, pixels.to_vec())
        .unwrap()
        .save_with_format(path, format)
        .unwrap();
}

/// Per output pixel, the input pixels and weights of an antialiased triangle filter (PIL's
/// `BILINEAR`): centre `c = (i + ½)·s`, `s = in/out`, weight `max(0, 1 − |j + ½ − c| / max(s, 1))` for
/// input pixels `j` within the support, normalised to sum 1.
fn tent_taps(in_len: usize, out_len: usize) -> Vec<Vec<(usize, f64)>> {
    let s = in_len as f64 / out_len as f64;
    let widen = s.max(1.0);
    (0..out_len)
        .map(|i| {
            let c = (i as f64 + 0.5) * s;
            let lo = ((c - widen).floor().max(0.0)) as usize;
            let hi = ((c + widen).ceil() as usize).min(in_len);
            let taps: Vec<(usize, f64)> = (lo..hi)
                .map(|j| (j, (1.0 - (j as f64 + 0.5 - c).abs() / widen).max(0.0)))
                .collect();
            let sum: f64 = taps.iter().map(|t| t.1).sum();
            taps.into_iter().map(|(j, w)| (j, w / sum)).collect()
        })
        .collect()
}

/// A square HWC image (`side → size`) resized with [`tent_taps`] on both axes, in f64.
fn tent_resize_reference(src: &[f64], side: usize, size: usize, channels: usize) -> Vec<f64> {
    let taps = tent_taps(side, size);
    let mut out = vec![0.0; size * size * channels];
    for y in 0..size {
        for x in 0..size {
            for &(sy, wy) in &taps[y] {
                for &(sx, wx) in &taps[x] {
                    for c in 0..channels {
                        out[(y * size + x) * channels + c] +=
                            wy * wx * src[(sy * side + sx) * channels + c];
                    }
                }
            }
        }
    }
    out
}

/// The centred `side × side` crop of an HWC RGB image, as f64.
fn crop_reference(px: &[u8], width: usize, height: usize, side: usize) -> Vec<f64> {
    let (x0, y0) = ((width - side) / 2, (height - side) / 2);
    let mut out = Vec::new();
    for y in y0..y0 + side {
        for x in x0..x0 + side {
            out.extend(px[(y * width + x) * 3..][..3].iter().map(|&v| v as f64));
        }
    }
    out
}

/// (mean, max) |got − want|.
fn differences(got: &[u8], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let d: Vec<f64> = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .collect();
    (
        d.iter().sum::<f64>() / d.len() as f64,
        d.iter().cloned().fold(0.0, f64::max),
    )
}

/// CelebA's layout (`celeba/img_align_celeba/000001.jpg`, 178×218) plus one file of every other
/// kind read, each image distinct; returns the expected `(path, RGB pixels)` in sorted path order.
fn celeba_like_folder(dir: &TempDir) -> Vec<(PathBuf, Vec<u8>)> {
    let (w, h) = (178, 218);
    let mut expected = Vec::new();
    for (k, name) in ["000001.jpg", "000002.jpg", "000003.JPG", "000004.jpeg"]
        .iter()
        .enumerate()
    {
        let px = smooth_rgb(w, h, k);
        let path = dir.file(&format!("celeba/img_align_celeba/{name}"));
        write_jpeg(&path, &px, w, h, ExtendedColorType::Rgb8);
        expected.push((path, px));
    }
    // a PNG and a lossless WebP
    let png = smooth_rgb(w, h, 4);
    let path = dir.file("celeba/img_align_celeba/000005.png");
    write_rgb(&path, &png, w, h, ImageFormat::Png);
    expected.push((path, png));
    let webp = smooth_rgb(w, h, 5);
    let path = dir.file("celeba/img_align_celeba/000006.webp");
    write_rgb(&path, &webp, w, h, ImageFormat::WebP);
    expected.push((path, webp));
    // a grey JPEG: read as R = G = B
    let grey: Vec<u8> = smooth_rgb(w, h, 6).chunks(3).map(|p| p[0]).collect();
    let path = dir.file("celeba/img_align_celeba/000007.jpg");
    write_jpeg(&path, &grey, w, h, ExtendedColorType::L8);
    expected.push((path, grey.iter().flat_map(|&g| [g; 3]).collect()));
    // an RGBA PNG: alpha dropped (not composited)
    let rgb = smooth_rgb(w, h, 7);
    let rgba: Vec<u8> = rgb
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], (i % 256) as u8])
        .collect();
    let path = dir.file("celeba/img_align_celeba/000008.png");
    image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .unwrap()
        .save_with_format(&path, ImageFormat::Png)
        .unwrap();
    expected.push((path, rgb));
    // a 16-bit RGB PNG one folder further down: v·257 + 100 rounds back to v
    let rgb = smooth_rgb(w, h, 8);
    let wide: Vec<u16> = rgb.iter().map(|&v| v as u16 * 257 + 100).collect();
    let path = dir.file("celeba/img_align_celeba/more/000009.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(w as u32, h as u32, wide)
        .unwrap()
        .save_with_format(&path, ImageFormat::Png)
        .unwrap();
    expected.push((path, rgb));
    // not images, or hidden: ignored
    std::fs::write(dir.file("celeba/list_attr_celeba.txt"), "202599\n").unwrap();
    std::fs::write(
        dir.file("celeba/img_align_celeba/._000001.jpg"),
        "AppleDouble",
    )
    .unwrap();
    std::fs::write(dir.file("celeba/.cache/000000.jpg"), "hidden folder").unwrap();
    expected
}

#[test]
fn celeba_layout_reads_every_format_in_path_order() {
    let dir = TempDir::new("celeba");
    let expected = celeba_like_folder(&dir);
    let root = dir.0.join("celeba");
    let files = image_files_in(&root).unwrap();
    let want: Vec<&PathBuf> = expected.iter().map(|(p, _)| p).collect();
    assert_eq!(files.iter().collect::<Vec<_>>(), want);

    // the CelebA-64 pipeline: centre crop 140, antialiased bilinear to 64
    let ds = load_image_folder(&root, 64, Crop::Centre(140)).unwrap();
    assert_eq!((ds.len, ds.size, ds.channels), (9, 64, 3));
    for (i, (path, px)) in expected.iter().enumerate() {
        let want = tent_resize_reference(&crop_reference(px, 178, 218, 140), 140, 64, 3);
        let (mean, max) = differences(ds.image(i), &want);
        let extension = path.extension().unwrap().to_ascii_lowercase();
        let lossless = extension == "png" || extension == "webp";
        println!("{}: mean |Δ| {mean:.3}, max {max:.2}", path.display());
        // lossless: only the final rounding to bytes; JPEG: its quantisation, averaged down
        let (mean_tol, max_tol) = if lossless { (0.3, 0.51) } else { (0.8, 4.0) };
        assert!(
            mean <= mean_tol && max <= max_tol,
            "{}: mean |Δ| {mean}, max {max}",
            path.display()
        );
    }
    // the grey JPEG is grey in every channel
    assert!(ds.image(6).chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));

    // through open_dataset_cropped: grey for a 1-channel preset (BT.601 luma of the RGB)
    let grey = open_dataset_cropped(root.to_str().unwrap(), 64, 1, 0, Crop::Centre(140)).unwrap();
    assert_eq!((grey.len, grey.size, grey.channels), (9, 64, 1));
    assert_eq!(grey.images, ds.with_channels(1).unwrap().images);
    assert_eq!(
        grey.image(6),
        &ds.image(6).iter().step_by(3).copied().collect::<Vec<_>>()[..]
    );
}

#[test]
fn crop_geometry_puts_a_known_pattern_where_expected() {
    // pixel (x, y) = (x, y, (x + y) mod 256): every position is identifiable
    let (w, h) = (178usize, 218usize);
    let px: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, ((x + y) % 256) as u8]))
        .collect();
    let dir = TempDir::new("crop");
    write_rgb(&dir.file("a/pattern.png"), &px, w, h, ImageFormat::Png);
    let at = |x: usize, y: usize| &px[(y * w + x) * 3..][..3];

    // center:140 at 140: the crop itself, offset ((178 − 140)/2, (218 − 140)/2) = (19, 39)
    let ds = load_image_folder(&dir.0, 140, Crop::Centre(140)).unwrap();
    for y in 0..140 {
        for x in 0..140 {
            assert_eq!(&ds.image(0)[(y * 140 + x) * 3..][..3], at(x + 19, y + 39));
        }
    }
    // center:108 at 54, crop from (35, 55): the filter is symmetric, so away from the edges output
    // (x, y) holds R = 35 + 2x + ½ and G = 55 + 2y + ½ (the centre of its taps); all of it matches
    // the f64 reference
    let ds = load_image_folder(&dir.0, 54, Crop::Centre(108)).unwrap();
    let want = tent_resize_reference(&crop_reference(&px, w, h, 108), 108, 54, 3);
    let (mean, max) = differences(ds.image(0), &want);
    // (R and G fall on ½ exactly, so the rounding error is ½ there)
    assert!(max <= 0.51, "mean |Δ| {mean}, max {max}");
    for y in 1..53 {
        for x in 1..53 {
            let p = &ds.image(0)[(y * 54 + x) * 3..][..3];
            let (r, g) = (35.5 + 2.0 * x as f64, 55.5 + 2.0 * y as f64);
            assert!(
                (p[0] as f64 - r).abs() <= 0.5 && (p[1] as f64 - g).abs() <= 0.5,
                "({x}, {y}): {p:?}"
            );
        }
    }
    // without --crop: the centred square of the short side, 178×178 from (0, 20)
    let ds = load_image_folder(&dir.0, 178, Crop::ShortSide).unwrap();
    for y in 0..178 {
        for x in 0..178 {
            assert_eq!(&ds.image(0)[(y * 178 + x) * 3..][..3], at(x, y + 20));
        }
    }

    // --crop on square datasets (CIFAR, IDX, synthetic): the centred square, then resized
    let square = ImageDataset {
        images: (0..16).collect(),
        len: 1,
        size: 4,
        channels: 1,
        source: "4×4".into(),
    };
    assert_eq!(square.centre_cropped(2).unwrap().images, vec![5, 6, 9, 10]);
    assert!(square.centre_cropped(5).is_err());
    let synthetic = open_dataset_cropped("synthetic", 16, 3, 0, Crop::Centre(12)).unwrap();
    assert_eq!((synthetic.size, synthetic.channels), (16, 3));

    // the option's syntax
    assert_eq!(Crop::parse("center:140").unwrap(), Crop::Centre(140));
    assert_eq!(Crop::parse("Centre:108").unwrap(), Crop::Centre(108));
    assert_eq!(Crop::parse("short-side").unwrap(), Crop::ShortSide);
    for bad in ["center:0", "center:", "center:x", "140", "top:5", ""] {
        let err = Crop::parse(bad).unwrap_err().to_string();
        assert!(
            err.contains("--crop") && err.contains("center:S"),
            "{bad}: {err}"
        );
    }
    assert_eq!(Crop::Centre(140).to_string(), "center:140");
}

#[test]
fn errors_name_the_folder_or_the_file() {
    // empty: only other files and an empty subfolder
    let dir = TempDir::new("errors");
    std::fs::write(dir.file("readme.txt"), "hello").unwrap();
    std::fs::create_dir_all(dir.0.join("empty/deeper")).unwrap();
    let err = load_image_folder(&dir.0, 8, Crop::ShortSide)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "no .png/.jpg/.jpeg/.webp image in {} (searched recursively",
            dir.0.display()
        )),
        "{err}"
    );
    // open_dataset's dispatch reaches the image reader and keeps its message
    let err = vitgan::data::open_dataset(dir.0.to_str().unwrap(), 8, 3, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no .png/.jpg/.jpeg/.webp image"), "{err}");

    // a good JPEG, then a corrupt one (a real JPEG's header with its scan data cut off)
    let px = smooth_rgb(178, 218, 0);
    write_jpeg(
        &dir.file("a/000001.jpg"),
        &px,
        178,
        218,
        ExtendedColorType::Rgb8,
    );
    let full = std::fs::read(dir.file("a/000001.jpg")).unwrap();
    std::fs::write(dir.file("a/000002.jpg"), &full[..600]).unwrap();
    let (path, _) = data_error(load_image_folder(&dir.0, 64, Crop::Centre(140)).unwrap_err());
    assert!(path.ends_with("000002.jpg"), "{path}");
    // bytes that are no image at all, with an image's name
    std::fs::write(dir.file("a/000002.jpg"), "not an image").unwrap();
    let err = load_image_folder(&dir.0, 64, Crop::Centre(140)).unwrap_err();
    let message = err.to_string();
    let (path, offset) = data_error(err);
    assert!(path.ends_with("000002.jpg") && offset == 0, "{message}");
    assert!(
        message.contains("not a JPEG, PNG or WebP file"),
        "{message}"
    );
    std::fs::remove_file(dir.file("a/000002.jpg")).unwrap();

    // an image smaller than the crop
    write_jpeg(
        &dir.file("b/small.jpg"),
        &smooth_rgb(100, 120, 1),
        100,
        120,
        ExtendedColorType::Rgb8,
    );
    let err = load_image_folder(&dir.0, 64, Crop::Centre(140))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("small.jpg") && err.contains("100×120") && err.contains("center:140"),
        "{err}"
    );
    // the 2× upscaling rule: a crop below half the size is refused before any file is read,
    // an image whose short side is below half the size names the file
    let err = load_image_folder(&dir.0, 64, Crop::Centre(30))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--crop center:30") && err.contains("upscaling"),
        "{err}"
    );
    let err = load_image_folder(&dir.0, 256, Crop::ShortSide)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("small.jpg") && err.contains("100×120"),
        "{err}"
    );
    // at 200 the 100-pixel short side is exactly half: accepted
    assert_eq!(
        load_image_folder(&dir.0, 200, Crop::ShortSide).unwrap().len,
        2
    );
}

#[test]
fn parallel_decoding_keeps_file_order_and_reports_the_first_bad_file() {
    // 50 files (several chunks per thread): image i is uniform (i, 2i, 255 − i)
    let dir = TempDir::new("parallel");
    for i in 0..50usize {
        let colour = [i as u8, (2 * i) as u8, (255 - i) as u8];
        let name = format!("{}/{i:03}.png", if i % 2 == 0 { "even" } else { "odd" });
        write_rgb(&dir.file(&name), &colour.repeat(64), 8, 8, ImageFormat::Png);
    }
    let ds = load_image_folder(&dir.0, 4, Crop::ShortSide).unwrap();
    assert_eq!(ds.len, 50);
    // sorted by path: even/000 … even/048, then odd/001 … odd/049
    let order: Vec<usize> = (0..50).step_by(2).chain((1..50).step_by(2)).collect();
    for (slot, &i) in order.iter().enumerate() {
        let colour = [i as u8, (2 * i) as u8, (255 - i) as u8];
        assert!(
            ds.image(slot).chunks(3).all(|p| p == colour),
            "slot {slot} should hold image {i}"
        );
    }
    // two corrupt files: the one first in sorted order is reported, whatever the threads did
    std::fs::write(dir.file("odd/049.png"), "broken").unwrap();
    std::fs::write(dir.file("even/030.png"), "broken").unwrap();
    for _ in 0..3 {
        let (path, _) = data_error(load_image_folder(&dir.0, 4, Crop::ShortSide).unwrap_err());
        assert!(path.ends_with("030.png"), "{path}");
    }
    // decode_image_rgb8 reads the format from the bytes, not the name
    std::fs::copy(dir.file("even/000.png"), dir.file("renamed.jpg")).unwrap();
    let (w, h, rgb) = decode_image_rgb8(&dir.file("renamed.jpg")).unwrap();
    assert_eq!((w, h, &rgb[..3]), (8, 8, &[0u8, 0, 255][..]));
}

/// The decode cache: written on the first load, reused (same pixels, nothing decoded) on the next,
/// and a new file, a changed file, another size or crop, or a damaged cache file each decode again;
/// a cache that cannot be written leaves the load working.
#[test]
fn decode_cache_is_reused_until_the_files_change() {
    let dir = TempDir::new("cache");
    let images = dir.0.join("images");
    for i in 0..5usize {
        let name = format!("images/{i}.png");
        write_rgb(
            &dir.file(&name),
            &[i as u8 * 40, 7, 200].repeat(64),
            8,
            8,
            ImageFormat::Png,
        );
    }
    let cache = dir.0.join("cache");
    let load =
        |size: usize, crop: Crop| load_image_folder_cached(&images, size, crop, &cache).unwrap();
    let (first, used) = load(4, Crop::ShortSide);
    let DecodeCache::Written(file) = used else {
        panic!("first load: {used:?}")
    };
    // decoded straight into the cache file, and handed out as that file, mapped
    assert!(first.images.is_mapped());
    assert_eq!(
        first.images,
        load_image_folder(&images, 4, Crop::ShortSide)
            .unwrap()
            .images
    );
    let (second, used) = load(4, Crop::ShortSide);
    assert_eq!(used, DecodeCache::Reused(file.clone()));
    assert!(second.images.is_mapped());
    assert_eq!(
        (second.images, second.len, second.size),
        (first.images.clone(), 5, 4)
    );
    // (the file is edited in place below, which the trainer never does: keep a copy, unmapped)
    let first = first.images.to_vec();
    // no temporary file is left beside the cache
    let names: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [file.file_name().unwrap()], "{names:?}");
    // the reused pixels really come from the file: change them there, and the load returns them
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();
    let (patched, used) = load(4, Crop::ShortSide);
    assert_eq!(used, DecodeCache::Reused(file.clone()));
    assert_ne!(patched.images, first);
    // another size or crop: another key
    assert!(matches!(load(2, Crop::ShortSide).1, DecodeCache::Written(f) if f != file));
    assert!(matches!(load(4, Crop::Centre(6)).1, DecodeCache::Written(f) if f != file));
    // a truncated cache file is decoded again and rewritten
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let (redone, used) = load(4, Crop::ShortSide);
    assert_eq!(used, DecodeCache::Written(file.clone()));
    assert_eq!(redone.images, first);
    // a changed file (other content, other length) and a new file change the key
    write_rgb(
        &dir.file("images/3.png"),
        &[1, 2, 3].repeat(256),
        16,
        16,
        ImageFormat::Png,
    );
    let (changed, used) = load(4, Crop::ShortSide);
    assert!(matches!(used, DecodeCache::Written(f) if f != file));
    assert_eq!(&changed.image(3)[..3], &[1, 2, 3]);
    write_rgb(
        &dir.file("images/9.png"),
        &[9, 9, 9].repeat(64),
        8,
        8,
        ImageFormat::Png,
    );
    let (grown, used) = load(4, Crop::ShortSide);
    assert!(matches!(used, DecodeCache::Written(_)));
    assert_eq!(grown.len, 6);
    // a cache directory that cannot be made (a file is in its way): decoded, reported, no error
    std::fs::write(dir.0.join("blocked"), "a file").unwrap();
    let (ds, used) =
        load_image_folder_cached(&images, 4, Crop::ShortSide, &dir.0.join("blocked/cache"))
            .unwrap();
    assert_eq!(ds.len, 6);
    assert!(matches!(used, DecodeCache::NotWritten(_)), "{used:?}");
    assert!(
        !ds.images.is_mapped(),
        "without a cache file the pixels are in memory"
    );
    assert_eq!(ds.images, grown.images);
}

/// The "done when": the `celeba64` preset trains two steps on a folder of CelebA-shaped
/// JPEGs (178×218, centre crop 140, resized to 64), through `open_dataset` and `Trainer`.
#[test]
fn celeba64_trains_two_steps_on_a_jpeg_folder() {
    use vitgan::model::ModelConfig;
    use vitgan::train::{TrainConfig, Trainer};
    use vitgan::{Gpu, Tensor};
    let dir = TempDir::new("celeba64");
    write_celeba_jpegs(&dir, 4);
    let start = Instant::now();
    let model = ModelConfig::preset("celeba64").unwrap();
    let data = open_dataset_cropped(
        dir.0.to_str().unwrap(),
        model.image_size,
        model.channels,
        0,
        Crop::Centre(140),
    )
    .unwrap();
    assert_eq!((data.len, data.size, data.channels), (4, 64, 3));
    let gpu =
        Gpu::default_adapter().expect("tests need a GPU adapter (install mesa-vulkan-drivers)");
    let train = TrainConfig {
        batch: 2,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&gpu, &model, &train).unwrap();
    let setup = start.elapsed().as_secs_f64();
    let batcher = Batcher::new(data.len, train.batch, train.seed);
    let real = Tensor::zeros(&gpu, &[2, 64, 64, 3]).unwrap();
    let mut host = Vec::new();
    for step in 0..2 {
        Batcher::fill_batch(&data, &batcher.indices_for_step(step), &mut host);
        real.write(&host).unwrap();
        let out = trainer.train_step(&real).unwrap();
        let (d, g) = (
            out.d_loss.to_vec().unwrap()[0],
            out.g_loss.to_vec().unwrap()[0],
        );
        assert!(d.is_finite() && g.is_finite(), "step {step}: D {d}, G {g}");
        println!(
            "celeba64 step {step}: D {d:.4} G {g:.4} at {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    assert_eq!(trainer.step, 2);
    println!(
        "celeba64, batch 2 on {}: data + model {setup:.1} s, two steps {:.1} s",
        gpu.describe(),
        start.elapsed().as_secs_f64() - setup
    );
}

fn trainer() -> std::process::Command {
    common::example_binary("train")
}

/// `n` smooth 178×218 JPEGs in CelebA's layout: `dir/img_align_celeba/000001.jpg` …
fn write_celeba_jpegs(dir: &TempDir, n: usize) {
    for k in 0..n {
        let name = format!("img_align_celeba/{:06}.jpg", k + 1);
        let pixels = smooth_rgb(178, 218, k);
        write_jpeg(&dir.file(&name), &pixels, 178, 218, ExtendedColorType::Rgb8);
    }
}

#[test]
fn trainer_reads_a_jpeg_folder_with_crop() {
    let dir = TempDir::new("cli");
    write_celeba_jpegs(&dir, 3);
    let train_into = |out: &Path| {
        trainer()
            .args([
                "--preset", "tiny", "--batch", "2", "--steps", "1", "--eval-n", "0",
            ])
            .args(["--crop", "center:140", "--data"])
            .arg(dir.0.join("img_align_celeba"))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let out = dir.0.join("run");
    let run = train_into(&out);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert!(
        err.contains("(3 images, 16x16x3, crop center:140, read in"),
        "{err}"
    );
    assert!(out.join("checkpoint.safetensors").exists());
    assert!(err.contains("decode cache written to"), "{err}");
    // a second run over the same files reads the decode cache beside --out instead of decoding
    let again = train_into(&dir.0.join("run2"));
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(err.contains("from the decode cache"), "{err}");
    assert!(
        err.contains(&dir.0.join("decode-cache").display().to_string()),
        "{err}"
    );
    // a malformed --crop is refused before anything starts
    let run = trainer().args(["--crop", "middle:140"]).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("--crop") && err.contains("center:S"), "{err}");
}

/// Decode speed on ~2,000 CelebA-shaped JPEGs (178×218, about CelebA's file size) and a comparison
/// of resize filters. Run by hand:
/// `cargo test --release --test image_folder -- --ignored --nocapture decode_speed`.
#[test]
#[ignore = "a measurement (about a minute): run by hand with --ignored --nocapture"]
fn decode_speed_and_resize_filters() {
    let dir = TempDir::new("speed");
    let n = 2000;
    let (w, h) = (178usize, 218usize);
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut noise = 0x9E37_79B9_7F4A_7C15u64;
    for k in 0..n {
        // smooth content plus fine noise, so the files are about as large as CelebA's (~7 KB)
        let mut px = smooth_rgb(w, h, k);
        for v in px.iter_mut() {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            *v = v.saturating_add((noise % 5) as u8);
        }
        let path = dir.file(&format!("img_align_celeba/{:06}.jpg", k + 1));
        write_jpeg(&path, &px, w, h, ExtendedColorType::Rgb8);
        bytes += std::fs::metadata(&path).unwrap().len();
    }
    println!(
        "wrote {n} JPEGs {w}×{h}, mean {:.1} KB, in {:.1} s",
        bytes as f64 / n as f64 / 1e3,
        t.elapsed().as_secs_f64()
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (crop, size) in [
        (Crop::Centre(140), 64),
        (Crop::Centre(108), 64),
        (Crop::ShortSide, 32),
    ] {
        let t = Instant::now();
        let ds = load_image_folder(&dir.0, size, crop).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(ds.len, n);
        println!(
            "load_image_folder {crop} → {size}: {:.0} images/s on {threads} threads ({s:.2} s)",
            n as f64 / s
        );
    }
    let files = image_files_in(&dir.0).unwrap();
    let t = Instant::now();
    for f in &files[..500] {
        decode_image_rgb8(f).unwrap();
    }
    println!(
        "decode_image_rgb8 alone, one thread: {:.0} images/s",
        500.0 / t.elapsed().as_secs_f64()
    );

    // resize filters, 140 → 64: speed, and how much of a grating survives above the output's
    // Nyquist frequency (aliasing: should be 0) and below it (sharpness: should be 1)
    let (side, size) = (140usize, 64usize);
    let grating = |period: f64| -> Vec<u8> {
        (0..side * side)
            .flat_map(|i| {
                let x = (i % side) as f64;
                let v = (127.5 + 100.0 * (std::f64::consts::TAU * x / period).cos()).round() as u8;
                [v; 3]
            })
            .collect()
    };
    let amplitude = |out: &[u8]| -> f64 {
        let values: Vec<f64> = out.iter().step_by(3).map(|&v| v as f64).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
            * std::f64::consts::SQRT_2
            / 100.0
    };
    type Filter<'a> = (&'a str, Box<dyn Fn(&[u8]) -> Vec<u8> + 'a>);
    let ours = move |img: &[u8]| {
        let ds = ImageDataset {
            images: img.to_vec().into(),
            len: 1,
            size: side,
            channels: 3,
            source: String::new(),
        };
        ds.resized(size).images.to_vec()
    };
    let with = |filter: image::imageops::FilterType| {
        move |img: &[u8]| {
            let rgb = image::RgbImage::from_raw(side as u32, side as u32, img.to_vec()).unwrap();
            image::imageops::resize(&rgb, size as u32, size as u32, filter).into_raw()
        }
    };
    let filters: Vec<Filter> = vec![
        ("area average (this crate)", Box::new(ours)),
        (
            "image Triangle (PIL/torchvision bilinear)",
            Box::new(with(image::imageops::FilterType::Triangle)),
        ),
        (
            "image CatmullRom (PIL bicubic)",
            Box::new(with(image::imageops::FilterType::CatmullRom)),
        ),
    ];
    let nyquist_period = 2.0 * side as f64 / size as f64; // 4.375 input pixels
    let sample = smooth_rgb(side, side, 3);
    for (name, f) in &filters {
        let t = Instant::now();
        for _ in 0..500 {
            std::hint::black_box(f(&sample));
        }
        let per_s = 500.0 / t.elapsed().as_secs_f64();
        let above = amplitude(&f(&grating(3.0)));
        let below = amplitude(&f(&grating(2.0 * nyquist_period)));
        println!(
            "{name:<42} {per_s:>7.0} resizes/s; grating of period 3 px (above Nyquist {nyquist_period:.2} px) \
             keeps {:.1}%, of period {:.2} px (half Nyquist) keeps {:.1}%",
            100.0 * above,
            2.0 * nyquist_period,
            100.0 * below
        );
    }
}
