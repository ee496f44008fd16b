//! Drawing images from a trained generator into files: a folder of PNGs (`000000.png`, …), one
//! grid PNG, or a `.npy` array of `uint8` NHWC `[N, H, W, C]` (what `examples/generate.rs` writes).
//!
//! Image `i` of seed `s` has the latent `z_i ~ N(0, I)` drawn from its own stream
//! `mix_seed(s, i, LATENT_PURPOSE)`, so it is the same whatever `N` and the batch size are.
//! Pixels are [`to_byte`](crate::io::image::to_byte)`(x) = ⌊(x + 1)/2 · 255 + ½⌋`, clamped to
//! 0..=255.

use super::{Trainer, mix_seed};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::io::image::{GRID_GAP, grid_scale, save_image_grid_scaled, save_png, to_bytes};
use crate::io::npy::NpyU8Writer;
use crate::model::ModelConfig;
use crate::nn::Init;
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// Stream tag of generation latents (distinct from the trainer's purposes 0–7).
pub const LATENT_PURPOSE: u64 = 0x6765_6e65_7261_7465; // "generate"

/// Largest width or height of a grid PNG, in pixels.
pub const MAX_GRID_SIDE: usize = 16384;

/// Batch size used unless one is asked for (halved while the adapter's buffer limit needs it).
pub const DEFAULT_BATCH: usize = 64;

/// Which weights of G draw the images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The exponential moving average of G's weights (what the trainer's samples show).
    Ema,
    /// G's current (raw, non-averaged) weights.
    Current,
}

impl Trainer {
    /// Images `[n, H, W, C]` in [-1, 1] for latents `z` (`[n, latent_dim]`) from `weights`.
    pub fn sample(&self, weights: Weights, z: &Tensor) -> Result<Tensor> {
        match weights {
            Weights::Ema => self.sample_ema(z),
            Weights::Current => self.sample_current(z),
        }
    }
}

/// Latents `[n, latent_dim]` of images `first .. first + n` of `seed`: row `k` is
/// `latent_dim` standard normal values from the stream `mix_seed(seed, first + k, LATENT_PURPOSE)`.
pub fn latents(gpu: &Gpu, latent_dim: usize, seed: u64, first: usize, n: usize) -> Result<Tensor> {
    let mut z = Vec::with_capacity(n * latent_dim);
    for i in first..first + n {
        let mut init = Init::new(mix_seed(&[seed, i as u64, LATENT_PURPOSE]));
        z.extend(init.normal(latent_dim, 1.0));
    }
    Tensor::from_slice(gpu, &z, &[n, latent_dim])
}

/// Reads the training checkpoint at `path` for generation: it must exist, be a file, and be a
/// safetensors file carrying this crate's checkpoint format tag.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bad = |detail: String| Error::Config {
        field: "--checkpoint".into(),
        detail,
    };
    if !path.exists() {
        return Err(bad(format!(
            "{} does not exist; give the checkpoint.safetensors a training run wrote (e.g. \
             out/checkpoint.safetensors)",
            path.display()
        )));
    }
    if path.is_dir() {
        let inside = path.join("checkpoint.safetensors");
        let hint = if inside.is_file() {
            format!("; did you mean {}?", inside.display())
        } else {
            String::new()
        };
        return Err(bad(format!(
            "{} is a folder, not a checkpoint file{hint}",
            path.display()
        )));
    }
    let ckpt = Checkpoint::load(path)?;
    super::checkpoint::check_format(&ckpt, &path.display().to_string())?;
    Ok(ckpt)
}

/// Where generated images go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// One PNG per image, `DIR/000000.png`, `DIR/000001.png`, … (grey for 1 channel, RGB for 3).
    PngFolder(PathBuf),
    /// All images in one PNG grid, magnified by [`grid_scale`].
    Grid(PathBuf),
    /// One `.npy` array of `uint8`, shape `[N, H, W, C]`, C order.
    Npy(PathBuf),
}

