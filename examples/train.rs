//! Train a ViTGAN. `cargo run --release --example train -- --help` lists the options.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vitgan::data::{Batcher, ImageDataset};
use vitgan::model::ModelConfig;
use vitgan::train::{TrainConfig, Trainer};
use vitgan::{Error, Gpu, GpuOptions, Result, Tensor};

const HELP: &str = "\
Train a ViTGAN (Lee et al., ICLR 2022) on the GPU through wgpu.

USAGE: cargo run --release --example train -- [OPTIONS]

Model and data:
  --preset NAME        tiny | cifar32 | celeba64 | lsun64             [default: tiny]
  --data PATH          CIFAR-10 binary file or directory (data_batch_*.bin), a folder of PNG images,
                       or `synthetic` (built-in procedurally generated shapes)  [default: synthetic]
  --out DIR            samples, loss plot, checkpoints and log go here        [default: out]
  --resume PATH        continue from a checkpoint (e.g. out/checkpoint.safetensors)

Run length and logging:
  --steps N            training steps (one D and one G update each)  [default: 1000 tiny, 100000 others]
  --log-every N        progress line interval in steps                        [default: 10]
  --sample-every N     sample grid + loss plot interval in steps              [default: 200]
  --checkpoint-every N checkpoint interval in steps                           [default: 1000]

Hyperparameters (paper values by default):
  --batch N            images per batch                             [default: 32 tiny, 128 others]
  --lr X               learning rate of both G and D                         [default: 0.002]
  --lr-g X / --lr-d X  learning rate of G / of D
  --beta1 X --beta2 X  Adam betas                                            [default: 0 and 0.99]
  --bcr X              bCR weight λ for real and fake (0 disables)           [default: 10]
  --lecam X            LeCam regularisation weight (0 disables)              [default: 0]
  --aug-prob X         DiffAugment probability per op (0 disables)           [default: 0.8]
  --ema X              EMA decay of G's weights, ramped up early         [default: 0.999]
  --seed N             seed for init, latents, augmentation, data order      [default: 0]

Device:
  --adapter NAME       pick the adapter whose name contains NAME (env VITGAN_ADAPTER)
  --backend NAME       vulkan | gl | metal | dx12 (env VITGAN_BACKEND)

Ctrl-C writes a checkpoint before exiting; --resume continues exactly where it stopped.
";

struct Args {
    preset: String,
    data: String,
    out: PathBuf,
    resume: Option<PathBuf>,
    steps: Option<u64>,
    log_every: u64,
    sample_every: u64,
    checkpoint_every: u64,
    batch: Option<usize>,
    train: TrainConfig,
    gpu: GpuOptions,
}

fn parse_args() -> Result<Option<Args>> {
    let mut a = Args {
        preset: "tiny".into(),
        data: "synthetic".into(),
        out: PathBuf::from("out"),
        resume: None,
        steps: None,
        log_every: 10,
        sample_every: 200,
        checkpoint_every: 1000,
        batch: None,
        train: TrainConfig::default(),
        gpu: GpuOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            return Ok(None);
        }
        let mut value = || {
            it.next().ok_or_else(|| Error::Config {
                field: flag.clone(),
                detail: "needs a value".into(),
            })
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T> {
            v.parse().map_err(|_| Error::Config {
                field: flag.into(),
                detail: format!("`{v}` is not a valid number"),
            })
        }
        match flag.as_str() {
            "--preset" => a.preset = value()?,
            "--data" => a.data = value()?,
            "--out" => a.out = value()?.into(),
            "--resume" => a.resume = Some(value()?.into()),
            "--steps" => a.steps = Some(num(&flag, value()?)?),
            "--log-every" => a.log_every = num::<u64>(&flag, value()?)?.max(1),
            "--sample-every" => a.sample_every = num::<u64>(&flag, value()?)?.max(1),
            "--checkpoint-every" => a.checkpoint_every = num::<u64>(&flag, value()?)?.max(1),
            "--batch" => a.batch = Some(num(&flag, value()?)?),
            "--lr" => {
                let lr = num(&flag, value()?)?;
                a.train.lr_g = lr;
                a.train.lr_d = lr;
            }
            "--lr-g" => a.train.lr_g = num(&flag, value()?)?,
            "--lr-d" => a.train.lr_d = num(&flag, value()?)?,
            "--beta1" => a.train.beta1 = num(&flag, value()?)?,
            "--beta2" => a.train.beta2 = num(&flag, value()?)?,
            "--bcr" => {
                let l = num(&flag, value()?)?;
                a.train.bcr_real = l;
                a.train.bcr_fake = l;
            }
            "--lecam" => a.train.lecam = num(&flag, value()?)?,
            "--aug-prob" => a.train.aug_prob = num(&flag, value()?)?,
            "--ema" => a.train.ema_decay = num(&flag, value()?)?,
            "--seed" => a.train.seed = num(&flag, value()?)?,
            "--adapter" => a.gpu.adapter = Some(value()?),
            "--backend" => a.gpu.backend = Some(value()?),
            other => {
                return Err(Error::Config {
                    field: other.into(),
                    detail: "unknown option; see --help".into(),
                });
            }
        }
    }
    Ok(Some(a))
}

