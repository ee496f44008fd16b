// Improved spectral normalisation (ViTGAN ISN) of a weight W: [rows = out, cols = in], row-major.
//
// One power iteration with the persistent u ∈ R^out:
//   v = Wᵀu / ‖Wᵀu‖          (transposed_matvec, then normalize)
//   u = W v / ‖W v‖           (matvec, then normalize, in place into u)
//   σ = uᵀ W v = ‖W v‖        (written by that last normalize)
// Normalised weight:   W̄ = σ0 · W / σ            (scale_by_sigma_ratio; σ0 = σ(W_init), a constant)
// Backward, u and v held constant (∂σ/∂W = u vᵀ), with G = dL/dW̄ and s = ⟨G, W⟩ = Σ_ij G_ij W_ij:
//   dW = σ0/σ · (G − s/σ · u vᵀ)    (row_dots, then sum_vector, then spectral_normalize_backward)
// The three products have `_lanes` forms, the default on CPU adapters (below), and for weights whose
// vectors fit workgroup memory the whole forward and the whole backward are one dispatch each
// (`normalize_weight_fused`, `normalize_weight_backward_fused`, at the end): the same sums in the same
// order as the `_lanes` kernels and the normalize / sum_vector reductions, so the results are the same
// bits, from 1 dispatch instead of 5 (forward) and 3 (backward).

struct Params {
    rows: u32,
    cols: u32,
    // length of the vector for normalize / sum_vector; element count for the elementwise kernels
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// transposed_matvec: tv_out[j] = Σ_i W[i, j] · tv_u[i]
@group(0) @binding(1) var<storage, read> tv_w: array<f32>;
@group(0) @binding(2) var<storage, read> tv_u: array<f32>;
@group(0) @binding(3) var<storage, read_write> tv_out: array<f32>;

// matvec: mv_out[i] = Σ_j W[i, j] · mv_v[j]
@group(0) @binding(1) var<storage, read> mv_w: array<f32>;
@group(0) @binding(2) var<storage, read> mv_v: array<f32>;
@group(0) @binding(3) var<storage, read_write> mv_out: array<f32>;

// normalize: nm_out = nm_x / ‖nm_x‖, nm_norm[0] = ‖nm_x‖
@group(0) @binding(1) var<storage, read> nm_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> nm_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> nm_norm: array<f32>;

// scale_by_sigma_ratio: sc_out = sc_w · σ0 / σ
@group(0) @binding(1) var<storage, read> sc_w: array<f32>;
@group(0) @binding(2) var<storage, read> sc_sigma_init: array<f32>;
@group(0) @binding(3) var<storage, read> sc_sigma: array<f32>;
@group(0) @binding(4) var<storage, read_write> sc_out: array<f32>;

// row_dots: rd_out[i] = Σ_j G[i, j] · W[i, j]
@group(0) @binding(1) var<storage, read> rd_g: array<f32>;
@group(0) @binding(2) var<storage, read> rd_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> rd_out: array<f32>;

// sum_vector: sv_out[0] = Σ_k sv_x[k]
@group(0) @binding(1) var<storage, read> sv_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sv_out: array<f32>;

// spectral_normalize_backward: the dW formula above
@group(0) @binding(1) var<storage, read> bw_g: array<f32>;
@group(0) @binding(2) var<storage, read> bw_u: array<f32>;
@group(0) @binding(3) var<storage, read> bw_v: array<f32>;
@group(0) @binding(4) var<storage, read> bw_sigma_init: array<f32>;
@group(0) @binding(5) var<storage, read> bw_sigma: array<f32>;
@group(0) @binding(6) var<storage, read> bw_dot: array<f32>;
@group(0) @binding(7) var<storage, read_write> bw_dw: array<f32>;

// Guards the division by ‖·‖ and σ for an all-zero W.
const TINY: f32 = 1e-30;

const WG: u32 = 64u;
var<workgroup> scratch: array<f32, 256>;

// Sum of `v` over the first `size` invocations (a power of two); every invocation must call it.
fn workgroup_sum(v: f32, lid: u32, size: u32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var s = size / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            scratch[lid] = scratch[lid] + scratch[lid + s];
        }
        workgroupBarrier();
    }
    let r = scratch[0];
    workgroupBarrier();
    return r;
}

// Workgroup = TV_COLS columns × TV_LANES row lanes, reduced over the lanes.
const TV_COLS: u32 = 64u;
const TV_LANES: u32 = 4u;

@compute @workgroup_size(64, 4)
fn transposed_matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid3: vec3<u32>) {
    let col = (wid.y * nwg.x + wid.x) * TV_COLS + lid3.x;
    let valid = col < p.cols;
    var s = 0.0;
    if (valid) {
        for (var i = lid3.y; i < p.rows; i = i + TV_LANES) {
            s = s + tv_w[i * p.cols + col] * tv_u[i];
        }
    }
    let slot = lid3.y * TV_COLS + lid3.x;
    scratch[slot] = s;
    workgroupBarrier();
    for (var h = TV_LANES / 2u; h > 0u; h = h / 2u) {
        if (lid3.y < h) {
            scratch[slot] = scratch[slot] + scratch[slot + h * TV_COLS];
        }
        workgroupBarrier();
    }
    if (valid && lid3.y == 0u) {
        tv_out[col] = scratch[slot];
    }
}

