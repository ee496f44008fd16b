//! Fused multi-head attention (`shaders/attention.wgsl`), forward and backward, flash-attention style:
//! the L×L score matrix is never materialised.
//!
//! Layout: `q`, `k`, `v`, `out` are `[B, H, L, Dh]` contiguous f32 (the caller splits the heads);
//! the saved row statistic `lse` is `[B, H, L]`. With `c = 1/√Dh`:
//!
//! - [`AttentionKind::Dot`]: `s_ij = c · q_i·k_j`
//! - [`AttentionKind::L2`]: `s_ij = −c · ‖q_i − k_j‖²` (Kim et al. 2021; ViTGAN's discriminator ties
//!   `k = q`, see [`Tape::l2_attention_tied`])
//!
//! `P = softmax_j(s)`, `out_i = Σ_j P_ij v_j`, `lse_i = log Σ_j exp(s_ij)`.
//!
//! Backward, with `D_i = dout_i·out_i` and `dS_ij = P_ij (dout_i·v_j − D_i)`:
//! `dv_j = Σ_i P_ij dout_i`; dot: `dq_i = c Σ_j dS_ij k_j`, `dk_j = c Σ_i dS_ij q_i`;
//! L2: `dq_i = 2c Σ_j dS_ij (k_j − q_i) = 2c Σ_j dS_ij k_j` (as `Σ_j dS_ij = 0`),
//! `dk_j = 2c Σ_i dS_ij (q_i − k_j)`.
//!
//! Three kernels: forward (online softmax over key blocks), `dq` (also writes `D`), `dk`/`dv` (over
//! query blocks); no atomics. Each comes in three versions ([`AttentionKernel`]): tiled (one row per
//! invocation, the other side staged in workgroup memory; any `Dh`, for GPUs), subgroup (CPU
//! adapters with subgroups at `Dh = 64`: straight-line 4 × 4 register blocks, rows shared between the
//! lanes with `subgroupShuffle`, because on lavapipe every memory load is a scalar loop over the
//! lanes) and lanes (the same adapters at `Dh = 16`: one row per lane, the other side's rows loaded
//! one per lane and shuffled round; 10–20× the tiled kernels there). `KIND` and `HEAD_DIM` are
//! override constants, so each `(Dh, kind)` is its own pipeline; the tiled backward at large `Dh`
//! takes seconds to compile on lavapipe the first time.

use super::layout::to_operand_texture;
use super::{
    CPU_LOOP_BUDGET, grid_1d, operand_textures_wanted, shader, upper_bound_fits_loop_cap,
    with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Shader, TextureAccess, overrides};
use crate::ops::matmul::supports_subgroup_kernel;
use crate::tensor::Tensor;
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("attention");

/// Largest head width the kernels hold in registers.
pub const MAX_HEAD_DIM: usize = 128;
/// vec4s of workgroup memory per staged tile (must match `TILE_VEC4` in the WGSL).
const TILE_VEC4: u32 = 512;
/// Largest staged block (must match `MAX_BLOCK` in the WGSL).
const MAX_BLOCK: u32 = 64;

/// The score function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionKind {
    /// `s_ij = q_i·k_j / √Dh` (the generator's attention).
    Dot,
    /// `s_ij = −‖q_i − k_j‖² / √Dh` (the discriminator's Lipschitz attention).
    L2,
}

impl AttentionKind {
    /// Parts of the packed projection: tied L2 `[q, v]` (`k = q`), dot product `[q, k, v]`.
    pub fn packed_parts(self) -> usize {
        match self {
            AttentionKind::Dot => 3,
            AttentionKind::L2 => 2,
        }
    }

    fn code(self) -> f64 {
        match self {
            AttentionKind::Dot => 0.0,
            AttentionKind::L2 => 1.0,
        }
    }
}

/// Work split of the attention kernels: `rows` rows owned per workgroup (= its invocations), `block`
/// rows of the other side staged in workgroup memory at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionTiles {
    pub rows: u32,
    pub block: u32,
}