fn load_data(spec: &str, model: &ModelConfig, seed: u64) -> Result<ImageDataset> {
    let size = model.image_size;
    let ds = if spec == "synthetic" {
        vitgan::data::synthetic::synthetic_shapes(4096, size, seed)
    } else {
        let path = Path::new(spec);
        if !path.exists() {
            return Err(Error::Config {
                field: "--data".into(),
                detail: format!(
                    "{spec} does not exist; give a CIFAR-10 .bin file/directory, a PNG folder, or `synthetic`"
                ),
            });
        }
        let is_cifar = path.is_file()
            || std::fs::read_dir(path)
                .map_err(|e| Error::Io {
                    path: spec.into(),
                    source: e,
                })?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".bin"));
        if is_cifar {
            vitgan::data::cifar::load_cifar10(path)?
        } else {
            vitgan::data::png_folder::load_png_folder(path, size)?
        }
    };
    if ds.channels != model.channels {
        return Err(Error::Config {
            field: "--data".into(),
            detail: format!(
                "the data has {} channels but the preset expects {}",
                ds.channels, model.channels
            ),
        });
    }
    Ok(if ds.size != size {
        ds.resized(size)
    } else {
        ds
    })
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
    let model = ModelConfig::preset(&args.preset)?;
    let mut train = args.train.clone();
    train.batch = args
        .batch
        .unwrap_or(if model.name == "tiny" { 32 } else { 128 });
    let steps = args
        .steps
        .unwrap_or(if model.name == "tiny" { 1000 } else { 100_000 });
    let gpu = Gpu::new(args.gpu.clone())?;
    eprintln!("adapter: {}", gpu.describe());
    let data = load_data(&args.data, &model, train.seed)?;
    eprintln!(
        "data: {} ({} images, {}x{}x{})",
        data.source, data.len, data.size, data.size, data.channels
    );
    std::fs::create_dir_all(&args.out).map_err(|e| Error::Io {
        path: args.out.display().to_string(),
        source: e,
    })?;

    let mut trainer = Trainer::new(&gpu, &model, &train)?;
    eprintln!(
        "model: {} — G {:.2}M parameters, D {:.2}M parameters, batch {}",
        model.name,
        trainer.g_params.numel() as f64 / 1e6,
        trainer.d_params.numel() as f64 / 1e6,
        train.batch
    );
    let ckpt_path = args.out.join("checkpoint.safetensors");
    if let Some(path) = &args.resume {
        let ckpt = vitgan::io::checkpoint::Checkpoint::load(path)?;
        trainer.load_checkpoint(&ckpt, &path.display().to_string())?;
        eprintln!("resumed from {} at step {}", path.display(), trainer.step);
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .map_err(|e| Error::Other(format!("cannot install the Ctrl-C handler: {e}")))?;
    }

    let batcher = Batcher::new(data.len, train.batch, train.seed);
    let shape = [
        train.batch,
        model.image_size,
        model.image_size,
        model.channels,
    ];
    let real = Tensor::zeros(&gpu, &shape)?;
    let fixed_z = trainer.latents(64, u64::MAX, 7)?; // the same latents for every sample grid
    let mut host_batch = Vec::new();
    let mut history: Vec<(u64, f32, f32)> = Vec::new();
    let mut pending: Option<(u64, vitgan::gpu::Readback, vitgan::gpu::Readback)> = None;
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let start_step = trainer.step;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.out.join("train.log"))
        .map_err(|e| Error::Io {
            path: args.out.join("train.log").display().to_string(),
            source: e,
        })?;

    let progress = Progress {
        steps,
        batch: train.batch,
        start,
        start_step,
        terminal,
        checkpoint: ckpt_path.clone(),
    };
    while trainer.step < steps {
        let step = trainer.step;
        vitgan::data::Batcher::fill_batch(&data, &batcher.indices_for_step(step), &mut host_batch);
        real.write(&host_batch)?;
        let out = trainer.train_step(&real)?;

        // losses of an earlier logged step are printed once they have arrived: no stall
        if pending
            .as_ref()
            .is_some_and(|p| p.1.is_ready() && p.2.is_ready())
        {
            let (s, d, g) = pending.take().unwrap();
            let line = progress.report(s, f32_of(d)?, f32_of(g)?, trainer.step, &mut history)?;
            let _ = writeln!(log, "{line}");
        }
        if (step % args.log_every == 0 || trainer.step == steps) && pending.is_none() {
            pending = Some((step, out.d_loss.read_async()?, out.g_loss.read_async()?));
        }
        let finished = trainer.step == steps;
        if trainer.step % args.sample_every == 0 || finished {
            write_samples(&trainer, &fixed_z, &args.out, &history)?;
        }
        let stop = interrupted.load(Ordering::SeqCst);
        if trainer.step % args.checkpoint_every == 0 || finished || stop {
            // never overwrite the last good checkpoint with a diverged state
            let (d, g) = (out.d_loss.to_vec()?[0], out.g_loss.to_vec()?[0]);
            progress.check_finite(trainer.step - 1, d, g)?;
            trainer.save_checkpoint(&ckpt_path)?;
            if stop || finished {
                eprintln!(
                    "\ncheckpoint written to {} at step {}",
                    ckpt_path.display(),
                    trainer.step
                );
            }
        }
        if stop {
            eprintln!("interrupted; resume with --resume {}", ckpt_path.display());
            return Ok(());
        }
    }
    if let Some((s, d, g)) = pending.take() {
        let line = progress.report(s, f32_of(d)?, f32_of(g)?, trainer.step, &mut history)?;
        let _ = writeln!(log, "{line}");
    }
    eprintln!(
        "\ndone: {} steps; samples and loss plot in {}",
        trainer.step,
        args.out.display()
    );
    for (kernel, n, ms) in gpu.profile_report().iter().take(25) {
        eprintln!("{kernel:<45} {n:>7} dispatches {ms:>10.1} ms");
    }
    Ok(())
}

