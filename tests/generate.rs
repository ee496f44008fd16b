//! Generating from a checkpoint (`examples/generate.rs`): the model config rebuilt from checkpoint
//! metadata, a trainer rebuilt from a checkpoint draws what the original drew, the `.npy` / PNG /
//! grid outputs hold the right bytes, and user mistakes are refused with a message.
mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use vitgan::io::checkpoint::Checkpoint;
use vitgan::io::image::{grid_scale, to_byte, to_bytes};
use vitgan::io::npy::{NpyU8Writer, load_npy_u8, npy_u8_header, save_npy_u8};
use vitgan::model::{ModelConfig, NetConfig, PatchDecoder, StyleInjection};
use vitgan::nn::WeightNorm;
use vitgan::ops::attention::AttentionKind;
use vitgan::train::generate::{
    GenerateOptions, Output, Progress, Weights, generate, latents, read_checkpoint,
};
use vitgan::train::{TrainConfig, Trainer};
use vitgan::{Error, Tensor};

/// The `tiny` preset shrunk to 8×8 images and width 16 (every field is in the checkpoint, so the
/// rebuilt config is this one, not `tiny`'s sizes).
fn micro(channels: usize) -> ModelConfig {
    let net = NetConfig {
        patch: 4,
        depth: 1,
        width: 16,
        heads: 2,
        mlp_hidden: 32,
    };
    ModelConfig {
        image_size: 8,
        channels,
        latent_dim: 16,
        mapping_layers: 1,
        generator: net.clone(),
        discriminator: net,
        inr_hidden: 16,
        ..ModelConfig::tiny()
    }
}

/// A micro trainer after one step on the synthetic shapes (1-channel when `channels` is 1).
fn trained(channels: usize, seed: u64) -> Trainer {
    let g = gpu();
    let cfg = TrainConfig {
        batch: 4,
        seed,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&g, &micro(channels), &cfg).unwrap();
    let data = vitgan::data::synthetic::synthetic_shapes(4, 8, seed)
        .with_channels(channels)
        .unwrap();
    let mut host = Vec::new();
    vitgan::data::Batcher::fill_batch(&data, &[0, 1, 2, 3], &mut host);
    let real = Tensor::from_slice(&g, &host, &[4, 8, 8, channels]).unwrap();
    trainer.train_step(&real).unwrap();
    trainer
}

