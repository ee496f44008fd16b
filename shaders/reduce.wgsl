// Sum over one axis. The input is viewed as [outer, n, inner]; the output is [outer, inner]:
//   out[o, i] = scale · Σ_k x[o, k, i]
// Two kernels, chosen by the launcher: `sum_axis` gives a workgroup to each output element (each
// invocation sums a strided subset, then a tree reduction in workgroup memory combines the 64 partial
// sums) for long axes and few outputs; `sum_axis_lanes` gives one invocation to each output element
// and no barriers (many outputs over a short axis, and CPU adapters, where barriers are costly).

struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn sum_axis(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    let total = p.outer * p.inner;
    // every invocation reaches the barriers below; out-of-range groups just sum nothing
    var acc = 0.0;
    if (o < total) {
        let outer = o / p.inner;
        let i = o % p.inner;
        let base = outer * p.n * p.inner + i;
        for (var k = lid; k < p.n; k = k + WG) {
            acc = acc + x[base + k * p.inner];
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
    if (o >= p.outer * p.inner) {
        return;
    }
    let outer = o / p.inner;
    let i = o % p.inner;
    let base = outer * p.n * p.inner + i;
    var acc = 0.0;
    for (var k = 0u; k < p.n; k = k + 1u) {
        acc = acc + x[base + k * p.inner];
    }
    out[o] = acc * p.scale;
}
