//! LayerNorm and self-modulated LayerNorm (`shaders/layer_norm.wgsl`), forward and backward.
//!
//! Over the last axis of `x` (length `D`), with biased variance:
//! `y = γ ⊙ (x − μ) / √(σ² + eps) + β`.
//! - LayerNorm: `γ, β` have shape `[D]` and `x` is any `[..., D]`; all rows share them.
//! - Self-modulated LayerNorm (SLN): `γ, β` have shape `[B, D]` and `x` is `[B, T, D]` (or `[B, D]`);
//!   the `T` rows of sample `b` use `γ[b], β[b]` (computed elsewhere from the style `w`).
//!
//! The forward saves `μ` and `rstd = 1/√(σ² + eps)` per row (shape `x.shape[..rank-1]`) for the backward.

use super::{
    dispatch_reading_textures, grid_1d, operand_textures_for, reduce, shader, with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Shader};
use crate::tensor::Tensor;
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("layer_norm");

/// The shader with the CPU kernels (`_rows4`, `_cols4`) reading `γ` (binding 8), `β` (binding 9), `x`
/// (binding 10) and `dy` (binding 11) from operand textures instead of storage buffers: the `*4_at`
/// reader lines swapped for texel loads.
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers(
            "layer_norm_textures",
            SHADER.source,
            &[
                ("fgamma4_at", "gamma_tex"),
                ("fbeta4_at", "beta_tex"),
                ("bgamma4_at", "gamma_tex"),
                ("fx4_at", "x_tex"),
                ("bx4_at", "x_tex"),
                ("ax4_at", "x_tex"),
                ("bdy4_at", "dy_tex"),
                ("ady4_at", "dy_tex"),
            ],
        )
    })
}

/// Operand texture slots and bindings of `γ`, `β`, `x` and `dy` (slots 0 and 1 are matmul's too;
/// commands run in order, so sharing a slot is safe).
const GAMMA: (u8, u32) = (7, 8);
const BETA: (u8, u32) = (8, 9);
const X: (u8, u32) = (0, 10);
const DY: (u8, u32) = (1, 11);

/// Launch a kernel of this family: on CPU adapters, for `x` of at least
/// [`super::OPERAND_TEXTURE_MIN_ELEMENTS`], the `_rows4` and `_cols4` kernels read `operands`
/// (tensor, (slot, binding)) from operand textures (`VITGAN_LAYER_NORM_OPERANDS=buffers|textures`
/// forces either at any size), falling back to the buffers when they do not fit the adapter's
/// textures; the workgroup kernels read buffers.
fn dispatch_rows(
    gpu: &Gpu,
    entry: &'static str,
    params: &Params,
    buffers: &[(&wgpu::Buffer, Access)],
    operands: &[(&Tensor, (u8, u32))],
    grid: [u32; 3],
) -> Result<()> {
    let elements = params.rows as usize * params.d as usize;
    let textures = operand_textures_for(gpu, elements, "VITGAN_LAYER_NORM_OPERANDS")
        && (entry.ends_with("_rows4") || entry.ends_with("_cols4"));
    let operands: Vec<(&Tensor, u8, u32)> = operands
        .iter()
        .map(|(t, (slot, binding))| (*t, *slot, *binding))
        .collect();
    dispatch_reading_textures(
        gpu,
        &SHADER,
        shader_with_textures,
        entry,
        &[],
        bytemuck::bytes_of(params),
        buffers,
        &operands,
        textures,
        grid,
    )
}

/// Rows one workgroup of the affine-gradient kernel sums (`CHUNK_ROWS` in the WGSL).
const CHUNK_ROWS: usize = 256;
/// Columns per workgroup of the affine-gradient kernel (`COLS` in the WGSL).
const COLS: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    rows_per_group: u32,
    eps: f32,
    chunks: u32,
    col_tiles: u32,
    groups: u32,
    _pad: u32,
}

