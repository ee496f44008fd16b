//! Layout kernels (`shaders/layout.wgsl`): permute/transpose, slice, concat, padding (slice backward) and
//! broadcast, all through one strided-copy kernel; and copies into operand textures.

use super::{
    LoopSplit, MAX_RANK, coalesce_dims, contiguous_strides, dispatch_reading_textures, grid_1d,
    operand_textures_for, pack8, shader, split_loop, with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::{Tensor, numel};
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("layout");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    piece4: u32,
    pieces: u32,
    _pad: [u32; 2],
    dims: [u32; MAX_RANK],
    src_strides: [u32; MAX_RANK],
    dst_strides: [u32; MAX_RANK],
}

/// One strided copy (see the WGSL header for the formula).
#[allow(clippy::too_many_arguments)]
pub fn strided_copy(
    src: &Tensor,
    src_offset: usize,
    src_strides: &[usize],
    dst: &Tensor,
    dst_offset: usize,
    dst_strides: &[usize],
    dims: &[usize],
) -> Result<()> {
    if dims.len() > MAX_RANK {
        return Err(Error::shape(
            "strided copy",
            format!("rank {} exceeds {MAX_RANK}", dims.len()),
        ));
    }
    let n = numel(dims);
    if n == 0 {
        return Ok(());
    }
    let (dims, strides) = coalesce_dims(dims, &[src_strides, dst_strides]);
    // CPU adapters: vec4 runs of the innermost dimension per invocation where aligned, long runs in
    // pieces within the loop budget (the index decode loops over up to MAX_RANK dimensions)
    let rank = dims.len();
    let run = dims[rank - 1];
    // pieces of at most RUN4_PIECE vec4s, so that a few long runs still spread over many invocations
    // (and workgroups, i.e. CPU threads); never more per piece than the loop budget allows
    let budget = split_loop(run / 4, MAX_RANK);
    let pieces = budget.pieces.max((run / 4).div_ceil(RUN4_PIECE));
    let split = LoopSplit {
        pieces,
        trips_per_piece: (run / 4).div_ceil(pieces).max(1),
    };
    let params = Params {
        n: n as u32,
        rank: rank as u32,
        src_offset: src_offset as u32,
        dst_offset: dst_offset as u32,
        piece4: split.trips_per_piece as u32,
        pieces: split.pieces as u32,
        _pad: [0; 2],
        dims: pack8(&dims),
        src_strides: pack8(&strides[0]),
        dst_strides: pack8(&strides[1]),
    };
    let runs4 = src.gpu().is_cpu()
        && run.is_multiple_of(4)
        && strides.iter().all(|s| s[rank - 1] == 1)
        && src_offset.is_multiple_of(4)
        && dst_offset.is_multiple_of(4)
        && strides
            .iter()
            .all(|s| s[..rank - 1].iter().all(|x| x.is_multiple_of(4)));
    let (entry, groups) = if runs4 {
        ("strided_copy_runs4", grid_1d(n / run * split.pieces, 64))
    } else {
        ("strided_copy", grid_1d(n, 256))
    };
    // the source through a texture where that pays: it copies all of `src`, so not for small slices
    let textures = runs4
        && src.numel() <= 8 * n
        && operand_textures_for(src.gpu(), n, "VITGAN_LAYOUT_OPERANDS");
    dispatch_reading_textures(
        src.gpu(),
        &SHADER,
        shader_with_textures,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        &[
            (src.buffer(), Access::Read),
            (dst.buffer(), Access::ReadWrite),
        ],
        &[(src, 0, 8)],
        textures,
        groups,
    )
}

/// Most vec4s one invocation of `strided_copy_runs4` moves.
const RUN4_PIECE: usize = 64;

/// The shader with `strided_copy_runs4` reading the source from the operand texture at binding 8 (on
/// CPU adapters for copies of at least [`super::OPERAND_TEXTURE_MIN_ELEMENTS`] floats;
/// `VITGAN_LAYOUT_OPERANDS=buffers|textures` forces either).
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers("layout_textures", SHADER.source, &[("src4_at", "src_tex")])
    })
}

/// `out[c] = x[c permuted]`: output axis `i` is input axis `perm[i]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let rank = x.rank();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::shape(
            "permute",
            format!(
                "{perm:?} is not a permutation of the axes of {:?}",
                x.shape()
            ),
        ));
    }
    let xs = contiguous_strides(x.shape());
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let src_strides: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let out = Tensor::empty(x.gpu(), &out_shape)?;
    strided_copy(
        x,
        0,
        &src_strides,
        &out,
        0,
        &contiguous_strides(&out_shape),
        &out_shape,
    )?;
    Ok(out)
}

