//! Reusable layers built from tape ops: Linear (+equalised lr, +spectral norm), LayerNorm and
//! self-modulated LayerNorm, attention (L2 tied or dot-product), MLP, the pre-norm transformer block,
//! the sine positional embedding and the implicit (INR) patch decoder.
//!
//! Conventions: tokens are `[B, L, D]`; linear weights are `[out, in]` and applied as `y = x·Wᵀ + b`.

pub mod init;

use crate::autodiff::inr::inr_decode_unfused;
use crate::autodiff::{ParamStore, Parameter, Tape, Var};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, overrides};
use crate::ops::attention::AttentionKind;
use crate::ops::matmul::Activation;
use crate::ops::spectral_norm::SpectralNorm;
use crate::tensor::Tensor;
pub use init::Init;

/// Creates named parameters under a dotted prefix (`generator.blocks.0.attn.qkv`).
pub struct Builder<'a> {
    pub gpu: &'a Gpu,
    pub store: &'a mut ParamStore,
    pub init: &'a mut Init,
    prefix: String,
}

impl<'a> Builder<'a> {
    /// A builder at the root prefix `prefix`.
    pub fn new(gpu: &'a Gpu, store: &'a mut ParamStore, init: &'a mut Init, prefix: &str) -> Self {
        Builder {
            gpu,
            store,
            init,
            prefix: prefix.to_string(),
        }
    }

    /// A builder for a child component.
    pub fn sub(&mut self, name: impl std::fmt::Display) -> Builder<'_> {
        Builder {
            gpu: self.gpu,
            store: self.store,
            init: self.init,
            prefix: format!("{}.{name}", self.prefix),
        }
    }

    /// Full name of `leaf` under this prefix.
    pub fn name(&self, leaf: &str) -> String {
        format!("{}.{leaf}", self.prefix)
    }

    /// A trainable parameter from host data.
    pub fn param(&mut self, leaf: &str, data: &[f32], shape: &[usize]) -> Result<Parameter> {
        let t = Tensor::from_slice(self.gpu, data, shape)?;
        self.store.add(self.name(leaf), t)
    }

    /// A persistent non-trainable tensor.
    pub fn state(&mut self, leaf: &str, value: Tensor) -> Result<Parameter> {
        self.store.add_state(self.name(leaf), value)
    }
}

/// How a linear layer's weight is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightNorm {
    /// Used as stored.
    None,
    /// Spectral normalisation `W / σ(W)`.
    Spectral,
    /// ViTGAN's improved spectral normalisation `σ(W_init) · W / σ(W)`.
    ImprovedSpectral,
}

/// Options for [`Linear::new`].
#[derive(Clone, Copy, Debug)]
pub struct LinearOptions {
    /// Equalised learning rate: weights stored ~N(0, 1), multiplied by `1/√fan_in` at use.
    pub equalised_lr: bool,
    /// Weight normalisation.
    pub norm: WeightNorm,
    /// Add a bias.
    pub bias: bool,
    /// Initial bias value.
    pub bias_init: f32,
    /// Multiplier on the initial weights (after the fan-in scaling). With equalised lr it is part
    /// of the runtime scale (`gain/√fan_in`, weights stored ~N(0, 1)), so Adam's steps stay the same
    /// size relative to the weights whatever the gain.
    pub gain: f32,
    /// `(rows, g)`: the first `rows` output rows' initial weights are multiplied by `g` (before
    /// σ(W_init) is measured for improved spectral norm, so the factor persists under it).
    pub leading_rows_gain: Option<(usize, f32)>,
}

impl Default for LinearOptions {
    fn default() -> Self {
        LinearOptions {
            equalised_lr: false,
            norm: WeightNorm::None,
            bias: true,
            bias_init: 0.0,
            gain: 1.0,
            leading_rows_gain: None,
        }
    }
}

/// `y = act(x · Ŵᵀ + b)` where Ŵ is the stored weight after equalised-lr scaling and/or (improved)
/// spectral normalisation.
pub struct Linear {
    pub weight: Parameter,
    pub bias: Option<Parameter>,
    pub in_features: usize,
    pub out_features: usize,
    runtime_scale: f32,
    spectral: Option<SpectralNorm>,
}

