//! Draw images from a trained ViTGAN checkpoint. `cargo run --release --example generate -- --help`
//! lists the options.

#[path = "shared/cli.rs"]
mod cli;
use clap::Parser;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use vitgan::train::Trainer;
use vitgan::train::generate::{GenerateOptions, Output, Weights, generate, read_checkpoint};
use vitgan::{Gpu, GpuOptions, Result};

/// Draw images from a ViTGAN training checkpoint (the model and its preset are read from it; no
/// dataset is needed).
#[derive(clap::Parser, Debug)]
#[command(
    name = "generate",
    override_usage = "cargo run --release --example generate -- --checkpoint PATH [OPTIONS]"
)]
struct GenerateFlags {
    /// A checkpoint written by the trainer (e.g. out/checkpoint.safetensors)
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Number of images
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    n: u64,
    /// Where they go: a folder (the default): PATH/000000.png, PATH/000001.png, … (grey for
    /// 1-channel models, RGB for 3); PATH ending in .npy: one NumPy uint8 array [N, H, W, C]
    /// (numpy.load); with --grid, PATH ending in .png: one grid image, magnified like the trainer's
    /// samples.png
    #[arg(long, value_name = "PATH", default_value = "samples")]
    out: PathBuf,
    /// Write one grid PNG instead of a folder
    #[arg(long)]
    grid: bool,
    /// Use G's current weights instead of their EMA (the default)
    #[arg(long)]
    raw: bool,
    /// Seed of the latents: image i's latent depends only on S and i, not on --n or --batch
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Images per forward pass (halved automatically while the adapter's buffer limit needs it)
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    #[command(flatten)]
    device: cli::DeviceFlags,
}

struct Args {
    checkpoint: PathBuf,
    out: PathBuf,
    grid: bool,
    options: GenerateOptions,
    gpu: GpuOptions,
}

/// The command line; clap reports what it refuses (naming the flag and the value) with status 2.
fn parse_args() -> Args {
    let f = GenerateFlags::parse();
    Args {
        checkpoint: f.checkpoint,
        out: f.out,
        grid: f.grid,
        options: GenerateOptions {
            n: f.n as usize,
            seed: f.seed,
            batch: f.batch as usize,
            weights: cli::weights(f.raw),
        },
        gpu: f.device.options(),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\nerror: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args();
    let ckpt_path = &args.checkpoint;
    // everything the command line alone can refuse is refused before the GPU starts
    let output = Output::choose(&args.out, args.grid)?;
    let ckpt = read_checkpoint(ckpt_path)?;

    let gpu = Gpu::new(args.gpu.clone())?;
    eprintln!("adapter: {}", gpu.describe());
    let trainer = Trainer::from_checkpoint(&gpu, &ckpt, &ckpt_path.display().to_string())?;
    let m = &trainer.model;
    output.check(m, args.options.n)?;
    eprintln!(
        "checkpoint: {} (preset {}, step {}, {}×{}×{} images), {} generator",
        ckpt_path.display(),
        m.name,
        trainer.step,
        m.image_size,
        m.image_size,
        m.channels,
        match args.options.weights {
            Weights::Ema => "EMA",
            Weights::Current => "current (--raw)",
        }
    );

    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut reported_batch = args.options.batch.min(args.options.n);
    let batch = generate(&trainer, &output, &args.options, |p| {
        if p.batch < reported_batch {
            eprintln!(
                "{}batch {} needs a buffer larger than this adapter allows; using batch {}",
                if terminal { "\n" } else { "" },
                reported_batch,
                p.batch
            );
            reported_batch = p.batch;
        }
        let rate = p.done as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "generated {}/{} images  {rate:.1} images/s",
            p.done, p.total
        );
        if terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    })?;
    if terminal {
        eprintln!();
    }
    let n = args.options.n;
    let what = match &output {
        Output::PngFolder(dir) => format!(
            "{} to {}",
            if n == 1 {
                "000000.png".to_string()
            } else {
                format!("000000.png … {:06}.png", n - 1)
            },
            dir.display()
        ),
        Output::Grid(path) => {
            let cols = Output::grid_columns(n);
            format!(
                "a grid of {cols}×{} tiles to {}",
                n.div_ceil(cols),
                path.display()
            )
        }
        Output::Npy(path) => format!(
            "a uint8 array [{n}, {s}, {s}, {}] to {}",
            m.channels,
            path.display(),
            s = m.image_size
        ),
    };
    eprintln!(
        "wrote {n} images as {what} in {:.1} s (batch {batch})",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
