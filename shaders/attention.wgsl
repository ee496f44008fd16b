// Fused multi-head attention, forward and backward, flash-attention style: the L×L score matrix is
// never written to memory. q, k, v, out are [heads, L, HEAD_DIM] row-major (heads = batch · heads).
//
// Scores (c = 1/√HEAD_DIM), chosen by the KIND override:
//   KIND 0, dot product:  s_ij = c · q_i·k_j
//   KIND 1, L2 distance:  s_ij = −c · ‖q_i − k_j‖² = α q_i·k_j + b_j + r_i,
//                         α = 2c, key bias b_j = −c‖k_j‖², row shift r_i = −c‖q_i‖²
//   (dot product is the same form with α = c, b_j = r_i = 0; r_i does not change the softmax, so the
//   running maximum is taken over α q_i·k_j + b_j and r_i is added to the saved logsumexp only).
// Forward:  P_ij = softmax_j(s_ij) = exp(s_ij − lse_i),  out_i = Σ_j P_ij v_j,  lse_i = log Σ_j exp(s_ij).
// Backward (D_i = dout_i·out_i, dP_ij = dout_i·v_j, dS_ij = P_ij (dP_ij − D_i)):
//   dv_j = Σ_i P_ij dout_i
//   dq_i = α Σ_j dS_ij k_j           (for L2 the −q_i Σ_j dS_ij term vanishes: Σ_j dS_ij = D_i − D_i = 0)
//   dk_j = α (Σ_i dS_ij q_i − [L2] k_j Σ_i dS_ij)
//
// Each invocation owns one row (a query in attention_forward / attention_backward_dq, a key in
// attention_backward_dkdv) held in registers as vec4s; the other side streams through workgroup
// memory in blocks of BLOCK rows, with an online softmax (running max and sum) in the forward.

struct Params {
    heads: u32,       // batch · heads
    seq_len: u32,     // L
    row_blocks: u32,  // ⌈L / ROWS⌉: workgroups per head
    scale: f32,       // c = 1/√HEAD_DIM
}

// 0 = dot product, 1 = L2 distance.
override KIND: u32 = 0u;
// Head width, 1..=128.
override HEAD_DIM: u32 = 64u;
// Rows owned per workgroup (= invocations per workgroup).
override ROWS: u32 = 64u;
// Rows staged per block in workgroup memory; BLOCK · ⌈HEAD_DIM/4⌉ ≤ TILE_VEC4 and BLOCK ≤ MAX_BLOCK.
override BLOCK: u32 = 16u;
// vec4s per row.
override D4: u32 = (HEAD_DIM + 3u) / 4u;

const MAX_D4: u32 = 32u;      // HEAD_DIM ≤ 128
const MAX_BLOCK: u32 = 64u;
const TILE_VEC4: u32 = 512u;  // 8 KiB per staged tile
const MASKED: f32 = -1.0e30;  // score of a key beyond the end of the sequence

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q_in: array<f32>;
@group(0) @binding(2) var<storage, read> k_in: array<f32>;
@group(0) @binding(3) var<storage, read> v_in: array<f32>;

// attention_forward
@group(0) @binding(4) var<storage, read_write> out_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse_w: array<f32>;

// attention_backward_dq and attention_backward_dkdv
@group(0) @binding(4) var<storage, read> dout_in: array<f32>;
@group(0) @binding(5) var<storage, read> lse_in: array<f32>;
// attention_backward_dq
@group(0) @binding(6) var<storage, read> out_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta_w: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq_w: array<f32>;
// attention_backward_dkdv
@group(0) @binding(6) var<storage, read> delta_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk_w: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv_w: array<f32>;

var<workgroup> tile_a: array<vec4<f32>, TILE_VEC4>;
var<workgroup> tile_b: array<vec4<f32>, TILE_VEC4>;
var<workgroup> tile_bias: array<f32, MAX_BLOCK>;
var<workgroup> tile_delta: array<f32, MAX_BLOCK>;

fn is_l2() -> bool {
    return KIND == 1u;
}

// α: factor of q·k in the score.
fn dot_factor() -> f32 {
    return select(p.scale, 2.0 * p.scale, is_l2());
}

// Which components of vec4 number `c` of a row lie inside the head.
fn inside(c: u32) -> vec4<bool> {
    let d = 4u * c;
    return vec4<bool>(d < HEAD_DIM, d + 1u < HEAD_DIM, d + 2u < HEAD_DIM, d + 3u < HEAD_DIM);
}