@compute @workgroup_size(64)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let valid = row < p.rows;
    var s = 0.0;
    if (valid) {
        for (var j = lid; j < p.cols; j = j + WG) {
            s = s + mv_w[row * p.cols + j] * mv_v[j];
        }
    }
    let total = workgroup_sum(s, lid, WG);
    if (valid && lid == 0u) {
        mv_out[row] = total;
    }
}

// The same three products with one invocation per output and no workgroup memory, the default on
// CPU adapters (`VITGAN_SPECTRAL_NORM_KERNEL=lanes|workgroup` forces either): on lavapipe a
// workgroup barrier is a switch between the invocations' coroutines, which the tree reductions
// above pay at every level. The launcher keeps each loop within the CPU loop budget.
@compute @workgroup_size(64)
fn transposed_matvec_lanes(@builtin(global_invocation_id) gid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = gid.y * nwg.x * WG + gid.x;
    if (col >= p.cols) {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < p.rows; i = i + 1u) {
        s = s + tv_w[i * p.cols + col] * tv_u[i];
    }
    tv_out[col] = s;
}

@compute @workgroup_size(64)
fn matvec_lanes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    if (row >= p.rows) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        s = s + mv_w[row * p.cols + j] * mv_v[j];
    }
    mv_out[row] = s;
}

@compute @workgroup_size(64)
fn row_dots_lanes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    if (row >= p.rows) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        s = s + rd_g[row * p.cols + j] * rd_w[row * p.cols + j];
    }
    rd_out[row] = s;
}

// One workgroup: nm_out = nm_x / ‖nm_x‖ (nm_out may not alias nm_x: the launcher binds distinct buffers).
@compute @workgroup_size(256)
fn normalize(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var k = lid; k < p.n; k = k + 256u) {
        s = s + nm_x[k] * nm_x[k];
    }
    let norm = sqrt(workgroup_sum(s, lid, 256u));
    let inv = 1.0 / max(norm, TINY);
    for (var k = lid; k < p.n; k = k + 256u) {
        nm_out[k] = nm_x[k] * inv;
    }
    if (lid == 0u) {
        nm_norm[0] = norm;
    }
}

@compute @workgroup_size(256)
fn scale_by_sigma_ratio(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let k = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (k < p.n) {
        sc_out[k] = sc_w[k] * (sc_sigma_init[0] / max(sc_sigma[0], TINY));
    }
}

@compute @workgroup_size(64)
fn row_dots(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let valid = row < p.rows;
    var s = 0.0;
    if (valid) {
        for (var j = lid; j < p.cols; j = j + WG) {
            s = s + rd_g[row * p.cols + j] * rd_w[row * p.cols + j];
        }
    }
    let total = workgroup_sum(s, lid, WG);
    if (valid && lid == 0u) {
        rd_out[row] = total;
    }
}

@compute @workgroup_size(256)
fn sum_vector(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var k = lid; k < p.n; k = k + 256u) {
        s = s + sv_x[k];
    }
    let total = workgroup_sum(s, lid, 256u);
    if (lid == 0u) {
        sv_out[0] = total;
    }
}

@compute @workgroup_size(256)
fn spectral_normalize_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let k = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (k < p.n) {
        let sigma = max(bw_sigma[0], TINY);
        let i = k / p.cols;
        let j = k % p.cols;
        bw_dw[k] = bw_sigma_init[0] / sigma * (bw_g[k] - bw_dot[0] / sigma * bw_u[i] * bw_v[j]);
    }
}

// ---- One dispatch per weight (one workgroup of FUSED_WG invocations; the launcher checks that both
// vectors fit FUSED_MAX_VEC and that every invocation's loops stay within the CPU loop budget).
// Each phase computes what the separate kernels above compute, in their order: the products as
// the `_lanes` kernels (one invocation per output, a serial loop), the norms as `normalize`. The
// two norm phases are written out twice: naga does not accept a workgroup-array pointer as a
// function argument, and the arrays are not interchangeable module variables.

const FUSED_WG: u32 = 256u;
const FUSED_MAX_VEC: u32 = 1024u;
var<workgroup> fused_u: array<f32, FUSED_MAX_VEC>;
var<workgroup> fused_v: array<f32, FUSED_MAX_VEC>;

// Whether normalize_weight_fused writes the new u back into fu_state (a training step's iteration)
// or leaves it (G's step and evaluation: σ estimated from the current u).
override ADVANCE: bool = true;

