//! The hidden layer of the composed INR decoder after its matmul (`shaders/inr_sine.wgsl`): for patch
//! n, pixel t and hidden unit o, with `x` [N, T, H], `d1` [N, H], `b1` [H], `s2` [N, H],
//!
//! ```text
//! out_{n,t,o} = s2_{n,o} · sin(d1_{n,o} · x_{n,t,o} + b1_o)
//! ```
//!
//! one kernel forward and one backward, in place of the four broadcasting elementwise ops (and the
//! backward's eight ops and three reductions) that compose it. On lavapipe each of those moves a
//! `[N·T, H]` tensor through storage-buffer loads that cost a loop over the lanes each; here `x`
//! (and `∂L/∂out`) are read once. Needs `H % 4 == 0` and `T` within the CPU loop budget
//! ([`inr_sine_supported`]); the tape falls back to the composed ops otherwise.

use super::{
    dispatch_reading_textures, fits_loop_budget, grid_1d, operand_textures_for, shader,
    with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("inr_sine");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    patches: u32,
    pixels: u32,
    hidden4: u32,
    _pad: u32,
}

/// Gradients of [`inr_sine_backward`], each in its input's shape.
pub struct InrSineGrads {
    /// [N, T, H]
    pub dx: Tensor,
    /// [N, H]
    pub dd1: Tensor,
    /// [H]
    pub db1: Tensor,
    /// [N, H]
    pub ds2: Tensor,
}

/// Whether the kernels handle `pixels` pixels per patch and `hidden` hidden units: `hidden` a
/// multiple of 4 (vec4 loads) and each invocation's loop over the pixels within the CPU loop budget.
pub fn inr_sine_supported(pixels: usize, hidden: usize) -> bool {
    hidden.is_multiple_of(4) && hidden > 0 && fits_loop_budget(pixels)
}

/// (patches, pixels, hidden) of a call, after checking every shape.
fn dims(
    op: &'static str,
    x: &Tensor,
    d1: &Tensor,
    b1: &Tensor,
    s2: &Tensor,
) -> Result<(usize, usize, usize)> {
    let shapes = || {
        format!(
            "x {:?}, d1 {:?}, b1 {:?}, s2 {:?}",
            x.shape(),
            d1.shape(),
            b1.shape(),
            s2.shape()
        )
    };
    let &[n, t, h] = x.shape() else {
        return Err(Error::shape(
            op,
            format!("x must be [N, T, H]: {}", shapes()),
        ));
    };
    if d1.shape() != [n, h] || s2.shape() != [n, h] || b1.shape() != [h] {
        return Err(Error::shape(
            op,
            format!("expected d1, s2 [N, H] and b1 [H]: {}", shapes()),
        ));
    }
    if !inr_sine_supported(t, h) {
        return Err(Error::shape(
            op,
            format!(
                "needs H a multiple of 4 and T ≤ {} pixels per patch: {}",
                super::CPU_LOOP_BUDGET,
                shapes()
            ),
        ));
    }
    Ok((n, t, h))
}

/// The shader with the per-pixel operands `x` (binding 8) and `g` (binding 9) read from operand
/// textures.
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers(
            "inr_sine_textures",
            SHADER.source,
            &[("x4_at", "x_tex"), ("g4_at", "g_tex")],
        )
    })
}

/// Whether the kernels read `x` (and `g`) from textures: on CPU adapters for tensors of at least
/// [`super::OPERAND_TEXTURE_MIN_ELEMENTS`] floats (`VITGAN_INR_SINE_OPERANDS=buffers|textures`
/// forces either).
fn textures(x: &Tensor) -> bool {
    operand_textures_for(x.gpu(), x.numel(), "VITGAN_INR_SINE_OPERANDS")
}

fn params(n: usize, t: usize, h: usize) -> Params {
    Params {
        patches: n as u32,
        pixels: t as u32,
        hidden4: (h / 4) as u32,
        _pad: 0,
    }
}

/// `s2 ⊙ sin(d1 ⊙ x + b1)` (broadcast over the pixels), [N, T, H].
pub fn inr_sine_forward(x: &Tensor, d1: &Tensor, b1: &Tensor, s2: &Tensor) -> Result<Tensor> {
    let (n, t, h) = dims("inr_sine_forward", x, d1, b1, s2)?;
    let gpu = x.gpu();
    let out = Tensor::empty(gpu, &[n, t, h])?;
    dispatch_reading_textures(
        gpu,
        &SHADER,
        shader_with_textures,
        "inr_sine_forward",
        &[],
        bytemuck::bytes_of(&params(n, t, h)),
        &[
            (x.buffer(), Access::Read),
            (d1.buffer(), Access::Read),
            (b1.buffer(), Access::Read),
            (s2.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
        ],
        &[(x, 0, 8)],
        textures(x),
        grid_1d(n * h / 4, 64),
    )?;
    Ok(out)
}

/// Gradients of `Σ g ⊙ inr_sine_forward(x, d1, b1, s2)` with respect to each input (formulas in the
/// WGSL header): one kernel, then the per-patch partial sums of `db1` added up.
pub fn inr_sine_backward(
    x: &Tensor,
    d1: &Tensor,
    b1: &Tensor,
    s2: &Tensor,
    g: &Tensor,
) -> Result<InrSineGrads> {
    let (n, t, h) = dims("inr_sine_backward", x, d1, b1, s2)?;
    if g.shape() != x.shape() {
        return Err(Error::shape(
            "inr_sine_backward",
            format!("gradient {:?} vs x {:?}", g.shape(), x.shape()),
        ));
    }
    let gpu = x.gpu();
    let dx = Tensor::empty(gpu, &[n, t, h])?;
    let sums = Tensor::empty(gpu, &[3, n, h])?;
    dispatch_reading_textures(
        gpu,
        &SHADER,
        shader_with_textures,
        "inr_sine_backward",
        &[],
        bytemuck::bytes_of(&params(n, t, h)),
        &[
            (x.buffer(), Access::Read),
            (d1.buffer(), Access::Read),
            (b1.buffer(), Access::Read),
            (s2.buffer(), Access::Read),
            (g.buffer(), Access::Read),
            (dx.buffer(), Access::ReadWrite),
            (sums.buffer(), Access::ReadWrite),
        ],
        &[(x, 0, 8), (g, 1, 9)],
        textures(x),
        grid_1d(n * h / 4, 64),
    )?;
    // the three [N, H] blocks of `sums` as tensors of their own (buffer copies, no dispatch)
    let bytes = (n * h * 4) as u64;
    let block = |k: u64| -> Result<Tensor> {
        let out = Tensor::empty(gpu, &[n, h])?;
        gpu.copy(sums.buffer(), k * bytes, out.buffer(), 0, bytes);
        Ok(out)
    };
    let ds2 = block(0)?;
    let dd1 = block(1)?;
    let db1 = super::reduce::sum_axis(&block(2)?, 0, false)?;
    Ok(InrSineGrads { dx, dd1, db1, ds2 })
}
