//! Train a ViTGAN. `cargo run --release --example train -- --help` lists the options.

#[path = "shared/cli.rs"]
mod cli;
use clap::Parser;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vitgan::data::image_folder::DecodeCache;
use vitgan::data::{Batcher, Prefetcher};
use vitgan::gpu::Readback;
use vitgan::io::image::{grid_scale, save_image_grid_scaled};
use vitgan::io::plot::{Panel, Series, save_plot_svg};
use vitgan::metrics::inception::InceptionV3;
use vitgan::model::{ModelConfig, PatchDecoder, StyleInjection};
use vitgan::nn::WeightNorm;
use vitgan::ops::attention::AttentionKind;
use vitgan::ops::layout;
use vitgan::train::diagnostics::{AttentionStats, LogitStats};
use vitgan::train::evaluate::{InceptionEvaluator, SampleEvaluator, SampleMetrics};
use vitgan::train::{GanLoss, StepOutput, TrainConfig, Trainer};
use vitgan::{Error, Gpu, GpuOptions, Result, Tensor};

/// Train a ViTGAN (Lee et al., ICLR 2022) on the GPU through wgpu.
///
/// Every flag is optional; the defaults are the measured recipe (see the README). A flag may be given
/// more than once: the last one counts.
#[derive(clap::Parser, Clone, Debug, Default)]
#[command(
    name = "train",
    override_usage = "cargo run --release --example train -- [OPTIONS]",
    args_override_self = true,
    after_help = AFTER_HELP
)]
struct TrainFlags {
    /// tiny | tiny32 | cifar32 | celeba64 | lsun64 [default: tiny]
    #[arg(long, value_name = "NAME", help_heading = "Model and data",
          value_parser = ModelConfig::PRESETS, hide_possible_values = true)]
    preset: Option<String>,
    /// CIFAR-10 binary file or directory (data_batch_*.bin), an IDX file or directory (MNIST,
    /// Fashion-MNIST: train-images-idx3-ubyte[.gz]), a folder of JPEG, PNG and WebP images
    /// (searched recursively, e.g. CelebA's img_align_celeba), an unzipped LSUN export (a folder
    /// holding data.mdb, e.g. bedroom_train_lmdb), or `synthetic` (built-in shapes)
    /// [default: synthetic]
    #[arg(long, value_name = "PATH", help_heading = "Model and data")]
    data: Option<String>,
    /// The square cut from each image before it is resized to the preset's size: center:S (centred
    /// S×S pixels; CelebA-64 uses center:140 or center:108) or short-side [default: short-side]
    #[arg(long, value_name = "C", help_heading = "Model and data", value_parser = cli::crop)]
    crop: Option<vitgan::data::Crop>,
    /// Image folders and LSUN: decoded pixels are kept in DIR and reused by later runs over the same files,
    /// size and crop; `off`: decode every run [default: decode-cache beside --out]
    #[arg(long, value_name = "DIR", help_heading = "Model and data")]
    decode_cache: Option<String>,
    /// Image channels (1 grey, 3 RGB); data are converted [default: the preset's, 3]
    #[arg(long, value_name = "N", help_heading = "Model and data",
          value_parser = clap::value_parser!(u64).range(1..=3))]
    channels: Option<u64>,
    /// Samples, plots, checkpoints, log and config.toml go here [default: out]
    #[arg(long, value_name = "DIR", help_heading = "Model and data")]
    out: Option<PathBuf>,
    /// Settings from a TOML file: the flags' names without `--` (`lr = 0.001`, `data = 'synthetic'`);
    /// flags on the command line override it. Every run writes OUT/config.toml, its settings in
    /// effect, and records them in its checkpoints
    #[arg(long, value_name = "FILE", help_heading = "Model and data")]
    config: Option<PathBuf>,
    /// Continue from a checkpoint (e.g. out/checkpoint.safetensors)
    #[arg(long, value_name = "PATH", help_heading = "Model and data")]
    resume: Option<PathBuf>,

    /// Training steps (one D and one G update each) [default: 1000 tiny and tiny32, 100000 others]
    #[arg(long, value_name = "N", help_heading = "Run length and logging")]
    steps: Option<u64>,
    /// Progress line interval in steps [default: 10]
    #[arg(long, value_name = "N", help_heading = "Run length and logging",
          value_parser = clap::value_parser!(u64).range(1..))]
    log_every: Option<u64>,
    /// Sample grid + plots interval in steps [default: 200]
    #[arg(long, value_name = "N", help_heading = "Run length and logging",
          value_parser = clap::value_parser!(u64).range(1..))]
    sample_every: Option<u64>,
    /// on | off: log y axis for the losses, SWD and FID in OUT/losses.svg and OUT/metrics.svg
    /// [default: off]
    #[arg(long, value_name = "B", help_heading = "Run length and logging",
          value_parser = cli::switch(&ON_OFF), hide_possible_values = true)]
    plot_log: Option<bool>,
    /// Checkpoint interval in steps [default: 1000]
    #[arg(long, value_name = "N", help_heading = "Run length and logging",
          value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,
    /// SWD + KID of the EMA generator interval in steps (0 = only at the end) [default: 500]
    #[arg(long, value_name = "N", help_heading = "Run length and logging")]
    eval_every: Option<u64>,
    /// Samples per evaluation (and real images compared with; 0 = none) [default: 1024]
    #[arg(long, value_name = "N", help_heading = "Run length and logging")]
    eval_n: Option<usize>,
    /// FID, KID and IS (InceptionV3) of the EMA generator every N steps and at the end (0 = only at
    /// the end); needs --inception [default: 0]
    #[arg(long, value_name = "N", help_heading = "Run length and logging")]
    fid_every: Option<u64>,
    /// Samples per FID evaluation, and real images in its reference [default: 10000]
    #[arg(long, value_name = "N", help_heading = "Run length and logging",
          value_parser = clap::value_parser!(u64).range(2..))]
    fid_n: Option<u64>,
    /// pytorch-fid's weights converted to safetensors (see the README); the reference features are
    /// cached in OUT/fid_reference.safetensors
    #[arg(long, value_name = "PATH", help_heading = "Run length and logging")]
    inception: Option<PathBuf>,

    /// Images per batch [default: 32 tiny and tiny32, 128 others]
    #[arg(long, value_name = "N", help_heading = "Hyperparameters",
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Learning rate of both G and D [default: 0.002]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::positive, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Learning rate of G (over --lr)
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::positive, allow_negative_numbers = true)]
    lr_g: Option<f32>,
    /// Learning rate of D (over --lr)
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::positive, allow_negative_numbers = true)]
    lr_d: Option<f32>,
    /// Adam β1, in [0, 1) [default: 0]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::below_one, allow_negative_numbers = true)]
    beta1: Option<f32>,
    /// Adam β2, in [0, 1) [default: 0.99]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::below_one, allow_negative_numbers = true)]
    beta2: Option<f32>,
    /// bCR weight λ for real and fake (0 disables; the paper: 10) [default: 0]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters",
          value_parser = cli::non_negative, allow_negative_numbers = true)]
    bcr: Option<f32>,
    /// LeCam regularisation weight (0 disables; the paper: 0) [default: 0]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters",
          value_parser = cli::non_negative, allow_negative_numbers = true)]
    lecam: Option<f32>,
    /// R1 weight γ on real images, estimated by finite differences along Gaussian noise (0
    /// disables; the paper: 0) [default: 0.1]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters",
          value_parser = cli::non_negative, allow_negative_numbers = true)]
    r1: Option<f32>,
    /// Apply R1 every N steps with weight γ·N (lazy regularisation) [default: 4]
    #[arg(long, value_name = "N", help_heading = "Hyperparameters",
          value_parser = clap::value_parser!(u64).range(1..))]
    r1_every: Option<u64>,
    /// DiffAugment probability per op (0 disables; the paper: 0.8) [default: 0]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters",
          value_parser = cli::probability, allow_negative_numbers = true)]
    aug_prob: Option<f32>,
    /// EMA decay of G's weights, ramped up early [default: 0.999]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::below_one, allow_negative_numbers = true)]
    ema: Option<f32>,
    /// Seed for init, latents, augmentation, data order [default: 0]
    #[arg(long, value_name = "N", help_heading = "Hyperparameters")]
    seed: Option<u64>,
    /// Linear learning-rate warm-up steps [default: 0]
    #[arg(long, value_name = "N", help_heading = "Hyperparameters")]
    warmup: Option<u64>,
    /// Learning-rate multiplier of G's mapping network [default: 1]
    #[arg(long, value_name = "X", help_heading = "Hyperparameters", value_parser = cli::positive, allow_negative_numbers = true)]
    mapping_lr_mult: Option<f32>,
    /// logistic | hinge: the adversarial loss (the paper: logistic) [default: logistic]
    #[arg(long, value_name = "L", help_heading = "Hyperparameters",
          value_parser = cli::switch(&LOSS), hide_possible_values = true)]
    loss: Option<GanLoss>,
    /// on | off: G's step trains on the latents and images of D's step (one generator forward
    /// fewer per step) [default: off]
    #[arg(long, value_name = "B", help_heading = "Hyperparameters",
          value_parser = cli::switch(&ON_OFF), hide_possible_values = true)]
    reuse_fakes: Option<bool>,

    /// l2 | dot: D's attention [default: l2]
    #[arg(long, value_name = "A", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&D_ATTENTION), hide_possible_values = true)]
    d_attention: Option<AttentionKind>,
    /// isn | sn | none: D's weight normalisation [default: isn]
    #[arg(long, value_name = "N", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&D_NORM), hide_possible_values = true)]
    d_norm: Option<WeightNorm>,
    /// on | off: overlapping patches in D [default: on]
    #[arg(long, value_name = "B", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&ON_OFF), hide_possible_values = true)]
    d_overlap: Option<bool>,
    /// sln | add: self-modulated LayerNorm, or w added to the tokens [default: sln]
    #[arg(long, value_name = "S", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&G_STYLE), hide_possible_values = true)]
    g_style: Option<StyleInjection>,
    /// inr | linear: G's patch decoder [default: inr]
    #[arg(long, value_name = "K", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&G_DECODER), hide_possible_values = true)]
    g_decoder: Option<PatchDecoder>,
    /// Multiplier on D's initial query weights (sets how peaked D's attention starts) [default: 1]
    #[arg(long, value_name = "X", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::positive, allow_negative_numbers = true)]
    d_query_gain: Option<f32>,
    /// on | off: G's style affines with equalised lr [default: off]
    #[arg(long, value_name = "B", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&ON_OFF), hide_possible_values = true)]
    equalised_affines: Option<bool>,
    /// on | off: demodulate the INR decoder's output layer (the paper: on) [default: off]
    #[arg(long, value_name = "B", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&ON_OFF), hide_possible_values = true)]
    inr_demod: Option<bool>,
    /// on | off: the INR output layer's rows (one per channel) equal at init, so G starts grey
    /// [default: on for tiny and tiny32, off for the other presets]
    #[arg(long, value_name = "B", help_heading = "Model switches (the paper's ablations and init)",
          value_parser = cli::switch(&ON_OFF), hide_possible_values = true)]
    inr_tied_init: Option<bool>,

    /// Patch side in G (divides the image size; tiny: 4, so 16 tokens at 16×16) [default: the
    /// preset's]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    g_patch: Option<u64>,
    /// Transformer blocks in G [default: the preset's; tiny 2]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    g_depth: Option<u64>,
    /// Token width of G (a multiple of --g-heads) [default: the preset's; tiny 64]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    g_width: Option<u64>,
    /// Attention heads in G [default: the preset's; tiny 4]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    g_heads: Option<u64>,
    /// Hidden width of G's MLPs [default: the preset's; tiny 128]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=16384))]
    g_mlp: Option<u64>,
    /// Patch side in D (divides the image size; tiny: 4, so 16 tokens at 16×16) [default: the
    /// preset's]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    d_patch: Option<u64>,
    /// Transformer blocks in D [default: the preset's; tiny 2]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    d_depth: Option<u64>,
    /// Token width of D (a multiple of --d-heads) [default: the preset's; tiny 64]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    d_width: Option<u64>,
    /// Attention heads in D [default: the preset's; tiny 4]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    d_heads: Option<u64>,
    /// Hidden width of D's MLPs [default: the preset's; tiny 128]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=16384))]
    d_mlp: Option<u64>,
    /// Hidden width of G's INR patch decoder [default: the preset's; tiny 32]
    #[arg(long, value_name = "N", help_heading = "Model size (over the preset)",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    inr_hidden: Option<u64>,

    #[command(flatten)]
    device: cli::DeviceFlags,
}

