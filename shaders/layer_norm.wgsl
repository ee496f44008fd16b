// LayerNorm over the last axis (rows of length d) with a per-group affine, forward and backward.
// Rows are grouped: row r belongs to group g = r / rows_per_group, and uses γ[g, :], β[g, :].
//   LayerNorm (LN):            one group, γ, β: [d]            (rows_per_group = rows)
//   self-modulated LN (SLN):   one group per sample, γ, β: [B, d] (rows_per_group = T)
//
// Forward (biased variance; one reduction of the shifted sums Σ(x − k), Σ(x − k)² with k = x_r0):
//   μ_r = (1/d) Σ_j x_rj        σ²_r = (1/d) Σ_j (x_rj − μ_r)²        rstd_r = 1/√(σ²_r + eps)
//   y_rj = γ_gj · (x_rj − μ_r) · rstd_r + β_gj
// Backward, with x̂ = (x − μ)·rstd and ĝ = dy ⊙ γ:
//   dx_rj = rstd_r · (ĝ_rj − mean_j ĝ_r − x̂_rj · mean_j (ĝ_r ⊙ x̂_r))
//   dγ_gj = Σ_{r ∈ g} dy_rj · x̂_rj        dβ_gj = Σ_{r ∈ g} dy_rj
// The dγ, dβ sums are split into chunks of at most CHUNK_ROWS rows per workgroup (no atomics); with
// more than one chunk per group the launcher sums the [groups, chunks, d] partials afterwards.
// Forward and input gradient come in two launch shapes with the same arithmetic: a workgroup of 64 per
// row with tree reductions (GPUs, and widths not divisible by 4), or `_rows4`: one invocation per row
// reading vec4s, no barriers (CPU adapters, where a workgroup barrier switches between the
// invocations' coroutines).

struct Params {
    rows: u32,
    d: u32,
    rows_per_group: u32,
    eps: f32,
    // parameter-gradient kernel only
    chunks: u32,
    col_tiles: u32,
    groups: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// layer_norm_forward
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> fgamma: array<f32>;
@group(0) @binding(3) var<storage, read> fbeta: array<f32>;
@group(0) @binding(4) var<storage, read_write> fy: array<f32>;
@group(0) @binding(5) var<storage, read_write> fmean: array<f32>;
@group(0) @binding(6) var<storage, read_write> frstd: array<f32>;

// layer_norm_backward_input
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bgamma: array<f32>;
@group(0) @binding(3) var<storage, read> bmean: array<f32>;
@group(0) @binding(4) var<storage, read> brstd: array<f32>;
@group(0) @binding(5) var<storage, read> bdy: array<f32>;
@group(0) @binding(6) var<storage, read_write> bdx: array<f32>;

// layer_norm_backward_affine
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read> amean: array<f32>;
@group(0) @binding(3) var<storage, read> arstd: array<f32>;
@group(0) @binding(4) var<storage, read> ady: array<f32>;
@group(0) @binding(5) var<storage, read_write> adgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> adbeta: array<f32>;

const WG: u32 = 64u;
var<workgroup> scratch: array<vec2<f32>, 64>;

// Sum of `v` over the workgroup (every invocation must call it).
fn workgroup_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
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
fn layer_norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    // rows past the end still reach every barrier, reading nothing
    let valid = row < p.rows;
    let base = row * p.d;
    let inv_d = 1.0 / f32(p.d);
    // one pass: Σ(x − k) and Σ(x − k)² with the shift k = x_r0 (a value of the row, so the subtraction
    // below does not cancel catastrophically when |μ| ≫ σ); one reduction, x read once here
    var sums = vec2<f32>(0.0, 0.0);
    var shift = 0.0;
    if (valid) {
        shift = fx[base];
        for (var j = lid; j < p.d; j = j + WG) {
            let c = fx[base + j] - shift;
            sums = sums + vec2<f32>(c, c * c);
        }
    }
    let moments = workgroup_sum2(sums, lid) * inv_d;
    let mean = shift + moments.x;
    let rstd = inverseSqrt(max(moments.y - moments.x * moments.x, 0.0) + p.eps);
    if (valid) {
        let abase = (row / p.rows_per_group) * p.d;
        for (var j = lid; j < p.d; j = j + WG) {
            fy[base + j] = fgamma[abase + j] * (fx[base + j] - mean) * rstd + fbeta[abase + j];
        }
        if (lid == 0u) {
            fmean[row] = mean;
            frstd[row] = rstd;
        }
    }
}

