//! Adam fused with the EMA update (`shaders/adam.wgsl`); one dispatch per parameter tensor, all
//! recorded into the same submit. On CPU adapters each invocation updates 8 vec4s
//! (`adam_step_chunks4`) when the tensor's length is a multiple of 4.

use super::elementwise::{CHUNK4, chunks4};
use super::{grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

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
    param.gpu().dispatch(
        &SHADER,
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
        groups,
    )
}