const AFTER_HELP: &str = "\
Every log line is also appended to OUT/metrics.jsonl (one JSON object per line: losses, D's
logits and ranking accuracy, gradient norms, D's attention per block, and SWD/KID with their
real-vs-real floor and untrained-generator values at evaluation steps). The paper's recipe is
--bcr 10 --aug-prob 0.8 --inr-demod on --r1 0.

Ctrl-C writes a checkpoint before exiting (status 130); --resume continues exactly where it stopped.";

/// Each field of `TrainFlags`: `over.field` where given, else `base.field`.
macro_rules! merge_flags {
    ($over:expr, $base:expr; $($field:ident),* $(,)?) => {{
        let (over, base) = ($over, $base);
        TrainFlags { $($field: over.$field.or(base.$field)),*, device: cli::DeviceFlags {
            adapter: over.device.adapter.or(base.device.adapter),
            backend: over.device.backend.or(base.device.backend),
        } }
    }};
}

impl TrainFlags {
    /// `--lr` resolved into `--lr-g` / `--lr-d` where those are not given.
    fn with_rates_resolved(mut self) -> TrainFlags {
        self.lr_g = self.lr_g.or(self.lr);
        self.lr_d = self.lr_d.or(self.lr);
        self.lr = None;
        self
    }

    /// These flags over `base` (a `--config` file's): each given here wins.
    fn over(self, base: TrainFlags) -> TrainFlags {
        let (over, base) = (self.with_rates_resolved(), base.with_rates_resolved());
        merge_flags!(over, base;
            preset, data, crop, decode_cache, channels, out, config, resume, steps, log_every,
            sample_every, plot_log, checkpoint_every, eval_every, eval_n, fid_every, fid_n, inception, batch,
            lr, lr_g, lr_d, beta1, beta2, bcr, lecam, r1, r1_every, aug_prob, ema, seed, warmup, mapping_lr_mult,
            loss, reuse_fakes, d_attention, d_norm, d_overlap, g_style, g_decoder, d_query_gain, equalised_affines,
            inr_demod, inr_tied_init, g_patch, d_patch, g_depth, g_width, g_heads, g_mlp, d_depth, d_width, d_heads,
            d_mlp, inr_hidden)
    }
}