impl AttentionTiles {
    /// The default for an adapter, sequence length and head width; `VITGAN_ATTENTION_TILE=rows,block`
    /// overrides it. CPU adapters run a workgroup on one thread with invocations as SIMD lanes, so
    /// they get small workgroups (a multiple of 8 lanes) sized to waste the fewest rows at the end
    /// of the sequence (24 for L = 65, 32 for L = 256); GPUs get 64 invocations.
    pub fn for_gpu(gpu: &Gpu, seq_len: usize, head_dim: usize) -> AttentionTiles {
        let d4 = head_dim.div_ceil(4).max(1) as u32;
        let fit = (TILE_VEC4 / d4).min(MAX_BLOCK);
        if let Some(s) = overrides::value("VITGAN_ATTENTION_TILE") {
            let v: Vec<u32> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            if let [rows, block] = v[..]
                && rows > 0
                && block > 0
            {
                return AttentionTiles {
                    rows: rows.min(256),
                    block: block.min(fit),
                };
            }
        }
        let rows = if gpu.is_cpu() {
            // fewest padded rows; the larger workgroup on a tie
            [32u32, 24, 16]
                .into_iter()
                .min_by_key(|&r| seq_len.max(1).div_ceil(r as usize) * r as usize)
                .unwrap_or(16)
        } else {
            64
        };
        AttentionTiles {
            rows,
            block: fit.min(16),
        }
    }
}

/// Head width of the subgroup kernels (their register blocks are written for it).
pub const SUBGROUP_HEAD_DIM: usize = 64;
/// Rows owned by a workgroup of the subgroup kernels (must match `SG_ROWS` in the WGSL).
const SUBGROUP_ROWS: usize = 16;
/// Head width of the one-row-per-lane kernels (the `tiny` preset's; must match `LN_D4` · 4).
pub const LANES_HEAD_DIM: usize = 16;
/// Rows owned by a workgroup of the one-row-per-lane kernels (must match `LN_ROWS` in the WGSL).
const LANES_ROWS: usize = 8;

/// Which kernels run a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Workgroup-memory tiles ([`AttentionTiles`]), any head width: GPUs, and CPU adapters otherwise.
    Tiled,
    /// Straight-line register kernels sharing rows through `subgroupBroadcast`: CPU adapters with
    /// subgroups of ≥ 8 lanes, head width [`SUBGROUP_HEAD_DIM`] only.
    Subgroup,
    /// One row per subgroup lane, the other side's rows loaded one per lane and passed round with
    /// `subgroupShuffle`: CPU adapters with subgroups of ≥ 8 lanes, head width [`LANES_HEAD_DIM`]
    /// only (where the tiled kernels ran at 0.15 GFLOP/s on lavapipe).
    Lanes,
}

impl AttentionKernel {
    /// The kernels for an adapter and head width; `VITGAN_ATTENTION_KERNEL=tiled|subgroup|lanes`
    /// forces one (subgroup and lanes only where they can run).
    pub fn for_problem(gpu: &Gpu, head_dim: usize) -> AttentionKernel {
        let subgroup_ok = AttentionKernel::Subgroup.supports(gpu, head_dim);
        let lanes_ok = AttentionKernel::Lanes.supports(gpu, head_dim);
        match overrides::value("VITGAN_ATTENTION_KERNEL").as_deref() {
            Some("tiled") => AttentionKernel::Tiled,
            Some("subgroup") if subgroup_ok => AttentionKernel::Subgroup,
            Some("lanes") if lanes_ok => AttentionKernel::Lanes,
            _ if subgroup_ok && gpu.is_cpu() => AttentionKernel::Subgroup,
            _ if lanes_ok && gpu.is_cpu() => AttentionKernel::Lanes,
            _ => AttentionKernel::Tiled,
        }
    }

    /// An error when `VITGAN_ATTENTION_KERNEL` names an unknown kernel, or `subgroup` where `chosen`
    /// is not it (the adapter or head width cannot run it): a forced choice never silently runs
    /// another kernel.
    pub fn check_forced(gpu: &Gpu, chosen: AttentionKernel) -> Result<()> {
        let Some(v) = overrides::value("VITGAN_ATTENTION_KERNEL") else {
            return Ok(());
        };
        let detail = match v.as_str() {
            // composed: the tape composes attention from primitive ops instead (autodiff)
            "tiled" | "composed" => return Ok(()),
            "subgroup" if chosen == AttentionKernel::Subgroup => return Ok(()),
            "lanes" if chosen == AttentionKernel::Lanes => return Ok(()),
            "subgroup" | "lanes" => format!(
                "`{v}` needs head width {} and subgroups of at least 8 lanes ({}); unset it to \
                 choose automatically",
                if v == "lanes" {
                    LANES_HEAD_DIM
                } else {
                    SUBGROUP_HEAD_DIM
                },
                gpu.describe()
            ),
            _ => format!("`{v}`: expected tiled, subgroup, lanes or composed"),
        };
        Err(Error::Config {
            field: "VITGAN_ATTENTION_KERNEL".into(),
            detail,
        })
    }

