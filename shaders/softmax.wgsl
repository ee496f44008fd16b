// Softmax over the last axis of rows of length n:
//   y_j = exp(x_j − max x) / Σ_k exp(x_k − max x)
// Backward: dx_j = y_j · (dy_j − Σ_k dy_k y_k).
// Two kernels per direction, chosen by the launcher: `softmax_forward` / `softmax_backward` give a
// workgroup of 64 to each row (long rows, few rows); `softmax_forward_rows` / `softmax_backward_rows`
// give one invocation to each row and no barriers (many short rows, and CPU adapters, where a
// workgroup barrier is a costly switch between the invocations' coroutines).

struct Params {
    rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@group(0) @binding(1) var<storage, read> by: array<f32>;
@group(0) @binding(2) var<storage, read> bdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> bdx: array<f32>;

const WG: u32 = 64u;
var<workgroup> scratch: array<f32, 64>;

fn reduce_max(v: f32, lid: u32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            scratch[lid] = max(scratch[lid], scratch[lid + s]);
        }
        workgroupBarrier();
    }
    let r = scratch[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            scratch[lid] = scratch[lid] + scratch[lid + s];
        }
        workgroupBarrier();
    }
    let r = scratch[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    // rows beyond the end still take part in the barriers, reading nothing
    let valid = row < p.rows;
    let base = row * p.n;
    var m = -3.4e38;
    if (valid) {
        for (var j = lid; j < p.n; j = j + WG) {
            m = max(m, x[base + j]);
        }
    }
    m = reduce_max(m, lid);
    var s = 0.0;
    if (valid) {
        for (var j = lid; j < p.n; j = j + WG) {
            s = s + exp(x[base + j] - m);
        }
    }
    s = reduce_sum(s, lid);
    if (valid) {
        let inv = 1.0 / s;
        for (var j = lid; j < p.n; j = j + WG) {
            y[base + j] = exp(x[base + j] - m) * inv;
        }
    }
}

@compute @workgroup_size(64)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let valid = row < p.rows;
    let base = row * p.n;
    var d = 0.0;
    if (valid) {
        for (var j = lid; j < p.n; j = j + WG) {
            d = d + bdy[base + j] * by[base + j];
        }
    }
    d = reduce_sum(d, lid);
    if (valid) {
        for (var j = lid; j < p.n; j = j + WG) {
            bdx[base + j] = by[base + j] * (bdy[base + j] - d);
        }
    }
}

// ---- one invocation per row

@compute @workgroup_size(64)
fn softmax_forward_rows(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var m = -3.4e38;
    for (var j = 0u; j < p.n; j = j + 1u) {
        m = max(m, x[base + j]);
    }
    // y holds exp(x − m) until the sum is known, then is scaled in place
    var s = 0.0;
    for (var j = 0u; j < p.n; j = j + 1u) {
        let e = exp(x[base + j] - m);
        y[base + j] = e;
        s = s + e;
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < p.n; j = j + 1u) {
        y[base + j] = y[base + j] * inv;
    }
}

@compute @workgroup_size(64)
fn softmax_backward_rows(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var d = 0.0;
    for (var j = 0u; j < p.n; j = j + 1u) {
        d = d + bdy[base + j] * by[base + j];
    }
    for (var j = 0u; j < p.n; j = j + 1u) {
        bdx[base + j] = by[base + j] * (bdy[base + j] - d);
    }
}