/// Model switches given on the command line (applied over the preset).
#[derive(Default)]
struct ModelSwitches {
    d_attention: Option<vitgan::ops::attention::AttentionKind>,
    d_norm: Option<vitgan::nn::WeightNorm>,
    d_overlap: Option<bool>,
    g_style: Option<vitgan::model::StyleInjection>,
    g_decoder: Option<vitgan::model::PatchDecoder>,
    d_query_gain: Option<f32>,
    equalised_affines: Option<bool>,
    inr_demod: Option<bool>,
    inr_tied_init: Option<bool>,
    /// patch, depth, width, heads, MLP width of G and of D
    g_size: NetSize,
    d_size: NetSize,
    inr_hidden: Option<u64>,
}

/// Sizes of one transformer given on the command line (each over the preset's).
#[derive(Default)]
struct NetSize {
    patch: Option<u64>,
    depth: Option<u64>,
    width: Option<u64>,
    heads: Option<u64>,
    mlp: Option<u64>,
}

impl NetSize {
    fn apply(&self, net: &mut vitgan::model::NetConfig) {
        let pairs = [
            (&mut net.patch, self.patch),
            (&mut net.depth, self.depth),
            (&mut net.width, self.width),
            (&mut net.heads, self.heads),
            (&mut net.mlp_hidden, self.mlp),
        ];
        for (slot, value) in pairs {
            if let Some(v) = value {
                *slot = v as usize;
            }
        }
    }
}

impl ModelSwitches {
    fn apply(&self, m: &mut ModelConfig) {
        self.g_size.apply(&mut m.generator);
        self.d_size.apply(&mut m.discriminator);
        if let Some(v) = self.inr_hidden {
            m.inr_hidden = v as usize;
        }
        if let Some(v) = self.d_attention {
            m.d_attention = v;
        }
        if let Some(v) = self.d_norm {
            m.d_weight_norm = v;
        }
        if let Some(v) = self.d_overlap {
            m.d_overlapping_patches = v;
        }
        if let Some(v) = self.g_style {
            m.g_style = v;
        }
        if let Some(v) = self.g_decoder {
            m.g_decoder = v;
        }
        if let Some(v) = self.d_query_gain {
            m.d_query_gain = v;
        }
        if let Some(v) = self.equalised_affines {
            m.g_equalised_affines = v;
        }
        if let Some(v) = self.inr_demod {
            m.inr_demodulate_output = v;
        }
        if let Some(v) = self.inr_tied_init {
            m.inr_tied_output_init = v;
        }
    }
}

/// The values of the switch flags by name: parsed with [`cli::switch`], written back with
/// [`name_of`].
const ON_OFF: [(&str, bool); 2] = [("on", true), ("off", false)];
const LOSS: [(&str, GanLoss); 2] = [
    (GanLoss::Logistic.name(), GanLoss::Logistic),
    (GanLoss::Hinge.name(), GanLoss::Hinge),
];
const D_ATTENTION: [(&str, AttentionKind); 2] =
    [("l2", AttentionKind::L2), ("dot", AttentionKind::Dot)];
const D_NORM: [(&str, WeightNorm); 3] = [
    ("isn", WeightNorm::ImprovedSpectral),
    ("sn", WeightNorm::Spectral),
    ("none", WeightNorm::None),
];
const G_STYLE: [(&str, StyleInjection); 2] = [
    ("sln", StyleInjection::SelfModulatedLayerNorm),
    ("add", StyleInjection::AddToTokens),
];
const G_DECODER: [(&str, PatchDecoder); 2] = [
    ("inr", PatchDecoder::Implicit),
    ("linear", PatchDecoder::Linear),
];