    /// Whether these kernels can run the problem on `gpu`.
    pub fn supports(self, gpu: &Gpu, head_dim: usize) -> bool {
        match self {
            AttentionKernel::Tiled => true,
            AttentionKernel::Subgroup => {
                head_dim == SUBGROUP_HEAD_DIM && supports_subgroup_kernel(gpu)
            }
            AttentionKernel::Lanes => head_dim == LANES_HEAD_DIM && supports_subgroup_kernel(gpu),
        }
    }
}

/// Marker lines around the subgroup kernels, left out of the source on adapters without subgroups
/// (a module using subgroup operations does not compile there).
const SUBGROUP_BEGIN: &str = "// BEGIN SUBGROUP KERNELS";
const SUBGROUP_END: &str = "// END SUBGROUP KERNELS";

/// The shader for `gpu`: the whole file where subgroups are supported, else without the subgroup kernels.
fn shader_for(gpu: &Gpu) -> &'static Shader {
    if supports_subgroup_kernel(gpu) {
        &SHADER
    } else {
        shader_without_subgroups()
    }
}

/// The shader source without the subgroup kernels (for adapters without subgroup operations).
pub fn shader_without_subgroups() -> &'static Shader {
    static WITHOUT_SUBGROUPS: OnceLock<Shader> = OnceLock::new();
    WITHOUT_SUBGROUPS.get_or_init(|| {
        let mut src = String::with_capacity(SHADER.source.len());
        let mut skipping = false;
        for line in SHADER.source.lines() {
            match line.trim() {
                SUBGROUP_BEGIN => skipping = true,
                SUBGROUP_END => skipping = false,
                _ if !skipping => {
                    src.push_str(line);
                    src.push('\n');
                }
                _ => {}
            }
        }
        Shader {
            name: "attention_without_subgroups",
            source: Box::leak(src.into_boxed_str()),
        }
    })
}

/// The whole shader with the subgroup kernels reading their inputs from operand textures
/// (bindings 10..=14) instead of the vec4 storage buffers: the five `*4_at` helper lines swapped.
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers(
            "attention_textures",
            SHADER.source,
            &[
                ("q4_at", "q_tex"),
                ("k4_at", "k_tex"),
                ("v4_at", "v_tex"),
                ("dout4_at", "dout_tex"),
                ("out4_at", "out_tex"),
            ],
        )
    })
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    heads: u32,
    seq_len: u32,
    row_blocks: u32,
    scale: f32,
    layout: RowLayout,
}

/// Where the `_lanes` kernels find each head's rows, in vec4s (`Params` in the WGSL, which states
/// the formula); the other kernels read `[heads, L, Dh]` only.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowLayout {
    heads_per_item: u32,
    in_item: u32,
    in_row: u32,
    in_head: u32,
    out_item: u32,
    out_row: u32,
    out_head: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    accumulate_dk: u32,
    _pad: u32,
}

impl RowLayout {
    /// q, k, v, out, dout all `[heads, L, Dh]`.
    fn contiguous(seq_len: usize, head_dim: usize) -> RowLayout {
        let d4 = head_dim.div_ceil(4) as u32;
        RowLayout {
            heads_per_item: 1,
            in_item: seq_len as u32 * d4,
            in_row: d4,
            in_head: 0,
            out_item: seq_len as u32 * d4,
            out_row: d4,
            out_head: 0,
            q_off: 0,
            k_off: 0,
            v_off: 0,
            accumulate_dk: 0,
            _pad: 0,
        }
    }

