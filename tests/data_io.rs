//! Dataset readers, batching, checkpoints and PNG outputs (host only, no GPU).

mod common;
use common::TempDir;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use vitgan::Error;
use vitgan::data::cifar::{CIFAR10_RECORD_BYTES, load_cifar10};
use vitgan::data::image_folder::{Crop, load_image_folder};
use vitgan::data::synthetic::synthetic_shapes;
use vitgan::data::{Batcher, ImageDataset};
use vitgan::io::checkpoint::Checkpoint;
use vitgan::io::image::save_image_grid;

/// The PNG tests below read through the image-folder reader with the default crop.
fn load_png_folder(dir: &Path, size: usize) -> vitgan::Result<ImageDataset> {
    load_image_folder(dir, size, Crop::ShortSide)
}

/// One CIFAR-10 record: label, then R, G, B planes given by `pixel(channel, index)`.
fn cifar_record(label: u8, pixel: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut record = vec![label];
    for c in 0..3 {
        record.extend((0..1024).map(|p| pixel(c, p)));
    }
    assert_eq!(record.len(), CIFAR10_RECORD_BYTES);
    record
}

fn data_error(e: Error) -> (String, u64, String) {
    match e {
        Error::Data {
            path,
            offset,
            detail,
        } => (path, offset, detail),
        other => panic!("expected Error::Data, got {other:?}"),
    }
}

#[test]
fn cifar_planes_become_nhwc() {
    let dir = TempDir::new("cifar");
    let file = dir.join("data_batch_1.bin");
    let mut bytes = cifar_record(3, |c, p| match c {
        0 => (p % 256) as u8,
        1 => (p / 4) as u8,
        _ => 255 - (p % 256) as u8,
    });
    bytes.extend(cifar_record(9, |c, _| [10, 20, 30][c]));
    std::fs::write(&file, &bytes).unwrap();

    let ds = load_cifar10(&file).unwrap();
    assert_eq!((ds.len, ds.size, ds.channels), (2, 32, 3));
    assert_eq!(ds.images.len(), 2 * 32 * 32 * 3);
    for y in 0..32 {
        for x in 0..32 {
            let p = y * 32 + x;
            let at = p * 3;
            assert_eq!(ds.images[at], (p % 256) as u8, "R at ({x},{y})");
            assert_eq!(ds.images[at + 1], (p / 4) as u8, "G at ({x},{y})");
            assert_eq!(ds.images[at + 2], 255 - (p % 256) as u8, "B at ({x},{y})");
        }
    }
    assert_eq!(ds.image(1)[..6], [10, 20, 30, 10, 20, 30]);

    let mut out = vec![0.0; ds.image_len()];
    ds.get_f32(1, &mut out);
    assert!((out[0] - (10.0 / 127.5 - 1.0)).abs() < 1e-6);
    ds.get_f32(0, &mut out);
    assert_eq!(out[0], -1.0); // pixel 0 → -1
    assert_eq!(out[255 * 3], 1.0); // R of pixel 255 is 255 → +1
}

#[test]
fn cifar_truncated_file_names_file_and_offset() {
    let dir = TempDir::new("cifar-truncated");
    let file = dir.join("data_batch_1.bin");
    let mut bytes = cifar_record(1, |_, _| 7);
    bytes.extend(cifar_record(2, |_, _| 8));
    bytes.extend(&cifar_record(3, |_, _| 9)[..100]);
    std::fs::write(&file, &bytes).unwrap();
    let err = load_cifar10(&file).unwrap_err();
    let message = err.to_string();
    let (path, offset, _) = data_error(err);
    assert!(path.ends_with("data_batch_1.bin"), "{path}");
    assert_eq!(offset, 2 * CIFAR10_RECORD_BYTES as u64);
    assert!(message.contains("data_batch_1.bin"), "{message}");
    assert!(
        message.contains(&format!("{}", 2 * CIFAR10_RECORD_BYTES)),
        "{message}"
    );
}