/// The flag value naming `value` in `choices` (the inverse of [`cli::switch`]).
fn name_of<T: PartialEq>(choices: &[(&'static str, T)], value: &T) -> &'static str {
    choices
        .iter()
        .find(|(_, v)| v == value)
        .map_or("?", |c| c.0)
}

struct Args {
    switches: ModelSwitches,
    preset: String,
    data: String,
    crop: vitgan::data::Crop,
    out: PathBuf,
    /// `--resume`: the checkpoint and the file it was read from.
    resume: Option<(PathBuf, vitgan::io::checkpoint::Checkpoint)>,
    steps: Option<u64>,
    log_every: u64,
    sample_every: u64,
    checkpoint_every: u64,
    eval_every: u64,
    eval_n: usize,
    fid_every: u64,
    fid_n: usize,
    inception: Option<PathBuf>,
    plot_log: bool,
    /// `None`: the default (`decode-cache` beside `--out`); `Some(None)`: off.
    decode_cache: Option<Option<PathBuf>>,
    channels: Option<usize>,
    batch: Option<usize>,
    train: TrainConfig,
    gpu: GpuOptions,
}

/// The flags of a `--config` TOML text, in its order: `key = value` becomes `--key value` (strings
/// as written, numbers in decimal, booleans `on` / `off`). Errors name `field` (the flag the text
/// came with), `source` (the file) and the key.
fn config_flags(text: &str, field: &str, source: &str) -> Result<Vec<String>> {
    let bad = |detail: String| Error::Config {
        field: field.into(),
        detail: format!("{source}: {detail}"),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e| bad(format!("not valid TOML: {e}")))?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => (if b { "on" } else { "off" }).to_string(),
            other => {
                return Err(bad(format!(
                    "`{key}` holds a value of type {}; expected a string, number or boolean",
                    other.type_str()
                )));
            }
        };
        if matches!(key.as_str(), "config" | "help" | "h") {
            return Err(bad(format!("`{key}` cannot be set in a config file")));
        }
        flags.push(format!("--{key}"));
        flags.push(value);
    }
    Ok(flags)
}

/// A settings text (a `--config` file, a checkpoint's `run.config`) as flags; errors name `field`
/// and `source`.
fn settings_flags(text: &str, field: &str, source: &str) -> Result<TrainFlags> {
    let mut list = vec!["train".to_string()];
    list.extend(config_flags(text, field, source)?);
    TrainFlags::try_parse_from(list).map_err(|e| Error::Config {
        field: field.into(),
        detail: format!(
            "{source}: {}",
            e.render().to_string().trim().trim_start_matches("error: ")
        ),
    })
}

/// `(key, old value, new value)` for each setting of `old` that `new` sets otherwise (both
/// `config.toml` texts).
fn changed_settings(old: &str, new: Option<&str>) -> Vec<(String, String, String)> {
    let table = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    let (old, new) = (table(old), table(new.unwrap_or("")));
    old.iter()
        .filter_map(|(key, was)| {
            let now = new.get(key)?;
            (now != was).then(|| (key.clone(), was.to_string(), now.to_string()))
        })
        .collect()
}

/// The run's settings as a `--config` file: every flag that shapes training, with the value in
/// effect (defaults resolved), so `--config OUT/config.toml` repeats the run. `--out`, `--resume`
/// and the device flags are left out.
fn run_config_toml(args: &Args, model: &ModelConfig, train: &TrainConfig, steps: u64) -> String {
    use toml::Value;
    // an f32 as its shortest decimal (0.002, not 0.0020000000949949026)
    let float = |x: f32| Value::Float(x.to_string().parse().unwrap_or(x as f64));
    let int = |x: u64| Value::Integer(x.min(i64::MAX as u64) as i64);
    let text = |s: &str| Value::String(s.to_string());
    let mut t = toml::Table::new();
    let mut set = |k: &str, v: Value| {
        t.insert(k.to_string(), v);
    };
    set("preset", text(&model.name));
    set("data", text(&args.data));
    set("crop", text(&args.crop.to_string()));
    set("channels", int(model.channels as u64));
    set("steps", int(steps));
    set("batch", int(train.batch as u64));
    set("lr-g", float(train.lr_g));
    set("lr-d", float(train.lr_d));
    set("beta1", float(train.beta1));
    set("beta2", float(train.beta2));
    set("bcr", float(train.bcr_real));
    set("lecam", float(train.lecam));
    set("r1", float(train.r1));
    set("r1-every", int(train.r1_every));
    set("aug-prob", float(train.aug_prob));
    set("ema", float(train.ema_decay));
    set("seed", int(train.seed));
    set("warmup", int(train.warmup_steps));
    set("mapping-lr-mult", float(train.mapping_lr_mult));
    set("loss", text(name_of(&LOSS, &train.loss)));
    set("reuse-fakes", text(name_of(&ON_OFF, &train.reuse_fakes)));
    set(
        "d-attention",
        text(name_of(&D_ATTENTION, &model.d_attention)),
    );
    set("d-norm", text(name_of(&D_NORM, &model.d_weight_norm)));
    set(
        "d-overlap",
        text(name_of(&ON_OFF, &model.d_overlapping_patches)),
    );
    set("g-style", text(name_of(&G_STYLE, &model.g_style)));
    set("g-decoder", text(name_of(&G_DECODER, &model.g_decoder)));
    set("d-query-gain", float(model.d_query_gain));
    set(
        "equalised-affines",
        text(name_of(&ON_OFF, &model.g_equalised_affines)),
    );
    set(
        "inr-demod",
        text(name_of(&ON_OFF, &model.inr_demodulate_output)),
    );
    set(
        "inr-tied-init",
        text(name_of(&ON_OFF, &model.inr_tied_output_init)),
    );
    for (who, net) in [("g", &model.generator), ("d", &model.discriminator)] {
        set(&format!("{who}-patch"), int(net.patch as u64));
        set(&format!("{who}-depth"), int(net.depth as u64));
        set(&format!("{who}-width"), int(net.width as u64));
        set(&format!("{who}-heads"), int(net.heads as u64));
        set(&format!("{who}-mlp"), int(net.mlp_hidden as u64));
    }
    set("inr-hidden", int(model.inr_hidden as u64));
    set("log-every", int(args.log_every));
    set("sample-every", int(args.sample_every));
    set("checkpoint-every", int(args.checkpoint_every));
    set("eval-every", int(args.eval_every));
    set("eval-n", int(args.eval_n as u64));
    set("fid-every", int(args.fid_every));
    set("fid-n", int(args.fid_n as u64));
    set("plot-log", text(name_of(&ON_OFF, &args.plot_log)));
    if let Some(p) = &args.inception {
        set("inception", text(&p.display().to_string()));
    }
    if let Some(cache) = &args.decode_cache {
        let v = cache
            .as_ref()
            .map_or("off".into(), |p| p.display().to_string());
        set("decode-cache", text(&v));
    }
    format!(
        "# the settings of a vitgan training run: repeat it with\n\
         #   cargo run --release --example train -- --config THIS_FILE --out NEW_DIR\n{t}"
    )
}

/// The command line (over a `--config` file's settings, when it names one) as `Args`. A command
/// line clap refuses (an unknown flag, a value out of range) is reported by clap, naming the flag and
/// the value, with status 2; `--help` prints the options and exits 0.
fn parse_args() -> Result<Args> {
    let cli = TrainFlags::parse();
    let mut flags = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let from_file = settings_flags(&text, "--config", &path.display().to_string())?;
            cli.over(from_file)
        }
        None => cli.with_rates_resolved(),
    };
    // --resume: the checkpoint's run settings (`run.config`) under the command line and --config;
    // the checkpoint is read once, here, and loaded into the trainer later
    let resumed = match &flags.resume {
        Some(path) => Some(vitgan::io::checkpoint::Checkpoint::load(path)?),
        None => None,
    };
    if let (Some(path), Some(text)) = (
        &flags.resume,
        resumed.as_ref().and_then(|c| c.metadata.get("run.config")),
    ) {
        let source = format!("{} (its run.config)", path.display());
        let mut from_run = settings_flags(text, "--resume", &source)?;
        // runs recorded before --loss and --reuse-fakes existed trained with the logistic loss and
        // fresh latents in G's step; they continue so, whatever today's defaults are
        from_run.loss = from_run.loss.or(Some(GanLoss::Logistic));
        from_run.reuse_fakes = from_run.reuse_fakes.or(Some(false));
        flags = flags.over(from_run);
    }
    let mut train = TrainConfig::default();
    let set = |field: &mut f32, v: Option<f32>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut train.lr_g, flags.lr_g);
    set(&mut train.lr_d, flags.lr_d);
    set(&mut train.beta1, flags.beta1);
    set(&mut train.beta2, flags.beta2);
    set(&mut train.bcr_real, flags.bcr);
    set(&mut train.bcr_fake, flags.bcr);
    set(&mut train.lecam, flags.lecam);
    set(&mut train.r1, flags.r1);
    train.r1_every = flags.r1_every.unwrap_or(train.r1_every);
    set(&mut train.aug_prob, flags.aug_prob);
    set(&mut train.ema_decay, flags.ema);
    set(&mut train.mapping_lr_mult, flags.mapping_lr_mult);
    train.seed = flags.seed.unwrap_or(train.seed);
    train.warmup_steps = flags.warmup.unwrap_or(train.warmup_steps);
    train.loss = flags.loss.unwrap_or(train.loss);
    train.reuse_fakes = flags.reuse_fakes.unwrap_or(train.reuse_fakes);
    Ok(Args {
        switches: ModelSwitches {
            d_attention: flags.d_attention,
            d_norm: flags.d_norm,
            d_overlap: flags.d_overlap,
            g_style: flags.g_style,
            g_decoder: flags.g_decoder,
            d_query_gain: flags.d_query_gain,
            equalised_affines: flags.equalised_affines,
            inr_demod: flags.inr_demod,
            inr_tied_init: flags.inr_tied_init,
            g_size: NetSize {
                patch: flags.g_patch,
                depth: flags.g_depth,
                width: flags.g_width,
                heads: flags.g_heads,
                mlp: flags.g_mlp,
            },
            d_size: NetSize {
                patch: flags.d_patch,
                depth: flags.d_depth,
                width: flags.d_width,
                heads: flags.d_heads,
                mlp: flags.d_mlp,
            },
            inr_hidden: flags.inr_hidden,
        },
        preset: flags.preset.unwrap_or_else(|| "tiny".into()),
        data: flags.data.unwrap_or_else(|| "synthetic".into()),
        crop: flags.crop.unwrap_or(vitgan::data::Crop::ShortSide),
        out: flags.out.unwrap_or_else(|| PathBuf::from("out")),
        resume: flags.resume.zip(resumed),
        steps: flags.steps,
        log_every: flags.log_every.unwrap_or(10),
        sample_every: flags.sample_every.unwrap_or(200),
        checkpoint_every: flags.checkpoint_every.unwrap_or(1000),
        eval_every: flags.eval_every.unwrap_or(500),
        eval_n: flags.eval_n.unwrap_or(1024),
        fid_every: flags.fid_every.unwrap_or(0),
        fid_n: flags.fid_n.map_or(10_000, |n| n as usize),
        inception: flags.inception,
        plot_log: flags.plot_log.unwrap_or(false),
        decode_cache: flags
            .decode_cache
            .map(|v| (v != "off").then(|| PathBuf::from(v))),
        channels: flags.channels.map(|c| c as usize),
        batch: flags.batch.map(|b| b as usize),
        train,
        gpu: flags.device.options(),
    })
}