// Storage buffers cannot be passed to functions, so there is one vec4 loader per input; components
// beyond the head are zero. `at` is the offset of the row's first element.
fn load_q(at: u32, c: u32) -> vec4<f32> {
    let i = at + 4u * c;
    let v = vec4<f32>(q_in[i], q_in[i + 1u], q_in[i + 2u], q_in[i + 3u]);
    return select(vec4<f32>(0.0), v, inside(c));
}
fn load_k(at: u32, c: u32) -> vec4<f32> {
    let i = at + 4u * c;
    let v = vec4<f32>(k_in[i], k_in[i + 1u], k_in[i + 2u], k_in[i + 3u]);
    return select(vec4<f32>(0.0), v, inside(c));
}
fn load_v(at: u32, c: u32) -> vec4<f32> {
    let i = at + 4u * c;
    let v = vec4<f32>(v_in[i], v_in[i + 1u], v_in[i + 2u], v_in[i + 3u]);
    return select(vec4<f32>(0.0), v, inside(c));
}
fn load_dout(at: u32, c: u32) -> vec4<f32> {
    let i = at + 4u * c;
    let v = vec4<f32>(dout_in[i], dout_in[i + 1u], dout_in[i + 2u], dout_in[i + 3u]);
    return select(vec4<f32>(0.0), v, inside(c));
}
fn load_out(at: u32, c: u32) -> vec4<f32> {
    let i = at + 4u * c;
    let v = vec4<f32>(out_in[i], out_in[i + 1u], out_in[i + 2u], out_in[i + 3u]);
    return select(vec4<f32>(0.0), v, inside(c));
}

// −c‖x‖² for L2 (the key bias b_j or the row shift r_i), 0 for the dot product.
fn l2_bias(sq_norm: f32) -> f32 {
    return select(0.0, -p.scale * sq_norm, is_l2());
}

// The workgroup's head and first owned row; `group` ≥ heads · row_blocks for padding workgroups.
struct Place {
    head: u32,
    first_row: u32,
    valid_group: bool,
}

fn place(wid: vec3<u32>, nwg: vec3<u32>) -> Place {
    let group = wid.y * nwg.x + wid.x;
    let head = group / p.row_blocks;
    return Place(head, (group % p.row_blocks) * ROWS, head < p.heads);
}

// Stage keys and values [start, start + BLOCK) of `head` into tile_a / tile_b, and their score bias
// (b_j, or MASKED beyond the sequence) into tile_bias. Rows beyond the sequence are zero.
fn stage_keys(head_base: u32, start: u32, lid: u32, in_range: bool) {
    for (var e = lid; e < BLOCK * D4; e = e + ROWS) {
        let j = e / D4;
        let c = e % D4;
        let key = start + j;
        var kv = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
        if (in_range && key < p.seq_len) {
            let at = head_base + key * HEAD_DIM;
            kv = load_k(at, c);
            vv = load_v(at, c);
        }
        tile_a[e] = kv;
        tile_b[e] = vv;
    }
    for (var j = lid; j < BLOCK; j = j + ROWS) {
        let key = start + j;
        var bias = MASKED;
        if (in_range && key < p.seq_len) {
            var nn = 0.0;
            if (is_l2()) {
                let at = head_base + key * HEAD_DIM;
                for (var c = 0u; c < D4; c = c + 1u) {
                    let kc = load_k(at, c);
                    nn = nn + dot(kc, kc);
                }
            }
            bias = l2_bias(nn);
        }
        tile_bias[j] = bias;
    }
}