#[test]
fn cifar_corrupt_label_is_reported_with_record() {
    let dir = TempDir::new("cifar-label");
    let file = dir.join("test_batch.bin");
    let mut bytes = Vec::new();
    for r in 0..20 {
        bytes.extend(cifar_record(if r == 17 { 200 } else { 5 }, |_, _| 0));
    }
    std::fs::write(&file, &bytes).unwrap();
    let (path, offset, detail) = data_error(load_cifar10(&file).unwrap_err());
    assert!(path.ends_with("test_batch.bin"));
    assert_eq!(offset, 17 * CIFAR10_RECORD_BYTES as u64);
    assert!(
        detail.contains("corrupt label 200 at record 17"),
        "{detail}"
    );
}

#[test]
fn cifar_directory_loads_present_batches_in_order() {
    let dir = TempDir::new("cifar-dir");
    let err = load_cifar10(&dir.0).unwrap_err().to_string();
    assert!(err.contains(&dir.0.display().to_string()), "{err}");
    assert!(err.contains("data_batch_1.bin"), "{err}");

    std::fs::write(dir.join("data_batch_2.bin"), cifar_record(0, |_, _| 2)).unwrap();
    std::fs::write(dir.join("data_batch_1.bin"), cifar_record(0, |_, _| 1)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), cifar_record(0, |_, _| 99)).unwrap();
    std::fs::write(dir.join("readme.html"), "not data").unwrap();
    let ds = load_cifar10(&dir.0).unwrap();
    assert_eq!(ds.len, 2);
    assert!(ds.image(0).iter().all(|&p| p == 1));
    assert!(ds.image(1).iter().all(|&p| p == 2));
}

