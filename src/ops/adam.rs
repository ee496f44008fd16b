//! Adam fused with the EMA update (`shaders/adam.wgsl`); one dispatch per parameter tensor, all
//! recorded into the same submit. On CPU adapters each invocation updates 8 vec4s
//! (`adam_step_chunks4`) when the tensor's length is a multiple of 4, reading its operands from
//! textures for larger tensors.

use super::elementwise::{CHUNK4, chunks4};
use super::{
    dispatch_reading_textures, grid_1d, operand_textures_for, shader, with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("adam");

/// Adam hyperparameters (paper: lr 0.002, β1 = 0, β2 = 0.99).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 0.002,
            beta1: 0.0,
            beta2: 0.99,
            eps: 1e-8,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    ema_decay: f32,
}

/// One Adam step (step number `t` ≥ 1) on `param` with moments `m`, `v`, and optionally
/// `ema ← decay·ema + (1−decay)·param` in the same kernel.
pub fn adam_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    ema: Option<(&Tensor, f32)>,
    cfg: AdamConfig,
    t: u64,
) -> Result<()> {
    let n = param.numel();
    for (name, other) in [("grad", grad), ("m", m), ("v", v)]
        .into_iter()
        .chain(ema.map(|(e, _)| ("ema", e)))
    {
        if other.numel() != n {
            return Err(Error::shape(
                "adam_step",
                format!("param {:?} vs {name} {:?}", param.shape(), other.shape()),
            ));
        }
    }
    let t = t.max(1) as i32;
    let vec4 = chunks4(param.gpu(), n);
    let (entry, groups) = if vec4 {
        ("adam_step_chunks4", grid_1d((n / 4).div_ceil(CHUNK4), 64))
    } else {
        ("adam_step", grid_1d(n, 256))
    };
    let params = Params {
        n: if vec4 { n / 4 } else { n } as u32,
        lr: cfg.lr,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        bias_correction1: (1.0 - (cfg.beta1 as f64).powi(t)).max(1e-30) as f32,
        bias_correction2: (1.0 - (cfg.beta2 as f64).powi(t)).max(1e-30) as f32,
        ema_decay: ema.map(|e| e.1).unwrap_or(0.0),
    };
    let dummy;
    let ema_buf = match ema {
        Some((e, _)) => e,
        None => {
            // never read or written (WITH_EMA is off), but bound: one vec4 for the vec4 view
            dummy = Tensor::empty(param.gpu(), &[4])?;
            &dummy
        }
    };
    // the EMA texture is bound even when WITH_EMA is off (the pipeline's layout needs it; never read)
    let operands = [
        (grad, 0, 8),
        (param, 1, 9),
        (m, 2, 10),
        (v, 3, 11),
        (ema_buf, 4, 12),
    ];
    dispatch_reading_textures(
        param.gpu(),
        &SHADER,
        shader_with_textures,
        entry,
        &[("WITH_EMA", ema.is_some() as u32 as f64)],
        bytemuck::bytes_of(&params),
        &[
            (grad.buffer(), Access::Read),
            (param.buffer(), Access::ReadWrite),
            (m.buffer(), Access::ReadWrite),
            (v.buffer(), Access::ReadWrite),
            (ema_buf.buffer(), Access::ReadWrite),
        ],
        &operands,
        vec4 && operand_textures_for(param.gpu(), n, "VITGAN_ADAM_OPERANDS"),
        groups,
    )
}

/// The shader with `adam_step_chunks4` reading its operands from the textures at bindings 8–12 (on
/// CPU adapters for tensors of at least [`super::OPERAND_TEXTURE_MIN_ELEMENTS`] floats;
/// `VITGAN_ADAM_OPERANDS=buffers|textures` forces either).
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers(
            "adam_textures",
            SHADER.source,
            &[
                ("grad4_at", "grad_tex"),
                ("param4_at", "param_tex"),
                ("m4_at", "m_tex"),
                ("v4_at", "v_tex"),
                ("ema4_at", "ema_tex"),
            ],
        )
    })
}