    /// q, k, v parts of one `[B, L, parts, H, Dh]` projection (tied L2: parts q, v with `k = q`;
    /// dot product: q, k, v) and out `[B, L, H, Dh]`.
    fn packed(p: &Packed) -> RowLayout {
        let d4 = (p.head_dim / 4) as u32;
        let (h, l) = (p.heads as u32, p.seq_len as u32);
        let parts = p.kind.packed_parts() as u32;
        let part = h * d4;
        let tied = p.kind == AttentionKind::L2;
        RowLayout {
            heads_per_item: h,
            in_item: l * parts * part,
            in_row: parts * part,
            in_head: d4,
            out_item: l * part,
            out_row: part,
            out_head: d4,
            q_off: 0,
            k_off: if tied { 0 } else { part },
            v_off: if tied { part } else { 2 * part },
            accumulate_dk: tied as u32,
            _pad: 0,
        }
    }
}

/// Sizes of a checked attention problem.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub(crate) heads: usize,
    pub(crate) seq_len: usize,
    pub(crate) head_dim: usize,
}

pub(crate) fn check_qkv(op: &'static str, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Dims> {
    let s = q.shape();
    if s.len() != 4 {
        return Err(Error::shape(
            op,
            format!("q must be [B, H, L, Dh], got {s:?}"),
        ));
    }
    for (name, t) in [("k", k), ("v", v)] {
        if t.shape() != s {
            return Err(Error::shape(
                op,
                format!(
                    "{name} {:?} must have q's shape {s:?} ([B, H, L, Dh])",
                    t.shape()
                ),
            ));
        }
    }
    let head_dim = s[3];
    if head_dim == 0 || head_dim > MAX_HEAD_DIM {
        return Err(Error::shape(
            op,
            format!("head width Dh = {head_dim} in {s:?} must be in 1..={MAX_HEAD_DIM}"),
        ));
    }
    if q.numel() > u32::MAX as usize / 2 {
        return Err(Error::shape(
            op,
            format!("{s:?} has too many elements for 32-bit indexing; use a smaller batch"),
        ));
    }
    Ok(Dims {
        heads: s[0] * s[1],
        seq_len: s[2],
        head_dim,
    })
}

/// Operand textures holding the subgroup kernels' inputs, as (texture binding, view): 10 q, 11 k,
/// 12 v, 13 dout, 14 out. One copy per distinct tensor (a tied k = q is copied once and bound twice).
/// `None` where the kernels read storage buffers instead (other kernels, GPUs, or too large).
type InputTextures = Option<Vec<(u32, wgpu::TextureView)>>;