/// The progress line: step, images/s, losses, ETA; in place on a terminal, one line per report otherwise.
struct Progress {
    steps: u64,
    batch: usize,
    start: Instant,
    start_step: u64,
    terminal: bool,
    checkpoint: PathBuf,
}

impl Progress {
    fn check_finite(&self, step: u64, d: f32, g: f32) -> Result<()> {
        if d.is_finite() && g.is_finite() {
            return Ok(());
        }
        Err(Error::Other(format!(
            "non-finite loss at step {step} (D {d}, G {g}); stopping. The last good checkpoint is {} \
             (not overwritten); try a lower --lr",
            self.checkpoint.display()
        )))
    }

    fn report(
        &self,
        step: u64,
        d: f32,
        g: f32,
        now: u64,
        history: &mut Vec<(u64, f32, f32)>,
    ) -> Result<String> {
        self.check_finite(step, d, g)?;
        history.push((step, d, g));
        let done = now - self.start_step;
        let rate = done as f64 * self.batch as f64 / self.start.elapsed().as_secs_f64();
        let eta = (self.steps - now) as f64 * self.batch as f64 / rate.max(1e-9);
        let line = format!(
            "step {step:>7}/{}  {rate:7.1} img/s  D {d:.4}  G {g:.4}  ETA {}",
            self.steps,
            format_duration(eta)
        );
        if self.terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        Ok(line)
    }
}

fn f32_of(r: vitgan::gpu::Readback) -> Result<f32> {
    let bytes = r.wait()?;
    Ok(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn write_samples(
    trainer: &Trainer,
    z: &Tensor,
    out: &Path,
    history: &[(u64, f32, f32)],
) -> Result<()> {
    let m = &trainer.model;
    let images = trainer.sample_ema(z)?.to_vec()?;
    let n = z.shape()[0];
    vitgan::io::image::save_image_grid(
        &out.join("samples.png"),
        &images,
        n,
        m.image_size,
        m.channels,
        8,
    )?;
    let step_name = out.join(format!("samples_{:07}.png", trainer.step));
    vitgan::io::image::save_image_grid(&step_name, &images, n, m.image_size, m.channels, 8)?;
    let d: Vec<(u64, f32)> = history.iter().map(|h| (h.0, h.1)).collect();
    let g: Vec<(u64, f32)> = history.iter().map(|h| (h.0, h.2)).collect();
    vitgan::io::image::save_loss_plot(
        &out.join("losses.png"),
        &[("D loss", &d), ("G loss", &g)],
        640,
        360,
    )
}

fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
