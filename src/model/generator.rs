//! The ViTGAN generator: `z → w` mapping; tokens start as the positional embedding; blocks with
//! self-modulated LayerNorm; final SLN gives one embedding per patch; the INR decoder paints each patch.
//! Images are NHWC `[B, H, W, C]` with values in [-1, 1] (tanh output), everywhere in this crate.

use super::config::{ModelConfig, PatchDecoder, StyleInjection};
use crate::autodiff::{ParamStore, Tape, Var};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::{
    Attention, Block, Builder, Init, InrDecoder, InrOptions, LayerNorm, Linear, LinearOptions, Mlp,
    Norm, SelfModulatedLayerNorm, SineEmbedding,
};
use crate::ops::attention::AttentionKind;
use crate::ops::elementwise::Unary;
use crate::ops::matmul::Activation;

/// How patch embeddings become pixels.
#[allow(clippy::large_enum_variant)] // built once per model
pub enum Decoder {
    /// The modulated sine MLP.
    Implicit(InrDecoder),
    /// `Linear(D → P·P·C)`.
    Linear(Linear),
}

/// The generator network.
pub struct Generator {
    pub config: ModelConfig,
    pub mapping: Vec<Linear>,
    pub pos: SineEmbedding,
    pub blocks: Vec<Block>,
    pub final_norm: Norm,
    pub decoder: Decoder,
}

fn norm(b: &mut Builder, cfg: &ModelConfig, dim: usize) -> Result<Norm> {
    Ok(match cfg.g_style {
        StyleInjection::SelfModulatedLayerNorm => Norm::SelfModulated(SelfModulatedLayerNorm::new(
            b,
            dim,
            dim,
            cfg.g_equalised_affines,
        )?),
        StyleInjection::AddToTokens => Norm::Layer(LayerNorm::new(b, dim)?),
    })
}

impl Generator {
    /// Build with parameters named `generator.*` in `store`.
    pub fn new(
        gpu: &Gpu,
        store: &mut ParamStore,
        init: &mut Init,
        config: &ModelConfig,
    ) -> Result<Generator> {
        config.validate()?;
        let net = &config.generator;
        let d = net.width;
        let mut root = Builder::new(gpu, store, init, "generator");
        let lin = LinearOptions {
            equalised_lr: true,
            ..Default::default()
        };
        let mapping = (0..config.mapping_layers.max(1))
            .map(|i| {
                let fan_in = if i == 0 { config.latent_dim } else { d };
                Linear::new(&mut root.sub(format!("mapping.{i}")), fan_in, d, lin)
            })
            .collect::<Result<Vec<_>>>()?;
        let grid = config.image_size / net.patch;
        let pos = SineEmbedding::new(&mut root.sub("pos_embed"), grid, grid, d, 3.0)?;
        let mut blocks = Vec::with_capacity(net.depth);
        for i in 0..net.depth {
            let mut b = root.sub(format!("blocks.{i}"));
            blocks.push(Block {
                norm1: norm(&mut b.sub("norm1"), config, d)?,
                attn: Attention::new(&mut b.sub("attn"), d, net.heads, AttentionKind::Dot, lin)?,
                norm2: norm(&mut b.sub("norm2"), config, d)?,
                mlp: Mlp::new(&mut b.sub("mlp"), d, net.mlp_hidden, lin)?,
            });
        }
        let final_norm = norm(&mut root.sub("final_norm"), config, d)?;
        let pixels = net.patch * net.patch * config.channels;
        let decoder = match config.g_decoder {
            PatchDecoder::Implicit => Decoder::Implicit(InrDecoder::new(
                &mut root.sub("decoder"),
                d,
                net.patch,
                config.channels,
                config.inr_hidden,
                InrOptions {
                    equalised: config.g_equalised_affines,
                    demodulate_output: config.inr_demodulate_output,
                    tied_output_init: config.inr_tied_output_init,
                },
            )?),
            PatchDecoder::Linear => {
                Decoder::Linear(Linear::new(&mut root.sub("decoder"), d, pixels, lin)?)
            }
        };
        Ok(Generator {
            config: config.clone(),
            mapping,
            pos,
            blocks,
            final_norm,
            decoder,
        })
    }

    /// The style `w = mapping(z / rms(z))`, `[B, D]`.
    pub fn style(&self, tape: &Tape, z: Var) -> Result<Var> {
        let sq = tape.unary(z, Unary::Square)?;
        let ms = tape.mean_axis(sq, 1, true)?;
        let rms = tape.unary(tape.affine(ms, 1.0, 1e-8)?, Unary::Sqrt)?;
        let mut w = tape.div(z, rms)?;
        for layer in &self.mapping {
            w = layer.forward_act(tape, w, Activation::LeakyRelu(0.2))?;
        }
        Ok(w)
    }

    /// `z`: `[B, latent_dim]` → images `[B, H, W, C]` in [-1, 1].
    pub fn forward(&self, tape: &Tape, z: Var) -> Result<Var> {
        let cfg = &self.config;
        let bsz = tape.shape(z)[0];
        let d = cfg.generator.width;
        let tokens = cfg.g_tokens();
        let w = self.style(tape, z)?;
        let pos = tape.reshape(self.pos.forward(tape)?, &[1, tokens, d])?;
        let mut h = tape.broadcast_to(pos, &[bsz, tokens, d])?;
        if cfg.g_style == StyleInjection::AddToTokens {
            h = tape.add(h, tape.reshape(w, &[bsz, 1, d])?)?;
        }
        for block in &self.blocks {
            h = block.forward(tape, h, Some(w))?;
        }
        let y = self.final_norm.forward(tape, h, Some(w))?;
        let p = cfg.generator.patch;
        let pixels = p * p * cfg.channels;
        let patches = match &self.decoder {
            Decoder::Implicit(inr) => {
                let flat = tape.reshape(y, &[bsz * tokens, d])?;
                tape.reshape(inr.forward(tape, flat)?, &[bsz, tokens, pixels])?
            }
            Decoder::Linear(lin) => lin.forward(tape, y)?,
        };
        let img = tape.patches_to_image(patches, cfg.image_size, cfg.image_size, p)?;
        tape.unary(img, Unary::Tanh)
    }
}