fn input_textures(
    gpu: &Gpu,
    kernel: AttentionKernel,
    inputs: &[(u32, &Tensor)],
) -> Result<InputTextures> {
    if kernel == AttentionKernel::Tiled
        || !operand_textures_wanted(gpu, "VITGAN_ATTENTION_OPERANDS")
        || (gpu.limits().max_storage_textures_per_shader_stage as usize) < inputs.len()
    {
        return Ok(None);
    }
    let mut out: Vec<(u32, wgpu::TextureView)> = Vec::with_capacity(inputs.len());
    for (i, &(binding, t)) in inputs.iter().enumerate() {
        if let Some(j) = inputs[..i].iter().position(|(_, u)| u.same_storage(t)) {
            let view = out[j].1.clone();
            out.push((binding, view));
            continue;
        }
        // operand texture slots 2..=6 (matmul uses 0 and 1)
        match to_operand_texture(t, (binding - 8) as u8)? {
            Some(view) => out.push((binding, view)),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Launch `entry` (the tiled kernel's name; the others add `_subgroup` or `_lanes`), reading its
/// inputs through `textures` when given (see [`input_textures`]).
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &Gpu,
    kernel: AttentionKernel,
    entry: &'static str,
    dims: Dims,
    kind: AttentionKind,
    buffers: &[(&wgpu::Buffer, Access)],
    textures: Option<&[(u32, wgpu::TextureView)]>,
) -> Result<()> {
    let layout = RowLayout::contiguous(dims.seq_len, dims.head_dim);
    launch_with_layout(gpu, kernel, entry, dims, kind, layout, buffers, textures)
}

/// [`launch`] with the rows where `layout` says (only the lanes kernels read it).
#[allow(clippy::too_many_arguments)]
fn launch_with_layout(
    gpu: &Gpu,
    kernel: AttentionKernel,
    entry: &'static str,
    dims: Dims,
    kind: AttentionKind,
    layout: RowLayout,
    buffers: &[(&wgpu::Buffer, Access)],
    textures: Option<&[(u32, wgpu::TextureView)]>,
) -> Result<()> {
    let scale = 1.0 / (dims.head_dim as f32).sqrt();
    let (entry, rows_per_group, constants) = match kernel {
        AttentionKernel::Tiled => {
            let tiles = AttentionTiles::for_gpu(gpu, dims.seq_len, dims.head_dim);
            let constants = vec![
                ("KIND", kind.code()),
                ("HEAD_DIM", dims.head_dim as f64),
                ("ROWS", tiles.rows as f64),
                ("BLOCK", tiles.block as f64),
            ];
            (entry, tiles.rows as usize, constants)
        }
        AttentionKernel::Subgroup => {
            let entry = match entry {
                "attention_forward" => "attention_forward_subgroup",
                "attention_backward_dq" => "attention_backward_dq_subgroup",
                _ => "attention_backward_dkdv_subgroup",
            };
            (entry, SUBGROUP_ROWS, vec![("KIND", kind.code())])
        }
        AttentionKernel::Lanes => {
            let entry = match entry {
                "attention_forward" => "attention_forward_lanes",
                "attention_backward_dq" => "attention_backward_dq_lanes",
                _ => "attention_backward_dkdv_lanes",
            };
            (entry, LANES_ROWS, vec![("KIND", kind.code())])
        }
    };
    let row_blocks = dims.seq_len.div_ceil(rows_per_group);
    let params = Params {
        heads: dims.heads as u32,
        seq_len: dims.seq_len as u32,
        row_blocks: row_blocks as u32,
        scale,
        layout,
    };
    let groups = grid_1d(dims.heads * row_blocks, 1);
    if let Some(textures) = textures {
        let bound: Vec<(u32, &wgpu::TextureView, TextureAccess)> = textures
            .iter()
            .map(|(b, v)| (*b, v, TextureAccess::ReadOnly))
            .collect();
        return gpu.dispatch_with_textures(
            shader_with_textures(),
            entry,
            &constants,
            bytemuck::bytes_of(&params),
            buffers,
            &bound,
            groups,
        );
    }
    gpu.dispatch(
        shader_for(gpu),
        entry,
        &constants,
        bytemuck::bytes_of(&params),
        buffers,
        groups,
    )
}

impl AttentionKernel {
    /// An upper bound of the loop iterations one invocation of these kernels runs (forward or either
    /// backward kernel), counted from the loops of `shaders/attention.wgsl` as written (none assumed
    /// unrolled): per block of 16 keys, the tiled kernels stage the block and run 2·16·(1 + Dh/4)
    /// iterations of score and value products; the subgroup kernels ≤ 17 per block of 32 keys; the
    /// lanes kernels one per step of 8 rows.
    pub fn loop_trips(self, seq_len: usize, head_dim: usize) -> usize {
        let d4 = head_dim.div_ceil(4);
        match self {
            AttentionKernel::Tiled => seq_len.div_ceil(16) * (3 + d4 + 2 * 16 * (1 + d4) + d4),
            AttentionKernel::Subgroup => seq_len.div_ceil(32) * 17,
            AttentionKernel::Lanes => seq_len.div_ceil(LANES_ROWS),
        }
    }
}

fn check_kernel(op: &'static str, kernel: AttentionKernel, gpu: &Gpu, dims: Dims) -> Result<()> {
    let trips = kernel.loop_trips(dims.seq_len, dims.head_dim);
    if gpu.is_cpu() && !upper_bound_fits_loop_cap(trips) {
        // the kernels loop over all keys in one invocation; see ops::CPU_LOOP_BUDGET
        return Err(Error::shape(
            op,
            format!(
                "sequence length {} at head width {} needs about {trips} loop iterations per \
                 invocation of the {kernel:?} kernels, over the engine's limit of {} \
                 on CPU adapters (whose drivers silently stop loops past 65,535); use shorter \
                 sequences or a GPU adapter",
                dims.seq_len,
                dims.head_dim,
                2 * CPU_LOOP_BUDGET
            ),
        ));
    }
    if kernel.supports(gpu, dims.head_dim) {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{op}: the {kernel:?} kernels cannot run head width {} on {}",
            dims.head_dim,
            gpu.describe()
        )))
    }
}

