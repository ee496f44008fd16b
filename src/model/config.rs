//! Model configuration: every size is a plain field; presets reproduce the paper's settings.

use crate::error::{Error, Result};
use crate::nn::WeightNorm;
use crate::ops::attention::AttentionKind;

/// One transformer (G or D).
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Patch size `P` (the token grid is `(H/P) × (W/P)`).
    pub patch: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Token width `D`.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width (paper: 4D).
    pub mlp_hidden: usize,
}

/// How G injects the style `w` into its tokens (ablation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StyleInjection {
    /// Self-modulated LayerNorm (ViTGAN).
    SelfModulatedLayerNorm,
    /// Add `w` to the initial tokens and use plain LayerNorm.
    AddToTokens,
}

/// How G turns patch embeddings into pixels (ablation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchDecoder {
    /// Implicit neural representation (ViTGAN).
    Implicit,
    /// A plain linear projection to `P·P·C` values.
    Linear,
}

/// The whole model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Preset name (informational; checkpoints record it).
    pub name: String,
    /// Image height = width.
    pub image_size: usize,
    /// Image channels.
    pub channels: usize,
    /// Latent `z` width.
    pub latent_dim: usize,
    /// Linear layers in the mapping network `z → w`.
    pub mapping_layers: usize,
    /// Generator transformer.
    pub generator: NetConfig,
    /// Discriminator transformer.
    pub discriminator: NetConfig,
    /// Hidden width of the INR patch decoder.
    pub inr_hidden: usize,
    /// Attention in D: L2 (ViTGAN) or dot-product (ablation).
    pub d_attention: AttentionKind,
    /// Weight normalisation in D: improved SN (ViTGAN), SN, or none (ablation).
    pub d_weight_norm: WeightNorm,
    /// Overlapping patches in D (ViTGAN) or plain ones (ablation).
    pub d_overlapping_patches: bool,
    /// Style injection in G.
    pub g_style: StyleInjection,
    /// Patch decoder in G.
    pub g_decoder: PatchDecoder,
    /// Multiplier on the initial weights of D's query (and, for dot attention, key) projection,
    /// before σ(W_init) is measured: it sets how peaked D's attention starts and, under ISN, stays.
    pub d_query_gain: f32,
    /// The style affines of G (SLN's γ(w), β(w) and the INR decoder's modulations) with equalised
    /// learning rate, so Adam moves them relative to their scale like every other layer of G.
    pub g_equalised_affines: bool,
    /// Demodulate the INR decoder's output layer too (`false`: modulated only, as StyleGAN2's toRGB).
    pub inr_demodulate_output: bool,
    /// Start the INR decoder's output layer with one row for every channel (the first channel's
    /// draw copied), so G starts painting grey (R = G = B) and channels differ only as training
    /// moves them apart. Acts on initialisation only.
    pub inr_tied_output_init: bool,
}

impl ModelConfig {
    /// The paper's 32×32 (CIFAR-10) setting: 4 blocks each, D = 384, MLP 1536, 6 heads, patch 4.
    pub fn cifar32() -> Self {
        let net = NetConfig {
            patch: 4,
            depth: 4,
            width: 384,
            heads: 6,
            mlp_hidden: 1536,
        };
        ModelConfig {
            name: "cifar32".into(),
            image_size: 32,
            channels: 3,
            latent_dim: 384,
            mapping_layers: 4,
            generator: net.clone(),
            discriminator: net,
            inr_hidden: 128,
            d_attention: AttentionKind::L2,
            d_weight_norm: WeightNorm::ImprovedSpectral,
            d_overlapping_patches: true,
            g_style: StyleInjection::SelfModulatedLayerNorm,
            g_decoder: PatchDecoder::Implicit,
            d_query_gain: 1.0,
            g_equalised_affines: false,
            // measured: demodulating the output layer paints colour speckle (README, Recipe)
            inr_demodulate_output: false,
            inr_tied_output_init: false,
        }
    }

    /// 64×64 (CelebA): 6 blocks, patch 8 for G (64 tokens); D uses patch 8 as well.
    pub fn celeba64() -> Self {
        let net = NetConfig {
            patch: 8,
            depth: 6,
            width: 384,
            heads: 6,
            mlp_hidden: 1536,
        };
        ModelConfig {
            name: "celeba64".into(),
            image_size: 64,
            generator: net.clone(),
            discriminator: net,
            ..Self::cifar32()
        }
    }

    /// 64×64 (LSUN bedroom): as celeba64.
    pub fn lsun64() -> Self {
        ModelConfig {
            name: "lsun64".into(),
            ..Self::celeba64()
        }
    }