fn message<T>(r: vitgan::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

#[test]
fn config_from_fields_round_trips_presets_and_switches() {
    for name in ModelConfig::PRESETS {
        let m = ModelConfig::preset(name).unwrap();
        assert_eq!(
            ModelConfig::from_fields(name, &m.fields()).unwrap(),
            m,
            "{name}"
        );
    }
    // every switch away from its default, other sizes, one channel
    let mut m = ModelConfig::tiny();
    m.channels = 1;
    m.image_size = 24;
    m.latent_dim = 40;
    m.mapping_layers = 3;
    m.inr_hidden = 20;
    m.generator = NetConfig {
        patch: 6,
        depth: 3,
        width: 48,
        heads: 3,
        mlp_hidden: 96,
    };
    m.discriminator.patch = 8;
    m.discriminator.mlp_hidden = 200;
    m.d_attention = AttentionKind::Dot;
    m.d_weight_norm = WeightNorm::Spectral;
    m.d_overlapping_patches = false;
    m.g_style = StyleInjection::AddToTokens;
    m.g_decoder = PatchDecoder::Linear;
    m.d_query_gain = 0.3;
    m.g_equalised_affines = true;
    m.inr_demodulate_output = true;
    let back = ModelConfig::from_fields("tiny", &m.fields()).unwrap();
    assert_eq!(back, m);
    m.d_weight_norm = WeightNorm::None;
    assert_eq!(ModelConfig::from_fields("tiny", &m.fields()).unwrap(), m);
    // missing fields keep the preset's; keys without the prefix are ignored
    let mut only = BTreeMap::new();
    only.insert("config.channels".to_string(), "1".to_string());
    only.insert("step".to_string(), "12".to_string());
    let c = ModelConfig::from_fields("cifar32", &only).unwrap();
    assert_eq!(
        c,
        ModelConfig {
            channels: 1,
            ..ModelConfig::cifar32()
        }
    );

    // errors name the field
    let with = |key: &str, value: &str| {
        let mut f = ModelConfig::tiny().fields();
        f.insert(key.into(), value.into());
        ModelConfig::from_fields("tiny", &f)
    };
    for (key, value, says) in [
        ("config.colour_space", "rgb", "not a model config field"),
        ("config.generator.wings", "2", "not a model config field"),
        ("config.critic.depth", "2", "not a model config field"),
        ("config.batch", "32", "not a model config field"),
        ("config.channels", "three", "not a whole number"),
        ("config.d_attention", "cosine", "one of Dot, L2"),
        ("config.d_overlapping_patches", "yes", "`true` or `false`"),
        ("config.d_query_gain", "big", "not a number"),
        ("config.generator.patch", "5", "not divisible by patch 5"),
    ] {
        let msg = message(with(key, value));
        let field = key.trim_start_matches("config.");
        assert!(
            msg.contains(field) && msg.contains(says),
            "{key}={value}: {msg}"
        );
    }
    let msg = message(ModelConfig::from_fields("imagenet", &BTreeMap::new()));
    assert!(msg.contains("preset") && msg.contains("imagenet"), "{msg}");
}

#[test]
fn bytes_round_half_up_and_clamp() {
    // exact reference: ⌊(x + 1)/2·255 + ½⌋ in f64, clamped
    let reference = |x: f32| {
        ((x as f64 + 1.0) / 2.0 * 255.0 + 0.5)
            .floor()
            .clamp(0.0, 255.0) as u8
    };
    let threshold = |k: f64| (2.0 * (k - 0.5) / 255.0 - 1.0) as f32; // where byte k begins
    let mut cases = vec![
        (-1.0, 0),
        (1.0, 255),
        (0.0, 128), // 127.5 rounds up
        (-1.5, 0),
        (2.0, 255),
        (f32::NAN, 0),
        (f32::INFINITY, 255),
        (f32::NEG_INFINITY, 0),
        (-1e-6, 127),
        (1e-6, 128),
        (0.5, 191), // 191.25
        (-0.5, 64), // 63.75
    ];
    for k in [1.0, 2.0, 100.0, 255.0] {
        let t = threshold(k);
        for x in [
            t,
            f32::from_bits(t.to_bits() + 1),
            f32::from_bits(t.to_bits() - 1),
        ] {
            cases.push((x, reference(x)));
        }
    }
    for (x, want) in &cases {
        assert_eq!(to_byte(*x), *want, "to_byte({x:e})");
        if x.is_finite() {
            assert_eq!(reference(*x), *want, "reference({x:e})");
        }
    }
    let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let want: Vec<u8> = cases.iter().map(|c| c.1).collect();
    assert_eq!(to_bytes(&xs), want);
}

#[test]
fn npy_header_layout_and_round_trip() {
    let header = npy_u8_header(&[2, 3, 4, 1]).unwrap();
    assert_eq!(header.len() % 64, 0);
    assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([header[8], header[9]]) as usize;
    assert_eq!(10 + len, header.len());
    let dict = std::str::from_utf8(&header[10..]).unwrap();
    assert!(dict.ends_with('\n'));
    assert_eq!(
        dict.trim_end(),
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4, 1), }"
    );
    let one = npy_u8_header(&[5]).unwrap();
    assert!(
        std::str::from_utf8(&one[10..])
            .unwrap()
            .contains("'shape': (5,), }")
    );

    let dir = TempDir::new("npy");
    let path = dir.join("sub/a.npy");
    let values: Vec<u8> = (0..24).map(|i| (i * 11) as u8).collect();
    save_npy_u8(&path, &[2, 3, 4, 1], &values).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..header.len()], &header[..]);
    assert_eq!(&bytes[header.len()..], &values[..]);
    assert_eq!(
        load_npy_u8(&path).unwrap(),
        (vec![2, 3, 4, 1], values.clone())
    );
    assert!(!dir.join("sub/a.npy.tmp").exists());

    // the streaming writer refuses too many or too few values and leaves no file behind
    let short = dir.join("short.npy");
    let mut w = NpyU8Writer::create(&short, &[2, 3]).unwrap();
    w.write(&[1, 2, 3]).unwrap();
    assert!(message(w.write(&[0; 4])).contains("exceed"));
    assert!(message(w.finish()).contains("3 values written for an array of 6"));
    assert!(!short.exists() && !dir.join("short.npy.tmp").exists());
    drop(NpyU8Writer::create(&short, &[2]).unwrap());
    assert!(!dir.join("short.npy.tmp").exists(), "dropped unfinished");

    // reading refuses what is not a uint8 .npy
    std::fs::write(&short, b"not numpy at all").unwrap();
    assert!(message(load_npy_u8(&short)).contains("not a .npy file"));
    let mut f4 = npy_u8_header(&[2]).unwrap();
    let text = String::from_utf8(f4[10..].to_vec())
        .unwrap()
        .replace("|u1", "<f4");
    f4.truncate(10);
    f4.extend(text.as_bytes());
    f4.extend([0; 8]);
    std::fs::write(&short, &f4).unwrap();
    assert!(message(load_npy_u8(&short)).contains("not uint8"));
    std::fs::write(&short, &bytes[..bytes.len() - 1]).unwrap();
    assert!(message(load_npy_u8(&short)).contains("needs 24 bytes"));
}