/// Fused attention forward: `(out [B, H, L, Dh], lse [B, H, L])` with `out_i = Σ_j softmax_j(s_ij) v_j`
/// and `lse_i = log Σ_j exp(s_ij)` (kept for [`attention_backward`]).
pub fn attention_forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kind: AttentionKind,
) -> Result<(Tensor, Tensor)> {
    let kernel = AttentionKernel::for_problem(q.gpu(), *q.shape().last().unwrap_or(&0));
    AttentionKernel::check_forced(q.gpu(), kernel)?;
    attention_forward_with(q, k, v, kind, kernel)
}

/// [`attention_forward`] with the given kernels (both compute the same thing; tests compare them).
pub fn attention_forward_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kind: AttentionKind,
    kernel: AttentionKernel,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "attention_forward";
    let dims = check_qkv(OP, q, k, v)?;
    let gpu = q.gpu();
    check_kernel(OP, kernel, gpu, dims)?;
    let out = Tensor::empty(gpu, q.shape())?;
    let lse = Tensor::empty(gpu, &q.shape()[..3])?;
    if q.numel() == 0 {
        return Ok((out, lse));
    }
    launch(
        gpu,
        kernel,
        "attention_forward",
        dims,
        kind,
        &[
            (q.buffer(), Access::Read),
            (k.buffer(), Access::Read),
            (v.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
            (lse.buffer(), Access::ReadWrite),
        ],
        input_textures(gpu, kernel, &[(10, q), (11, k), (12, v)])?.as_deref(),
    )?;
    Ok((out, lse))
}

/// Fused attention backward: `(dq, dk, dv)` from the forward's inputs, its `out` and `lse`, and the
/// output gradient `dout` (formulas in the module docs). Scores are recomputed, never stored.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    kind: AttentionKind,
) -> Result<(Tensor, Tensor, Tensor)> {
    let kernel = AttentionKernel::for_problem(q.gpu(), *q.shape().last().unwrap_or(&0));
    AttentionKernel::check_forced(q.gpu(), kernel)?;
    attention_backward_with(q, k, v, out, lse, dout, kind, kernel)
}

/// [`attention_backward`] with the given kernels.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    kind: AttentionKind,
    kernel: AttentionKernel,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "attention_backward";
    let dims = check_qkv(OP, q, k, v)?;
    check_kernel(OP, kernel, q.gpu(), dims)?;
    for (name, t) in [("out", out), ("dout", dout)] {
        if t.shape() != q.shape() {
            return Err(Error::shape(
                OP,
                format!("{name} {:?} must have q's shape {:?}", t.shape(), q.shape()),
            ));
        }
    }
    if lse.shape() != &q.shape()[..3] {
        return Err(Error::shape(
            OP,
            format!(
                "lse {:?} must be [B, H, L] = {:?} for q {:?}",
                lse.shape(),
                &q.shape()[..3],
                q.shape()
            ),
        ));
    }
    let gpu = q.gpu();
    let dq = Tensor::empty(gpu, q.shape())?;
    let dk = Tensor::empty(gpu, q.shape())?;
    let dv = Tensor::empty(gpu, q.shape())?;
    if q.numel() == 0 {
        return Ok((dq, dk, dv));
    }
    let delta = Tensor::empty(gpu, &q.shape()[..3])?;
    // both kernels read q, k, v, dout (and dq's also out) through the same textures
    let textures = input_textures(
        gpu,
        kernel,
        &[(10, q), (11, k), (12, v), (13, dout), (14, out)],
    )?;
    let layout = RowLayout::contiguous(dims.seq_len, dims.head_dim);
    let operands = BackwardOperands {
        q,
        k,
        v,
        dout,
        lse,
        out,
        delta: &delta,
        dq: &dq,
        dk: &dk,
        dv: &dv,
    };
    launch_backward(
        gpu,
        kernel,
        dims,
        kind,
        layout,
        &operands,
        textures.as_deref(),
    )?;
    Ok((dq, dk, dv))
}