/// How the rows of `x` map onto the rows of `γ, β`.
#[derive(Clone, Copy, Debug)]
struct RowGroups {
    rows: usize,
    d: usize,
    groups: usize,
    rows_per_group: usize,
}

impl RowGroups {
    fn of(op: &'static str, x: &[usize], gamma: &[usize]) -> Result<RowGroups> {
        let d = match x.last() {
            Some(&d) if d > 0 => d,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("x needs a non-empty last axis, got {x:?}"),
                ));
            }
        };
        let rows = x.iter().product::<usize>() / d;
        match gamma {
            [gd] if *gd == d => Ok(RowGroups {
                rows,
                d,
                groups: 1,
                rows_per_group: rows,
            }),
            [b, gd] if *gd == d && x.len() >= 2 && x[0] == *b => Ok(RowGroups {
                rows,
                d,
                groups: *b,
                rows_per_group: rows / b.max(&1),
            }),
            _ => Err(Error::shape(
                op,
                format!(
                    "gamma/beta {gamma:?} must be [D] (LayerNorm) or [B, D] (self-modulated, with x \
                     [B, T, D]) for x {x:?}"
                ),
            )),
        }
    }

    fn params(&self, eps: f32) -> Params {
        Params {
            rows: self.rows as u32,
            d: self.d as u32,
            rows_per_group: self.rows_per_group as u32,
            eps,
            chunks: self.rows_per_group.div_ceil(CHUNK_ROWS).max(1) as u32,
            col_tiles: self.d.div_ceil(COLS) as u32,
            groups: self.groups as u32,
            _pad: 0,
        }
    }
}

fn stats_shape(x: &[usize]) -> Vec<usize> {
    x[..x.len() - 1].to_vec()
}

/// `y = γ ⊙ (x − μ)·rstd + β` with `rstd = 1/√(σ² + eps)`; returns `(y, μ, rstd)`, the statistics per
/// row with shape `x.shape[..rank-1]`. `γ, β`: `[D]` (LayerNorm) or `[B, D]` (SLN, `x` is `[B, T, D]`).
pub fn layer_norm_forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "layer_norm_forward";
    let groups = RowGroups::of(op, x.shape(), gamma.shape())?;
    if beta.shape() != gamma.shape() {
        return Err(Error::shape(
            op,
            format!(
                "beta {:?} must have the shape of gamma {:?}",
                beta.shape(),
                gamma.shape()
            ),
        ));
    }
    let gpu = x.gpu();
    let y = Tensor::empty(gpu, x.shape())?;
    let mean = Tensor::empty(gpu, &stats_shape(x.shape()))?;
    let rstd = Tensor::empty(gpu, &stats_shape(x.shape()))?;
    let (entry, grid) = launch_shape(
        gpu,
        ["layer_norm_forward", "layer_norm_forward_rows4"],
        groups.rows,
        groups.d,
    );
    dispatch_rows(
        gpu,
        entry,
        &groups.params(eps),
        &[
            (x.buffer(), Access::Read),
            (gamma.buffer(), Access::Read),
            (beta.buffer(), Access::Read),
            (y.buffer(), Access::ReadWrite),
            (mean.buffer(), Access::ReadWrite),
            (rstd.buffer(), Access::ReadWrite),
        ],
        &[(gamma, GAMMA), (beta, BETA), (x, X)],
        grid,
    )?;
    Ok((y, mean, rstd))
}