@compute @workgroup_size(64)
fn layer_norm_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let valid = row < p.rows;
    let base = row * p.d;
    var mean = 0.0;
    var rstd = 0.0;
    var abase = 0u;
    var sums = vec2<f32>(0.0, 0.0);
    if (valid) {
        mean = bmean[row];
        rstd = brstd[row];
        abase = (row / p.rows_per_group) * p.d;
        for (var j = lid; j < p.d; j = j + WG) {
            let g = bdy[base + j] * bgamma[abase + j];
            let xhat = (bx[base + j] - mean) * rstd;
            sums = sums + vec2<f32>(g, g * xhat);
        }
    }
    let means = workgroup_sum2(sums, lid) / f32(p.d);
    if (valid) {
        for (var j = lid; j < p.d; j = j + WG) {
            let g = bdy[base + j] * bgamma[abase + j];
            let xhat = (bx[base + j] - mean) * rstd;
            bdx[base + j] = rstd * (g - means.x - xhat * means.y);
        }
    }
}

// Workgroup = COLS columns × LANES row lanes; it sums rows [chunk·CHUNK_ROWS, +CHUNK_ROWS) of one group.
const COLS: u32 = 32u;
const LANES: u32 = 8u;
const CHUNK_ROWS: u32 = 256u;
var<workgroup> partial_gamma: array<f32, 256>;
var<workgroup> partial_beta: array<f32, 256>;

@compute @workgroup_size(32, 8)
fn layer_norm_backward_affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_id) lid3: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let valid_tile = tile < p.col_tiles * p.groups * p.chunks;
    let col = (tile % p.col_tiles) * COLS + lid3.x;
    let group_chunk = tile / p.col_tiles; // = group · chunks + chunk
    let group = group_chunk / p.chunks;
    let chunk = group_chunk % p.chunks;
    let valid = valid_tile && col < p.d;
    let first = group * p.rows_per_group + chunk * CHUNK_ROWS;
    let end = group * p.rows_per_group + min((chunk + 1u) * CHUNK_ROWS, p.rows_per_group);
    var sg = 0.0;
    var sb = 0.0;
    if (valid) {
        for (var r = first + lid3.y; r < end; r = r + LANES) {
            let dy = ady[r * p.d + col];
            sg = sg + dy * (ax[r * p.d + col] - amean[r]) * arstd[r];
            sb = sb + dy;
        }
    }
    let slot = lid3.y * COLS + lid3.x;
    partial_gamma[slot] = sg;
    partial_beta[slot] = sb;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s / 2u) {
        if (lid3.y < s) {
            partial_gamma[slot] = partial_gamma[slot] + partial_gamma[slot + s * COLS];
            partial_beta[slot] = partial_beta[slot] + partial_beta[slot + s * COLS];
        }
        workgroupBarrier();
    }
    if (valid && lid3.y == 0u) {
        let out = group_chunk * p.d + col;
        adgamma[out] = partial_gamma[slot];
        adbeta[out] = partial_beta[slot];
    }
}

// ---- one invocation per row, rows read as vec4s (CPU adapters, d a multiple of 4): on lavapipe a
// vec4 load costs about what one float does

@group(0) @binding(1) var<storage, read> fx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> fgamma4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> fbeta4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> fy4: array<vec4<f32>>;

// γ and β copied into rgba32float storage textures (layout::to_operand_texture: vec4 i at texel
// (i % 1024, i / 1024)). On CPU adapters the launcher uses a copy of this source with
// the `*_at` reader lines below (γ, β, x, dy) swapped for texel loads: the lanes of a subgroup work on
// different rows, and on lavapipe a storage-buffer load with per-lane addresses is a scalar loop over
// the lanes while a texel load is one vector gather (γ and β were ~35 % of the forward's time).
@group(0) @binding(8) var gamma_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var beta_tex: texture_storage_2d<rgba32float, read>;

