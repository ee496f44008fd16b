//! Kernel launchers, one module per WGSL family: shape checks, uniform structs, dispatch.
//! Functions here work on plain [`Tensor`]s; the autodiff tape wraps them.

pub mod adam;
pub mod attention;
pub mod augment;
pub mod conv;
pub mod elementwise;
pub mod inr;
pub mod layer_norm;
pub mod layout;
pub mod matmul;
pub mod patches;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod softmax;
pub mod spectral_norm;

/// Maximum tensor rank the strided kernels handle.
pub const MAX_RANK: usize = 8;

/// # The CPU loop budget
///
/// Mesa's llvmpipe — behind lavapipe (Vulkan) and the GL llvmpipe driver, i.e. every CPU adapter —
/// ends every loop of one shader invocation once that invocation has run 65,535 loop iterations in
/// total (gallivm's loop limiter: one counter for all loops of the invocation, a nested loop counting
/// each inner iteration), without any error: the rest of the work is silently skipped and the output
/// holds stale memory. Real GPUs have no such cap.
///
/// **Rule:** no invocation runs more than `CPU_LOOP_BUDGET` loop iterations, a quarter of the cap
/// (headroom for the small fixed loops around a kernel's main loop, e.g. index decoding over ≤ 8
/// dimensions or a 6-step tree reduction). Every launcher of a kernel whose per-invocation trip count
/// grows with a tensor size plans its grid with [`split_loop`] (work split across invocations, each
/// doing at most the budget, partial results combined by a later pass where needed) or guards a
/// launch shape that cannot split with [`fits_loop_budget`], choosing another shape when it does not
/// fit. The rule holds on every adapter (one launch plan for all; on a GPU a loop this long would be
/// slow anyway). `tests/loop_budget.rs` runs every family past the cap.
pub const CPU_LOOP_BUDGET: usize = 16_384;

/// How a loop of `trips` iterations is split across invocations: `pieces` invocations, each running
/// at most `trips_per_piece` iterations (the last one possibly fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopSplit {
    pub pieces: usize,
    pub trips_per_piece: usize,
}

/// The fewest equal pieces of a loop of `trips` iterations such that each piece plus `fixed` other
/// iterations of the same invocation stays within [`CPU_LOOP_BUDGET`].
pub fn split_loop(trips: usize, fixed: usize) -> LoopSplit {
    let room = CPU_LOOP_BUDGET.saturating_sub(fixed).max(1);
    let pieces = trips.div_ceil(room).max(1);
    LoopSplit {
        pieces,
        trips_per_piece: trips.div_ceil(pieces),
    }
}

/// Whether an invocation that runs `trips` loop iterations in total stays within
/// [`CPU_LOOP_BUDGET`] (for launch shapes that cannot split their loop and have an alternative).
pub fn fits_loop_budget(trips: usize) -> bool {
    trips <= CPU_LOOP_BUDGET
}

/// Whether an *upper bound* of an invocation's loop iterations — every loop counted as written, none
/// assumed unrolled — stays within half the cap (2 · [`CPU_LOOP_BUDGET`]): such a bound already counts
/// the fixed loops the budget's headroom is for. For launch shapes that cannot split (fused
/// attention), where the exact count depends on the compiler's unrolling.
pub fn upper_bound_fits_loop_cap(trips_upper_bound: usize) -> bool {
    trips_upper_bound <= 2 * CPU_LOOP_BUDGET
}

