//! Reductions (`shaders/reduce.wgsl`): sum and mean over one axis or over all elements, and summing a
//! broadcast gradient back to an operand's shape.

use super::{
    dispatch_reading_textures, grid_1d, one_invocation_per_output, operand_textures_for, shader,
    split_loop, with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("reduce");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    scale: f32,
    piece_len: u32,
    pieces: u32,
    _pad: [u32; 2],
}

/// Rows the workgroup kernel's invocations step over per loop iteration (its workgroup size), and
/// the iterations of its tree reduction.
const WG: usize = 64;
const TREE_STEPS: usize = 6;

/// `out[o, i] = scale · Σ_k x[o, k, i]` over `axis`; the axis is kept with size 1 when `keep_dim`.
pub fn sum_axis_scaled(x: &Tensor, axis: usize, keep_dim: bool, scale: f32) -> Result<Tensor> {
    let shape = x.shape();
    if axis >= shape.len() {
        return Err(Error::shape(
            "sum over axis",
            format!("axis {axis} out of range for shape {shape:?}"),
        ));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let mut out_shape = shape.to_vec();
    if keep_dim {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
    }
    let lanes = one_invocation_per_output(x.gpu(), outer * inner);
    // the loop budget: one row per iteration (lanes) or WG rows (workgroup kernel)
    let split = if lanes {
        split_loop(n, 0)
    } else {
        split_loop(n.div_ceil(WG), TREE_STEPS)
    };
    let piece_len = if lanes {
        split.trips_per_piece
    } else {
        split.trips_per_piece * WG
    };
    let pieces = n.div_ceil(piece_len.max(1)).max(1);
    if pieces > 1 {
        // partial sums over pieces of the axis, then their sum
        let partial = Tensor::empty(x.gpu(), &[outer, pieces, inner])?;
        launch_sum(x, &partial, [outer, n, inner], piece_len, pieces, 1.0)?;
        return sum_axis_scaled(&partial, 1, keep_dim, scale)?.reshape(&out_shape);
    }
    let out = Tensor::empty(x.gpu(), &out_shape)?;
    launch_sum(x, &out, [outer, n, inner], n, 1, scale)?;
    Ok(out)
}

/// `out[o, p, i] = scale · Σ x[o, k, i]` over the rows k of piece p (`piece_len` rows each).
fn launch_sum(
    x: &Tensor,
    out: &Tensor,
    [outer, n, inner]: [usize; 3],
    piece_len: usize,
    pieces: usize,
    scale: f32,
) -> Result<()> {
    let params = Params {
        outer: outer as u32,
        n: n as u32,
        inner: inner as u32,
        scale,
        piece_len: piece_len as u32,
        pieces: pieces as u32,
        _pad: [0; 2],
    };
    let outputs = outer * pieces * inner;
    let (entry, groups) = if one_invocation_per_output(x.gpu(), outer * inner) {
        ("sum_axis_lanes", grid_1d(outputs, 64))
    } else {
        ("sum_axis", grid_1d(outputs, 1))
    };
    let textures = entry == "sum_axis_lanes"
        && operand_textures_for(x.gpu(), x.numel(), "VITGAN_REDUCE_OPERANDS");
    dispatch_reading_textures(
        x.gpu(),
        &SHADER,
        shader_with_textures,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        &[
            (x.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
        ],
        &[(x, 0, 8)],
        textures,
        groups,
    )
}

/// The shader with `sum_axis_lanes` reading `x` from the operand texture at binding 8 (on CPU
/// adapters for inputs of at least [`super::OPERAND_TEXTURE_MIN_ELEMENTS`] floats; `VITGAN_REDUCE_OPERANDS=
/// buffers|textures` forces either).
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers("reduce_textures", SHADER.source, &[("x_at", "x_tex")])
    })
}

/// Σ over `axis`.
pub fn sum_axis(x: &Tensor, axis: usize, keep_dim: bool) -> Result<Tensor> {
    sum_axis_scaled(x, axis, keep_dim, 1.0)
}

/// Mean over `axis`.
pub fn mean_axis(x: &Tensor, axis: usize, keep_dim: bool) -> Result<Tensor> {
    let n = *x.shape().get(axis).unwrap_or(&1);
    sum_axis_scaled(x, axis, keep_dim, 1.0 / n.max(1) as f32)
}

/// Σ of all elements, as a tensor of shape [1]. Two passes when large, so the work spreads over workgroups.
pub fn sum_all_scaled(x: &Tensor, scale: f32) -> Result<Tensor> {
    let n = x.numel();
    const CHUNK: usize = 4096;
    if n > CHUNK * 4 {
        let rows = n.div_ceil(CHUNK);
        if rows * CHUNK == n {
            let partial = sum_axis_scaled(&x.reshape(&[rows, CHUNK])?, 1, false, 1.0)?;
            return sum_axis_scaled(&partial.reshape(&[1, rows])?, 1, false, scale);
        }
    }
    sum_axis_scaled(&x.reshape(&[1, n])?, 1, false, scale)
}

/// Σ of all elements → shape [1].
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    sum_all_scaled(x, 1.0)
}

/// Mean of all elements → shape [1].
pub fn mean_all(x: &Tensor) -> Result<Tensor> {
    sum_all_scaled(x, 1.0 / x.numel().max(1) as f32)
}

/// Sum a gradient of the broadcast shape `g` back down to `shape` (the reverse of broadcasting).
pub fn sum_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let gs = g.shape().to_vec();
    if shape.len() > gs.len() {
        return Err(Error::shape(
            "sum_to_shape",
            format!("{gs:?} cannot reduce to {shape:?}"),
        ));
    }
    let off = gs.len() - shape.len();
    let mut cur = g.clone();
    for axis in 0..gs.len() {
        let target = if axis < off { 1 } else { shape[axis - off] };
        if gs[axis] != target {
            if target != 1 {
                return Err(Error::shape(
                    "sum_to_shape",
                    format!("{gs:?} cannot reduce to {shape:?}"),
                ));
            }
            cur = sum_axis(&cur, axis, true)?;
        }
    }
    cur.reshape(shape)
}