    /// Small enough to train visibly within minutes on a CPU (lavapipe): 16×16, width 64, 2 blocks.
    pub fn tiny() -> Self {
        let net = NetConfig {
            patch: 4,
            depth: 2,
            width: 64,
            heads: 4,
            mlp_hidden: 128,
        };
        ModelConfig {
            name: "tiny".into(),
            image_size: 16,
            channels: 3,
            latent_dim: 64,
            mapping_layers: 2,
            generator: net.clone(),
            discriminator: net,
            inr_hidden: 32,
            // measured on Fashion-MNIST as RGB (README, Recipe): 30 % less colour speckle, SWD no
            // worse (and at 32×32 for `tiny32`); not measured on colour data, so the larger
            // presets keep independent rows
            inr_tied_output_init: true,
            ..Self::cifar32()
        }
    }

    /// `tiny` at 32×32: patch 8 in G and D, so the transformers see the same 16 tokens as `tiny`
    /// (the same cost per block); the INR decoder paints 8×8 pixels per patch.
    pub fn tiny32() -> Self {
        let net = NetConfig {
            patch: 8,
            ..Self::tiny().generator
        };
        ModelConfig {
            name: "tiny32".into(),
            image_size: 32,
            generator: net.clone(),
            discriminator: net,
            // tied INR rows, as `tiny`: measured on Fashion-MNIST at 32×32 too (README, Recipe)
            ..Self::tiny()
        }
    }

    /// Whether this is one of the small presets for CPU adapters (`tiny`, `tiny32`), whose runs default
    /// to batch 32 and 1,000 steps.
    pub fn is_small_preset(&self) -> bool {
        matches!(self.name.as_str(), "tiny" | "tiny32")
    }

    /// The [`ModelConfig::fields`] keys that act on initialisation only, so a checkpoint resumed
    /// with another value (or without the key) is the same run.
    pub const INIT_ONLY_FIELDS: [&'static str; 1] = ["config.inr_tied_output_init"];

    /// Every preset's name, as [`ModelConfig::preset`] takes them.
    pub const PRESETS: [&'static str; 5] = ["tiny", "tiny32", "cifar32", "celeba64", "lsun64"];

    /// A preset by name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "cifar32" => Ok(Self::cifar32()),
            "celeba64" => Ok(Self::celeba64()),
            "lsun64" => Ok(Self::lsun64()),
            "tiny" => Ok(Self::tiny()),
            "tiny32" => Ok(Self::tiny32()),
            other => Err(Error::Config {
                field: "preset".into(),
                detail: format!(
                    "unknown preset `{other}`; choose one of {}",
                    Self::PRESETS.join(", ")
                ),
            }),
        }
    }

    /// Check every field; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, detail: String| {
            Err(Error::Config {
                field: field.into(),
                detail,
            })
        };
        if self.image_size == 0 {
            return bad("image_size", "must be positive".into());
        }
        if self.channels == 0 {
            return bad("channels", "must be positive".into());
        }
        if self.latent_dim == 0 {
            return bad("latent_dim", "must be positive".into());
        }
        if !(self.d_query_gain.is_finite() && self.d_query_gain > 0.0) {
            return bad(
                "d_query_gain",
                format!("{} must be a positive number", self.d_query_gain),
            );
        }
        if self.inr_hidden == 0 {
            return bad("inr_hidden", "must be positive".into());
        }
        for (who, net) in [
            ("generator", &self.generator),
            ("discriminator", &self.discriminator),
        ] {
            if net.patch == 0 || !self.image_size.is_multiple_of(net.patch) {
                return bad(
                    &format!("{who}.patch"),
                    format!(
                        "image size {} is not divisible by patch {}",
                        self.image_size, net.patch
                    ),
                );
            }
            if net.width == 0 || net.heads == 0 || net.width % net.heads != 0 {
                return bad(
                    &format!("{who}.heads"),
                    format!(
                        "width {} is not divisible by {} heads",
                        net.width, net.heads
                    ),
                );
            }
            if net.width / net.heads > 128 {
                return bad(
                    &format!("{who}.heads"),
                    format!("head width {} exceeds 128", net.width / net.heads),
                );
            }
            if net.depth == 0 {
                return bad(&format!("{who}.depth"), "needs at least one block".into());
            }
            if net.mlp_hidden == 0 {
                return bad(&format!("{who}.mlp_hidden"), "must be positive".into());
            }
        }
        Ok(())
    }

    /// Tokens in G.
    pub fn g_tokens(&self) -> usize {
        (self.image_size / self.generator.patch).pow(2)
    }
    /// Patch tokens in D (plus one class token in the sequence).
    pub fn d_tokens(&self) -> usize {
        (self.image_size / self.discriminator.patch).pow(2)
    }
}

