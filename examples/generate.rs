//! Draw images from a trained ViTGAN checkpoint. `cargo run --release --example generate -- --help`
//! lists the options.

#[path = "shared/cli.rs"]
mod cli;
use cli::Flags;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use vitgan::train::Trainer;
use vitgan::train::generate::{GenerateOptions, Output, Weights, generate, read_checkpoint};
use vitgan::{Error, Gpu, GpuOptions, Result};

const HELP: &str = "\
Draw images from a ViTGAN training checkpoint (the model and its preset are read from it; no
dataset is needed).

USAGE: cargo run --release --example generate -- --checkpoint PATH [OPTIONS]

  --checkpoint PATH    a checkpoint written by the trainer (e.g. out/checkpoint.safetensors)
  --n N                number of images                                      [default: 64]
  --out PATH           where they go                                         [default: samples]
                         a folder (the default): PATH/000000.png, PATH/000001.png, … (grey for
                           1-channel models, RGB for 3)
                         PATH ending in .npy: one NumPy uint8 array [N, H, W, C] (numpy.load)
                         with --grid, PATH ending in .png: one grid image, magnified like the
                           trainer's samples.png
  --grid               write one grid PNG instead of a folder
  --raw                use G's current weights instead of their EMA (the default)
  --seed S             seed of the latents: image i's latent depends only on S and i, not on
                       --n or --batch                                        [default: 0]
  --batch B            images per forward pass (halved automatically while the adapter's buffer
                       limit needs it)                                       [default: 64]

Device:
  --adapter NAME       pick the adapter whose name contains NAME (env VITGAN_ADAPTER)
  --backend NAME       vulkan | gl | metal | dx12 (env VITGAN_BACKEND)
";

struct Args {
    checkpoint: Option<PathBuf>,
    out: PathBuf,
    grid: bool,
    options: GenerateOptions,
    gpu: GpuOptions,
}

fn parse_args() -> Result<Option<Args>> {
    let mut a = Args {
        checkpoint: None,
        out: PathBuf::from("samples"),
        grid: false,
        options: GenerateOptions::default(), // 64 images, seed 0, batch 64, EMA
        gpu: GpuOptions::default(),
    };
    let mut flags = Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            return Ok(None);
        }
        match flag.as_str() {
            "--checkpoint" => a.checkpoint = Some(flags.value(&flag)?.into()),
            "--n" => a.options.n = flags.number(&flag)?,
            "--out" => a.out = flags.value(&flag)?.into(),
            "--grid" => a.grid = true,
            "--raw" => a.options.weights = Weights::Current,
            "--seed" => a.options.seed = flags.number(&flag)?,
            "--batch" => a.options.batch = flags.number(&flag)?,
            "--adapter" => a.gpu.adapter = Some(flags.value(&flag)?),
            "--backend" => a.gpu.backend = Some(flags.value(&flag)?),
            other => return Err(cli::unknown(other)),
        }
    }
    Ok(Some(a))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\nerror: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let Some(ckpt_path) = &args.checkpoint else {
        return Err(Error::Config {
            field: "--checkpoint".into(),
            detail: "is required: give a checkpoint written by the trainer (e.g. \
                     out/checkpoint.safetensors); see --help"
                .into(),
        });
    };
    for (field, v) in [("--n", args.options.n), ("--batch", args.options.batch)] {
        if v == 0 {
            return Err(Error::Config {
                field: field.into(),
                detail: "must be at least 1".into(),
            });
        }
    }
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