/// Inverse of a permutation.
pub fn inverse_permutation(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Swap axes `a` and `b`.
pub fn transpose(x: &Tensor, a: usize, b: usize) -> Result<Tensor> {
    let mut perm: Vec<usize> = (0..x.rank()).collect();
    if a >= perm.len() || b >= perm.len() {
        return Err(Error::shape(
            "transpose",
            format!("axes {a}, {b} out of range for {:?}", x.shape()),
        ));
    }
    perm.swap(a, b);
    permute(x, &perm)
}

/// `x[.., start..start+len, ..]` along `axis`.
pub fn slice(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    if axis >= x.rank() || start + len > x.shape()[axis] {
        return Err(Error::shape(
            "slice",
            format!(
                "range {start}..{} on axis {axis} of {:?}",
                start + len,
                x.shape()
            ),
        ));
    }
    let xs = contiguous_strides(x.shape());
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    let out = Tensor::empty(x.gpu(), &shape)?;
    strided_copy(
        x,
        start * xs[axis],
        &xs,
        &out,
        0,
        &contiguous_strides(&shape),
        &shape,
    )?;
    Ok(out)
}

/// Write `src` into `dst[.., start.., ..]` along `axis` (the other axes must match).
pub fn write_slice(dst: &Tensor, src: &Tensor, axis: usize, start: usize) -> Result<()> {
    let ok = dst.rank() == src.rank()
        && axis < dst.rank()
        && start + src.shape()[axis] <= dst.shape()[axis]
        && (0..dst.rank()).all(|d| d == axis || dst.shape()[d] == src.shape()[d]);
    if !ok {
        return Err(Error::shape(
            "write_slice",
            format!(
                "{:?} does not fit into {:?} at {start} on axis {axis}",
                src.shape(),
                dst.shape()
            ),
        ));
    }
    let ds = contiguous_strides(dst.shape());
    strided_copy(
        src,
        0,
        &contiguous_strides(src.shape()),
        dst,
        start * ds[axis],
        &ds,
        src.shape(),
    )
}

/// Zeros of `full_shape` with `x` written at `start` along `axis` (the backward of [`slice`]).
pub fn pad_slice(x: &Tensor, full_shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
    let out = Tensor::zeros(x.gpu(), full_shape)?;
    write_slice(&out, x, axis, start)?;
    Ok(out)
}

/// Concatenate along `axis`.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::shape("concat", "no tensors given"))?;
    if axis >= first.rank() {
        return Err(Error::shape(
            "concat",
            format!("axis {axis} out of range for {:?}", first.shape()),
        ));
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = xs
        .iter()
        .map(|t| t.shape().get(axis).copied().unwrap_or(0))
        .sum();
    let out = Tensor::empty(first.gpu(), &shape)?;
    let mut start = 0;
    for t in xs {
        write_slice(&out, t, axis, start)?;
        start += t.shape()[axis];
    }
    Ok(out)
}

/// Materialise `x` broadcast to `shape`.
pub fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let full = super::elementwise::broadcast_shape("broadcast_to", x.shape(), shape)?;
    if full != shape {
        return Err(Error::shape(
            "broadcast_to",
            format!("{:?} does not broadcast to {shape:?}", x.shape()),
        ));
    }
    let out = Tensor::empty(x.gpu(), shape)?;
    let src = super::elementwise::broadcast_strides(x.shape(), shape);
    strided_copy(x, 0, &src, &out, 0, &contiguous_strides(shape), shape)?;
    Ok(out)
}

/// Copy `x` (whose element count is a multiple of 4) into the operand texture `slot` of its GPU
/// ([`crate::gpu::Gpu::copy_to_operand_texture`], a buffer-to-texture transfer): vec4 `i` of `x` lands
/// at texel `(i % OPERAND_TEXTURE_WIDTH, i / OPERAND_TEXTURE_WIDTH)`. The CPU kernels of matmul and
/// attention (and LayerNorm's γ, β) read their operands this way on CPU adapters (a texel load is
/// several times cheaper than a storage-buffer load on lavapipe). `None` when `x` does not fit the
/// adapter's textures. The copy is recorded in order with the dispatches around it.
pub fn to_operand_texture(x: &Tensor, slot: u8) -> Result<Option<wgpu::TextureView>> {
    if !x.numel().is_multiple_of(4) {
        return Err(Error::shape(
            "to_operand_texture",
            format!(
                "{:?} has {} elements, not a multiple of 4",
                x.shape(),
                x.numel()
            ),
        ));
    }
    Ok(x.gpu()
        .copy_to_operand_texture(x.buffer(), slot, x.numel() / 4))
}