// out_i = Σ_j softmax_j(s_ij) v_j and lse_i, one query row per invocation.
@compute @workgroup_size(ROWS)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let pl = place(wid, nwg);
    let row = pl.first_row + lid;
    let valid = pl.valid_group && row < p.seq_len;
    let head_base = pl.head * p.seq_len * HEAD_DIM;
    let row_at = head_base + row * HEAD_DIM;
    let alpha = dot_factor();

    // q scaled by α, so that a score is one dot product plus the key bias
    var q: array<vec4<f32>, MAX_D4>;
    var o: array<vec4<f32>, MAX_D4>;
    var q_sq = 0.0;
    for (var c = 0u; c < D4; c = c + 1u) {
        var qc = vec4<f32>(0.0);
        if (valid) {
            qc = load_q(row_at, c);
        }
        q_sq = q_sq + dot(qc, qc);
        q[c] = alpha * qc;
        o[c] = vec4<f32>(0.0);
    }
    var run_max = MASKED;
    var run_sum = 0.0;
    var s: array<f32, MAX_BLOCK>;

    for (var start = 0u; start < p.seq_len; start = start + BLOCK) {
        workgroupBarrier();
        stage_keys(head_base, start, lid, pl.valid_group);
        workgroupBarrier();
        var block_max = MASKED;
        for (var j = 0u; j < BLOCK; j = j + 1u) {
            var acc = 0.0;
            for (var c = 0u; c < D4; c = c + 1u) {
                acc = acc + dot(q[c], tile_a[j * D4 + c]);
            }
            let sj = acc + tile_bias[j];
            s[j] = sj;
            block_max = max(block_max, sj);
        }
        let new_max = max(run_max, block_max);
        let rescale = exp(run_max - new_max);
        run_sum = run_sum * rescale;
        for (var c = 0u; c < D4; c = c + 1u) {
            o[c] = o[c] * rescale;
        }
        for (var j = 0u; j < BLOCK; j = j + 1u) {
            let pj = exp(s[j] - new_max);
            run_sum = run_sum + pj;
            for (var c = 0u; c < D4; c = c + 1u) {
                o[c] = o[c] + pj * tile_b[j * D4 + c];
            }
        }
        run_max = new_max;
    }

    if (valid) {
        let inv = 1.0 / run_sum;
        for (var c = 0u; c < D4; c = c + 1u) {
            let oc = o[c] * inv;
            let i = row_at + 4u * c;
            out_w[i] = oc.x;
            if (4u * c + 1u < HEAD_DIM) {
                out_w[i + 1u] = oc.y;
            }
            if (4u * c + 2u < HEAD_DIM) {
                out_w[i + 2u] = oc.z;
            }
            if (4u * c + 3u < HEAD_DIM) {
                out_w[i + 3u] = oc.w;
            }
        }
        lse_w[pl.head * p.seq_len + row] = run_max + log(run_sum) + l2_bias(q_sq);
    }
}

// dq_i, and D_i = dout_i·out_i (saved for attention_backward_dkdv); one query row per invocation,
// keys and values streamed through workgroup memory.
@compute @workgroup_size(ROWS)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let pl = place(wid, nwg);
    let row = pl.first_row + lid;
    let valid = pl.valid_group && row < p.seq_len;
    let head_base = pl.head * p.seq_len * HEAD_DIM;
    let row_at = head_base + row * HEAD_DIM;
    let alpha = dot_factor();

    var q: array<vec4<f32>, MAX_D4>;   // α q_i
    var g: array<vec4<f32>, MAX_D4>;   // dout_i
    var dq: array<vec4<f32>, MAX_D4>;  // Σ_j dS_ij k_j
    var q_sq = 0.0;
    var delta = 0.0;
    var row_shift = 0.0;  // r_i − lse_i
    for (var c = 0u; c < D4; c = c + 1u) {
        var qc = vec4<f32>(0.0);
        var gc = vec4<f32>(0.0);
        if (valid) {
            qc = load_q(row_at, c);
            gc = load_dout(row_at, c);
            delta = delta + dot(gc, load_out(row_at, c));
        }
        q_sq = q_sq + dot(qc, qc);
        q[c] = alpha * qc;
        g[c] = gc;
        dq[c] = vec4<f32>(0.0);
    }
    if (valid) {
        row_shift = l2_bias(q_sq) - lse_in[pl.head * p.seq_len + row];
        delta_w[pl.head * p.seq_len + row] = delta;
    }
    for (var start = 0u; start < p.seq_len; start = start + BLOCK) {
        workgroupBarrier();
        stage_keys(head_base, start, lid, pl.valid_group);
        workgroupBarrier();
        for (var j = 0u; j < BLOCK; j = j + 1u) {
            // k_j is read from workgroup memory once and kept for the dq update
            var kj: array<vec4<f32>, MAX_D4>;
            var qk = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < D4; c = c + 1u) {
                let kc = tile_a[j * D4 + c];
                kj[c] = kc;
                qk = qk + dot(q[c], kc);
                dp = dp + dot(g[c], tile_b[j * D4 + c]);
            }
            let pij = exp(qk + tile_bias[j] + row_shift);
            let ds = pij * (dp - delta);
            for (var c = 0u; c < D4; c = c + 1u) {
                dq[c] = dq[c] + ds * kj[c];
            }
        }
    }

    if (valid) {
        for (var c = 0u; c < D4; c = c + 1u) {
            let r = alpha * dq[c];
            let i = row_at + 4u * c;
            dq_w[i] = r.x;
            if (4u * c + 1u < HEAD_DIM) {
                dq_w[i + 1u] = r.y;
            }
            if (4u * c + 2u < HEAD_DIM) {
                dq_w[i + 2u] = r.z;
            }
            if (4u * c + 3u < HEAD_DIM) {
                dq_w[i + 3u] = r.w;
            }
        }
    }
}