impl Linear {
    /// A layer `in_features → out_features`.
    pub fn new(
        b: &mut Builder,
        in_features: usize,
        out_features: usize,
        o: LinearOptions,
    ) -> Result<Linear> {
        let fan_in_scale = 1.0 / (in_features.max(1) as f32).sqrt();
        let (init_std, runtime_scale) = if o.equalised_lr {
            (1.0, o.gain * fan_in_scale)
        } else {
            (o.gain * fan_in_scale, 1.0)
        };
        let mut w = b.init.normal(out_features * in_features, init_std);
        if let Some((rows, g)) = o.leading_rows_gain {
            for v in &mut w[..rows.min(out_features) * in_features] {
                *v *= g;
            }
        }
        let weight = b.param("weight", &w, &[out_features, in_features])?;
        let bias = if o.bias {
            Some(b.param("bias", &vec![o.bias_init; out_features], &[out_features])?)
        } else {
            None
        };
        let spectral = match o.norm {
            WeightNorm::None => None,
            norm => {
                let seed = b.init.seed();
                let sn = SpectralNorm::init(&weight.value, 50, seed)?;
                if norm == WeightNorm::Spectral {
                    sn.sigma_init.write(&[1.0])?;
                }
                b.state("sn_u", sn.u.clone())?;
                b.state("sn_sigma_init", sn.sigma_init.clone())?;
                Some(sn)
            }
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
            runtime_scale,
            spectral,
        })
    }

    /// The effective weight on the tape.
    pub fn effective_weight(&self, tape: &Tape) -> Result<Var> {
        let mut w = tape.param(&self.weight);
        if self.runtime_scale != 1.0 {
            w = tape.scale(w, self.runtime_scale)?;
        }
        if let Some(sn) = &self.spectral {
            w = tape.spectral_normalize(w, sn, tape.power_iterations())?;
        }
        Ok(w)
    }

    /// Apply to `x` of shape `[.., in]` with a fused activation.
    pub fn forward_act(&self, tape: &Tape, x: Var, act: Activation) -> Result<Var> {
        let shape = tape.shape(x);
        if shape.last() != Some(&self.in_features) {
            return Err(Error::shape(
                "Linear",
                format!(
                    "{} expects inputs [.., {}], got {shape:?}",
                    self.weight.name, self.in_features
                ),
            ));
        }
        let rows = shape.iter().product::<usize>() / self.in_features.max(1);
        let x2 = tape.reshape(x, &[rows, self.in_features])?;
        let w = self.effective_weight(tape)?;
        let bias = self.bias.as_ref().map(|p| tape.param(p));
        let y = tape.matmul_fused(x2, w, bias, false, true, act)?;
        let mut out_shape = shape;
        *out_shape.last_mut().unwrap() = self.out_features;
        tape.reshape(y, &out_shape)
    }

    /// Apply without activation.
    pub fn forward(&self, tape: &Tape, x: Var) -> Result<Var> {
        self.forward_act(tape, x, Activation::None)
    }
}

/// LayerNorm with a learned affine (γ = 1, β = 0 at init).
pub struct LayerNorm {
    pub gamma: Parameter,
    pub beta: Parameter,
}

/// ε inside every LayerNorm's square root.
pub const LN_EPS: f32 = 1e-5;

impl LayerNorm {
    /// Over the last axis of width `dim`.
    pub fn new(b: &mut Builder, dim: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: b.param("gamma", &vec![1.0; dim], &[dim])?,
            beta: b.param("beta", &vec![0.0; dim], &[dim])?,
        })
    }

    /// `γ ⊙ (x − μ)/σ + β` per token.
    pub fn forward(&self, tape: &Tape, x: Var) -> Result<Var> {
        let (g, b) = (tape.param(&self.gamma), tape.param(&self.beta));
        tape.layer_norm(x, g, b, LN_EPS)
    }
}

/// Self-modulated LayerNorm: `SLN(h, w) = γ(w) ⊙ (h − μ)/σ + β(w)` with γ, β affine in the style `w`.
pub struct SelfModulatedLayerNorm {
    pub gamma: Linear,
    pub beta: Linear,
}