/// Workgroup grid for `n` items at `per_group` items per workgroup, split over x and y so that
/// neither exceeds 65,535 (kernels reconstruct the index as `(wid.y · nwg.x + wid.x) · per_group + lid`).
pub fn grid_1d(n: usize, per_group: usize) -> [u32; 3] {
    let groups = n.div_ceil(per_group).max(1);
    let x = groups.min(65_535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// Whether a reduction producing `outputs` results, each over `n` values, should give every result
/// its own invocation (a serial loop, no barriers) instead of a workgroup with a tree reduction: on CPU
/// adapters (lavapipe, llvmpipe), where a workgroup barrier switches between coroutines and costs far
/// more than the serial loop it would split, once there are at least 64 results to spread over the
/// threads. GPUs keep the workgroup kernels (coalesced loads, enough parallelism for few rows).
pub(crate) fn one_invocation_per_output(gpu: &crate::gpu::Gpu, outputs: usize) -> bool {
    outputs >= 64 && gpu.is_cpu()
}

/// Whether the CPU kernels of matmul and attention read their operands from textures: by default on
/// CPU adapters, where a texel load costs about a quarter of a storage-buffer load; the environment
/// variable `var` (`VITGAN_MATMUL_OPERANDS`, `VITGAN_ATTENTION_OPERANDS`) = `buffers|textures` forces
/// either (for comparisons and tests). The memory-bound kernels use [`operand_textures_for`], which
/// adds a size threshold.
pub(crate) fn operand_textures_wanted(gpu: &crate::gpu::Gpu, var: &str) -> bool {
    operand_textures_for(gpu, usize::MAX, var)
}

/// The operand source the environment variable `var` forces (`buffers` → false, `textures` → true),
/// if any.
pub(crate) fn operand_textures_forced(var: &str) -> Option<bool> {
    match crate::gpu::overrides::value(var).as_deref() {
        Some("buffers") => Some(false),
        Some("textures") => Some(true),
        _ => None,
    }
}

/// The same index walk with fewer dimensions: drops dimensions of size 1 and merges each dimension
/// into the next inner one when every operand steps over it as over one longer axis
/// (`stride[d] = stride[d+1] · dims[d+1]`, broadcast strides of 0 included). A same-shape
/// elementwise op becomes rank 1, and adding a `[B,H,L,1]` to a `[B,H,L,L]` rank 2, so the kernels
/// decode fewer coordinates per element (one integer division per dimension).
pub fn coalesce_dims(dims: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..dims.len() {
        if dims[d] == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| {
                let last = *o.last().expect("one stride per kept dimension");
                last == s[d] * dims[d]
            });
        if mergeable {
            *out_dims.last_mut().expect("checked non-empty") *= dims[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().expect("checked non-empty") = s[d];
            }
        } else {
            out_dims.push(dims[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    if out_dims.is_empty() {
        out_dims.push(1);
        for o in out_strides.iter_mut() {
            o.push(0);
        }
    }
    (out_dims, out_strides)
}

/// For the texture variants of a shader: if `line` is one of the one-line operand readers named in
/// `readers` (`(function, texture)`, e.g. `("a4_at", "a_tex")`: `fn a4_at(i: u32) -> vec4<f32> { … }`),
/// the same reader loading vec4 `i` from the operand texture instead (at texel `(i % W, i / W)`, `W` =
/// [`crate::gpu::OPERAND_TEXTURE_WIDTH`], computed in the generated line, so the shaders need no
/// helper of their own). A scalar reader
/// (`fn x_at(i: u32) -> f32 { … }`) becomes a load of component `i % 4` of texel `i / 4`.
pub(crate) fn texture_reader(line: &str, readers: &[(&str, &str)]) -> Option<String> {
    readers
        .iter()
        .find(|(function, _)| line.starts_with(&format!("fn {function}(i")))
        .map(|(function, texture)| {
            // vec4 i lives at texel (i % W, i / W), W = OPERAND_TEXTURE_WIDTH
            let w = crate::gpu::OPERAND_TEXTURE_WIDTH;
            if line.contains("-> f32") {
                format!(
                    "fn {function}(i: u32) -> f32 {{ let t = i / 4u; \
                     return textureLoad({texture}, vec2(t % {w}u, t / {w}u))[i % 4u]; }}"
                )
            } else {
                format!(
                    "fn {function}(i: u32) -> vec4<f32> {{ \
                     return textureLoad({texture}, vec2(i % {w}u, i / {w}u)); }}"
                )
            }
        })
}

/// `source` with every reader line named in `readers` swapped by [`texture_reader`], as a shader
/// called `name` (the texture variants of matmul, attention and LayerNorm; built once per process, so
/// the source is leaked).
pub(crate) fn with_texture_readers(
    name: &'static str,
    source: &str,
    readers: &[(&str, &str)],
) -> crate::gpu::Shader {
    let mut src = String::with_capacity(source.len());
    for line in source.lines() {
        match texture_reader(line, readers) {
            Some(reader) => src.push_str(&reader),
            None => src.push_str(line),
        }
        src.push('\n');
    }
    crate::gpu::Shader {
        name,
        source: Box::leak(src.into_boxed_str()),
    }
}

/// Elements from which the memory-bound CPU kernels (elementwise, reductions, copies, Adam,
/// LayerNorm) read their operands from textures: on lavapipe a storage-buffer load whose address
/// differs per lane is a loop over the lanes (~4 ns per float, measured on a 262,144-float map),
/// against ~1.5 ns through a texture, its copy included; each texture copy costs about a dispatch
/// (~35 µs), which the saving repays from about this size on.
pub const OPERAND_TEXTURE_MIN_ELEMENTS: usize = 1 << 14;

/// Whether a memory-bound kernel over `n` elements reads its operands from textures: on CPU adapters
/// from [`OPERAND_TEXTURE_MIN_ELEMENTS`] on, unless the variable `var` (`buffers|textures`) forces
/// either.
pub(crate) fn operand_textures_for(gpu: &crate::gpu::Gpu, n: usize, var: &str) -> bool {
    operand_textures_forced(var).unwrap_or(gpu.is_cpu() && n >= OPERAND_TEXTURE_MIN_ELEMENTS)
}

/// Launch `entry` with `operands` (tensor, operand-texture slot, binding) read from operand textures
/// ([`layout::to_operand_texture`]) by `textured()`, the texture variant of `plain`, when `textures`
/// holds, the adapter binds that many storage textures and every operand fits; otherwise `plain`
/// reads them from their buffers (which `buffers` binds either way). Commands run in order, so a slot
/// can be reused by the next launch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch_reading_textures(
    gpu: &crate::gpu::Gpu,
    plain: &'static crate::gpu::Shader,
    textured: impl FnOnce() -> &'static crate::gpu::Shader,
    entry: &'static str,
    constants: &[(&'static str, f64)],
    params: &[u8],
    buffers: &[(&wgpu::Buffer, crate::gpu::Access)],
    operands: &[(&crate::tensor::Tensor, u8, u32)],
    textures: bool,
    grid: [u32; 3],
) -> crate::error::Result<()> {
    let enough = gpu.limits().max_storage_textures_per_shader_stage as usize >= operands.len();
    if textures && enough && operands.iter().all(|(t, _, _)| t.numel().is_multiple_of(4)) {
        let mut views = Vec::with_capacity(operands.len());
        for (t, slot, _) in operands {
            match layout::to_operand_texture(t, *slot)? {
                Some(view) => views.push(view),
                None => break,
            }
        }
        if views.len() == operands.len() {
            let bound: Vec<(u32, &wgpu::TextureView, crate::gpu::TextureAccess)> = views
                .iter()
                .zip(operands)
                .map(|(v, (_, _, binding))| (*binding, v, crate::gpu::TextureAccess::ReadOnly))
                .collect();
            return gpu.dispatch_with_textures(
                textured(),
                entry,
                constants,
                params,
                buffers,
                &bound,
                grid,
            );
        }
    }
    gpu.dispatch(plain, entry, constants, params, buffers, grid)
}

/// Row-major strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Pack up to 8 values into the `array<vec4<u32>, 2>` layout the kernels read.
pub fn pack8(v: &[usize]) -> [u32; MAX_RANK] {
    let mut out = [0u32; MAX_RANK];
    for (o, x) in out.iter_mut().zip(v) {
        *o = *x as u32;
    }
    out
}

macro_rules! shader {
    ($name:literal) => {
        crate::gpu::Shader {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name, ".wgsl")),
        }
    };
}
pub(crate) use shader;

#[cfg(test)]
mod tests {
    use super::{CPU_LOOP_BUDGET, coalesce_dims, split_loop};

    #[test]
    fn split_loop_stays_within_the_budget_and_covers_the_loop() {
        for trips in [0, 1, 100, 16_383, 16_384, 16_385, 65_536, 300_000, 1 << 24] {
            for fixed in [0, 8, 100] {
                let s = split_loop(trips, fixed);
                assert!(
                    s.trips_per_piece + fixed <= CPU_LOOP_BUDGET,
                    "{trips} {fixed}: {s:?}"
                );
                assert!(
                    s.pieces * s.trips_per_piece >= trips,
                    "{trips} {fixed}: {s:?}"
                );
                // no more pieces than needed
                assert!(s.pieces == 1 || (s.pieces - 1) * (CPU_LOOP_BUDGET - fixed) < trips);
            }
        }
        assert_eq!(split_loop(300_000 / 4, 8).pieces, 5);
    }

    #[test]
    fn coalesce_merges_contiguous_and_broadcast_runs() {
        // same shape, both contiguous: one dimension
        let (d, s) = coalesce_dims(&[2, 3, 4], &[&[12, 4, 1], &[12, 4, 1]]);
        assert_eq!((d, s), (vec![24], vec![vec![1], vec![1]]));
        // [B,H,L,L] − [B,H,L,1]: rows merge, the broadcast column stays
        let (d, s) = coalesce_dims(&[2, 3, 5, 5], &[&[75, 25, 5, 1], &[15, 5, 1, 0]]);
        assert_eq!((d, s), (vec![30, 5], vec![vec![5, 1], vec![1, 0]]));
        // a transpose cannot merge; size-1 dimensions vanish
        let (d, s) = coalesce_dims(&[3, 1, 4], &[&[1, 7, 3], &[4, 4, 1]]);
        assert_eq!((d, s), (vec![3, 4], vec![vec![1, 3], vec![4, 1]]));
        // all ones: a single element
        let (d, s) = coalesce_dims(&[1, 1], &[&[1, 1]]);
        assert_eq!((d, s), (vec![1], vec![vec![0]]));
    }
}
