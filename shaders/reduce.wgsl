// Sum over one axis. The input is viewed as [outer, n, inner]; the output is [outer, inner]:
//   out[o, i] = scale · Σ_k x[o, k, i]
// Two kernels, chosen by the launcher: `sum_axis` gives a workgroup to each output element (each
// invocation sums a strided subset, then a tree reduction in workgroup memory combines the 64 partial
// sums) for long axes and few outputs; `sum_axis_lanes` gives one invocation to each output element
// and no barriers (many outputs over a short axis, and CPU adapters, where barriers are costly).
// Axes longer than the CPU loop budget allows are summed in `pieces` pieces of `piece_len` rows:
// the output is then the partial sums [outer, pieces, inner], which the launcher sums again.
// `sum_axis_lanes` reads x through the one-line reader `x_at`; the launcher's texture variant (CPU
// adapters, larger inputs) loads it from the operand texture `x_tex` instead (a vector gather on
// lavapipe, where a storage-buffer load is a loop over the lanes).

struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    scale: f32,
    piece_len: u32,
    pieces: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var x_tex: texture_storage_2d<rgba32float, read>;

// Operand textures hold vec4 i at texel (i % 1024, i / 1024); the generated readers compute it.

fn x_at(i: u32) -> f32 { return x[i]; }

const WG: u32 = 64u;

// Output o = (outer, piece, i) sums x[outer, k, i] for k in [begin, end): (base index, begin, end).
fn rows_of(o: u32) -> vec3<u32> {
    let i = o % p.inner;
    let piece = (o / p.inner) % p.pieces;
    let outer = o / (p.inner * p.pieces);
    let begin = piece * p.piece_len;
    return vec3(outer * p.n * p.inner + i, begin, min(begin + p.piece_len, p.n));
}
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn sum_axis(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    let total = p.outer * p.pieces * p.inner;
    // every invocation reaches the barriers below; out-of-range groups just sum nothing
    var acc = 0.0;
    if (o < total) {
        let r = rows_of(o);
        for (var k = r.y + lid; k < r.z; k = k + WG) {
            acc = acc + x[r.x + k * p.inner];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && o < total) {
        out[o] = partial[0] * p.scale;
    }
}

@compute @workgroup_size(64)
fn sum_axis_lanes(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.y * nwg.x * WG + gid.x;
    if (o >= p.outer * p.pieces * p.inner) {
        return;
    }
    let r = rows_of(o);
    var acc = 0.0;
    for (var k = r.y; k < r.z; k = k + 1u) {
        acc = acc + x_at(r.x + k * p.inner);
    }
    out[o] = acc * p.scale;
}