impl SelfModulatedLayerNorm {
    /// Tokens of width `dim` modulated by a style of width `style_dim`; γ, β start at 1 and 0 with
    /// weights of std `0.1/√style_dim` (stored ~N(0, 1) when `equalised`).
    pub fn new(b: &mut Builder, dim: usize, style_dim: usize, equalised: bool) -> Result<Self> {
        let small = LinearOptions {
            gain: 0.1,
            equalised_lr: equalised,
            ..Default::default()
        };
        Ok(SelfModulatedLayerNorm {
            gamma: Linear::new(
                &mut b.sub("gamma"),
                style_dim,
                dim,
                LinearOptions {
                    bias_init: 1.0,
                    ..small
                },
            )?,
            beta: Linear::new(&mut b.sub("beta"), style_dim, dim, small)?,
        })
    }

    /// `h`: `[B, L, D]`, `w`: `[B, style_dim]`.
    pub fn forward(&self, tape: &Tape, h: Var, w: Var) -> Result<Var> {
        let g = self.gamma.forward(tape, w)?;
        let b = self.beta.forward(tape, w)?;
        tape.layer_norm(h, g, b, LN_EPS)
    }
}

/// The normalisation in front of a block's sublayers.
#[allow(clippy::large_enum_variant)] // built once per model
pub enum Norm {
    /// LayerNorm with learned affine.
    Layer(LayerNorm),
    /// Self-modulated by the style.
    SelfModulated(SelfModulatedLayerNorm),
}

impl Norm {
    /// Apply; `style` is required for the self-modulated variant.
    pub fn forward(&self, tape: &Tape, h: Var, style: Option<Var>) -> Result<Var> {
        match (self, style) {
            (Norm::Layer(ln), _) => ln.forward(tape, h),
            (Norm::SelfModulated(sln), Some(w)) => sln.forward(tape, h, w),
            (Norm::SelfModulated(_), None) => Err(Error::Other(
                "self-modulated LayerNorm needs a style".into(),
            )),
        }
    }
}

/// Multi-head self-attention. For L2 attention the query and key projections are tied (`k = q`).
pub struct Attention {
    pub kind: AttentionKind,
    pub heads: usize,
    pub dim: usize,
    /// `D → 3D` (q, k, v) for dot-product; `D → 2D` (q, v) for tied L2.
    pub qkv: Linear,
    pub out: Linear,
}

impl Attention {
    /// `heads` heads over width `dim`.
    pub fn new(
        b: &mut Builder,
        dim: usize,
        heads: usize,
        kind: AttentionKind,
        lin: LinearOptions,
    ) -> Result<Self> {
        let parts = if kind == AttentionKind::L2 { 2 } else { 3 };
        Ok(Attention {
            kind,
            heads,
            dim,
            qkv: Linear::new(&mut b.sub("qkv"), dim, parts * dim, lin)?,
            out: Linear::new(&mut b.sub("out"), dim, dim, lin)?,
        })
    }

    /// The per-head projections of `x` `[B, L, D]`: `(q, k, v)`, each `[B, H, L, Dh]` (`k` is `q`
    /// for tied L2 attention).
    pub fn heads(&self, tape: &Tape, x: Var) -> Result<(Var, Var, Var)> {
        let p = self.qkv.forward(tape, x)?;
        tape.split_heads(p, self.heads, self.kind)
    }

    /// `x`: `[B, L, D]` → `[B, L, D]`.
    pub fn forward(&self, tape: &Tape, x: Var) -> Result<Var> {
        let p = self.qkv.forward(tape, x)?;
        let o = tape.attention_packed(p, self.heads, self.kind)?;
        self.out.forward(tape, o)
    }
}

/// `Linear(D→hidden) · GELU · Linear(hidden→D)`.
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    /// Width `dim`, hidden width `hidden`.
    pub fn new(b: &mut Builder, dim: usize, hidden: usize, lin: LinearOptions) -> Result<Mlp> {
        Ok(Mlp {
            fc1: Linear::new(&mut b.sub("fc1"), dim, hidden, lin)?,
            fc2: Linear::new(&mut b.sub("fc2"), hidden, dim, lin)?,
        })
    }

    /// Apply token-wise.
    pub fn forward(&self, tape: &Tape, x: Var) -> Result<Var> {
        let h = self.fc1.forward_act(tape, x, Activation::Gelu)?;
        self.fc2.forward(tape, h)
    }
}

/// Pre-norm transformer block: `h' = MSA(N₁(h)) + h`, `h = MLP(N₂(h')) + h'`.
pub struct Block {
    pub norm1: Norm,
    pub attn: Attention,
    pub norm2: Norm,
    pub mlp: Mlp,
}