/// A packed attention problem: the heads of `B` items of `L` tokens, their q, k, v as parts of one
/// projection `[B, L, parts · H · Dh]` (see [`AttentionKind::packed_parts`]), the output
/// `[B, L, H · Dh]` — what a transformer block's linear layers produce and read, so no copies split
/// or merge the heads. Only the lanes kernels read this layout ([`Packed::runs_packed`]).
#[derive(Clone, Copy, Debug)]
pub struct Packed {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub kind: AttentionKind,
}

impl Packed {
    /// The problem of a projection `[B, L, parts · H · Dh]` with `heads` heads.
    pub fn of(qkv: &Tensor, heads: usize, kind: AttentionKind) -> Result<Packed> {
        const OP: &str = "attention_packed";
        let parts = kind.packed_parts();
        let &[batch, seq_len, width] = qkv.shape() else {
            return Err(Error::shape(
                OP,
                format!(
                    "the projection must be [B, L, parts · H · Dh], got {:?}",
                    qkv.shape()
                ),
            ));
        };
        if heads == 0 || width % (parts * heads) != 0 || width == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "the projection's width {width} must be {parts} parts × {heads} heads × Dh \
                     ({kind:?} attention)"
                ),
            ));
        }
        if qkv.numel() > u32::MAX as usize / 2 {
            return Err(Error::shape(
                OP,
                format!(
                    "{:?} has too many elements for 32-bit indexing; use a smaller batch",
                    qkv.shape()
                ),
            ));
        }
        Ok(Packed {
            batch,
            seq_len,
            heads,
            head_dim: width / (parts * heads),
            kind,
        })
    }

    /// Whether the packed kernels run this problem: the lanes kernels are the adapter's choice for
    /// its head width (CPU adapters with subgroups, `Dh = 16`; see [`AttentionKernel::for_problem`]).
    /// Elsewhere the caller splits the heads and calls [`attention_forward`].
    pub fn runs_packed(&self, gpu: &Gpu) -> bool {
        AttentionKernel::for_problem(gpu, self.head_dim) == AttentionKernel::Lanes
    }

    fn dims(&self) -> Dims {
        Dims {
            heads: self.batch * self.heads,
            seq_len: self.seq_len,
            head_dim: self.head_dim,
        }
    }

    fn check(&self, op: &'static str, gpu: &Gpu) -> Result<()> {
        if !self.runs_packed(gpu) {
            return Err(Error::Other(format!(
                "{op}: packed attention runs on the lanes kernels only (head width \
                 {LANES_HEAD_DIM} on CPU adapters with subgroups); this problem has head width {} \
                 on {}",
                self.head_dim,
                gpu.describe()
            )));
        }
        check_kernel(op, AttentionKernel::Lanes, gpu, self.dims())
    }
}