impl ModelConfig {
    /// Every field as `config.<name>` → value, for checkpoints (a resume with another config is refused
    /// naming the first differing field).
    pub fn fields(&self) -> std::collections::BTreeMap<String, String> {
        let mut f = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: String| {
            f.insert(format!("config.{k}"), v);
        };
        put("image_size", self.image_size.to_string());
        put("channels", self.channels.to_string());
        put("latent_dim", self.latent_dim.to_string());
        put("mapping_layers", self.mapping_layers.to_string());
        put("inr_hidden", self.inr_hidden.to_string());
        for (who, n) in [
            ("generator", &self.generator),
            ("discriminator", &self.discriminator),
        ] {
            put(&format!("{who}.patch"), n.patch.to_string());
            put(&format!("{who}.depth"), n.depth.to_string());
            put(&format!("{who}.width"), n.width.to_string());
            put(&format!("{who}.heads"), n.heads.to_string());
            put(&format!("{who}.mlp_hidden"), n.mlp_hidden.to_string());
        }
        put("d_attention", format!("{:?}", self.d_attention));
        put("d_weight_norm", format!("{:?}", self.d_weight_norm));
        put(
            "d_overlapping_patches",
            self.d_overlapping_patches.to_string(),
        );
        put("g_style", format!("{:?}", self.g_style));
        put("g_decoder", format!("{:?}", self.g_decoder));
        put("d_query_gain", self.d_query_gain.to_string());
        put("g_equalised_affines", self.g_equalised_affines.to_string());
        put(
            "inr_demodulate_output",
            self.inr_demodulate_output.to_string(),
        );
        put(
            "inr_tied_output_init",
            self.inr_tied_output_init.to_string(),
        );
        f
    }
}

impl ModelConfig {
    /// The config [`ModelConfig::fields`] wrote: the preset `preset` with every `config.<name>`
    /// entry of `fields` applied over it (keys without the `config.` prefix are ignored), then
    /// validated. Fields missing from `fields` keep the preset's value.
    ///
    /// Errors: an unknown preset, a `config.*` key that is not a model field (the trainer's
    /// `config.batch` and `config.seed` included: remove them first), or a value that does not
    /// parse, each an [`Error::Config`] naming the key.
    pub fn from_fields(
        preset: &str,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Result<ModelConfig> {
        use crate::io::checkpoint::CONFIG_PREFIX;
        let mut m = ModelConfig::preset(preset)?;
        for (key, value) in fields {
            let Some(name) = key.strip_prefix(CONFIG_PREFIX) else {
                continue;
            };
            let bad = |expected: &str| Error::Config {
                field: key.clone(),
                detail: format!("`{value}` is not {expected}"),
            };
            let count = || value.parse::<usize>().map_err(|_| bad("a whole number"));
            let flag = || value.parse::<bool>().map_err(|_| bad("`true` or `false`"));
            let pick = |choices: &[&str]| -> Result<usize> {
                choices
                    .iter()
                    .position(|c| c == value)
                    .ok_or_else(|| bad(&format!("one of {}", choices.join(", "))))
            };
            if let Some((who, leaf)) = name.split_once('.') {
                let net = match who {
                    "generator" => &mut m.generator,
                    "discriminator" => &mut m.discriminator,
                    _ => return Err(unknown_field(key)),
                };
                let slot = match leaf {
                    "patch" => &mut net.patch,
                    "depth" => &mut net.depth,
                    "width" => &mut net.width,
                    "heads" => &mut net.heads,
                    "mlp_hidden" => &mut net.mlp_hidden,
                    _ => return Err(unknown_field(key)),
                };
                *slot = count()?;
                continue;
            }
            match name {
                "image_size" => m.image_size = count()?,
                "channels" => m.channels = count()?,
                "latent_dim" => m.latent_dim = count()?,
                "mapping_layers" => m.mapping_layers = count()?,
                "inr_hidden" => m.inr_hidden = count()?,
                "d_attention" => {
                    m.d_attention = [AttentionKind::Dot, AttentionKind::L2][pick(&["Dot", "L2"])?]
                }
                "d_weight_norm" => {
                    m.d_weight_norm = [
                        WeightNorm::None,
                        WeightNorm::Spectral,
                        WeightNorm::ImprovedSpectral,
                    ][pick(&["None", "Spectral", "ImprovedSpectral"])?]
                }
                "d_overlapping_patches" => m.d_overlapping_patches = flag()?,
                "g_style" => {
                    m.g_style = [
                        StyleInjection::SelfModulatedLayerNorm,
                        StyleInjection::AddToTokens,
                    ][pick(&["SelfModulatedLayerNorm", "AddToTokens"])?]
                }
                "g_decoder" => {
                    m.g_decoder = [PatchDecoder::Implicit, PatchDecoder::Linear]
                        [pick(&["Implicit", "Linear"])?]
                }
                "d_query_gain" => {
                    m.d_query_gain = value.parse().map_err(|_| bad("a number"))?;
                }
                "g_equalised_affines" => m.g_equalised_affines = flag()?,
                "inr_demodulate_output" => m.inr_demodulate_output = flag()?,
                "inr_tied_output_init" => m.inr_tied_output_init = flag()?,
                _ => return Err(unknown_field(key)),
            }
        }
        m.validate()?;
        Ok(m)
    }
}

fn unknown_field(key: &str) -> Error {
    Error::Config {
        field: key.into(),
        detail: "not a model config field; the checkpoint was written by another version of \
                 vitgan"
            .into(),
    }
}