impl Block {
    /// Apply; `style` feeds self-modulated norms.
    pub fn forward(&self, tape: &Tape, h: Var, style: Option<Var>) -> Result<Var> {
        let a = self
            .attn
            .forward(tape, self.norm1.forward(tape, h, style)?)?;
        let h = tape.add(h, a)?;
        let m = self
            .mlp
            .forward(tape, self.norm2.forward(tape, h, style)?)?;
        tape.add(h, m)
    }
}

/// Grid coordinates normalised to [-1, 1], row-major, as `[rows·cols, 2]` (row, col).
pub fn grid_coordinates(rows: usize, cols: usize) -> Vec<f32> {
    let norm = |i: usize, n: usize| {
        if n <= 1 {
            0.0
        } else {
            -1.0 + 2.0 * i as f32 / (n - 1) as f32
        }
    };
    let mut out = Vec::with_capacity(rows * cols * 2);
    for r in 0..rows {
        for c in 0..cols {
            out.push(norm(r, rows));
            out.push(norm(c, cols));
        }
    }
    out
}

/// `sin(coords · Wᵀ + b)`: a learned sine embedding of a grid of positions, `[rows·cols, dim]`.
pub struct SineEmbedding {
    pub proj: Linear,
    coords: Tensor,
}

impl SineEmbedding {
    /// For a `rows × cols` grid; weights ~N(0, freq²) so the embedding varies across the grid.
    pub fn new(b: &mut Builder, rows: usize, cols: usize, dim: usize, freq: f32) -> Result<Self> {
        let coords = Tensor::from_slice(b.gpu, &grid_coordinates(rows, cols), &[rows * cols, 2])?;
        let mut proj = Linear::new(
            b,
            2,
            dim,
            LinearOptions {
                gain: 1.0,
                ..Default::default()
            },
        )?;
        let w = b.init.normal(2 * dim, freq);
        proj.weight.value.write(&w)?;
        let phase = b.init.uniform(dim, std::f32::consts::PI);
        if let Some(bias) = &mut proj.bias {
            bias.value.write(&phase)?;
        }
        Ok(SineEmbedding { proj, coords })
    }

    /// The embedding `[positions, dim]`.
    pub fn forward(&self, tape: &Tape) -> Result<Var> {
        let c = tape.constant(self.coords.clone());
        self.proj.forward_act(tape, c, Activation::Sin)
    }
}

/// The implicit neural representation decoder: each patch embedding `y` paints its `P×P×C` pixels as
/// a modulated sine MLP over Fourier features of the pixel coordinates (see `ops::inr`).
pub struct InrDecoder {
    pub fourier: SineEmbedding,
    pub style1: Linear,
    pub style2: Linear,
    pub w1: Parameter,
    pub b1: Parameter,
    pub w2: Parameter,
    pub b2: Parameter,
    pub patch: usize,
    pub channels: usize,
    /// Demodulate the output layer (ViTGAN's INR as first written here) or only modulate it
    /// (StyleGAN2's toRGB).
    pub demodulate_output: bool,
}

/// How an [`InrDecoder`] is built (the `ModelConfig` switches it takes).
#[derive(Clone, Copy, Debug)]
pub struct InrOptions {
    /// The modulations (style affines) with equalised learning rate.
    pub equalised: bool,
    /// Demodulate the output layer too (`false`: modulated only, as StyleGAN2's toRGB).
    pub demodulate_output: bool,
    /// Every channel's output row starts as the first channel's draw (G starts grey).
    pub tied_output_init: bool,
}

