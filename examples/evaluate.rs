//! Sample quality of generated images against a real dataset: FID, KID and IS on pytorch-fid's
//! InceptionV3 (run on the engine), plus the weight-free SWD and random-feature KID.
//! `cargo run --release --example evaluate -- --help` lists the options.

#[path = "shared/cli.rs"]
mod cli;
use clap::Parser;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;
use vitgan::data::{Batcher, ImageDataset, open_dataset_cropped, open_sample_images};
use vitgan::metrics::ImageSet;
use vitgan::metrics::features::{FEATURE_DIM, RandomConvFeatures};
use vitgan::metrics::inception::InceptionV3;
use vitgan::metrics::kid::{KidOptions, kid};
use vitgan::metrics::swd::{SwdOptions, swd};
use vitgan::train::Trainer;
use vitgan::train::evaluate::{InceptionEvaluator, InceptionMetrics};
use vitgan::train::generate::{Weights, latents, read_checkpoint};
use vitgan::{Error, Gpu, GpuOptions, Result};

/// Sample quality of generated images against real ones. Prints one line per metric and appends
/// them as one JSON object to --json.
#[derive(clap::Parser, Debug)]
#[command(
    name = "evaluate",
    override_usage = "cargo run --release --example evaluate -- --data REFERENCE \
                      (--images PATH | --checkpoint CK) [OPTIONS]",
    after_help = AFTER_HELP
)]
struct EvaluateFlags {
    /// The real images: anything the trainer's --data reads (CIFAR-10, IDX, a folder of
    /// JPEG/PNG/WebP images, synthetic); resized and converted to the samples' size and channels
    #[arg(long, value_name = "REFERENCE")]
    data: String,
    /// center:S or short-side, as the trainer's --crop (use the training run's)
    #[arg(long, value_name = "C", default_value = "short-side", value_parser = cli::crop)]
    crop: vitgan::data::Crop,
    /// Samples to evaluate: a folder of PNGs or a .npy uint8 [N, S, S, C] array (as
    /// examples/generate.rs writes them)
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "checkpoint",
        conflicts_with = "checkpoint"
    )]
    images: Option<PathBuf>,
    /// Or draw the samples from a trainer checkpoint's EMA generator
    #[arg(long, value_name = "CK")]
    checkpoint: Option<PathBuf>,
    /// Samples drawn from --checkpoint
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(2..))]
    n: u64,
    /// Use G's current weights instead of their EMA
    #[arg(long)]
    raw: bool,
    /// Seed of the latents (as in generate) and of the reference selection
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Real images the statistics are taken over
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(2..))]
    reference_n: u64,
    /// pytorch-fid's weights converted to safetensors (see the README): adds FID, KID and IS on
    /// InceptionV3; without it only the weight-free metrics run
    #[arg(long, value_name = "PATH")]
    inception: Option<PathBuf>,
    /// Keep the reference's Inception features in this file and reuse them while data, size,
    /// selection and weights are the same
    #[arg(long, value_name = "PATH")]
    cache: Option<PathBuf>,
    /// Append the results here as one JSON object
    #[arg(long, value_name = "PATH", default_value = "evaluation.jsonl")]
    json: PathBuf,
    #[command(flatten)]
    device: cli::DeviceFlags,
}

const AFTER_HELP: &str = "\
Metrics: FID (pool3 features, 2048-d; Fréchet distance), KID (cubic-kernel unbiased MMD², 100
subsets of 1,000), IS (1008 logits, 10 splits) — as pytorch-fid / torch-fidelity compute them;
SWD (multi-scale sliced Wasserstein ×10³) and KID over a fixed random conv feature map (no download;
not comparable with the Inception values).";

struct Args {
    data: String,
    crop: vitgan::data::Crop,
    images: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    n: usize,
    weights: Weights,
    seed: u64,
    reference_n: usize,
    inception: Option<PathBuf>,
    cache: Option<PathBuf>,
    json: PathBuf,
    gpu: GpuOptions,
}