#[test]
fn latents_do_not_depend_on_the_batch() {
    let g = gpu();
    let all = latents(&g, 16, 9, 0, 5).unwrap().to_vec().unwrap();
    let tail = latents(&g, 16, 9, 2, 3).unwrap().to_vec().unwrap();
    assert_eq!(&all[2 * 16..], &tail[..]);
    let other = latents(&g, 16, 10, 0, 5).unwrap().to_vec().unwrap();
    assert_ne!(all, other, "another seed, other latents");
    let mean = all.iter().map(|&v| v as f64).sum::<f64>() / all.len() as f64;
    assert!(mean.abs() < 0.3, "standard normal: mean {mean}");
}

#[test]
fn a_rebuilt_trainer_draws_what_the_original_drew() {
    let g = gpu();
    let dir = TempDir::new("rebuild");
    let original = trained(3, 5);
    let ckpt_path = dir.join("run/checkpoint.safetensors");
    original.save_checkpoint(&ckpt_path).unwrap();
    let ckpt = read_checkpoint(&ckpt_path).unwrap();
    let rebuilt = Trainer::from_checkpoint(&g, &ckpt, "the test checkpoint").unwrap();
    assert_eq!(rebuilt.model, original.model);
    assert_eq!(
        (rebuilt.step, rebuilt.config.batch, rebuilt.config.seed),
        (1, 4, 5)
    );

    let (n, seed) = (5, 7);
    let z = latents(&g, 16, seed, 0, n).unwrap();
    let same = |a: &Tensor, b: &Tensor, what: &str| {
        let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-6, "{what}: differs by {worst}");
    };
    let ema = original.sample_ema(&z).unwrap();
    let raw = original.sample_current(&z).unwrap();
    same(&rebuilt.sample(Weights::Ema, &z).unwrap(), &ema, "EMA");
    same(
        &rebuilt.sample(Weights::Current, &z).unwrap(),
        &raw,
        "current",
    );
    assert_ne!(
        ema.to_vec().unwrap(),
        raw.to_vec().unwrap(),
        "after one step EMA ≠ G"
    );

    // what generate writes, batch by batch (2 + 2 + 1), against the original's bytes per batch
    let expected = |weights: Weights| -> Vec<u8> {
        let mut out = Vec::new();
        for (first, b) in [(0, 2), (2, 2), (4, 1)] {
            let z = latents(&g, 16, seed, first, b).unwrap();
            out.extend(to_bytes(
                &original.sample(weights, &z).unwrap().to_vec().unwrap(),
            ));
        }
        out
    };
    for (weights, name) in [(Weights::Ema, "ema.npy"), (Weights::Current, "raw.npy")] {
        let options = GenerateOptions {
            n,
            seed,
            batch: 2,
            weights,
        };
        let path = dir.join(name);
        let mut seen = Vec::new();
        let used = generate(
            &rebuilt,
            &Output::choose(&path, false).unwrap(),
            &options,
            |p| seen.push(p),
        )
        .unwrap();
        assert_eq!(used, 2);
        let progress = |done| Progress {
            done,
            total: n,
            batch: 2,
        };
        assert_eq!(seen, [progress(2), progress(4), progress(5)]);
        let (shape, bytes) = load_npy_u8(&path).unwrap();
        assert_eq!(shape, [n, 8, 8, 3]);
        assert_eq!(bytes, expected(weights), "{name}");
    }
    let ema_bytes = expected(Weights::Ema);

    // a folder of PNGs
    let folder = dir.join("pngs");
    let options = GenerateOptions {
        n: 3,
        seed,
        batch: 2,
        weights: Weights::Ema,
    };
    generate(
        &rebuilt,
        &Output::choose(&folder, false).unwrap(),
        &options,
        |_| {},
    )
    .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["000000.png", "000001.png", "000002.png"]);
    for (i, name) in names.iter().enumerate() {
        let (w, h, colour, pixels) = decode(&folder.join(name));
        assert_eq!((w, h, colour), (8, 8, png::ColorType::Rgb));
        assert_eq!(pixels, ema_bytes[i * 192..(i + 1) * 192], "{name}");
    }

    // one grid: ⌈√3⌉ = 2 columns, 2 rows of 8·grid_scale(8)-pixel tiles
    let grid = dir.join("grid.png");
    generate(
        &rebuilt,
        &Output::choose(&grid, true).unwrap(),
        &options,
        |_| {},
    )
    .unwrap();
    let tile = 8 * grid_scale(8);
    let (w, h, colour, pixels) = decode(&grid);
    assert_eq!(
        (w, h, colour),
        (
            2 * tile as u32 + 2,
            2 * tile as u32 + 2,
            png::ColorType::Rgb
        )
    );
    let row = w as usize * 3;
    // image 1, pixel (x 1, y 0) is the tile at column 1, magnified
    let at = (tile + 2 + grid_scale(8)) * 3;
    assert_eq!(&pixels[at..at + 3], &ema_bytes[192 + 3..192 + 6]);
    assert_eq!(
        &pixels[row * (tile + 2)..row * (tile + 2) + 3],
        &ema_bytes[384..387]
    );

    // --n 0, --batch 0
    let zero = |n, batch| {
        let o = GenerateOptions {
            n,
            batch,
            ..GenerateOptions::default()
        };
        message(generate(
            &rebuilt,
            &Output::Npy(dir.join("zero.npy")),
            &o,
            |_| {},
        ))
    };
    let msg = zero(0, 4);
    assert!(msg.contains("--n") && msg.contains("at least 1"), "{msg}");
    assert!(zero(3, 0).contains("--batch"));
    assert!(!dir.join("zero.npy").exists());
}