impl InrDecoder {
    /// Embeddings of width `dim` → `patch × patch × channels` pixels through `hidden` units; the
    /// modulations start at 1 with weights of std `0.1/√dim` (stored ~N(0, 1) when equalised).
    pub fn new(
        b: &mut Builder,
        dim: usize,
        patch: usize,
        channels: usize,
        hidden: usize,
        options: InrOptions,
    ) -> Result<Self> {
        let InrOptions {
            equalised,
            demodulate_output,
            tied_output_init,
        } = options;
        let fourier = SineEmbedding::new(&mut b.sub("fourier"), patch, patch, hidden, 2.0)?;
        let mod_opts = LinearOptions {
            bias_init: 1.0,
            gain: 0.1,
            equalised_lr: equalised,
            ..Default::default()
        };
        let style1 = Linear::new(&mut b.sub("style1"), dim, hidden, mod_opts)?;
        let style2 = Linear::new(&mut b.sub("style2"), dim, hidden, mod_opts)?;
        let w1 = b.init.normal(hidden * hidden, 1.0);
        // demodulated rows are scale-free; a modulated-only output layer starts at unit gain
        // (std 1/√hidden, as a fan-in-scaled linear layer)
        let w2_std = if demodulate_output {
            1.0
        } else {
            1.0 / (hidden as f32).sqrt()
        };
        let mut w2 = b.init.normal(channels * hidden, w2_std);
        if tied_output_init {
            // every channel's row = the first's (the same draws are taken either way, so the rest
            // of the initialisation does not move)
            let (first, rest) = w2.split_at_mut(hidden);
            rest.chunks_mut(hidden)
                .for_each(|row| row.copy_from_slice(first));
        }
        let phase = b.init.uniform(hidden, 0.5);
        Ok(InrDecoder {
            fourier,
            style1,
            style2,
            w1: b.param("w1", &w1, &[hidden, hidden])?,
            b1: b.param("b1", &phase, &[hidden])?,
            w2: b.param("w2", &w2, &[channels, hidden])?,
            b2: b.param("b2", &vec![0.0; channels], &[channels])?,
            patch,
            channels,
            demodulate_output,
        })
    }

    /// `y`: `[N, dim]` patch embeddings → `[N, P², C]`.
    pub fn forward(&self, tape: &Tape, y: Var) -> Result<Var> {
        let e = self.fourier.forward(tape)?;
        let s1 = self.style1.forward(tape, y)?;
        let s2 = self.style2.forward(tape, y)?;
        let [w1, b1, w2, b2] = [&self.w1, &self.b1, &self.w2, &self.b2].map(|p| tape.param(p));
        // the widest per-pixel intermediate: [patches · P², max(F, Hd)] floats
        let w1_shape = self.w1.value.shape();
        let widest = w1_shape[0].max(w1_shape[1]);
        let rows = tape.shape(y)[0] * self.patch * self.patch;
        match InrPath::for_problem(tape.gpu(), rows * widest * 4) {
            InrPath::Fused => tape.inr_decode(e, s1, s2, w1, b1, w2, b2, self.demodulate_output),
            InrPath::Composed => {
                inr_decode_unfused(tape, e, s1, s2, w1, b1, w2, b2, self.demodulate_output)
            }
        }
    }
}

/// How the generator runs its INR decoder. Both compute the same function (`tests/inr.rs` compares
/// them); the fused kernel never materialises the per-pixel features, the composed path runs on the
/// matmul kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InrPath {
    /// One kernel per direction ([`Tape::inr_decode`]): GPUs, and problems too large for the other.
    Fused,
    /// Matmuls and elementwise ops with `[patches · P², width]` intermediates
    /// ([`inr_decode_unfused`]): on lavapipe ~5× faster forward and backward than the fused kernel
    /// (295 vs 1857 ms forward at 8192 patches), because the texture-fed matmul kernels and vec4
    /// broadcasts run there at full speed and the fused kernel at ~2.4 GFLOP/s.
    Composed,
}

/// Largest per-pixel intermediate the composed INR path may allocate by default (each of its ~5
/// such tensors stays on the tape for the backward): 64 MiB covers cifar32 at batch 128.
pub const COMPOSED_INR_MAX_BYTES: usize = 64 << 20;

impl InrPath {
    /// The path for an adapter and the size in bytes of one per-pixel intermediate: composed on CPU
    /// adapters up to [`COMPOSED_INR_MAX_BYTES`] (and the adapter's binding limit), fused otherwise;
    /// `VITGAN_INR=fused|composed` forces one (composed still only where the tensors fit a binding).
    pub fn for_problem(gpu: &Gpu, intermediate_bytes: usize) -> InrPath {
        let fits = gpu.fits_one_buffer(intermediate_bytes as u64);
        match overrides::value("VITGAN_INR").as_deref() {
            Some("fused") => InrPath::Fused,
            Some("composed") if fits => InrPath::Composed,
            _ if fits && gpu.is_cpu() && intermediate_bytes <= COMPOSED_INR_MAX_BYTES => {
                InrPath::Composed
            }
            _ => InrPath::Fused,
        }
    }
}
