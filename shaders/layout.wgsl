// Strided copy, the one kernel behind permute/transpose, slice, concat, slice-backward (padding) and
// broadcast materialisation. For every index c of the iteration shape `dims`:
//   dst[dst_offset + Σ c_d · dst_strides_d] = src[src_offset + Σ c_d · src_strides_d]

struct Params {
    n: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    // strided_copy_runs4: each run is split into `pieces` pieces of `piece4` vec4s (the CPU loop budget)
    piece4: u32,
    pieces: u32,
    _pad0: u32,
    _pad1: u32,
    dims: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// (source, destination) offsets of linear index i over the first `rank` dimensions of `dims`
fn offsets(i: u32, rank: u32) -> vec2<u32> {
    var rem = i;
    var at = vec2(p.src_offset, p.dst_offset);
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let k = u32(d);
        let dim = p.dims[k / 4u][k % 4u];
        let c = rem % dim;
        rem = rem / dim;
        at = at + c * vec2(p.src_strides[k / 4u][k % 4u], p.dst_strides[k / 4u][k % 4u]);
    }
    return at;
}

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) {
        return;
    }
    let at = offsets(i, p.rank);
    dst[at.y] = src[at.x];
}

// ---- strided_copy_runs4 (CPU adapters): one invocation per piece of a run of the innermost dimension,
// when that dimension has unit stride on both sides and runs, offsets and outer strides are multiples
// of 4: the index is decoded once per piece and the piece moves as vec4s (on lavapipe every load is a
// loop over the lanes, so one vec4 load costs little more than one float). Runs longer than the CPU
// loop budget are split into `pieces` pieces of `piece4` vec4s (invocation r: run r / pieces, piece
// r % pieces). Pieces are also capped at 64 vec4s by the launcher, so that few long runs still fill
// several workgroups.

@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;
// The launcher's texture variant (CPU adapters, larger copies) swaps the reader line below for a load
// from this operand texture, which holds vec4 i at texel (i % 1024, i / 1024): a
// vector gather on lavapipe, where a storage-buffer load is a loop over the lanes.
@group(0) @binding(8) var src_tex: texture_storage_2d<rgba32float, read>;
fn src4_at(i: u32) -> vec4<f32> { return src4[i]; }

@compute @workgroup_size(64)
fn strided_copy_runs4(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let last = p.rank - 1u;
    let run = p.dims[last / 4u][last % 4u];
    let r = gid.y * nwg.x * 64u + gid.x;
    if (r >= (p.n / run) * p.pieces) {
        return;
    }
    // run r / pieces is that index of the outer dimensions (all but the innermost)
    let at = offsets(r / p.pieces, last);
    let begin = (r % p.pieces) * p.piece4;
    let end = min(begin + p.piece4, run / 4u);
    let s4 = at.x / 4u;
    let d4 = at.y / 4u;
    for (var j = begin; j < end; j = j + 1u) {
        dst4[d4 + j] = src4_at(s4 + j);
    }
}