impl Output {
    /// The output that `--out path` (with `--grid` if `grid`) asks for: `.npy` → an array, `--grid`
    /// → one PNG (the path must end in `.png`), otherwise a folder of PNGs. Refuses paths that
    /// contradict that (a folder where a file goes, an existing file where a folder goes).
    pub fn choose(path: &Path, grid: bool) -> Result<Output> {
        let bad = |detail: String| Error::Config {
            field: "--out".into(),
            detail,
        };
        let shown = path.display();
        if path.as_os_str().is_empty() {
            return Err(bad(
                "is empty; give a folder, a .npy path, or a .png path with --grid".into(),
            ));
        }
        let has_extension = |ext: &str| {
            path.extension()
                .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
        };
        let (npy, png) = (has_extension("npy"), has_extension("png"));
        if grid && npy {
            return Err(bad(format!(
                "{shown} ends in .npy but --grid writes one PNG; drop --grid for a .npy array, or \
                 give a path ending in .png"
            )));
        }
        if grid && !png {
            return Err(bad(format!(
                "--grid writes one PNG image; give a path ending in .png, not {shown}"
            )));
        }
        if (grid || npy) && path.is_dir() {
            return Err(bad(format!(
                "{shown} is an existing folder, but {} is written as one file; give a file path",
                if grid { "a grid" } else { "a .npy array" }
            )));
        }
        if grid {
            return Ok(Output::Grid(path.to_path_buf()));
        }
        if npy {
            return Ok(Output::Npy(path.to_path_buf()));
        }
        if png {
            return Err(bad(format!(
                "{shown} ends in .png, but without --grid the output is a folder of PNGs; add \
                 --grid for one grid image, or give a folder path"
            )));
        }
        if path.exists() && !path.is_dir() {
            return Err(bad(format!(
                "{shown} exists and is not a folder; the default output is a folder of PNGs \
                 (PATH/000000.png, …): give a folder path, a path ending in .npy for one array, or \
                 --grid with a path ending in .png"
            )));
        }
        Ok(Output::PngFolder(path.to_path_buf()))
    }

    /// The path written to.
    pub fn path(&self) -> &Path {
        match self {
            Output::PngFolder(p) | Output::Grid(p) | Output::Npy(p) => p,
        }
    }

    /// Columns of the grid of `n` images: `⌈√n⌉`.
    pub fn grid_columns(n: usize) -> usize {
        (1..=n).find(|c| c * c >= n).unwrap_or(1)
    }