/// Packed attention forward: `(out [B, L, H · Dh], lse [B, H, L])` from the projection `qkv` (see
/// [`Packed`]); the same function and the same bits as [`attention_forward`] on the split heads.
pub fn attention_packed_forward(qkv: &Tensor, p: &Packed) -> Result<(Tensor, Tensor)> {
    const OP: &str = "attention_packed_forward";
    let gpu = qkv.gpu();
    p.check(OP, gpu)?;
    let out = Tensor::empty(gpu, &[p.batch, p.seq_len, p.heads * p.head_dim])?;
    let lse = Tensor::empty(gpu, &[p.batch, p.heads, p.seq_len])?;
    if qkv.numel() == 0 || p.seq_len == 0 {
        return Ok((out, lse));
    }
    let kernel = AttentionKernel::Lanes;
    launch_with_layout(
        gpu,
        kernel,
        "attention_forward",
        p.dims(),
        p.kind,
        RowLayout::packed(p),
        &[
            (qkv.buffer(), Access::Read),
            (qkv.buffer(), Access::Read),
            (qkv.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
            (lse.buffer(), Access::ReadWrite),
        ],
        input_textures(gpu, kernel, &[(10, qkv), (11, qkv), (12, qkv)])?.as_deref(),
    )?;
    Ok((out, lse))
}

/// Packed attention backward: the projection's gradient `d(qkv)`, shaped like `qkv`, from the
/// forward's `qkv`, `out`, `lse` and the output gradient `dout` `[B, L, H · Dh]`. For tied L2 the
/// q part holds `dq + dk`. The same bits as [`attention_backward`] on the split heads, with the
/// parts' gradients put together.
pub fn attention_packed_backward(
    qkv: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    p: &Packed,
) -> Result<Tensor> {
    const OP: &str = "attention_packed_backward";
    let gpu = qkv.gpu();
    p.check(OP, gpu)?;
    let o_shape = [p.batch, p.seq_len, p.heads * p.head_dim];
    for (name, t) in [("out", out), ("dout", dout)] {
        if t.shape() != o_shape {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} {:?} must be [B, L, H · Dh] = {o_shape:?}",
                    t.shape()
                ),
            ));
        }
    }
    if lse.shape() != [p.batch, p.heads, p.seq_len] {
        return Err(Error::shape(
            OP,
            format!(
                "lse {:?} must be [B, H, L] = {:?}",
                lse.shape(),
                [p.batch, p.heads, p.seq_len]
            ),
        ));
    }
    let dqkv = Tensor::empty(gpu, qkv.shape())?;
    if qkv.numel() == 0 || p.seq_len == 0 {
        return Ok(dqkv);
    }
    let delta = Tensor::empty(gpu, lse.shape())?;
    let kernel = AttentionKernel::Lanes;
    let layout = RowLayout::packed(p);
    let textures = input_textures(
        gpu,
        kernel,
        &[(10, qkv), (11, qkv), (12, qkv), (13, dout), (14, out)],
    )?;
    // dk and dv land in their parts of the same gradient (disjoint vec4s; for tied L2 dk is added
    // to the dq the first kernel wrote)
    let operands = BackwardOperands {
        q: qkv,
        k: qkv,
        v: qkv,
        dout,
        lse,
        out,
        delta: &delta,
        dq: &dqkv,
        dk: &dqkv,
        dv: &dqkv,
    };
    launch_backward(
        gpu,
        kernel,
        p.dims(),
        p.kind,
        layout,
        &operands,
        textures.as_deref(),
    )?;
    Ok(dqkv)
}

/// What the two backward kernels read and write (`dq`, `dk`, `dv` may be one tensor, in parts of
/// which a packed layout puts them).
struct BackwardOperands<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    dout: &'a Tensor,
    lse: &'a Tensor,
    out: &'a Tensor,
    delta: &'a Tensor,
    dq: &'a Tensor,
    dk: &'a Tensor,
    dv: &'a Tensor,
}

/// `attention_backward_dq` (dq and D), then `attention_backward_dkdv` (dk, dv), reading the inputs
/// through `textures` when given (q, k, v, dout, out: dkdv takes the first four).
fn launch_backward(
    gpu: &Gpu,
    kernel: AttentionKernel,
    dims: Dims,
    kind: AttentionKind,
    layout: RowLayout,
    t: &BackwardOperands,
    textures: Option<&[(u32, wgpu::TextureView)]>,
) -> Result<()> {
    launch_with_layout(
        gpu,
        kernel,
        "attention_backward_dq",
        dims,
        kind,
        layout,
        &[
            (t.q.buffer(), Access::Read),
            (t.k.buffer(), Access::Read),
            (t.v.buffer(), Access::Read),
            (t.dout.buffer(), Access::Read),
            (t.lse.buffer(), Access::Read),
            (t.out.buffer(), Access::Read),
            (t.delta.buffer(), Access::ReadWrite),
            (t.dq.buffer(), Access::ReadWrite),
        ],
        textures,
    )?;
    launch_with_layout(
        gpu,
        kernel,
        "attention_backward_dkdv",
        dims,
        kind,
        layout,
        &[
            (t.q.buffer(), Access::Read),
            (t.k.buffer(), Access::Read),
            (t.v.buffer(), Access::Read),
            (t.dout.buffer(), Access::Read),
            (t.lse.buffer(), Access::Read),
            (t.delta.buffer(), Access::Read),
            (t.dk.buffer(), Access::ReadWrite),
            (t.dv.buffer(), Access::ReadWrite),
        ],
        textures.map(|t| &t[..4]), // q, k, v, dout: dkdv does not read `out`
    )
}
