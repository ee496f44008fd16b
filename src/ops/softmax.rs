//! Softmax over the last axis (`shaders/softmax.wgsl`), forward and backward.

use super::{grid_1d, one_invocation_per_output, shader};
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

/// `y = softmax(x)` over the last axis.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let (rows, n) = rows_and_len("softmax", x.shape())?;
    let y = Tensor::empty(x.gpu(), x.shape())?;
    let params = Params {
        rows: rows as u32,
        n: n as u32,
        _pad: [0; 2],
    };
    let (entry, groups) = if one_invocation_per_output(x.gpu(), rows) {
        ("softmax_forward_rows", grid_1d(rows, 64))
    } else {
        ("softmax_forward", grid_1d(rows, 1))
    };
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
    let (entry, groups) = if one_invocation_per_output(y.gpu(), rows) {
        ("softmax_backward_rows", grid_1d(rows, 64))
    } else {
        ("softmax_backward", grid_1d(rows, 1))
    };
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