    /// Whether `n` images of `model` can be written to this output (checked before any is drawn).
    pub fn check(&self, model: &ModelConfig, n: usize) -> Result<()> {
        let c = model.channels;
        match self {
            Output::PngFolder(_) if !(1..=4).contains(&c) => Err(Error::Config {
                field: "--out".into(),
                detail: format!(
                    "the model draws {c} channels, which a PNG cannot hold (1–4); write a .npy \
                     array instead"
                ),
            }),
            Output::Grid(_) => {
                if !matches!(c, 1 | 3 | 4) {
                    return Err(Error::Config {
                        field: "--grid".into(),
                        detail: format!(
                            "a grid shows 1, 3 or 4 channels, the model draws {c}; write a .npy \
                             array instead"
                        ),
                    });
                }
                let cols = Self::grid_columns(n);
                let tile = model.image_size * grid_scale(model.image_size);
                let side = |k: usize| k * tile + k.saturating_sub(1) * GRID_GAP;
                let (w, h) = (side(cols), side(n.div_ceil(cols)));
                if w > MAX_GRID_SIDE || h > MAX_GRID_SIDE {
                    return Err(Error::Config {
                        field: "--grid".into(),
                        detail: format!(
                            "a grid of {n} images would be {w}×{h} pixels, more than \
                             {MAX_GRID_SIDE} on a side; use a smaller --n, or drop --grid for a \
                             folder of PNGs or a .npy array"
                        ),
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Number of images.
    pub n: usize,
    /// Seed of the latents.
    pub seed: u64,
    /// Images per forward pass (halved while a buffer would exceed the adapter's limit).
    pub batch: usize,
    /// EMA or current weights.
    pub weights: Weights,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            n: 64,
            seed: 0,
            batch: DEFAULT_BATCH,
            weights: Weights::Ema,
        }
    }
}

/// Progress after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Images written so far.
    pub done: usize,
    /// Images asked for.
    pub total: usize,
    /// The batch size in use (smaller than asked when the adapter needed it).
    pub batch: usize,
}

/// Where finished batches go.
enum Sink {
    Folder(PathBuf),
    Grid(Vec<f32>),
    Npy(NpyU8Writer),
}

/// Draws `options.n` images from `trainer`'s generator and writes them to `output`; calls
/// `on_progress` after every batch. Returns the batch size that was used.
///
/// A batch that needs a buffer larger than the adapter allows is retried at half the size
/// (down to 1). Files of a folder output are replaced if they exist; a grid or `.npy` file
/// appears only once complete.
pub fn generate(
    trainer: &Trainer,
    output: &Output,
    options: &GenerateOptions,
    mut on_progress: impl FnMut(Progress),
) -> Result<usize> {
    let need = |field: &str, v: usize| {
        if v == 0 {
            Err(Error::Config {
                field: field.into(),
                detail: "must be at least 1".into(),
            })
        } else {
            Ok(())
        }
    };
    need("--n", options.n)?;
    need("--batch", options.batch)?;
    let m = &trainer.model;
    output.check(m, options.n)?;
    let (n, size, channels) = (options.n, m.image_size, m.channels);
    let image_len = size * size * channels;
    let mut sink = match output {
        Output::PngFolder(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
            Sink::Folder(dir.clone())
        }
        Output::Grid(_) => Sink::Grid(Vec::with_capacity(n * image_len)),
        Output::Npy(path) => Sink::Npy(NpyU8Writer::create(path, &[n, size, size, channels])?),
    };
    let weights = options.weights;
    let batch = in_batches(
        n,
        options.batch,
        |first, b| {
            let z = latents(&trainer.gpu, m.latent_dim, options.seed, first, b)?;
            trainer.sample(weights, &z)?.to_vec()
        },
        |first, images| {
            match &mut sink {
                Sink::Folder(dir) => {
                    for (k, image) in images.chunks_exact(image_len).enumerate() {
                        let path = dir.join(format!("{:06}.png", first + k));
                        save_png(&path, &to_bytes(image), size, size, channels)?;
                    }
                }
                Sink::Grid(all) => all.extend_from_slice(images),
                Sink::Npy(writer) => writer.write(&to_bytes(images))?,
            }
            Ok(())
        },
        &mut on_progress,
    )?;
    match sink {
        Sink::Folder(_) => {}
        Sink::Grid(all) => save_image_grid_scaled(
            output.path(),
            &all,
            n,
            size,
            channels,
            Output::grid_columns(n),
            grid_scale(size),
        )?,
        Sink::Npy(writer) => writer.finish()?,
    }
    Ok(batch)
}

/// Runs `sample(first, b)` over `0..n` in batches of at most `batch` and hands each result to
/// `consume(first, values)`, then reports progress. A batch that fails with
/// [`Error::BufferTooLarge`] is retried at half the size (down to 1), which is kept from then on.
/// Returns the final batch size.
fn in_batches(
    n: usize,
    batch: usize,
    mut sample: impl FnMut(usize, usize) -> Result<Vec<f32>>,
    mut consume: impl FnMut(usize, &[f32]) -> Result<()>,
    on_progress: &mut impl FnMut(Progress),
) -> Result<usize> {
    let mut batch = batch.clamp(1, n.max(1));
    let mut done = 0;
    while done < n {
        let b = batch.min(n - done);
        let values = match sample(done, b) {
            Ok(values) => values,
            Err(Error::BufferTooLarge { .. }) if b > 1 => {
                batch = b / 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        consume(done, &values)?;
        done += b;
        on_progress(Progress {
            done,
            total: n,
            batch,
        });
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_over_the_buffer_limit_is_halved_and_kept() {
        let mut asked = Vec::new();
        let mut got = Vec::new();
        let mut seen = Vec::new();
        let batch = in_batches(
            11,
            8,
            |first, b| {
                asked.push((first, b));
                if b > 3 {
                    Err(Error::BufferTooLarge {
                        bytes: b as u64,
                        limit: 3,
                        what: "test".into(),
                    })
                } else {
                    Ok((first..first + b).map(|i| i as f32).collect())
                }
            },
            |first, values| {
                assert_eq!(values[0], first as f32);
                got.extend_from_slice(values);
                Ok(())
            },
            &mut |p| seen.push((p.done, p.batch)),
        )
        .unwrap();
        assert_eq!(batch, 2);
        assert_eq!(
            asked,
            [
                (0, 8),
                (0, 4),
                (0, 2),
                (2, 2),
                (4, 2),
                (6, 2),
                (8, 2),
                (10, 1)
            ]
        );
        assert_eq!(got, (0..11).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(seen, [(2, 2), (4, 2), (6, 2), (8, 2), (10, 2), (11, 2)]);

        // at batch 1 the error is the caller's; other errors are never retried
        let too_large = in_batches(
            2,
            1,
            |_, _| {
                Err(Error::BufferTooLarge {
                    bytes: 9,
                    limit: 3,
                    what: "one image".into(),
                })
            },
            |_, _| Ok(()),
            &mut |_| {},
        );
        assert!(matches!(too_large, Err(Error::BufferTooLarge { .. })));
        let mut calls = 0;
        let other = in_batches(
            4,
            4,
            |_, _| {
                calls += 1;
                Err(Error::Other("broken".into()))
            },
            |_, _| Ok(()),
            &mut |_| {},
        );
        assert!(matches!(other, Err(Error::Other(_))) && calls == 1);
    }
}