/// Writes a PNG with the given colour type and bit depth; `data` is the raw scanline bytes.
fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    colour: png::ColorType,
    depth: png::BitDepth,
    palette: Option<Vec<u8>>,
    data: &[u8],
) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(colour);
    encoder.set_depth(depth);
    if let Some(palette) = palette {
        encoder.set_palette(palette);
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

#[test]
fn png_folder_decodes_all_colour_types() {
    use png::{BitDepth, ColorType};
    let dir = TempDir::new("png");
    // a.png: 8×8 RGB, uniform (10, 20, 30)
    write_png(
        &dir.join("a.png"),
        8,
        8,
        ColorType::Rgb,
        BitDepth::Eight,
        None,
        &[10, 20, 30].repeat(64),
    );
    // B.PNG: 8×8 gray 16-bit, value 0xC807 = 51207 → round(51207 / 257) = 199 (not the high byte)
    write_png(
        &dir.join("B.PNG"),
        8,
        8,
        ColorType::Grayscale,
        BitDepth::Sixteen,
        None,
        &[200, 7].repeat(64),
    );
    // c.png: 12×8 RGBA; centre 8×8 is (0, 255, 0), two-pixel borders left and right are red
    let mut rgba = Vec::new();
    for _y in 0..8 {
        for x in 0..12 {
            let px = if (2..10).contains(&x) {
                [0, 255, 0, 9]
            } else {
                [255, 0, 0, 255]
            };
            rgba.extend(px);
        }
    }
    write_png(
        &dir.join("c.png"),
        12,
        8,
        ColorType::Rgba,
        BitDepth::Eight,
        None,
        &rgba,
    );
    // d.png: 8×8 indexed 2-bit, all palette entry 1 = (1, 2, 3)
    write_png(
        &dir.join("d.png"),
        8,
        8,
        ColorType::Indexed,
        BitDepth::Two,
        Some(vec![0, 0, 0, 1, 2, 3]),
        &[0b0101_0101; 16],
    );
    // e.png: 16×16 gray+alpha, 8-bit, value 50 → resized down to 8×8 stays 50
    write_png(
        &dir.join("e.png"),
        16,
        16,
        ColorType::GrayscaleAlpha,
        BitDepth::Eight,
        None,
        &[50, 128].repeat(256),
    );
    // f.png: 4×4 RGB (upscaled 2× to 8×8), uniform
    write_png(
        &dir.join("f.png"),
        4,
        4,
        ColorType::Rgb,
        BitDepth::Eight,
        None,
        &[90, 80, 70].repeat(16),
    );
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    std::fs::create_dir(dir.join("sub.png")).unwrap(); // an empty directory: searched, nothing in it

    let ds = load_png_folder(&dir.0, 8).unwrap();
    assert_eq!((ds.len, ds.size, ds.channels), (6, 8, 3));
    // sorted by file name: "B.PNG" < "a.png" < "c.png" < ... (byte order)
    let expected: [[u8; 3]; 6] = [
        [199, 199, 199],
        [10, 20, 30],
        [0, 255, 0],
        [1, 2, 3],
        [50, 50, 50],
        [90, 80, 70],
    ];
    for (i, rgb) in expected.iter().enumerate() {
        assert!(
            ds.image(i).chunks_exact(3).all(|p| p == rgb),
            "image {i}: {:?}",
            &ds.image(i)[..6]
        );
    }
}

#[test]
fn png_folder_errors_name_the_file() {
    use png::{BitDepth, ColorType};
    let dir = TempDir::new("png-errors");
    std::fs::write(dir.join("readme.txt"), "hello").unwrap();
    let err = load_png_folder(&dir.0, 8).unwrap_err().to_string();
    assert!(err.contains(&dir.0.display().to_string()), "{err}");
    assert!(err.contains("no .png/.jpg/.jpeg/.webp image"), "{err}");

    write_png(
        &dir.join("good.png"),
        8,
        8,
        ColorType::Rgb,
        BitDepth::Eight,
        None,
        &[0; 192],
    );
    std::fs::write(dir.join("fake.png"), "this is not an image").unwrap();
    let (path, offset, _) = data_error(load_png_folder(&dir.0, 8).unwrap_err());
    assert!(path.ends_with("fake.png"), "{path}");
    assert_eq!(offset, 0);

    // a real PNG cut short
    std::fs::remove_file(dir.join("fake.png")).unwrap();
    let full = std::fs::read(dir.join("good.png")).unwrap();
    std::fs::write(dir.join("cut.png"), &full[..full.len() / 2]).unwrap();
    let message = load_png_folder(&dir.0, 8).unwrap_err().to_string();
    assert!(message.contains("cut.png"), "{message}");
    std::fs::remove_file(dir.join("cut.png")).unwrap();

    write_png(
        &dir.join("tiny.png"),
        3,
        5,
        ColorType::Rgb,
        BitDepth::Eight,
        None,
        &[0; 45],
    );
    let err = load_png_folder(&dir.0, 8).unwrap_err().to_string();
    assert!(err.contains("tiny.png") && err.contains("3×5"), "{err}");
    // at 6×6 the 3-pixel short side is exactly half: accepted
    assert_eq!(load_png_folder(&dir.0, 6).unwrap().len, 2);
}

#[test]
fn resize_down_averages_and_up_interpolates() {
    // 4×4 single-channel image, columns 0, 100, 200, 40
    let row = [0u8, 100, 200, 40];
    let ds = ImageDataset {
        images: row.repeat(4).into(),
        len: 1,
        size: 4,
        channels: 1,
        source: "test".into(),
    };
    let down = ds.resized(2);
    assert_eq!(down.images, vec![50, 120, 50, 120]);
    let down3 = ds.resized(3); // cells of 4/3 pixels
    // cell 0: (1·0 + ⅓·100)/(4/3) = 25; cell 1: (⅔·100 + ⅔·200)/(4/3) = 150; cell 2: (⅓·200 + 40)/(4/3) = 80
    assert_eq!(&down3.images[..3], &[25, 150, 80]);
    let up = ds.resized(8);
    // u = (x + ½)/2 − ½: x=0 → clamp 0 → 0; x=1 → 0.25 → 25; x=2 → 0.75 → 75; x=7 → 3.25 → clamp 3 → 40
    assert_eq!(&up.images[..3], &[0, 25, 75]);
    assert_eq!(up.images[7], 40);
    assert_eq!((up.size, up.len, up.images.len()), (8, 1, 64));
}

#[test]
fn synthetic_shapes_are_deterministic_and_varied() {
    let a = synthetic_shapes(16, 32, 7);
    let b = synthetic_shapes(16, 32, 7);
    let c = synthetic_shapes(16, 32, 8);
    assert_eq!((a.len, a.size, a.channels), (16, 32, 3));
    assert_eq!(a.images, b.images);
    assert_ne!(a.images, c.images);
    // the first images do not depend on n
    assert_eq!(
        synthetic_shapes(4, 32, 7).images,
        a.images[..4 * 32 * 32 * 3]
    );
    // images differ from each other and each has real contrast
    let distinct: BTreeSet<&[u8]> = (0..a.len).map(|i| a.image(i)).collect();
    assert_eq!(distinct.len(), a.len);
    for i in 0..a.len {
        let image = a.image(i);
        let (lo, hi) = (image.iter().min().unwrap(), image.iter().max().unwrap());
        assert!(hi - lo > 40, "image {i} is nearly flat");
        // grey: R = G = B; a bright shape (level ≥ 0.6) over a dark background (≤ 0.4)
        assert!(
            image.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]),
            "image {i} is not grey"
        );
        assert!(*hi >= 153 && *lo <= 102, "image {i}: levels {lo}..{hi}");
    }
    let mean = a.images.iter().map(|&p| p as f64).sum::<f64>() / a.images.len() as f64;
    assert!((60.0..200.0).contains(&mean), "mean {mean}");
}