/// Entry point and grid for a per-row kernel family: a workgroup per row (`entry`), or on CPU adapters
/// with enough rows to fill their threads and `d` a multiple of 4, one invocation per row reading
/// vec4s (`entry_rows4`).
fn launch_shape(
    gpu: &Gpu,
    [entry, entry_rows4]: [&'static str; 2],
    rows: usize,
    d: usize,
) -> (&'static str, [u32; 3]) {
    // the row kernels read a row twice as vec4s in one invocation (d/2 loop iterations): within the
    // CPU loop budget up to d = 32,768; the workgroup kernels share a row over 64 invocations
    if gpu.is_cpu() && rows >= 64 && d.is_multiple_of(4) && super::fits_loop_budget(d / 2 + 8) {
        (entry_rows4, grid_1d(rows, 64))
    } else {
        (entry, grid_1d(rows, 1))
    }
}

/// Gradients of [`layer_norm_forward`] given `dy`, with `x̂ = (x − μ)·rstd` and `ĝ = dy ⊙ γ`:
/// `dx = rstd · (ĝ − mean_D(ĝ) − x̂ ⊙ mean_D(ĝ ⊙ x̂))`, `dγ = Σ dy ⊙ x̂`, `dβ = Σ dy`, the sums running over
/// the rows that share a `γ` row (all rows for LayerNorm, the `T` rows of each sample for SLN).
/// Returns `(dx, dγ, dβ)` shaped like `x` and `γ`.
pub fn layer_norm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "layer_norm_backward";
    let groups = RowGroups::of(op, x.shape(), gamma.shape())?;
    if dy.shape() != x.shape() {
        return Err(Error::shape(
            op,
            format!(
                "dy {:?} must have the shape of x {:?}",
                dy.shape(),
                x.shape()
            ),
        ));
    }
    for (name, t) in [("mean", mean), ("rstd", rstd)] {
        if t.numel() != groups.rows {
            return Err(Error::shape(
                op,
                format!(
                    "{name} {:?} must hold one value per row of x {:?} ({} rows)",
                    t.shape(),
                    x.shape(),
                    groups.rows
                ),
            ));
        }
    }
    let gpu = x.gpu();
    let params = groups.params(0.0);
    let dx = Tensor::empty(gpu, x.shape())?;
    let (entry, grid) = launch_shape(
        gpu,
        [
            "layer_norm_backward_input",
            "layer_norm_backward_input_rows4",
        ],
        groups.rows,
        groups.d,
    );
    dispatch_rows(
        gpu,
        entry,
        &params,
        &[
            (x.buffer(), Access::Read),
            (gamma.buffer(), Access::Read),
            (mean.buffer(), Access::Read),
            (rstd.buffer(), Access::Read),
            (dy.buffer(), Access::Read),
            (dx.buffer(), Access::ReadWrite),
        ],
        &[(gamma, GAMMA), (x, X), (dy, DY)],
        grid,
    )?;

    let chunks = params.chunks as usize;
    let partial_shape = [groups.groups, chunks, groups.d];
    let partial_gamma = Tensor::empty(gpu, &partial_shape)?;
    let partial_beta = Tensor::empty(gpu, &partial_shape)?;
    // CPU adapters with d a multiple of 4: an invocation per (group, chunk, vec4 of columns), no
    // barriers; else a workgroup per (group, chunk, 32 columns)
    let (entry, grid) = if gpu.is_cpu() && groups.d.is_multiple_of(4) {
        let invocations = groups.groups * chunks * groups.d / 4;
        ("layer_norm_backward_affine_cols4", grid_1d(invocations, 64))
    } else {
        let workgroups = params.col_tiles as usize * groups.groups * chunks;
        ("layer_norm_backward_affine", grid_1d(workgroups, 1))
    };
    dispatch_rows(
        gpu,
        entry,
        &params,
        &[
            (x.buffer(), Access::Read),
            (mean.buffer(), Access::Read),
            (rstd.buffer(), Access::Read),
            (dy.buffer(), Access::Read),
            (partial_gamma.buffer(), Access::ReadWrite),
            (partial_beta.buffer(), Access::ReadWrite),
        ],
        &[(x, X), (dy, DY)],
        grid,
    )?;
    let finish = |partial: Tensor| -> Result<Tensor> {
        let summed = if chunks == 1 {
            partial
        } else {
            reduce::sum_axis(&partial, 1, false)?
        };
        summed.reshape(gamma.shape())
    };
    Ok((dx, finish(partial_gamma)?, finish(partial_beta)?))
}