#[test]
fn one_channel_models_write_grey_pngs_and_c1_arrays() {
    let g = gpu();
    let dir = TempDir::new("grey");
    let original = trained(1, 2);
    let path = dir.join("checkpoint.safetensors");
    original.save_checkpoint(&path).unwrap();
    let rebuilt = Trainer::from_checkpoint(&g, &read_checkpoint(&path).unwrap(), "grey").unwrap();
    assert_eq!(rebuilt.model.channels, 1);
    let options = GenerateOptions {
        n: 2,
        ..GenerateOptions::default()
    };
    let npy = dir.join("grey.npy");
    generate(
        &rebuilt,
        &Output::choose(&npy, false).unwrap(),
        &options,
        |_| {},
    )
    .unwrap();
    let (shape, bytes) = load_npy_u8(&npy).unwrap();
    assert_eq!(shape, [2, 8, 8, 1]);
    let folder = dir.join("pngs");
    generate(
        &rebuilt,
        &Output::choose(&folder, false).unwrap(),
        &options,
        |_| {},
    )
    .unwrap();
    let (w, h, colour, pixels) = decode(&folder.join("000001.png"));
    assert_eq!((w, h, colour), (8, 8, png::ColorType::Grayscale));
    assert_eq!(pixels, bytes[64..]);
    let grid = dir.join("grid.png");
    generate(
        &rebuilt,
        &Output::choose(&grid, true).unwrap(),
        &options,
        |_| {},
    )
    .unwrap();
    assert_eq!(
        decode(&grid).2,
        png::ColorType::Rgb,
        "grey shown as RGB in a grid"
    );
}

