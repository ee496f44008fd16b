//! Softmax over the last axis (`shaders/softmax.wgsl`), forward and backward.

use super::{CPU_LOOP_BUDGET, fits_loop_budget, grid_1d, one_invocation_per_output, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("softmax");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    _pad: [u32; 2],
}

fn rows_and_len(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape.last() {
        Some(&n) if n > 0 => Ok((shape.iter().product::<usize>() / n, n)),
        _ => Err(Error::shape(
            op,
            format!("needs a non-empty last axis, got {shape:?}"),
        )),
    }
}

/// Entry point and grid of the softmax kernels `[entry, entry_rows]` (a workgroup per row, one
/// invocation per row) for `rows` rows of `n` values read in `passes` passes, within the CPU loop budget: one invocation
/// per row on CPU adapters while its `passes · n` iterations fit, else a workgroup per row (64
/// invocations share the row, plus 6-step tree reductions per pass).
fn launch_shape(
    gpu: &crate::gpu::Gpu,
    rows: usize,
    n: usize,
    passes: usize,
    [entry, entry_rows]: [&'static str; 2],
) -> Result<(&'static str, [u32; 3])> {
    if one_invocation_per_output(gpu, rows) && fits_loop_budget(passes * n) {
        return Ok((entry_rows, grid_1d(rows, 64)));
    }
    if !fits_loop_budget(passes * (n.div_ceil(64) + 6)) {
        return Err(Error::shape(
            entry,
            format!(
                "rows of {n} values exceed the engine's loop budget of {CPU_LOOP_BUDGET} iterations \
                 per invocation (Mesa's CPU drivers silently stop loops past 65,535)"
            ),
        ));
    }
    Ok((entry, grid_1d(rows, 1)))
}

/// `y = softmax(x)` over the last axis.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let (rows, n) = rows_and_len("softmax", x.shape())?;
    let y = Tensor::empty(x.gpu(), x.shape())?;
    let params = Params {
        rows: rows as u32,
        n: n as u32,
        _pad: [0; 2],
    };
    let (entry, groups) = launch_shape(
        x.gpu(),
        rows,
        n,
        3,
        ["softmax_forward", "softmax_forward_rows"],
    )?;
    x.gpu().dispatch(
        &SHADER,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        &[(x.buffer(), Access::Read), (y.buffer(), Access::ReadWrite)],
        groups,
    )?;
    Ok(y)
}

/// `dx = y ⊙ (dy − Σ dy ⊙ y)` given the forward output `y`.
pub fn softmax_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    if y.shape() != dy.shape() {
        return Err(Error::shape(
            "softmax_backward",
            format!("y {:?} vs dy {:?}", y.shape(), dy.shape()),
        ));
    }
    let (rows, n) = rows_and_len("softmax_backward", y.shape())?;
    let dx = Tensor::empty(y.gpu(), y.shape())?;
    let params = Params {
        rows: rows as u32,
        n: n as u32,
        _pad: [0; 2],
    };
    let (entry, groups) = launch_shape(
        y.gpu(),
        rows,
        n,
        2,
        ["softmax_backward", "softmax_backward_rows"],
    )?;
    y.gpu().dispatch(
        &SHADER,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        &[
            (y.buffer(), Access::Read),
            (dy.buffer(), Access::Read),
            (dx.buffer(), Access::ReadWrite),
        ],
        groups,
    )?;
    Ok(dx)
}