// normalize_weight_fused: fu_w̄ = σ0 · W / σ after one power iteration from fu_state
@group(0) @binding(1) var<storage, read> fu_w: array<f32>;
@group(0) @binding(2) var<storage, read> fu_sigma_init: array<f32>;
@group(0) @binding(3) var<storage, read_write> fu_state: array<f32>;
@group(0) @binding(4) var<storage, read_write> fu_u: array<f32>;
@group(0) @binding(5) var<storage, read_write> fu_v: array<f32>;
@group(0) @binding(6) var<storage, read_write> fu_sigma: array<f32>;
@group(0) @binding(7) var<storage, read_write> fu_out: array<f32>;

@compute @workgroup_size(256)
fn normalize_weight_fused(@builtin(local_invocation_index) lid: u32) {
    let rows = p.rows;
    let cols = p.cols;
    for (var i = lid; i < rows; i = i + FUSED_WG) {
        fused_u[i] = fu_state[i];
    }
    workgroupBarrier();
    // v_raw = Wᵀu (transposed_matvec_lanes), into fused_v
    for (var j = lid; j < cols; j = j + FUSED_WG) {
        var s = 0.0;
        for (var i = 0u; i < rows; i = i + 1u) {
            s = s + fu_w[i * cols + j] * fused_u[i];
        }
        fused_v[j] = s;
    }
    workgroupBarrier();
    // v = v_raw / ‖v_raw‖ (normalize)
    var sv = 0.0;
    for (var j = lid; j < cols; j = j + FUSED_WG) {
        sv = sv + fused_v[j] * fused_v[j];
    }
    let inv_v = 1.0 / max(sqrt(workgroup_sum(sv, lid, FUSED_WG)), TINY);
    for (var j = lid; j < cols; j = j + FUSED_WG) {
        let x = fused_v[j] * inv_v;
        fused_v[j] = x;
        fu_v[j] = x;
    }
    workgroupBarrier();
    // u_raw = W v (matvec_lanes), into fused_u (every read of the old u is behind the barrier above)
    for (var i = lid; i < rows; i = i + FUSED_WG) {
        var s = 0.0;
        for (var j = 0u; j < cols; j = j + 1u) {
            s = s + fu_w[i * cols + j] * fused_v[j];
        }
        fused_u[i] = s;
    }
    workgroupBarrier();
    // u = u_raw / ‖u_raw‖, σ = ‖u_raw‖ (normalize)
    var su = 0.0;
    for (var i = lid; i < rows; i = i + FUSED_WG) {
        su = su + fused_u[i] * fused_u[i];
    }
    let sigma = sqrt(workgroup_sum(su, lid, FUSED_WG));
    let inv_u = 1.0 / max(sigma, TINY);
    for (var i = lid; i < rows; i = i + FUSED_WG) {
        let x = fused_u[i] * inv_u;
        fu_u[i] = x;
        if (ADVANCE) {
            fu_state[i] = x;
        }
    }
    if (lid == 0u) {
        fu_sigma[0] = sigma;
    }
    // W̄ = σ0 · W / σ (scale_by_sigma_ratio)
    let ratio = fu_sigma_init[0] / max(sigma, TINY);
    for (var k = lid; k < p.n; k = k + FUSED_WG) {
        fu_out[k] = fu_w[k] * ratio;
    }
}

// normalize_weight_backward_fused: the dW formula at the top (row_dots_lanes, sum_vector,
// spectral_normalize_backward in one workgroup); bw_dot is not bound, s stays in the workgroup.
@group(0) @binding(1) var<storage, read> fb_g: array<f32>;
@group(0) @binding(2) var<storage, read> fb_w: array<f32>;
@group(0) @binding(3) var<storage, read> fb_u: array<f32>;
@group(0) @binding(4) var<storage, read> fb_v: array<f32>;
@group(0) @binding(5) var<storage, read> fb_sigma_init: array<f32>;
@group(0) @binding(6) var<storage, read> fb_sigma: array<f32>;
@group(0) @binding(7) var<storage, read_write> fb_dw: array<f32>;

@compute @workgroup_size(256)
fn normalize_weight_backward_fused(@builtin(local_invocation_index) lid: u32) {
    let rows = p.rows;
    let cols = p.cols;
    for (var i = lid; i < rows; i = i + FUSED_WG) {
        var s = 0.0;
        for (var j = 0u; j < cols; j = j + 1u) {
            s = s + fb_g[i * cols + j] * fb_w[i * cols + j];
        }
        fused_u[i] = s;
    }
    workgroupBarrier();
    var sd = 0.0;
    for (var i = lid; i < rows; i = i + FUSED_WG) {
        sd = sd + fused_u[i];
    }
    let dot = workgroup_sum(sd, lid, FUSED_WG);
    let sigma = max(fb_sigma[0], TINY);
    for (var k = lid; k < p.n; k = k + FUSED_WG) {
        let i = k / cols;
        let j = k % cols;
        fb_dw[k] = fb_sigma_init[0] / sigma * (fb_g[k] - dot / sigma * fb_u[i] * fb_v[j]);
    }
}