/// The command line; clap reports what it refuses (naming the flag and the value) with status 2.
fn parse_args() -> Args {
    let f = EvaluateFlags::parse();
    Args {
        data: f.data,
        crop: f.crop,
        images: f.images,
        checkpoint: f.checkpoint,
        n: f.n as usize,
        weights: cli::weights(f.raw),
        seed: f.seed,
        reference_n: f.reference_n as usize,
        inception: f.inception,
        cache: f.cache,
        json: f.json,
        gpu: f.device.options(),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\nerror: {e}");
        std::process::exit(1);
    }
}

/// A progress reporter for `what`: in place on a terminal, every tenth of the work otherwise.
fn progress(what: &'static str) -> impl FnMut(usize, usize) -> bool {
    let start = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last_tenth = 0;
    move |done, total| {
        let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let eta = (total - done) as f64 / rate.max(1e-9);
        let line = format!("{what}: {done}/{total} images  {rate:.1} images/s  ETA {eta:.0} s");
        let tenth = done * 10 / total.max(1);
        if terminal {
            eprint!("\r{line}   ");
            if done == total {
                eprintln!();
            }
        } else if tenth > last_tenth || done == total {
            last_tenth = tenth;
            eprintln!("{line}");
        }
        true
    }
}

fn run() -> Result<()> {
    let args = parse_args();
    let data_spec = args.data.clone();
    if let Some(p) = &args.inception {
        // a missing, .pth or corrupt file is refused before any work, saying where the weights
        // come from
        vitgan::metrics::inception::SafetensorsWeights::open(p)?;
    }
    let checkpoint = args
        .checkpoint
        .as_ref()
        .map(|p| read_checkpoint(p))
        .transpose()?;

    let gpu = Gpu::new(args.gpu.clone())?;
    eprintln!("adapter: {}", gpu.describe());
    let t = Instant::now();
    let (samples, samples_source) = match (&args.images, &checkpoint) {
        (Some(path), _) => (open_sample_images(path)?, path.display().to_string()),
        (None, Some(ckpt)) => {
            let path = args.checkpoint.as_ref().unwrap().display().to_string();
            let trainer = Trainer::from_checkpoint(&gpu, ckpt, &path)?;
            let weights = match args.weights {
                Weights::Ema => "EMA",
                Weights::Current => "current",
            };
            let source = format!("{path} (step {}, {weights} generator)", trainer.step);
            (draw(&trainer, &args)?, source)
        }
        (None, None) => unreachable!("checked above"),
    };
    eprintln!(
        "samples: {samples_source} ({} images, {}×{}×{}, {:.1} s)",
        samples.len,
        samples.size,
        samples.size,
        samples.channels,
        t.elapsed().as_secs_f64()
    );
    let reference = open_dataset_cropped(
        &data_spec,
        samples.size,
        samples.channels,
        args.seed,
        args.crop,
    )?;
    eprintln!(
        "reference: {} ({} images; {} used)",
        reference.source,
        reference.len,
        args.reference_n.min(reference.len)
    );
    let pixels = to_f32(&samples);
    let set = ImageSet::new(&pixels, samples.len, samples.size, samples.channels)?;

    // weight-free metrics against an equal number of real images
    let n_free = samples.len.min(reference.len);
    let order = Batcher::new(reference.len, n_free, args.seed ^ 0xF1D).indices_for_step(0);
    let mut real = Vec::new();
    Batcher::fill_batch(&reference, &order, &mut real);
    let real_set = ImageSet::new(&real, n_free, reference.size, reference.channels)?;
    let t = Instant::now();
    let s = swd(Some(&gpu), &real_set, &set, &SwdOptions::default())?;
    let features = RandomConvFeatures::new(samples.channels);
    let k = kid(
        Some(&gpu),
        &features.set(&real_set),
        &features.set(&set),
        FEATURE_DIM,
        &KidOptions {
            subset_size: (n_free / 2).clamp(2, 1000),
            ..Default::default()
        },
    )?;
    eprintln!("weight-free metrics: {:.1} s", t.elapsed().as_secs_f64());

    let inception = match &args.inception {
        Some(path) => {
            let net = InceptionV3::load(&gpu, path)?;
            let t = Instant::now();
            let ev = InceptionEvaluator::new(
                &gpu,
                net,
                &reference,
                args.reference_n,
                args.seed,
                args.cache.as_deref(),
                &mut progress("inception (reference)"),
            )?;
            eprintln!(
                "reference statistics: {} images, {:.1} s{}",
                ev.reference_n(),
                t.elapsed().as_secs_f64(),
                args.cache
                    .as_ref()
                    .map_or(String::new(), |c| format!(" (cache {})", c.display()))
            );
            Some(ev.images(&set, &mut progress("inception (samples)"))?)
        }
        None => None,
    };

    if let Some(m) = &inception {
        println!("{m}");
    } else {
        eprintln!("(FID, KID and IS need --inception; see --help)");
    }
    println!("SWD {:.4}", s.mean);
    println!("KID-random-features {:.6} ± {:.6}", k.mean, k.std);
    let json = json_record(
        &args,
        &samples_source,
        &reference,
        samples.len,
        &s,
        &k,
        inception.as_ref(),
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.json)
        .map_err(|source| Error::Io {
            path: args.json.display().to_string(),
            source,
        })?;
    writeln!(file, "{json}").map_err(|source| Error::Io {
        path: args.json.display().to_string(),
        source,
    })?;
    eprintln!("appended to {}", args.json.display());
    Ok(())
}