// Stage queries and output gradients [start, start + BLOCK) into tile_a / tile_b, with r_i − lse_i
// (MASKED beyond the sequence) in tile_bias and D_i in tile_delta.
fn stage_queries(head_base: u32, start: u32, lid: u32, in_range: bool) {
    for (var e = lid; e < BLOCK * D4; e = e + ROWS) {
        let i = e / D4;
        let c = e % D4;
        let query = start + i;
        var qv = vec4<f32>(0.0);
        var gv = vec4<f32>(0.0);
        if (in_range && query < p.seq_len) {
            let at = head_base + query * HEAD_DIM;
            qv = load_q(at, c);
            gv = load_dout(at, c);
        }
        tile_a[e] = qv;
        tile_b[e] = gv;
    }
    let stat_base = head_base / HEAD_DIM;
    for (var i = lid; i < BLOCK; i = i + ROWS) {
        let query = start + i;
        var shift = MASKED;
        var delta = 0.0;
        if (in_range && query < p.seq_len) {
            var nn = 0.0;
            if (is_l2()) {
                let at = head_base + query * HEAD_DIM;
                for (var c = 0u; c < D4; c = c + 1u) {
                    let qc = load_q(at, c);
                    nn = nn + dot(qc, qc);
                }
            }
            shift = l2_bias(nn) - lse_in[stat_base + query];
            delta = delta_in[stat_base + query];
        }
        tile_bias[i] = shift;
        tile_delta[i] = delta;
    }
}

// dk_j and dv_j, one key row per invocation, queries and output gradients streamed through
// workgroup memory. Needs D from attention_backward_dq.
@compute @workgroup_size(ROWS)
fn attention_backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let pl = place(wid, nwg);
    let key = pl.first_row + lid;
    let valid = pl.valid_group && key < p.seq_len;
    let head_base = pl.head * p.seq_len * HEAD_DIM;
    let key_at = head_base + key * HEAD_DIM;
    let alpha = dot_factor();

    var k: array<vec4<f32>, MAX_D4>;   // α k_j
    var v: array<vec4<f32>, MAX_D4>;   // v_j
    var dk: array<vec4<f32>, MAX_D4>;  // Σ_i dS_ij q_i
    var dv: array<vec4<f32>, MAX_D4>;  // Σ_i P_ij dout_i
    var k_sq = 0.0;
    for (var c = 0u; c < D4; c = c + 1u) {
        var kc = vec4<f32>(0.0);
        var vc = vec4<f32>(0.0);
        if (valid) {
            kc = load_k(key_at, c);
            vc = load_v(key_at, c);
        }
        k_sq = k_sq + dot(kc, kc);
        k[c] = alpha * kc;
        v[c] = vc;
        dk[c] = vec4<f32>(0.0);
        dv[c] = vec4<f32>(0.0);
    }
    let key_bias = l2_bias(k_sq);
    var ds_sum = 0.0;

    for (var start = 0u; start < p.seq_len; start = start + BLOCK) {
        workgroupBarrier();
        stage_queries(head_base, start, lid, pl.valid_group);
        workgroupBarrier();
        for (var i = 0u; i < BLOCK; i = i + 1u) {
            // q_i and dout_i are read from workgroup memory once and kept for the dk, dv updates
            var qi: array<vec4<f32>, MAX_D4>;
            var gi: array<vec4<f32>, MAX_D4>;
            var qk = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < D4; c = c + 1u) {
                let qc = tile_a[i * D4 + c];
                let gc = tile_b[i * D4 + c];
                qi[c] = qc;
                gi[c] = gc;
                qk = qk + dot(k[c], qc);
                dp = dp + dot(v[c], gc);
            }
            let pij = exp(qk + key_bias + tile_bias[i]);
            let ds = pij * (dp - tile_delta[i]);
            ds_sum = ds_sum + ds;
            for (var c = 0u; c < D4; c = c + 1u) {
                dv[c] = dv[c] + pij * gi[c];
                dk[c] = dk[c] + ds * qi[c];
            }
        }
    }

    if (valid) {
        let k_term = select(0.0, ds_sum, is_l2());
        for (var c = 0u; c < D4; c = c + 1u) {
            let rk = alpha * dk[c] - k_term * k[c];
            let rv = dv[c];
            let i = key_at + 4u * c;
            dk_w[i] = rk.x;
            dv_w[i] = rv.x;
            if (4u * c + 1u < HEAD_DIM) {
                dk_w[i + 1u] = rk.y;
                dv_w[i + 1u] = rv.y;
            }
            if (4u * c + 2u < HEAD_DIM) {
                dk_w[i + 2u] = rk.z;
                dv_w[i + 2u] = rv.z;
            }
            if (4u * c + 3u < HEAD_DIM) {
                dk_w[i + 3u] = rk.w;
                dv_w[i + 3u] = rv.w;
            }
        }
    }
}