#[test]
fn user_mistakes_are_refused_with_a_message() {
    let g = gpu();
    let dir = TempDir::new("mistakes");

    // the checkpoint
    let msg = message(read_checkpoint(&dir.join("nope.safetensors")));
    assert!(msg.contains("nope.safetensors does not exist"), "{msg}");
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let msg = message(read_checkpoint(&dir.join("run")));
    assert!(msg.contains("is a folder"), "{msg}");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    let msg = message(read_checkpoint(&junk));
    assert!(
        msg.contains("junk.safetensors") && msg.contains("not a safetensors"),
        "{msg}"
    );
    let foreign = dir.join("foreign.safetensors");
    Checkpoint {
        tensors: vec![("w".into(), vec![2], vec![1.0, 2.0])],
        metadata: BTreeMap::new(),
    }
    .save(&foreign)
    .unwrap();
    let msg = message(read_checkpoint(&foreign));
    assert!(msg.contains("not a vitgan training checkpoint"), "{msg}");

    // metadata that does not describe a model this version builds
    let original = Trainer::new(
        &g,
        &micro(3),
        &TrainConfig {
            batch: 2,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let good = original.to_checkpoint().unwrap();
    let edited = |key: &str, value: Option<&str>| {
        let mut c = good.clone();
        match value {
            Some(v) => c.metadata.insert(key.into(), v.into()),
            None => c.metadata.remove(key),
        };
        message(Trainer::from_checkpoint(&g, &c, "edited.safetensors"))
    };
    let msg = edited("config.wings", Some("2"));
    assert!(
        msg.contains("config.wings") && msg.contains("edited.safetensors"),
        "{msg}"
    );
    let msg = edited("config.batch", None);
    assert!(
        msg.contains("config.batch") && msg.contains("edited.safetensors"),
        "{msg}"
    );
    assert!(edited("preset", None).contains("no `preset`"));
    assert!(edited("format", None).contains("not a vitgan training checkpoint"));
    let mut missing = good.clone();
    missing.tensors.retain(|(n, _, _)| !n.starts_with("ema."));
    let msg = message(Trainer::from_checkpoint(&g, &missing, "cut.safetensors"));
    assert!(msg.contains("cut.safetensors has no tensor `ema."), "{msg}");

    // the output path
    let file = dir.join("taken");
    std::fs::write(&file, b"x").unwrap();
    let msg = message(Output::choose(&file, false));
    assert!(msg.contains("exists and is not a folder"), "{msg}");
    let msg = message(Output::choose(&dir.join("a.png"), false));
    assert!(msg.contains("--grid"), "{msg}");
    let msg = message(Output::choose(&dir.join("a.npy"), true));
    assert!(msg.contains(".npy") && msg.contains("--grid"), "{msg}");
    assert!(message(Output::choose(&dir.join("grid"), true)).contains(".png"));
    let folder = dir.join("folder.npy");
    std::fs::create_dir_all(&folder).unwrap();
    assert!(message(Output::choose(&folder, false)).contains("existing folder"));
    assert_eq!(
        Output::choose(&dir.join("new/imgs"), false).unwrap(),
        Output::PngFolder(dir.join("new/imgs"))
    );
    assert_eq!(
        Output::choose(&dir.join("s.NPY"), false).unwrap(),
        Output::Npy(dir.join("s.NPY"))
    );

    // outputs that cannot hold the model's images
    let two = ModelConfig {
        channels: 2,
        ..micro(3)
    };
    let msg = message(Output::Grid(dir.join("g.png")).check(&two, 4));
    assert!(msg.contains("1, 3 or 4 channels"), "{msg}");
    assert!(Output::PngFolder(dir.join("p")).check(&two, 4).is_ok());
    let msg = message(Output::Grid(dir.join("g.png")).check(&micro(3), 100_000));
    assert!(msg.contains("more than 16384"), "{msg}");
    assert_eq!(Output::grid_columns(1), 1);
    assert_eq!(Output::grid_columns(10), 4);
    assert!(matches!(
        Output::choose(Path::new(""), false),
        Err(Error::Config { .. })
    ));
}