#[test]
fn batcher_is_deterministic_and_covers_each_epoch() {
    let (len, batch) = (10, 4);
    let batcher = Batcher::new(len, batch, 42);
    let again = Batcher::new(len, batch, 42);
    let other = Batcher::new(len, batch, 43);
    let stream: Vec<usize> = (0..25).flat_map(|s| batcher.indices_for_step(s)).collect();
    assert_eq!(stream.len(), 100);
    // pure function of (seed, step): any order of queries gives the same batches
    for step in [24u64, 3, 0, 17, 3] {
        assert_eq!(batcher.indices_for_step(step), again.indices_for_step(step));
        assert_eq!(
            batcher.indices_for_step(step),
            stream[step as usize * batch..(step as usize + 1) * batch]
        );
    }
    // every epoch (10 consecutive stream positions) is a permutation
    for epoch in stream.chunks(len) {
        let seen: BTreeSet<usize> = epoch.iter().copied().collect();
        assert_eq!(seen.len(), len);
        assert!(seen.iter().all(|&i| i < len));
    }
    // epochs are shuffled differently, and seeds differ
    assert_ne!(stream[..len], stream[len..2 * len]);
    let other_stream: Vec<usize> = (0..25).flat_map(|s| other.indices_for_step(s)).collect();
    assert_ne!(stream, other_stream);
    // batches larger than the dataset still cover it
    let big = Batcher::new(3, 7, 1);
    let s: Vec<usize> = (0..3).flat_map(|k| big.indices_for_step(k)).collect();
    for epoch in s.chunks(3) {
        assert_eq!(epoch.iter().copied().collect::<BTreeSet<_>>().len(), 3);
    }
    assert!(Batcher::new(0, 4, 1).indices_for_step(5).is_empty());
}