/// `args.n` samples of the checkpoint's generator, as uint8 images (what a PNG would hold).
fn draw(trainer: &Trainer, args: &Args) -> Result<ImageDataset> {
    let m = &trainer.model;
    let mut images = Vec::with_capacity(args.n * m.image_size * m.image_size * m.channels);
    let mut report = progress("generating");
    for first in (0..args.n).step_by(64) {
        let count = 64.min(args.n - first);
        let z = latents(&trainer.gpu, m.latent_dim, args.seed, first, count)?;
        let x = trainer.sample(args.weights, &z)?.to_vec()?;
        images.extend(vitgan::io::image::to_bytes(&x));
        report(first + count, args.n);
    }
    Ok(ImageDataset {
        images: images.into(),
        len: args.n,
        size: m.image_size,
        channels: m.channels,
        source: "generated".into(),
    })
}

fn to_f32(ds: &ImageDataset) -> Vec<f32> {
    let mut out = Vec::new();
    Batcher::fill_batch(ds, &(0..ds.len).collect::<Vec<_>>(), &mut out);
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

fn json_record(
    args: &Args,
    samples: &str,
    reference: &ImageDataset,
    n: usize,
    s: &vitgan::metrics::swd::Swd,
    k: &vitgan::metrics::kid::Kid,
    inception: Option<&InceptionMetrics>,
) -> String {
    let levels = s
        .levels
        .iter()
        .map(|(r, v)| format!("{{\"resolution\": {r}, \"swd\": {v:.4}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut json = format!(
        "{{\"samples\": {}, \"reference\": {}, \"n\": {n}, \"seed\": {}, \"swd\": {:.4}, \
         \"swd_levels\": [{levels}], \"kid_random_features\": {:.6}, \"kid_random_features_std\": {:.6}",
        json_str(samples),
        json_str(&reference.source),
        args.seed,
        s.mean,
        k.mean,
        k.std
    );
    if let Some(m) = inception {
        json += &format!(
            ", \"reference_n\": {}, \"fid\": {:.6}, \"kid\": {:.6}, \"kid_std\": {:.6}, \"is\": {:.4}, \"is_std\": {:.4}",
            m.reference_n,
            m.fid,
            m.kid.mean,
            m.kid.std,
            m.inception_score.mean,
            m.inception_score.std
        );
    }
    json + "}"
}