fn fgamma4_at(i: u32) -> vec4<f32> { return fgamma4[i]; }
fn fbeta4_at(i: u32) -> vec4<f32> { return fbeta4[i]; }
fn bgamma4_at(i: u32) -> vec4<f32> { return bgamma4[i]; }
// x and dy (the row and column kernels) from x_tex, dy_tex in the texture variant
@group(0) @binding(10) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var dy_tex: texture_storage_2d<rgba32float, read>;
fn fx4_at(i: u32) -> vec4<f32> { return fx4[i]; }
fn bx4_at(i: u32) -> vec4<f32> { return bx4[i]; }
fn bdy4_at(i: u32) -> vec4<f32> { return bdy4[i]; }
fn ax4_at(i: u32) -> vec4<f32> { return ax4[i]; }
fn ady4_at(i: u32) -> vec4<f32> { return ady4[i]; }

@compute @workgroup_size(64)
fn layer_norm_forward_rows4(@builtin(global_invocation_id) gid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    if (row >= p.rows) {
        return;
    }
    let d4 = p.d / 4u;
    let base = row * d4;
    let shift = fx4_at(base).x;
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var j = 0u; j < d4; j = j + 1u) {
        let c = fx4_at(base + j) - shift;
        s1 = s1 + c;
        s2 = s2 + c * c;
    }
    let m1 = (s1.x + s1.y + s1.z + s1.w) / f32(p.d);
    let m2 = (s2.x + s2.y + s2.z + s2.w) / f32(p.d);
    let mean = shift + m1;
    let rstd = inverseSqrt(max(m2 - m1 * m1, 0.0) + p.eps);
    let abase = (row / p.rows_per_group) * d4;
    for (var j = 0u; j < d4; j = j + 1u) {
        fy4[base + j] = fgamma4_at(abase + j) * (fx4_at(base + j) - mean) * rstd + fbeta4_at(abase + j);
    }
    fmean[row] = mean;
    frstd[row] = rstd;
}

@group(0) @binding(1) var<storage, read> bx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bgamma4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bdy4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> bdx4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn layer_norm_backward_input_rows4(@builtin(global_invocation_id) gid: vec3<u32>,
                                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * WG + gid.x;
    if (row >= p.rows) {
        return;
    }
    let d4 = p.d / 4u;
    let base = row * d4;
    let mean = bmean[row];
    let rstd = brstd[row];
    let abase = (row / p.rows_per_group) * d4;
    var sg = vec4<f32>(0.0);
    var sgx = vec4<f32>(0.0);
    for (var j = 0u; j < d4; j = j + 1u) {
        let g = bdy4_at(base + j) * bgamma4_at(abase + j);
        let xhat = (bx4_at(base + j) - mean) * rstd;
        sg = sg + g;
        sgx = sgx + g * xhat;
    }
    let mean_g = (sg.x + sg.y + sg.z + sg.w) / f32(p.d);
    let mean_gx = (sgx.x + sgx.y + sgx.z + sgx.w) / f32(p.d);
    for (var j = 0u; j < d4; j = j + 1u) {
        let g = bdy4_at(base + j) * bgamma4_at(abase + j);
        let xhat = (bx4_at(base + j) - mean) * rstd;
        bdx4[base + j] = rstd * (g - mean_g - xhat * mean_gx);
    }
}

// dγ, dβ partial sums on CPU adapters (d a multiple of 4): one invocation per (group, chunk, vec4 of
// columns) walks the chunk's rows alone, no workgroup memory or barriers; the same [groups, chunks, d]
// partials as layer_norm_backward_affine. Per row it loads dy and x as vec4s: a quarter of the
// per-lane loads of one column per invocation.
@group(0) @binding(1) var<storage, read> ax4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ady4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> adgamma4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> adbeta4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn layer_norm_backward_affine_cols4(@builtin(global_invocation_id) gid: vec3<u32>,
                                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.y * nwg.x * WG + gid.x;
    let d4 = p.d / 4u;
    let c4 = id % d4;
    let group_chunk = id / d4; // = group · chunks + chunk
    if (group_chunk >= p.groups * p.chunks) {
        return;
    }
    let group = group_chunk / p.chunks;
    let chunk = group_chunk % p.chunks;
    let first = group * p.rows_per_group + chunk * CHUNK_ROWS;
    let end = group * p.rows_per_group + min((chunk + 1u) * CHUNK_ROWS, p.rows_per_group);
    var sg = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    for (var r = first; r < end; r = r + 1u) {
        let dy = ady4_at(r * d4 + c4);
        sg = sg + dy * (ax4_at(r * d4 + c4) - amean[r]) * arstd[r];
        sb = sb + dy;
    }
    adgamma4[group_chunk * d4 + c4] = sg;
    adbeta4[group_chunk * d4 + c4] = sb;
}
