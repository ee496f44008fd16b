//! The ViTGAN discriminator: overlapping patches → linear embedding → class token + positional
//! embedding → blocks with L2 attention and improved spectral norm → LayerNorm on the class token →
//! linear head, one logit per image.

use super::config::ModelConfig;
use crate::autodiff::{ParamStore, Parameter, Tape, Var};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{
    Attention, Block, Builder, Init, LayerNorm, Linear, LinearOptions, Mlp, Norm, SineEmbedding,
};
use crate::ops::attention::AttentionKind;

/// The discriminator network.
pub struct Discriminator {
    pub config: ModelConfig,
    pub patch_embed: Linear,
    pub class_token: Parameter,
    pub pos: SineEmbedding,
    pub blocks: Vec<Block>,
    pub final_norm: LayerNorm,
    pub head: Linear,
}

impl Discriminator {
    /// Build with parameters named `discriminator.*` in `store`.
    pub fn new(
        gpu: &Gpu,
        store: &mut ParamStore,
        init: &mut Init,
        config: &ModelConfig,
    ) -> Result<Discriminator> {
        config.validate()?;
        let net = &config.discriminator;
        let d = net.width;
        let mut root = Builder::new(gpu, store, init, "discriminator");
        let lin = LinearOptions {
            norm: config.d_weight_norm,
            ..Default::default()
        };
        let p = net.patch + 2 * Self::overlap_of(config);
        let patch_embed = Linear::new(
            &mut root.sub("patch_embed"),
            p * p * config.channels,
            d,
            lin,
        )?;
        let cls = root.init.normal(d, 0.02);
        let class_token = root.param("class_token", &cls, &[1, 1, d])?;
        let grid = config.image_size / net.patch;
        let pos = SineEmbedding::new(&mut root.sub("pos_embed"), grid, grid, d, 3.0)?;
        // q (tied L2) or q and k (dot) lead the qkv projection's output rows
        let query_rows = match config.d_attention {
            AttentionKind::L2 => d,
            AttentionKind::Dot => 2 * d,
        };
        let mut blocks = Vec::with_capacity(net.depth);
        for i in 0..net.depth {
            let mut b = root.sub(format!("blocks.{i}"));
            blocks.push(Block {
                norm1: Norm::Layer(LayerNorm::new(&mut b.sub("norm1"), d)?),
                attn: Attention::new(
                    &mut b.sub("attn"),
                    d,
                    net.heads,
                    config.d_attention,
                    LinearOptions {
                        leading_rows_gain: Some((query_rows, config.d_query_gain)),
                        ..lin
                    },
                )?,
                norm2: Norm::Layer(LayerNorm::new(&mut b.sub("norm2"), d)?),
                mlp: Mlp::new(&mut b.sub("mlp"), d, net.mlp_hidden, lin)?,
            });
        }
        let final_norm = LayerNorm::new(&mut root.sub("final_norm"), d)?;
        let head = Linear::new(&mut root.sub("head"), d, 1, lin)?;
        Ok(Discriminator {
            config: config.clone(),
            patch_embed,
            class_token,
            pos,
            blocks,
            final_norm,
            head,
        })
    }

    /// Patch overlap `o` (P/2 with overlapping patches, else 0).
    pub fn overlap_of(config: &ModelConfig) -> usize {
        if config.d_overlapping_patches {
            config.discriminator.patch / 2
        } else {
            0
        }
    }

    /// `img`: `[B, H, W, C]` → logits `[B, 1]`.
    pub fn forward(&self, tape: &Tape, img: Var) -> Result<Var> {
        let mut h = self.tokens(tape, img)?;
        for block in &self.blocks {
            h = block.forward(tape, h, None)?;
        }
        self.head_of(tape, h)
    }

    /// Per block, the attention's `(q, k)` `[B, H, L+1, Dh]` on `img` (for diagnostics).
    pub fn attention_inputs(&self, tape: &Tape, img: Var) -> Result<Vec<(Var, Var)>> {
        let mut h = self.tokens(tape, img)?;
        let mut out = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (q, k, _) = block
                .attn
                .heads(tape, block.norm1.forward(tape, h, None)?)?;
            out.push((q, k));
            h = block.forward(tape, h, None)?;
        }
        Ok(out)
    }

    /// The logit from the last tokens `[B, L+1, D]`: LayerNorm of the class token, then the head.
    fn head_of(&self, tape: &Tape, h: Var) -> Result<Var> {
        let bsz = tape.shape(h)[0];
        let d = self.config.discriminator.width;
        let c = tape.reshape(tape.slice(h, 1, 0, 1)?, &[bsz, d])?;
        let c = self.final_norm.forward(tape, c)?;
        self.head.forward(tape, c)
    }

    /// The input sequence `[B, L+1, D]`: class token, then the embedded patches plus positions.
    fn tokens(&self, tape: &Tape, img: Var) -> Result<Var> {
        let cfg = &self.config;
        let s = tape.shape(img);
        if s.len() != 4 || s[1] != cfg.image_size || s[2] != cfg.image_size || s[3] != cfg.channels
        {
            return Err(Error::shape(
                "Discriminator",
                format!(
                    "expects images [B, {0}, {0}, {1}] (NHWC), got {s:?}",
                    cfg.image_size, cfg.channels
                ),
            ));
        }
        let bsz = s[0];
        let d = cfg.discriminator.width;
        let tokens = cfg.d_tokens();
        let patches = tape.extract_patches(img, cfg.discriminator.patch, Self::overlap_of(cfg))?;
        let e = self.patch_embed.forward(tape, patches)?;
        let pos = tape.reshape(self.pos.forward(tape)?, &[1, tokens, d])?;
        let e = tape.add(e, pos)?;
        let cls = tape.broadcast_to(tape.param(&self.class_token), &[bsz, 1, d])?;
        tape.concat(&[cls, e], 1)
    }
}