/// How a run ended without an error.
enum Ended {
    /// All steps done (or only `--help`).
    Finished,
    /// Ctrl-C: a checkpoint was written; exit with 130 (128 + SIGINT), as shells expect.
    Interrupted,
}

fn main() {
    match run() {
        Ok(Ended::Finished) => {}
        Ok(Ended::Interrupted) => std::process::exit(130),
        Err(e) => {
            eprintln!("\nerror: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<Ended> {
    let args = parse_args()?;
    let mut model = ModelConfig::preset(&args.preset)?;
    if let Some(c) = args.channels {
        model.channels = c;
    }
    args.switches.apply(&mut model);
    model.validate()?;
    let mut train = args.train.clone();
    train.batch = args
        .batch
        .unwrap_or(if model.is_small_preset() { 32 } else { 128 });
    // refused before the GPU starts or any file is touched
    train.validate()?;
    if args.out.exists() && !args.out.is_dir() {
        return Err(Error::Config {
            field: "--out".into(),
            detail: format!(
                "{} is a file; --out names a directory (samples, checkpoints and logs go into it)",
                args.out.display()
            ),
        });
    }
    let steps = args.steps.unwrap_or(if model.is_small_preset() {
        1000
    } else {
        100_000
    });
    if args.fid_every > 0 && args.inception.is_none() {
        return Err(Error::Config {
            field: "--fid-every".into(),
            detail: "needs --inception PATH (pytorch-fid's weights converted to safetensors; see \
                     the README)"
                .into(),
        });
    }
    if let Some(p) = &args.inception {
        // refused before any work: the message says where the weights come from
        vitgan::metrics::inception::SafetensorsWeights::open(p)?;
        if args.fid_n < 2 {
            return Err(Error::Config {
                field: "--fid-n".into(),
                detail: "must be at least 2".into(),
            });
        }
    }
    let gpu = Gpu::new(args.gpu.clone())?;
    eprintln!("adapter: {}", gpu.describe());
    if args.data != "synthetic" {
        eprintln!("data: reading {} (crop {}) …", args.data, args.crop);
    }
    let decode_start = Instant::now();
    let cache_dir = match &args.decode_cache {
        Some(chosen) => chosen.clone(),
        None => Some(default_decode_cache(&args.out)),
    };
    let (data, cache_use) = vitgan::data::open_dataset_cached(
        &args.data,
        model.image_size,
        model.channels,
        train.seed,
        args.crop,
        cache_dir.as_deref(),
    )?;
    let decode_s = decode_start.elapsed().as_secs_f64();
    let how = match &cache_use {
        Some(DecodeCache::Reused(p)) => format!(", from the decode cache {}", p.display()),
        Some(DecodeCache::Written(p)) => format!(", decode cache written to {}", p.display()),
        Some(DecodeCache::NotWritten(why)) => format!(", decode cache not written: {why}"),
        None => String::new(),
    };
    eprintln!(
        "data: {} ({} images, {}x{}x{}, crop {}, read in {:.1} s, {:.0} images/s{how})",
        data.source,
        data.len,
        data.size,
        data.size,
        data.channels,
        args.crop,
        decode_s,
        data.len as f64 / decode_s.max(1e-9)
    );
    std::fs::create_dir_all(&args.out).map_err(|e| Error::Io {
        path: args.out.display().to_string(),
        source: e,
    })?;

    let mut trainer = Trainer::new(&gpu, &model, &train)?;
    // the settings in effect, for repeating the run: beside the outputs and in every checkpoint
    let run_config = run_config_toml(&args, &model, &train, steps);
    let config_path = args.out.join("config.toml");
    std::fs::write(&config_path, &run_config).map_err(|e| Error::Io {
        path: config_path.display().to_string(),
        source: e,
    })?;
    trainer.run_config = Some(run_config);
    eprintln!(
        "model: {} — G {:.2}M parameters, D {:.2}M parameters, batch {}",
        model.name,
        trainer.g_params.numel() as f64 / 1e6,
        trainer.d_params.numel() as f64 / 1e6,
        train.batch
    );
    let ckpt_path = args.out.join("checkpoint.safetensors");
    if let Some((path, ckpt)) = &args.resume {
        trainer.load_checkpoint(ckpt, &path.display().to_string())?;
        eprintln!("resumed from {} at step {}", path.display(), trainer.step);
        match ckpt.metadata.get("run.config") {
            Some(old) => {
                for (key, was, now) in changed_settings(old, trainer.run_config.as_deref()) {
                    eprintln!("note: {key} = {now} (the checkpoint's run had {was})");
                }
            }
            None => eprintln!(
                "note: the checkpoint records no run settings; the command line's are used"
            ),
        }
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .map_err(|e| Error::Other(format!("cannot install the Ctrl-C handler: {e}")))?;
    }

    let data = std::sync::Arc::new(data);
    let batcher = std::sync::Arc::new(Batcher::new(data.len, train.batch, train.seed));
    let shape = [
        train.batch,
        model.image_size,
        model.image_size,
        model.channels,
    ];
    let real = Tensor::zeros(&gpu, &shape)?;
    let fixed_z = trainer.latents(64, u64::MAX, 7)?; // the same latents for every sample grid
    let open_append = |name: &str| {
        let path = args.out.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Io {
                path: path.display().to_string(),
                source: e,
            })
    };
    let mut log = open_append("train.log")?;
    let mut jsonl = open_append("metrics.jsonl")?;

    // sample quality: reference points first, so every report can be read against them
    let evaluator = if args.eval_n > 0 && data.len / 2 < 16 {
        eprintln!(
            "eval: skipped — SWD/KID need at least 32 training images (the data has {})",
            data.len
        );
        None
    } else if args.eval_n > 0 {
        let ev = SampleEvaluator::new(&gpu, &data, args.eval_n.min(data.len / 2), train.seed)?;
        let t = Instant::now();
        let floor = ev.real_vs_real()?;
        let untrained = if trainer.step == 0 {
            ev.ema_generator(&trainer)?
        } else {
            ev.ema_generator(&Trainer::new(&gpu, &model, &train)?)?
        };
        eprintln!(
            "eval ({} samples, {:.1} s): real vs real {floor}\n                          untrained G {untrained}",
            ev.n(),
            t.elapsed().as_secs_f64()
        );
        Some((ev, floor, untrained))
    } else {
        None
    };

    let fid = match &args.inception {
        Some(path) => {
            let t = Instant::now();
            let cache = args.out.join("fid_reference.safetensors");
            let ev = match InceptionEvaluator::new(
                &gpu,
                InceptionV3::load(&gpu, path)?,
                &data,
                args.fid_n,
                train.seed,
                Some(&cache),
                &mut inception_progress("FID reference", &interrupted),
            ) {
                Err(Error::Stopped(_)) => {
                    eprintln!("\ninterrupted before training started; nothing to save");
                    return Ok(Ended::Interrupted);
                }
                other => other?,
            };
            eprintln!(
                "FID reference: {} real images ({:.1} s; cached in {})",
                ev.reference_n(),
                t.elapsed().as_secs_f64(),
                cache.display()
            );
            Some(ev)
        }
        None => None,
    };

    let start = Instant::now();
    let progress = Progress {
        steps,
        batch: train.batch,
        start,
        start_step: trainer.step,
        terminal: std::io::stderr().is_terminal(),
        checkpoint: ckpt_path.clone(),
    };
    let mut history = History::default();
    let mut pending: Option<Pending> = None;
    // batches are prepared on a background thread, two steps ahead
    let mut prefetch = Prefetcher::start(data.clone(), batcher.clone(), trainer.step, 2);
    while trainer.step < steps {
        let step = trainer.step;
        let (batch_step, host_batch) = prefetch.next_batch()?;
        debug_assert_eq!(batch_step, step);
        real.write(&host_batch)?;
        prefetch.recycle(host_batch);
        let log_now = step % args.log_every == 0 || step + 1 == steps;
        let out = if log_now && pending.is_none() {
            trainer.train_step_diagnosed(&real)?
        } else {
            trainer.train_step(&real)?
        };

        // values of an earlier logged step are printed once they have arrived: no stall
        if pending.as_ref().is_some_and(Pending::is_ready) {
            let p = pending.take().unwrap();
            let record = p.finish(&progress, trainer.step, &mut history)?;
            let _ = writeln!(log, "{}", record.line);
            let _ = writeln!(jsonl, "{}", record.json);
        }
        if log_now && pending.is_none() {
            let attention =
                trainer.d_attention_stats(&layout::slice(&real, 0, 0, real.shape()[0].min(8))?)?;
            pending = Some(Pending::new(step, &out, attention)?);
        }
        let finished = trainer.step == steps;
        if let Some((ev, floor, untrained)) = &evaluator {
            let due = args.eval_every > 0 && trainer.step % args.eval_every == 0;
            if due || finished {
                let t = Instant::now();
                let m = ev.ema_generator(&trainer)?;
                let line = format!(
                    "eval step {}: {m}   [real vs real SWD {:.2} KID {:.5}; untrained SWD {:.2} KID {:.5}; {:.1} s]",
                    trainer.step,
                    floor.swd.mean,
                    floor.kid.mean,
                    untrained.swd.mean,
                    untrained.kid.mean,
                    t.elapsed().as_secs_f64()
                );
                progress.print_line(&line);
                let _ = writeln!(log, "{line}");
                let _ = writeln!(jsonl, "{}", eval_json(trainer.step, &m, floor, untrained));
                history.swd.push((trainer.step, m.swd.mean as f32));
                history
                    .swd_floor
                    .push((trainer.step, floor.swd.mean as f32));
                history.kid.push((trainer.step, m.kid.mean as f32));
                history
                    .kid_floor
                    .push((trainer.step, floor.kid.mean as f32));
            }
        }
        if let Some(ev) = &fid {
            let due = args.fid_every > 0 && trainer.step % args.fid_every == 0;
            if due || finished {
                let t = Instant::now();
                let m = match ev.ema_generator(
                    &trainer,
                    args.fid_n,
                    train.seed,
                    &mut inception_progress("FID samples", &interrupted),
                ) {
                    // Ctrl-C during the pass: no FID for this step; the checkpoint below is written
                    Err(Error::Stopped(_)) => None,
                    other => Some(other?),
                };
                if let Some(m) = m {
                    let line = format!(
                        "fid step {}: FID {:.4}  KID {:.5} ± {:.5}  IS {:.3} ± {:.3}   [{} samples, {} real; {:.1} s]",
                        trainer.step,
                        m.fid,
                        m.kid.mean,
                        m.kid.std,
                        m.inception_score.mean,
                        m.inception_score.std,
                        m.n,
                        m.reference_n,
                        t.elapsed().as_secs_f64()
                    );
                    progress.print_line(&line);
                    let _ = writeln!(log, "{line}");
                    let _ = writeln!(
                        jsonl,
                        "{{\"step\": {}, \"fid\": {:.6}, \"fid_n\": {}, \"fid_reference_n\": {}, \
                     \"kid_inception\": {:.6}, \"kid_inception_std\": {:.6}, \"is\": {:.4}, \"is_std\": {:.4}}}",
                        trainer.step,
                        m.fid,
                        m.n,
                        m.reference_n,
                        m.kid.mean,
                        m.kid.std,
                        m.inception_score.mean,
                        m.inception_score.std
                    );
                    history.fid.push((trainer.step, m.fid as f32));
                }
            }
        }
        if trainer.step % args.sample_every == 0 || finished {
            write_samples(&trainer, &fixed_z, &args.out)?;
            history.save_plots(&args.out, args.plot_log)?;
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
        if stop && !finished {
            if let Some(p) = pending.take() {
                let record = p.finish(&progress, trainer.step, &mut history)?;
                let _ = writeln!(log, "{}", record.line);
                let _ = writeln!(jsonl, "{}", record.json);
            }
            eprintln!("interrupted; resume with --resume {}", ckpt_path.display());
            return Ok(Ended::Interrupted);
        }
    }
    if let Some(p) = pending.take() {
        let record = p.finish(&progress, trainer.step, &mut history)?;
        let _ = writeln!(log, "{}", record.line);
        let _ = writeln!(jsonl, "{}", record.json);
    }
    eprintln!(
        "\ndone: {} steps; samples, plots and metrics.jsonl in {}; the loop waited {:.2} s for \
         batches in all",
        trainer.step,
        args.out.display(),
        prefetch.waited.as_secs_f64()
    );
    for (kernel, n, ms) in gpu.profile_report().iter().take(25) {
        eprintln!("{kernel:<45} {n:>7} dispatches {ms:>10.1} ms");
    }
    Ok(Ended::Finished)
}

/// Where decoded image folders are cached when `--decode-cache` is not given: `decode-cache` beside
/// the output directory (`runs/celeba` → `runs/decode-cache`), so runs with other `--out` share it.
fn default_decode_cache(out: &std::path::Path) -> PathBuf {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    parent
        .unwrap_or(std::path::Path::new("."))
        .join("decode-cache")
}

/// Logged values over the run, for the plots.
#[derive(Default)]
struct History {
    d_loss: Vec<(u64, f32)>,
    g_loss: Vec<(u64, f32)>,
    d_real: Vec<(u64, f32)>,
    d_fake: Vec<(u64, f32)>,
    ranking: Vec<(u64, f32)>,
    swd: Vec<(u64, f32)>,
    swd_floor: Vec<(u64, f32)>,
    kid: Vec<(u64, f32)>,
    kid_floor: Vec<(u64, f32)>,
    fid: Vec<(u64, f32)>,
}

impl History {
    /// OUT/losses.svg, discriminator.svg and, once there are evaluations, metrics.svg (SWD and KID
    /// against their real-vs-real floor, FID); `log_y`: log y axes for the losses, SWD and FID.
    fn save_plots(&self, out: &Path, log_y: bool) -> Result<()> {
        let plot = |name: &str, panels: &[Panel]| {
            save_plot_svg(&out.join(name), panels, 720, 320 * panels.len() as u32)
        };
        let losses = vec![
            Series::solid("D loss", &self.d_loss),
            Series::solid("G loss", &self.g_loss),
        ];
        plot("losses.svg", &[Panel::new("loss", losses, log_y)])?;
        let logits = vec![
            Series::solid("D(real)", &self.d_real),
            Series::solid("D(fake)", &self.d_fake),
            Series::solid("ranking", &self.ranking),
        ];
        plot(
            "discriminator.svg",
            &[Panel::new(
                "D's mean logits, ranking accuracy",
                logits,
                false,
            )],
        )?;
        let mut metrics = Vec::new();
        if !self.swd.is_empty() {
            let swd = vec![
                Series::solid("SWD EMA G", &self.swd),
                Series::dashed("real vs real", &self.swd_floor),
            ];
            let kid = vec![
                Series::solid("KID EMA G", &self.kid),
                Series::dashed("real vs real", &self.kid_floor),
            ];
            metrics.push(Panel::new("SWD", swd, log_y));
            metrics.push(Panel::new("KID", kid, false));
        }
        if !self.fid.is_empty() {
            let fid = vec![Series::solid("FID EMA G", &self.fid)];
            metrics.push(Panel::new("FID (InceptionV3)", fid, log_y));
        }
        if metrics.is_empty() {
            return Ok(());
        }
        plot("metrics.svg", &metrics)
    }
}

/// A logged step whose values are still on their way back from the GPU.
struct Pending {
    step: u64,
    d_loss: Readback,
    g_loss: Readback,
    real: Readback,
    fake: Readback,
    norms: Option<(Readback, Readback)>,
    attention: Vec<AttentionStats>,
}

/// One log line and its JSON record.
struct Record {
    line: String,
    json: String,
}

impl Pending {
    fn new(step: u64, out: &StepOutput, attention: Vec<AttentionStats>) -> Result<Pending> {
        let norms = match &out.grad_sq_norms {
            Some((d, g)) => Some((d.read_async()?, g.read_async()?)),
            None => None,
        };
        Ok(Pending {
            step,
            d_loss: out.d_loss.read_async()?,
            g_loss: out.g_loss.read_async()?,
            real: out.logits_real.read_async()?,
            fake: out.logits_fake.read_async()?,
            norms,
            attention,
        })
    }

    fn is_ready(&self) -> bool {
        [&self.d_loss, &self.g_loss, &self.real, &self.fake]
            .iter()
            .all(|r| r.is_ready())
            && self
                .norms
                .as_ref()
                .is_none_or(|(d, g)| d.is_ready() && g.is_ready())
    }

    fn finish(self, progress: &Progress, now: u64, history: &mut History) -> Result<Record> {
        let (d, g) = (f32s(self.d_loss)?[0], f32s(self.g_loss)?[0]);
        progress.check_finite(self.step, d, g)?;
        let logits = LogitStats::new(&f32s(self.real)?, &f32s(self.fake)?);
        let norms = match self.norms {
            Some((dn, gn)) => Some((f32s(dn)?[0].sqrt(), f32s(gn)?[0].sqrt())),
            None => None,
        };
        let s = self.step;
        history.d_loss.push((s, d));
        history.g_loss.push((s, g));
        history.d_real.push((s, logits.real as f32));
        history.d_fake.push((s, logits.fake as f32));
        history.ranking.push((s, logits.ranking as f32));
        let rate = progress.rate(now);
        let mut line = format!(
            "step {s:>7}/{}  {rate:7.1} img/s  D {d:.4}  G {g:.4}  D(real) {:+.3} D(fake) {:+.3} rank {:.2}",
            progress.steps, logits.real, logits.fake, logits.ranking
        );
        let mut json = format!(
            "{{\"step\": {s}, \"elapsed_s\": {:.3}, \"images_per_s\": {rate:.2}, \"d_loss\": {}, \"g_loss\": {}, \
             \"d_real_logit\": {:.6}, \"d_fake_logit\": {:.6}, \"d_ranking\": {:.4}",
            progress.start.elapsed().as_secs_f64(),
            json_f32(d),
            json_f32(g),
            logits.real,
            logits.fake,
            logits.ranking
        );
        if let Some((dn, gn)) = norms {
            json += &format!(
                ", \"d_grad_norm\": {}, \"g_grad_norm\": {}",
                json_f32(dn),
                json_f32(gn)
            );
            line += &format!("  |∇D| {dn:.3} |∇G| {gn:.3}");
        }
        json += ", \"d_attention\": [";
        for (i, a) in self.attention.iter().enumerate() {
            json += &format!(
                "{}{{\"block\": {i}, \"self_share\": {:.4}, \"class_self_share\": {:.4}, \"entropy\": {:.4}}}",
                if i > 0 { ", " } else { "" },
                a.self_share,
                a.class_self_share,
                a.entropy
            );
        }
        json += "]}";
        if let Some(a) = self.attention.first() {
            line += &format!("  attn0 self {:.2} H {:.2}", a.self_share, a.entropy);
        }
        line += &format!("  ETA {}", progress.eta(now));
        progress.print_line(&line);
        Ok(Record { line, json })
    }
}

/// A finite value as JSON (non-finite as null).
fn json_f32(v: f32) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn eval_json(
    step: u64,
    m: &SampleMetrics,
    floor: &SampleMetrics,
    untrained: &SampleMetrics,
) -> String {
    let levels = |s: &vitgan::metrics::swd::Swd| {
        s.levels
            .iter()
            .map(|(r, v)| format!("{{\"resolution\": {r}, \"swd\": {v:.4}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{\"step\": {step}, \"swd\": {:.4}, \"swd_levels\": [{}], \"kid\": {:.6}, \"kid_std\": {:.6}, \
         \"swd_real_vs_real\": {:.4}, \"kid_real_vs_real\": {:.6}, \"swd_untrained\": {:.4}, \"kid_untrained\": {:.6}}}",
        m.swd.mean,
        levels(&m.swd),
        m.kid.mean,
        m.kid.std,
        floor.swd.mean,
        floor.kid.mean,
        untrained.swd.mean,
        untrained.kid.mean
    )
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
        let checkpoint = if self.checkpoint.exists() {
            format!(
                "The last good checkpoint is {} (not overwritten)",
                self.checkpoint.display()
            )
        } else {
            format!(
                "No checkpoint was written ({} does not exist)",
                self.checkpoint.display()
            )
        };
        Err(Error::Other(format!(
            "non-finite loss at step {step} (D {d}, G {g}); stopping. {checkpoint}; try a lower --lr"
        )))
    }

    fn rate(&self, now: u64) -> f64 {
        (now - self.start_step) as f64 * self.batch as f64 / self.start.elapsed().as_secs_f64()
    }

    fn eta(&self, now: u64) -> String {
        format_duration((self.steps - now) as f64 * self.batch as f64 / self.rate(now).max(1e-9))
    }

    fn print_line(&self, line: &str) {
        if self.terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }
}

fn f32s(r: Readback) -> Result<Vec<f32>> {
    Ok(bytemuck::pod_collect_to_vec(&r.wait()?))
}

fn write_samples(trainer: &Trainer, z: &Tensor, out: &Path) -> Result<()> {
    let m = &trainer.model;
    let images = trainer.sample_ema(z)?.to_vec()?;
    let n = z.shape()[0];
    let scale = grid_scale(m.image_size);
    let grid =
        |path: &Path| save_image_grid_scaled(path, &images, n, m.image_size, m.channels, 8, scale);
    grid(&out.join("samples.png"))?;
    grid(&out.join(format!("samples_{:07}.png", trainer.step)))
}

/// Progress of an Inception pass on stderr, every tenth of the work; stops the pass on Ctrl-C.
fn inception_progress(
    what: &'static str,
    interrupted: &Arc<AtomicBool>,
) -> impl FnMut(usize, usize) -> bool {
    let start = Instant::now();
    let mut last_tenth = 0;
    let interrupted = interrupted.clone();
    move |done, total| {
        let tenth = done * 10 / total.max(1);
        if tenth > last_tenth || done == total {
            last_tenth = tenth;
            let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{what}: {done}/{total} images through InceptionV3, {rate:.1} images/s, ETA {}",
                format_duration((total - done) as f64 / rate.max(1e-9))
            );
        }
        !interrupted.load(Ordering::SeqCst)
    }
}

fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