#[test]
fn fill_batch_writes_nhwc_f32() {
    let ds = synthetic_shapes(5, 8, 1);
    let mut out = Vec::new();
    Batcher::fill_batch(&ds, &[4, 0], &mut out);
    assert_eq!(out.len(), 2 * 8 * 8 * 3);
    let mut expected = vec![0.0; 8 * 8 * 3];
    ds.get_f32(4, &mut expected);
    assert_eq!(out[..192], expected[..]);
    ds.get_f32(0, &mut expected);
    assert_eq!(out[192..], expected[..]);
    assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
}

fn sample_checkpoint() -> Checkpoint {
    let mut metadata = BTreeMap::new();
    metadata.insert("config.width".into(), "384".into());
    metadata.insert("config.depth".into(), "4".into());
    metadata.insert("step".into(), "1200".into());
    Checkpoint {
        tensors: vec![
            (
                "g.w".into(),
                vec![2, 3],
                vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE, 0.0, 7.0],
            ),
            ("a.bias".into(), vec![4], vec![0.25; 4]),
            ("scalar".into(), vec![], vec![9.0]),
        ],
        metadata,
    }
}

#[test]
fn checkpoint_round_trip_is_atomic() {
    let dir = TempDir::new("ckpt");
    let path = dir.join("nested/run/checkpoint.safetensors"); // directories created on save
    let ckpt = sample_checkpoint();
    ckpt.save(&path).unwrap();
    ckpt.save(&path).unwrap(); // overwriting works too
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["checkpoint.safetensors".to_string()],
        "no .tmp left"
    );

    let loaded = Checkpoint::load(&path).unwrap();
    let mut sorted = ckpt.clone();
    sorted.tensors.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(loaded, sorted);
    assert_eq!(loaded.tensor("g.w").unwrap().0, &[2, 3]);

    // the file is standard safetensors
    let bytes = std::fs::read(&path).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        parsed.tensor("a.bias").unwrap().dtype(),
        safetensors::Dtype::F32
    );

    // shape/value mismatch is refused
    let mut bad = ckpt.clone();
    bad.tensors[1].2.pop();
    assert!(matches!(
        bad.save(&dir.join("bad.safetensors")),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn checkpoint_truncated_or_foreign_is_an_error() {
    let dir = TempDir::new("ckpt-bad");
    let path = dir.join("c.safetensors");
    sample_checkpoint().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let (name, offset, _) = data_error(Checkpoint::load(&cut).unwrap_err());
    assert!(name.ends_with("cut.safetensors"));
    assert_eq!(offset, bytes.len() as u64 - 5);

    std::fs::write(&cut, &bytes[..4]).unwrap();
    let (name, offset, _) = data_error(Checkpoint::load(&cut).unwrap_err());
    assert!(name.ends_with("cut.safetensors"));
    assert_eq!(offset, 0);

    std::fs::write(&cut, &bytes[..40]).unwrap(); // header cut
    let message = Checkpoint::load(&cut).unwrap_err().to_string();
    assert!(message.contains("cut.safetensors"), "{message}");

    let mut garbage = 10u64.to_le_bytes().to_vec();
    garbage.extend(b"not json!!");
    std::fs::write(&cut, &garbage).unwrap();
    assert!(matches!(
        Checkpoint::load(&cut),
        Err(Error::Data { offset: 8, .. })
    ));

    // an F16 tensor is refused, naming it
    let half_data = [0u8; 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![2], &half_data).unwrap();
    let f16_path = dir.join("f16.safetensors");
    safetensors::serialize_to_file([("half.weight", view)], &None, &f16_path).unwrap();
    let (_, _, detail) = data_error(Checkpoint::load(&f16_path).unwrap_err());
    assert!(
        detail.contains("half.weight") && detail.contains("F16"),
        "{detail}"
    );

    assert!(matches!(
        Checkpoint::load(&dir.join("missing.safetensors")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn checkpoint_config_mismatch_names_the_field() {
    let ckpt = sample_checkpoint();
    let mut expected: BTreeMap<String, String> = ckpt
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("config."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ckpt.check_config(&expected).unwrap();

    expected.insert("config.width".into(), "256".into());
    match ckpt.check_config(&expected).unwrap_err() {
        Error::Config { field, detail } => {
            assert_eq!(field, "config.width");
            assert!(detail.contains("384") && detail.contains("256"), "{detail}");
            assert!(detail.contains("--resume"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    expected.insert("config.width".into(), "384".into());

    expected.insert("config.heads".into(), "6".into()); // the checkpoint lacks it
    assert!(matches!(ckpt.check_config(&expected),
        Err(Error::Config { field, .. }) if field == "config.heads"));
    expected.remove("config.heads");

    expected.remove("config.depth"); // the run lacks a saved key
    assert!(matches!(ckpt.check_config(&expected),
        Err(Error::Config { field, .. }) if field == "config.depth"));
}

fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height, info.color_type, buf)
}

#[test]
fn image_grid_layout_and_values() {
    let dir = TempDir::new("grid");
    let (n, size) = (5, 4);
    let mut images = Vec::new();
    for i in 0..n {
        // image i: every pixel (R, G, B) = (-1, i/4·2−1, 2) → (0, 255·i/4 rounded, clamped 255)
        for _ in 0..size * size {
            images.extend([-1.0, i as f32 / 2.0 - 1.0, 2.0]);
        }
    }
    let path = dir.join("out/grid.png");
    save_image_grid(&path, &images, n, size, 3, 3).unwrap();
    assert!(!dir.join("out/grid.png.tmp").exists());
    let (w, h, colour, pixels) = decode(&path);
    assert_eq!(
        (w, h, colour),
        (3 * 4 + 2 * 2, 2 * 4 + 2, png::ColorType::Rgb)
    );
    let at = |x: usize, y: usize| &pixels[(y * w as usize + x) * 3..][..3];
    assert_eq!(at(0, 0), [0, 0, 255]);
    assert_eq!(at(4, 0), [0, 0, 0]); // gap
    assert_eq!(at(6, 3), [0, 64, 255]); // image 1
    assert_eq!(at(1, 7), [0, 191, 255]); // image 3, second row
    assert_eq!(at(15, 9), [0, 0, 0]); // empty sixth cell

    // grayscale input, fewer images than columns
    save_image_grid(&path, &[0.0; 2 * 16], 2, 4, 1, 8).unwrap();
    let (w, h, _, pixels) = decode(&path);
    assert_eq!((w, h), (10, 4));
    assert_eq!(&pixels[..3], &[128, 128, 128]);

    assert!(matches!(
        save_image_grid(&path, &[0.0; 10], 2, 4, 3, 8),
        Err(Error::Shape { .. })
    ));

    // magnified: each pixel a 3×3 block, gaps unchanged; a 2×2 grey image with distinct pixels
    use vitgan::io::image::{grid_scale, save_image_grid_scaled};
    assert_eq!(
        (
            grid_scale(16),
            grid_scale(32),
            grid_scale(64),
            grid_scale(100)
        ),
        (4, 2, 1, 1)
    );
    let grey = [-1.0, 1.0, 0.0, -1.0];
    save_image_grid_scaled(&path, &[grey, grey].concat(), 2, 2, 1, 2, 3).unwrap();
    let (w, h, _, pixels) = decode(&path);
    assert_eq!((w, h), (2 * 6 + 2, 6));
    let at = |x: usize, y: usize| pixels[(y * w as usize + x) * 3];
    assert_eq!([at(0, 0), at(2, 2), at(3, 0), at(5, 2)], [0, 0, 255, 255]);
    assert_eq!(
        [at(0, 3), at(3, 5), at(6, 0), at(8, 0), at(11, 0)],
        [128, 0, 0, 0, 255]
    );
}

/// An IDX image file of `n` images of `s × s`, pixel `(i, y, x) = f(i, y, x)`.
fn idx_bytes(n: u32, s: u32, f: impl Fn(u32, u32, u32) -> u8) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, 3];
    for d in [n, s, s] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    for i in 0..n {
        for y in 0..s {
            for x in 0..s {
                b.push(f(i, y, x));
            }
        }
    }
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_images_load_plain_and_gzipped_from_a_directory() {
    use vitgan::data::idx::load_idx_images;
    let dir = TempDir::new("idx");
    let raw = idx_bytes(3, 5, |i, y, x| (i * 50 + y * 5 + x) as u8);
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&raw)).unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 0],
    )
    .unwrap();
    let ds = load_idx_images(&dir.0).unwrap();
    assert_eq!((ds.len, ds.size, ds.channels), (3, 5, 1));
    assert_eq!(ds.image(2)[5 + 3], 100 + 5 + 3);
    assert!(
        ds.source.ends_with("train-images-idx3-ubyte.gz"),
        "{}",
        ds.source
    );
    // the same file uncompressed, named directly
    let plain = dir.join("t10k-images-idx3-ubyte");
    std::fs::write(&plain, &raw).unwrap();
    assert_eq!(load_idx_images(&plain).unwrap().images, ds.images);
    // through open_dataset: grey → RGB for an RGB preset, resized to the preset's size
    let rgb = vitgan::data::open_dataset(plain.to_str().unwrap(), 5, 3, 0).unwrap();
    assert_eq!((rgb.channels, rgb.size), (3, 5));
    assert_eq!(&rgb.image(2)[..6], &[100, 100, 100, 101, 101, 101]);
    let small = vitgan::data::open_dataset(dir.0.to_str().unwrap(), 4, 1, 0).unwrap();
    assert_eq!((small.channels, small.size, small.len), (1, 4, 3));
}

#[test]
fn idx_corrupt_or_truncated_names_file_and_offset() {
    use vitgan::data::idx::{load_idx_images, parse_idx_images};
    let good = idx_bytes(4, 6, |i, y, x| (i + y + x) as u8);
    // truncated pixel data: offset = end of the file
    let cut = &good[..good.len() - 7];
    let (path, offset, detail) = data_error(parse_idx_images(cut, "cut.idx").unwrap_err());
    assert_eq!(path, "cut.idx");
    assert_eq!(offset, cut.len() as u64);
    assert!(
        detail.contains("144 pixel bytes") && detail.contains("137"),
        "{detail}"
    );
    // trailing garbage
    let mut long = good.clone();
    long.push(1);
    assert!(parse_idx_images(&long, "long").is_err());
    // header problems, each at its own offset
    let cases: [(usize, u8, u64); 4] = [(0, 1, 0), (2, 0x0B, 2), (3, 1, 3), (9, 7, 8)];
    for (at, value, want_offset) in cases {
        let mut bad = good.clone();
        bad[at] = value;
        let (_, offset, detail) = data_error(parse_idx_images(&bad, "bad").unwrap_err());
        assert_eq!(offset, want_offset, "byte {at} = {value}: {detail}");
    }
    for n in 0..16 {
        assert!(parse_idx_images(&good[..n], "short").is_err(), "{n} bytes");
    }
    // a huge image count is refused before anything is allocated
    let mut huge = good.clone();
    huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(parse_idx_images(&huge, "huge").is_err());
    // a truncated gzip stream names the file
    let dir = TempDir::new("idx-gz");
    let gz = gzip(&good);
    let file = dir.join("train-images-idx3-ubyte.gz");
    std::fs::write(&file, &gz[..gz.len() / 2]).unwrap();
    let (path, _, _) = data_error(load_idx_images(&file).unwrap_err());
    assert!(path.ends_with("train-images-idx3-ubyte.gz"), "{path}");
    // a directory without an IDX file
    let empty = TempDir::new("idx-empty");
    assert!(matches!(
        load_idx_images(&empty.0),
        Err(Error::Config { .. })
    ));
}

#[test]
fn channel_conversion() {
    let rgb = ImageDataset {
        images: vec![255, 0, 0, 10, 20, 30].into(),
        len: 2,
        size: 1,
        channels: 3,
        source: "t".into(),
    };
    let grey = rgb.with_channels(1).unwrap();
    assert_eq!(grey.images, vec![76, 18]); // 0.299·255 = 76.2; 2.99 + 11.74 + 3.42 = 18.15
    assert_eq!(
        grey.with_channels(3).unwrap().images,
        vec![76, 76, 76, 18, 18, 18]
    );
    assert!(rgb.with_channels(2).is_err());
}

/// Sample folders read back with the channels they were written with: grey PNGs as 1 channel,
/// colour as RGB; a `.npy` keeps its C; other files are refused.
#[test]
fn sample_images_keep_their_channels() {
    use vitgan::data::open_sample_images;
    use vitgan::io::image::save_png;
    let dir = std::env::temp_dir().join(format!("vitgan-samples-{}", std::process::id()));
    let (grey, colour) = (dir.join("grey"), dir.join("colour"));
    std::fs::create_dir_all(&grey).unwrap();
    std::fs::create_dir_all(&colour).unwrap();
    for i in 0..3u8 {
        let g: Vec<u8> = (0..16).map(|k| k * 9 + i).collect();
        save_png(&grey.join(format!("{i:06}.png")), &g, 4, 4, 1).unwrap();
        let c: Vec<u8> = (0..48).map(|k| k * 3 + i).collect();
        save_png(&colour.join(format!("{i:06}.png")), &c, 4, 4, 3).unwrap();
    }
    let g = open_sample_images(&grey).unwrap();
    assert_eq!((g.len, g.size, g.channels), (3, 4, 1));
    assert_eq!(g.image(1), (0..16).map(|k| k * 9 + 1).collect::<Vec<u8>>());
    let c = open_sample_images(&colour).unwrap();
    assert_eq!((c.len, c.size, c.channels), (3, 4, 3));
    let npy = dir.join("s.npy");
    vitgan::io::npy::save_npy_u8(&npy, &[2, 4, 4, 1], &[7; 32]).unwrap();
    let n = open_sample_images(&npy).unwrap();
    assert_eq!((n.len, n.size, n.channels), (2, 4, 1));
    vitgan::io::npy::save_npy_u8(&npy, &[2, 4, 3, 1], &[7; 24]).unwrap();
    assert!(open_sample_images(&npy).is_err(), "not square");
    let txt = dir.join("x.txt");
    std::fs::write(&txt, b"x").unwrap();
    assert!(open_sample_images(&txt).is_err());
    assert!(open_sample_images(&dir.join("missing")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

/// The background prefetcher yields, in order, exactly the batches the training loop would fill
/// itself (across an epoch boundary, with recycled buffers), from any first step (a resumed run),
/// and dropping it ends its thread.
#[test]
fn prefetched_batches_equal_the_batches_filled_in_the_loop() {
    use std::sync::Arc;
    use vitgan::data::Prefetcher;
    let data = Arc::new(synthetic_shapes(37, 8, 3));
    let batcher = Arc::new(Batcher::new(data.len, 5, 11));
    for first in [0u64, 6] {
        let mut prefetch = Prefetcher::start(data.clone(), batcher.clone(), first, 2);
        // 20 steps of 5 over 37 images: three epochs (three permutations)
        for step in first..first + 20 {
            let (got_step, got) = prefetch.next_batch().unwrap();
            let mut want = Vec::new();
            Batcher::fill_batch(&data, &batcher.indices_for_step(step), &mut want);
            assert_eq!(got_step, step);
            assert_eq!(got, want, "step {step}");
            prefetch.recycle(got);
        }
    }
    // both prefetchers were dropped at the end of their iteration: their threads ended (a thread
    // still running would hold a reference to the data)
    assert_eq!(Arc::strong_count(&data), 1);
}
