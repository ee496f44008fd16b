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
// Three kernels, each in three versions that compute the same thing (the launcher picks one):
//   attention_forward          out and lse, online softmax (running max and sum) over key blocks
//   attention_backward_dq      dq, and D (saved for the next kernel)
//   attention_backward_dkdv    dk and dv (needs D)
// Tiled (any HEAD_DIM; GPUs, and CPU adapters otherwise): each invocation owns one row (a query, or a
// key in dkdv) held in registers as vec4s; the other side streams through workgroup memory in blocks
// of BLOCK rows. `_subgroup` (CPU adapters with subgroups, HEAD_DIM = 64) and `_lanes` (the same,
// HEAD_DIM = 16): see the sections at the end, which the launcher drops from the source on adapters
// without subgroups.

struct Params {
    heads: u32,       // batch · heads
    seq_len: u32,     // L
    row_blocks: u32,  // ⌈L / ROWS⌉: workgroups per head
    scale: f32,       // c = 1/√HEAD_DIM
    // Where the `_lanes` kernels find rows (the other kernels read [heads, L, HEAD_DIM] only): head
    // `item · heads_per_item + h`, row `l` of q, k, v (and dq, dk, dv) starts at vec4
    // `item · in_item + l · in_row + h · in_head + {q,k,v}_off`, of out and dout at
    // `item · out_item + l · out_row + h · out_head`. [heads, L, 16]: heads_per_item 1,
    // in_item = out_item = 4L, in_row = out_row = 4, in_head = out_head = 0, offsets 0. Packed
    // (`attention_packed_*` in the launcher): q, k, v are parts of one [B, L, parts, H, 16]
    // projection and out is [B, L, H, 16], so no copies split or merge the heads.
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
    // 1: the dk/dv kernel adds dk to what its dk buffer holds (tied L2 packed: dq was written there,
    // and q's gradient is dq + dk)
    accumulate_dk: u32,
    _pad: u32,
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

// BEGIN SUBGROUP KERNELS
// ---------------------------------------------------------------------------------------------------
// CPU adapters with subgroups of ≥ 8 lanes and HEAD_DIM = 64 (the model's head width): the same three
// kernels as straight-line register code in the style of matmul_subgroup. On lavapipe every load from
// storage or workgroup memory is a scalar loop over the lanes, so the kernels above spend most of their
// time loading; here values that every lane needs are loaded by one lane and passed on with
// subgroupBroadcast (a register shuffle), and each loaded vec4 feeds 16 multiply-adds.
//
// A workgroup is one subgroup of 8 lanes that owns SG_ROWS = 16 rows (queries; keys in the dk/dv
// kernel) and walks the other side in steps of SG_STEP = 32 rows. Products are 4 × 4 blocks:
//   score phase  lane l owns the 4 other-side rows 4l..4l+4 of the step; for d-quads 2q, 2q+1 the
//                owned rows' values come from lane q (which holds those two quads of all 16 rows);
//   accumulation lane l owns output dims 8l..8l+8 (quads 2l, 2l+1) of the 16 rows; the probabilities
//                (or dS) of the step's rows 4q..4q+4 come from lane q.
// Rows past L are clamped to the last row when loading; their scores are masked, their outputs dropped.

const SG_ROWS: u32 = 16u;
const SG_STEP: u32 = 32u;
const SG_D4: u32 = 16u;  // vec4s per row: HEAD_DIM = 64

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;
// attention_forward_subgroup
@group(0) @binding(4) var<storage, read_write> out4_w: array<vec4<f32>>;
// attention_backward_dq_subgroup and attention_backward_dkdv_subgroup
@group(0) @binding(4) var<storage, read> dout4: array<vec4<f32>>;
// attention_backward_dq_subgroup
@group(0) @binding(6) var<storage, read> out4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dq4_w: array<vec4<f32>>;
// attention_backward_dkdv_subgroup
@group(0) @binding(7) var<storage, read_write> dk4_w: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dv4_w: array<vec4<f32>>;

// 16 rows × 4 columns as 4 blocks of 4 rows (m[i] holds rows 4i..4i+4, one column per mat column)
struct Rows16 {
    m: array<mat4x4<f32>, 4>,
}

// 16 rows × this lane's 8 output dims: a[i] / b[i] hold rows 4i..4i+4 at d-quads 2l / 2l + 1
// (column t of a block is dim t of the quad, as a vec4 over the 4 rows)
struct Out16 {
    a: array<mat4x4<f32>, 4>,
    b: array<mat4x4<f32>, 4>,
}

// one value per row of the 16
struct Stat16 {
    v: array<vec4<f32>, 4>,
}

// `m` of subgroup lane `q` (q is the same on all lanes)
fn sg_lane_mat(m: mat4x4<f32>, q: u32) -> mat4x4<f32> {
    return mat4x4(subgroupShuffle(m[0], q), subgroupShuffle(m[1], q), subgroupShuffle(m[2], q),
                  subgroupShuffle(m[3], q));
}

// vec4 index of d-quad c of `row` (clamped to the sequence) in a head starting at vec4 `hb`
fn sg_at(hb: u32, row: u32, c: u32) -> u32 {
    return hb + min(row, p.seq_len - 1u) * SG_D4 + c;
}

// The same inputs copied into rgba32float storage textures (layout::to_operand_texture: vec4 i at
// texel (i % 1024, i / 1024)). The launcher's texture variant swaps the five `*_at`
// lines below for texel loads, which on lavapipe cost about a quarter of a storage-buffer load.
@group(0) @binding(10) var q_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var k_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(12) var v_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(13) var dout_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(14) var out_tex: texture_storage_2d<rgba32float, read>;

fn q4_at(i: u32) -> vec4<f32> { return q4[i]; }
fn k4_at(i: u32) -> vec4<f32> { return k4[i]; }
fn v4_at(i: u32) -> vec4<f32> { return v4[i]; }
fn dout4_at(i: u32) -> vec4<f32> { return dout4[i]; }
fn out4_at(i: u32) -> vec4<f32> { return out4[i]; }

// d-quad c of rows r0..r0+4, one row per column
fn q_cols(hb: u32, r0: u32, c: u32) -> mat4x4<f32> {
    return mat4x4(q4_at(sg_at(hb, r0, c)), q4_at(sg_at(hb, r0 + 1u, c)),
                  q4_at(sg_at(hb, r0 + 2u, c)), q4_at(sg_at(hb, r0 + 3u, c)));
}
fn k_cols(hb: u32, r0: u32, c: u32) -> mat4x4<f32> {
    return mat4x4(k4_at(sg_at(hb, r0, c)), k4_at(sg_at(hb, r0 + 1u, c)),
                  k4_at(sg_at(hb, r0 + 2u, c)), k4_at(sg_at(hb, r0 + 3u, c)));
}
fn v_cols(hb: u32, r0: u32, c: u32) -> mat4x4<f32> {
    return mat4x4(v4_at(sg_at(hb, r0, c)), v4_at(sg_at(hb, r0 + 1u, c)),
                  v4_at(sg_at(hb, r0 + 2u, c)), v4_at(sg_at(hb, r0 + 3u, c)));
}
fn dout_cols(hb: u32, r0: u32, c: u32) -> mat4x4<f32> {
    return mat4x4(dout4_at(sg_at(hb, r0, c)), dout4_at(sg_at(hb, r0 + 1u, c)),
                  dout4_at(sg_at(hb, r0 + 2u, c)), dout4_at(sg_at(hb, r0 + 3u, c)));
}
fn out_cols(hb: u32, r0: u32, c: u32) -> mat4x4<f32> {
    return mat4x4(out4_at(sg_at(hb, r0, c)), out4_at(sg_at(hb, r0 + 1u, c)),
                  out4_at(sg_at(hb, r0 + 2u, c)), out4_at(sg_at(hb, r0 + 3u, c)));
}

// per column: a[j]·b[j]
fn cols_dot(a: mat4x4<f32>, b: mat4x4<f32>) -> vec4<f32> {
    return vec4(dot(a[0], b[0]), dot(a[1], b[1]), dot(a[2], b[2]), dot(a[3], b[3]));
}

// every column times the per-row factors `r`
fn scale_rows(m: mat4x4<f32>, r: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(m[0] * r, m[1] * r, m[2] * r, m[3] * r);
}

// −c‖x‖² per component for L2, 0 for the dot product
fn l2_bias4(sq_norm: vec4<f32>) -> vec4<f32> {
    return select(vec4(0.0), -p.scale * sq_norm, is_l2());
}

// score bias of the 4 columns starting at `first` (rows of the other side): MASKED past the sequence
fn column_bias(first: u32, sq_norm: vec4<f32>) -> vec4<f32> {
    let inside = vec4(first) + vec4(0u, 1u, 2u, 3u) < vec4(p.seq_len);
    return select(vec4(MASKED), l2_bias4(sq_norm), inside);
}

// a per-row statistic ([heads, L] at `stat_base`) of rows r0..r0+4, clamped to the sequence
fn lse_rows(stat_base: u32, r0: u32) -> vec4<f32> {
    let last = p.seq_len - 1u;
    return vec4(lse_in[stat_base + min(r0, last)], lse_in[stat_base + min(r0 + 1u, last)],
                lse_in[stat_base + min(r0 + 2u, last)], lse_in[stat_base + min(r0 + 3u, last)]);
}
fn delta_rows(stat_base: u32, r0: u32) -> vec4<f32> {
    let last = p.seq_len - 1u;
    return vec4(delta_in[stat_base + min(r0, last)], delta_in[stat_base + min(r0 + 1u, last)],
                delta_in[stat_base + min(r0 + 2u, last)], delta_in[stat_base + min(r0 + 3u, last)]);
}

// The workgroup's head, its first owned row, and whether it is a real workgroup (not grid padding).
fn sg_place(wid: vec3<u32>, nwg: vec3<u32>) -> Place {
    let group = wid.y * nwg.x + wid.x;
    let head = group / p.row_blocks;
    return Place(min(head, p.heads - 1u), (group % p.row_blocks) * SG_ROWS, head < p.heads);
}

// --- forward ---------------------------------------------------------------------------------------

// s += (α q of the 16 rows at d-quads 2q, 2q+1, from lane q) · (this lane's 4 keys at those quads)ᵀ;
// nk accumulates the keys' squared norms
fn fwd_score_step(s: ptr<function, Rows16>, nk: ptr<function, vec4<f32>>, qa: Rows16, qb: Rows16,
                  q: u32, hb: u32, key0: u32) {
    let ka = k_cols(hb, key0, 2u * q);
    let kb = k_cols(hb, key0, 2u * q + 1u);
    *nk = *nk + cols_dot(ka, ka) + cols_dot(kb, kb);
    (*s).m[0] = (*s).m[0] + sg_lane_mat(qa.m[0], q) * ka + sg_lane_mat(qb.m[0], q) * kb;
    (*s).m[1] = (*s).m[1] + sg_lane_mat(qa.m[1], q) * ka + sg_lane_mat(qb.m[1], q) * kb;
    (*s).m[2] = (*s).m[2] + sg_lane_mat(qa.m[2], q) * ka + sg_lane_mat(qb.m[2], q) * kb;
    (*s).m[3] = (*s).m[3] + sg_lane_mat(qa.m[3], q) * ka + sg_lane_mat(qb.m[3], q) * kb;
}

// o += (probabilities of the step's keys 4q..4q+4, from lane q) · (those keys' values at this lane's dims)
fn fwd_value_step(o: ptr<function, Out16>, pr: Rows16, q: u32, hb: u32, step0: u32, lane: u32) {
    let key0 = step0 + 4u * q;
    let va = transpose(v_cols(hb, key0, 2u * lane));
    let vb = transpose(v_cols(hb, key0, 2u * lane + 1u));
    let p0 = sg_lane_mat(pr.m[0], q);
    (*o).a[0] = (*o).a[0] + p0 * va;
    (*o).b[0] = (*o).b[0] + p0 * vb;
    let p1 = sg_lane_mat(pr.m[1], q);
    (*o).a[1] = (*o).a[1] + p1 * va;
    (*o).b[1] = (*o).b[1] + p1 * vb;
    let p2 = sg_lane_mat(pr.m[2], q);
    (*o).a[2] = (*o).a[2] + p2 * va;
    (*o).b[2] = (*o).b[2] + p2 * vb;
    let p3 = sg_lane_mat(pr.m[3], q);
    (*o).a[3] = (*o).a[3] + p3 * va;
    (*o).b[3] = (*o).b[3] + p3 * vb;
}

// Online softmax over one step for 4 rows: scores sm (column j = key j of this lane) plus bias[j],
// with the running max and sum over the whole subgroup's 32 keys.
struct SoftmaxStep {
    probs: mat4x4<f32>,    // exp(score − new max)
    run_max: vec4<f32>,
    run_sum: vec4<f32>,
    rescale: vec4<f32>,    // exp(old max − new max): what was accumulated before is scaled by it
}

fn online_softmax(sm: mat4x4<f32>, bias: vec4<f32>, run_max: vec4<f32>, run_sum: vec4<f32>) -> SoftmaxStep {
    let s0 = sm[0] + bias.x;
    let s1 = sm[1] + bias.y;
    let s2 = sm[2] + bias.z;
    let s3 = sm[3] + bias.w;
    let new_max = max(run_max, subgroupMax(max(max(s0, s1), max(s2, s3))));
    let pr = mat4x4(exp(s0 - new_max), exp(s1 - new_max), exp(s2 - new_max), exp(s3 - new_max));
    let rescale = exp(run_max - new_max);
    let sum = run_sum * rescale + subgroupAdd(pr[0] + pr[1] + pr[2] + pr[3]);
    return SoftmaxStep(pr, new_max, sum, rescale);
}

// rows r0..r0+4 of a block (column t = dim t of the quad) times per-row factors, to d-quad `c`
fn store_out_rows(hb: u32, r0: u32, c: u32, m: mat4x4<f32>, f: vec4<f32>, ok: bool) {
    let t = transpose(m);
    if (ok && r0 < p.seq_len) {
        out4_w[hb + r0 * SG_D4 + c] = t[0] * f.x;
    }
    if (ok && r0 + 1u < p.seq_len) {
        out4_w[hb + (r0 + 1u) * SG_D4 + c] = t[1] * f.y;
    }
    if (ok && r0 + 2u < p.seq_len) {
        out4_w[hb + (r0 + 2u) * SG_D4 + c] = t[2] * f.z;
    }
    if (ok && r0 + 3u < p.seq_len) {
        out4_w[hb + (r0 + 3u) * SG_D4 + c] = t[3] * f.w;
    }
}

fn store_lse_rows(stat_base: u32, r0: u32, v: vec4<f32>, ok: bool) {
    if (ok && r0 < p.seq_len) {
        lse_w[stat_base + r0] = v.x;
    }
    if (ok && r0 + 1u < p.seq_len) {
        lse_w[stat_base + r0 + 1u] = v.y;
    }
    if (ok && r0 + 2u < p.seq_len) {
        lse_w[stat_base + r0 + 2u] = v.z;
    }
    if (ok && r0 + 3u < p.seq_len) {
        lse_w[stat_base + r0 + 3u] = v.w;
    }
}

// α q of rows r0..r0+4 at d-quad c as a block with one dim per column; adds the rows' ‖q‖² part to nn
fn own_q(hb: u32, r0: u32, c: u32, alpha: f32, nn: ptr<function, vec4<f32>>) -> mat4x4<f32> {
    let rows = q_cols(hb, r0, c);
    *nn = *nn + cols_dot(rows, rows);
    return alpha * transpose(rows);
}

@compute @workgroup_size(8)
fn attention_forward_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(subgroup_invocation_id) lane: u32) {
    let pl = sg_place(wid, nwg);
    let r0 = pl.first_row;
    let hb = pl.head * p.seq_len * SG_D4;
    let stat_base = pl.head * p.seq_len;
    let alpha = dot_factor();

    // this lane's d-quads 2l, 2l+1 of the 16 rows (α q), and the rows' squared norms
    var qa: Rows16;
    var qb: Rows16;
    var q_sq: Stat16;
    var nn = vec4(0.0);
    qa.m[0] = own_q(hb, r0, 2u * lane, alpha, &nn);
    qb.m[0] = own_q(hb, r0, 2u * lane + 1u, alpha, &nn);
    q_sq.v[0] = subgroupAdd(nn);
    nn = vec4(0.0);
    qa.m[1] = own_q(hb, r0 + 4u, 2u * lane, alpha, &nn);
    qb.m[1] = own_q(hb, r0 + 4u, 2u * lane + 1u, alpha, &nn);
    q_sq.v[1] = subgroupAdd(nn);
    nn = vec4(0.0);
    qa.m[2] = own_q(hb, r0 + 8u, 2u * lane, alpha, &nn);
    qb.m[2] = own_q(hb, r0 + 8u, 2u * lane + 1u, alpha, &nn);
    q_sq.v[2] = subgroupAdd(nn);
    nn = vec4(0.0);
    qa.m[3] = own_q(hb, r0 + 12u, 2u * lane, alpha, &nn);
    qb.m[3] = own_q(hb, r0 + 12u, 2u * lane + 1u, alpha, &nn);
    q_sq.v[3] = subgroupAdd(nn);

    var o: Out16;
    var run_max: Stat16;
    var run_sum: Stat16;
    run_max.v[0] = vec4(MASKED);
    run_max.v[1] = vec4(MASKED);
    run_max.v[2] = vec4(MASKED);
    run_max.v[3] = vec4(MASKED);
    for (var step0 = 0u; step0 < p.seq_len; step0 = step0 + SG_STEP) {
        let key0 = step0 + 4u * lane;
        var s: Rows16;
        var nk = vec4(0.0);
        for (var q = 0u; q < 8u; q = q + 1u) {
            fwd_score_step(&s, &nk, qa, qb, q, hb, key0);
        }
        let bias = column_bias(key0, nk);
        var pr: Rows16;
        let sm0 = online_softmax(s.m[0], bias, run_max.v[0], run_sum.v[0]);
        pr.m[0] = sm0.probs;
        run_max.v[0] = sm0.run_max;
        run_sum.v[0] = sm0.run_sum;
        o.a[0] = scale_rows(o.a[0], sm0.rescale);
        o.b[0] = scale_rows(o.b[0], sm0.rescale);
        let sm1 = online_softmax(s.m[1], bias, run_max.v[1], run_sum.v[1]);
        pr.m[1] = sm1.probs;
        run_max.v[1] = sm1.run_max;
        run_sum.v[1] = sm1.run_sum;
        o.a[1] = scale_rows(o.a[1], sm1.rescale);
        o.b[1] = scale_rows(o.b[1], sm1.rescale);
        let sm2 = online_softmax(s.m[2], bias, run_max.v[2], run_sum.v[2]);
        pr.m[2] = sm2.probs;
        run_max.v[2] = sm2.run_max;
        run_sum.v[2] = sm2.run_sum;
        o.a[2] = scale_rows(o.a[2], sm2.rescale);
        o.b[2] = scale_rows(o.b[2], sm2.rescale);
        let sm3 = online_softmax(s.m[3], bias, run_max.v[3], run_sum.v[3]);
        pr.m[3] = sm3.probs;
        run_max.v[3] = sm3.run_max;
        run_sum.v[3] = sm3.run_sum;
        o.a[3] = scale_rows(o.a[3], sm3.rescale);
        o.b[3] = scale_rows(o.b[3], sm3.rescale);
        for (var q = 0u; q < 8u; q = q + 1u) {
            fwd_value_step(&o, pr, q, hb, step0, lane);
        }
    }

    let ok = pl.valid_group;
    store_out_rows(hb, r0 + 0u, 2u * lane, o.a[0], 1.0 / run_sum.v[0], ok);
    store_out_rows(hb, r0 + 0u, 2u * lane + 1u, o.b[0], 1.0 / run_sum.v[0], ok);
    store_lse_rows(stat_base, r0 + 0u, run_max.v[0] + log(run_sum.v[0]) + l2_bias4(q_sq.v[0]),
                   ok && lane == 0u);
    store_out_rows(hb, r0 + 4u, 2u * lane, o.a[1], 1.0 / run_sum.v[1], ok);
    store_out_rows(hb, r0 + 4u, 2u * lane + 1u, o.b[1], 1.0 / run_sum.v[1], ok);
    store_lse_rows(stat_base, r0 + 4u, run_max.v[1] + log(run_sum.v[1]) + l2_bias4(q_sq.v[1]),
                   ok && lane == 0u);
    store_out_rows(hb, r0 + 8u, 2u * lane, o.a[2], 1.0 / run_sum.v[2], ok);
    store_out_rows(hb, r0 + 8u, 2u * lane + 1u, o.b[2], 1.0 / run_sum.v[2], ok);
    store_lse_rows(stat_base, r0 + 8u, run_max.v[2] + log(run_sum.v[2]) + l2_bias4(q_sq.v[2]),
                   ok && lane == 0u);
    store_out_rows(hb, r0 + 12u, 2u * lane, o.a[3], 1.0 / run_sum.v[3], ok);
    store_out_rows(hb, r0 + 12u, 2u * lane + 1u, o.b[3], 1.0 / run_sum.v[3], ok);
    store_lse_rows(stat_base, r0 + 12u, run_max.v[3] + log(run_sum.v[3]) + l2_bias4(q_sq.v[3]),
                   ok && lane == 0u);
}

// --- backward: dq (16 query rows per workgroup, keys in steps of 32) ------------------------------

// s += α q · kᵀ and dp += dout · vᵀ for d-quads 2q, 2q+1 (the rows' q and dout from lane q, this
// lane's 4 keys and values loaded); nk accumulates the keys' squared norms
fn dq_score_step(s: ptr<function, Rows16>, dp: ptr<function, Rows16>, nk: ptr<function, vec4<f32>>,
                 qa: Rows16, qb: Rows16, ga: Rows16, gb: Rows16, q: u32, hb: u32, key0: u32) {
    let ka = k_cols(hb, key0, 2u * q);
    let kb = k_cols(hb, key0, 2u * q + 1u);
    let va = v_cols(hb, key0, 2u * q);
    let vb = v_cols(hb, key0, 2u * q + 1u);
    *nk = *nk + cols_dot(ka, ka) + cols_dot(kb, kb);
    (*s).m[0] = (*s).m[0] + sg_lane_mat(qa.m[0], q) * ka + sg_lane_mat(qb.m[0], q) * kb;
    (*dp).m[0] = (*dp).m[0] + sg_lane_mat(ga.m[0], q) * va + sg_lane_mat(gb.m[0], q) * vb;
    (*s).m[1] = (*s).m[1] + sg_lane_mat(qa.m[1], q) * ka + sg_lane_mat(qb.m[1], q) * kb;
    (*dp).m[1] = (*dp).m[1] + sg_lane_mat(ga.m[1], q) * va + sg_lane_mat(gb.m[1], q) * vb;
    (*s).m[2] = (*s).m[2] + sg_lane_mat(qa.m[2], q) * ka + sg_lane_mat(qb.m[2], q) * kb;
    (*dp).m[2] = (*dp).m[2] + sg_lane_mat(ga.m[2], q) * va + sg_lane_mat(gb.m[2], q) * vb;
    (*s).m[3] = (*s).m[3] + sg_lane_mat(qa.m[3], q) * ka + sg_lane_mat(qb.m[3], q) * kb;
    (*dp).m[3] = (*dp).m[3] + sg_lane_mat(ga.m[3], q) * va + sg_lane_mat(gb.m[3], q) * vb;
}

// dq += (dS of the step's keys 4q..4q+4, from lane q) · (those keys at this lane's dims)
fn dq_accumulate_step(dq: ptr<function, Out16>, ds: Rows16, q: u32, hb: u32, step0: u32, lane: u32) {
    let key0 = step0 + 4u * q;
    let ka = transpose(k_cols(hb, key0, 2u * lane));
    let kb = transpose(k_cols(hb, key0, 2u * lane + 1u));
    let d0 = sg_lane_mat(ds.m[0], q);
    (*dq).a[0] = (*dq).a[0] + d0 * ka;
    (*dq).b[0] = (*dq).b[0] + d0 * kb;
    let d1 = sg_lane_mat(ds.m[1], q);
    (*dq).a[1] = (*dq).a[1] + d1 * ka;
    (*dq).b[1] = (*dq).b[1] + d1 * kb;
    let d2 = sg_lane_mat(ds.m[2], q);
    (*dq).a[2] = (*dq).a[2] + d2 * ka;
    (*dq).b[2] = (*dq).b[2] + d2 * kb;
    let d3 = sg_lane_mat(ds.m[3], q);
    (*dq).a[3] = (*dq).a[3] + d3 * ka;
    (*dq).b[3] = (*dq).b[3] + d3 * kb;
}

// dS = P ∘ (dP − D) for 4 rows × 4 columns, P = exp(s + column bias + row shift)
fn score_grad(s: mat4x4<f32>, dp: mat4x4<f32>, col_bias: vec4<f32>, row_shift: vec4<f32>,
              row_delta: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(exp(s[0] + col_bias.x + row_shift) * (dp[0] - row_delta),
                  exp(s[1] + col_bias.y + row_shift) * (dp[1] - row_delta),
                  exp(s[2] + col_bias.z + row_shift) * (dp[2] - row_delta),
                  exp(s[3] + col_bias.w + row_shift) * (dp[3] - row_delta));
}

fn store_dq_rows(hb: u32, r0: u32, c: u32, m: mat4x4<f32>, ok: bool) {
    let t = transpose(m);
    if (ok && r0 < p.seq_len) {
        dq4_w[hb + r0 * SG_D4 + c] = t[0];
    }
    if (ok && r0 + 1u < p.seq_len) {
        dq4_w[hb + (r0 + 1u) * SG_D4 + c] = t[1];
    }
    if (ok && r0 + 2u < p.seq_len) {
        dq4_w[hb + (r0 + 2u) * SG_D4 + c] = t[2];
    }
    if (ok && r0 + 3u < p.seq_len) {
        dq4_w[hb + (r0 + 3u) * SG_D4 + c] = t[3];
    }
}

fn store_delta_rows(stat_base: u32, r0: u32, v: vec4<f32>, ok: bool) {
    if (ok && r0 < p.seq_len) {
        delta_w[stat_base + r0] = v.x;
    }
    if (ok && r0 + 1u < p.seq_len) {
        delta_w[stat_base + r0 + 1u] = v.y;
    }
    if (ok && r0 + 2u < p.seq_len) {
        delta_w[stat_base + r0 + 2u] = v.z;
    }
    if (ok && r0 + 3u < p.seq_len) {
        delta_w[stat_base + r0 + 3u] = v.w;
    }
}

// dout of rows r0..r0+4 at d-quad c as a block with one dim per column; adds dout·out to dd
fn own_dout(hb: u32, r0: u32, c: u32, dd: ptr<function, vec4<f32>>) -> mat4x4<f32> {
    let rows = dout_cols(hb, r0, c);
    *dd = *dd + cols_dot(rows, out_cols(hb, r0, c));
    return transpose(rows);
}

@compute @workgroup_size(8)
fn attention_backward_dq_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                                  @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(subgroup_invocation_id) lane: u32) {
    let pl = sg_place(wid, nwg);
    let r0 = pl.first_row;
    let hb = pl.head * p.seq_len * SG_D4;
    let stat_base = pl.head * p.seq_len;
    let alpha = dot_factor();
    let ok = pl.valid_group;

    // this lane's d-quads of the 16 rows (α q and dout); per row r_i − lse_i and D_i = dout_i·out_i
    var qa: Rows16;
    var qb: Rows16;
    var ga: Rows16;
    var gb: Rows16;
    var row_shift: Stat16;
    var delta: Stat16;
    var nn0 = vec4(0.0);
    var dd0 = vec4(0.0);
    qa.m[0] = own_q(hb, r0 + 0u, 2u * lane, alpha, &nn0);
    qb.m[0] = own_q(hb, r0 + 0u, 2u * lane + 1u, alpha, &nn0);
    ga.m[0] = own_dout(hb, r0 + 0u, 2u * lane, &dd0);
    gb.m[0] = own_dout(hb, r0 + 0u, 2u * lane + 1u, &dd0);
    row_shift.v[0] = l2_bias4(subgroupAdd(nn0)) - lse_rows(stat_base, r0 + 0u);
    delta.v[0] = subgroupAdd(dd0);
    store_delta_rows(stat_base, r0 + 0u, delta.v[0], ok && lane == 0u);
    var nn1 = vec4(0.0);
    var dd1 = vec4(0.0);
    qa.m[1] = own_q(hb, r0 + 4u, 2u * lane, alpha, &nn1);
    qb.m[1] = own_q(hb, r0 + 4u, 2u * lane + 1u, alpha, &nn1);
    ga.m[1] = own_dout(hb, r0 + 4u, 2u * lane, &dd1);
    gb.m[1] = own_dout(hb, r0 + 4u, 2u * lane + 1u, &dd1);
    row_shift.v[1] = l2_bias4(subgroupAdd(nn1)) - lse_rows(stat_base, r0 + 4u);
    delta.v[1] = subgroupAdd(dd1);
    store_delta_rows(stat_base, r0 + 4u, delta.v[1], ok && lane == 0u);
    var nn2 = vec4(0.0);
    var dd2 = vec4(0.0);
    qa.m[2] = own_q(hb, r0 + 8u, 2u * lane, alpha, &nn2);
    qb.m[2] = own_q(hb, r0 + 8u, 2u * lane + 1u, alpha, &nn2);
    ga.m[2] = own_dout(hb, r0 + 8u, 2u * lane, &dd2);
    gb.m[2] = own_dout(hb, r0 + 8u, 2u * lane + 1u, &dd2);
    row_shift.v[2] = l2_bias4(subgroupAdd(nn2)) - lse_rows(stat_base, r0 + 8u);
    delta.v[2] = subgroupAdd(dd2);
    store_delta_rows(stat_base, r0 + 8u, delta.v[2], ok && lane == 0u);
    var nn3 = vec4(0.0);
    var dd3 = vec4(0.0);
    qa.m[3] = own_q(hb, r0 + 12u, 2u * lane, alpha, &nn3);
    qb.m[3] = own_q(hb, r0 + 12u, 2u * lane + 1u, alpha, &nn3);
    ga.m[3] = own_dout(hb, r0 + 12u, 2u * lane, &dd3);
    gb.m[3] = own_dout(hb, r0 + 12u, 2u * lane + 1u, &dd3);
    row_shift.v[3] = l2_bias4(subgroupAdd(nn3)) - lse_rows(stat_base, r0 + 12u);
    delta.v[3] = subgroupAdd(dd3);
    store_delta_rows(stat_base, r0 + 12u, delta.v[3], ok && lane == 0u);

    var dq: Out16;
    for (var step0 = 0u; step0 < p.seq_len; step0 = step0 + SG_STEP) {
        let key0 = step0 + 4u * lane;
        var s: Rows16;
        var dp: Rows16;
        var nk = vec4(0.0);
        for (var q = 0u; q < 8u; q = q + 1u) {
            dq_score_step(&s, &dp, &nk, qa, qb, ga, gb, q, hb, key0);
        }
        let bias = column_bias(key0, nk);
        var ds: Rows16;
        ds.m[0] = score_grad(s.m[0], dp.m[0], bias, row_shift.v[0], delta.v[0]);
        ds.m[1] = score_grad(s.m[1], dp.m[1], bias, row_shift.v[1], delta.v[1]);
        ds.m[2] = score_grad(s.m[2], dp.m[2], bias, row_shift.v[2], delta.v[2]);
        ds.m[3] = score_grad(s.m[3], dp.m[3], bias, row_shift.v[3], delta.v[3]);
        for (var q = 0u; q < 8u; q = q + 1u) {
            dq_accumulate_step(&dq, ds, q, hb, step0, lane);
        }
    }

    store_dq_rows(hb, r0 + 0u, 2u * lane, alpha * dq.a[0], ok);
    store_dq_rows(hb, r0 + 0u, 2u * lane + 1u, alpha * dq.b[0], ok);
    store_dq_rows(hb, r0 + 4u, 2u * lane, alpha * dq.a[1], ok);
    store_dq_rows(hb, r0 + 4u, 2u * lane + 1u, alpha * dq.b[1], ok);
    store_dq_rows(hb, r0 + 8u, 2u * lane, alpha * dq.a[2], ok);
    store_dq_rows(hb, r0 + 8u, 2u * lane + 1u, alpha * dq.b[2], ok);
    store_dq_rows(hb, r0 + 12u, 2u * lane, alpha * dq.a[3], ok);
    store_dq_rows(hb, r0 + 12u, 2u * lane + 1u, alpha * dq.b[3], ok);
}

// --- backward: dk, dv (16 key rows per workgroup, queries in steps of 32) -------------------------

// st += α k · qᵀ and dpt += v · doutᵀ for d-quads 2q, 2q+1 (the rows' k and v from lane q, this
// lane's 4 queries and output gradients loaded); nq accumulates the queries' squared norms
fn dkdv_score_step(st: ptr<function, Rows16>, dpt: ptr<function, Rows16>, nq: ptr<function, vec4<f32>>,
                   ka: Rows16, kb: Rows16, va: Rows16, vb: Rows16, q: u32, hb: u32, query0: u32) {
    let qa = q_cols(hb, query0, 2u * q);
    let qb = q_cols(hb, query0, 2u * q + 1u);
    let ga = dout_cols(hb, query0, 2u * q);
    let gb = dout_cols(hb, query0, 2u * q + 1u);
    *nq = *nq + cols_dot(qa, qa) + cols_dot(qb, qb);
    (*st).m[0] = (*st).m[0] + sg_lane_mat(ka.m[0], q) * qa + sg_lane_mat(kb.m[0], q) * qb;
    (*dpt).m[0] = (*dpt).m[0] + sg_lane_mat(va.m[0], q) * ga + sg_lane_mat(vb.m[0], q) * gb;
    (*st).m[1] = (*st).m[1] + sg_lane_mat(ka.m[1], q) * qa + sg_lane_mat(kb.m[1], q) * qb;
    (*dpt).m[1] = (*dpt).m[1] + sg_lane_mat(va.m[1], q) * ga + sg_lane_mat(vb.m[1], q) * gb;
    (*st).m[2] = (*st).m[2] + sg_lane_mat(ka.m[2], q) * qa + sg_lane_mat(kb.m[2], q) * qb;
    (*dpt).m[2] = (*dpt).m[2] + sg_lane_mat(va.m[2], q) * ga + sg_lane_mat(vb.m[2], q) * gb;
    (*st).m[3] = (*st).m[3] + sg_lane_mat(ka.m[3], q) * qa + sg_lane_mat(kb.m[3], q) * qb;
    (*dpt).m[3] = (*dpt).m[3] + sg_lane_mat(va.m[3], q) * ga + sg_lane_mat(vb.m[3], q) * gb;
}

// dv += Pᵀ · dout and dk += dSᵀ · q over the step's queries 4q..4q+4 (Pᵀ, dSᵀ from lane q) at this
// lane's dims
fn dkdv_accumulate_step(dk: ptr<function, Out16>, dv: ptr<function, Out16>, pt: Rows16, dst: Rows16,
                        q: u32, hb: u32, step0: u32, lane: u32) {
    let query0 = step0 + 4u * q;
    let qa = transpose(q_cols(hb, query0, 2u * lane));
    let qb = transpose(q_cols(hb, query0, 2u * lane + 1u));
    let ga = transpose(dout_cols(hb, query0, 2u * lane));
    let gb = transpose(dout_cols(hb, query0, 2u * lane + 1u));
    let p0 = sg_lane_mat(pt.m[0], q);
    let d0 = sg_lane_mat(dst.m[0], q);
    (*dv).a[0] = (*dv).a[0] + p0 * ga;
    (*dv).b[0] = (*dv).b[0] + p0 * gb;
    (*dk).a[0] = (*dk).a[0] + d0 * qa;
    (*dk).b[0] = (*dk).b[0] + d0 * qb;
    let p1 = sg_lane_mat(pt.m[1], q);
    let d1 = sg_lane_mat(dst.m[1], q);
    (*dv).a[1] = (*dv).a[1] + p1 * ga;
    (*dv).b[1] = (*dv).b[1] + p1 * gb;
    (*dk).a[1] = (*dk).a[1] + d1 * qa;
    (*dk).b[1] = (*dk).b[1] + d1 * qb;
    let p2 = sg_lane_mat(pt.m[2], q);
    let d2 = sg_lane_mat(dst.m[2], q);
    (*dv).a[2] = (*dv).a[2] + p2 * ga;
    (*dv).b[2] = (*dv).b[2] + p2 * gb;
    (*dk).a[2] = (*dk).a[2] + d2 * qa;
    (*dk).b[2] = (*dk).b[2] + d2 * qb;
    let p3 = sg_lane_mat(pt.m[3], q);
    let d3 = sg_lane_mat(dst.m[3], q);
    (*dv).a[3] = (*dv).a[3] + p3 * ga;
    (*dv).b[3] = (*dv).b[3] + p3 * gb;
    (*dk).a[3] = (*dk).a[3] + d3 * qa;
    (*dk).b[3] = (*dk).b[3] + d3 * qb;
}

// Pᵀ for 4 key rows × 4 query columns: exp(st + row bias + column shift)
fn probs_t(st: mat4x4<f32>, row_bias: vec4<f32>, col_shift: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(exp(st[0] + row_bias + col_shift.x), exp(st[1] + row_bias + col_shift.y),
                  exp(st[2] + row_bias + col_shift.z), exp(st[3] + row_bias + col_shift.w));
}

// dSᵀ = Pᵀ ∘ (dPᵀ − D of the column's query)
fn score_grad_t(pt: mat4x4<f32>, dpt: mat4x4<f32>, col_delta: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(pt[0] * (dpt[0] - col_delta.x), pt[1] * (dpt[1] - col_delta.y),
                  pt[2] * (dpt[2] - col_delta.z), pt[3] * (dpt[3] - col_delta.w));
}

fn store_dk_rows(hb: u32, r0: u32, c: u32, m: mat4x4<f32>, ok: bool) {
    let t = transpose(m);
    if (ok && r0 < p.seq_len) {
        dk4_w[hb + r0 * SG_D4 + c] = t[0];
    }
    if (ok && r0 + 1u < p.seq_len) {
        dk4_w[hb + (r0 + 1u) * SG_D4 + c] = t[1];
    }
    if (ok && r0 + 2u < p.seq_len) {
        dk4_w[hb + (r0 + 2u) * SG_D4 + c] = t[2];
    }
    if (ok && r0 + 3u < p.seq_len) {
        dk4_w[hb + (r0 + 3u) * SG_D4 + c] = t[3];
    }
}

fn store_dv_rows(hb: u32, r0: u32, c: u32, m: mat4x4<f32>, ok: bool) {
    let t = transpose(m);
    if (ok && r0 < p.seq_len) {
        dv4_w[hb + r0 * SG_D4 + c] = t[0];
    }
    if (ok && r0 + 1u < p.seq_len) {
        dv4_w[hb + (r0 + 1u) * SG_D4 + c] = t[1];
    }
    if (ok && r0 + 2u < p.seq_len) {
        dv4_w[hb + (r0 + 2u) * SG_D4 + c] = t[2];
    }
    if (ok && r0 + 3u < p.seq_len) {
        dv4_w[hb + (r0 + 3u) * SG_D4 + c] = t[3];
    }
}

// α k of rows r0..r0+4 at d-quad c as a block with one dim per column; adds the rows' ‖k‖² part to nn
fn own_k(hb: u32, r0: u32, c: u32, alpha: f32, nn: ptr<function, vec4<f32>>) -> mat4x4<f32> {
    let rows = k_cols(hb, r0, c);
    *nn = *nn + cols_dot(rows, rows);
    return alpha * transpose(rows);
}

@compute @workgroup_size(8)
fn attention_backward_dkdv_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                                    @builtin(num_workgroups) nwg: vec3<u32>,
                                    @builtin(subgroup_invocation_id) lane: u32) {
    let pl = sg_place(wid, nwg);
    let r0 = pl.first_row;
    let hb = pl.head * p.seq_len * SG_D4;
    let stat_base = pl.head * p.seq_len;
    let alpha = dot_factor();
    let ok = pl.valid_group;

    // this lane's d-quads of the 16 key rows (α k and v), and the key bias b_j
    var ka: Rows16;
    var kb: Rows16;
    var va: Rows16;
    var vb: Rows16;
    var key_bias: Stat16;
    var nn0 = vec4(0.0);
    ka.m[0] = own_k(hb, r0 + 0u, 2u * lane, alpha, &nn0);
    kb.m[0] = own_k(hb, r0 + 0u, 2u * lane + 1u, alpha, &nn0);
    va.m[0] = transpose(v_cols(hb, r0 + 0u, 2u * lane));
    vb.m[0] = transpose(v_cols(hb, r0 + 0u, 2u * lane + 1u));
    key_bias.v[0] = l2_bias4(subgroupAdd(nn0));
    var nn1 = vec4(0.0);
    ka.m[1] = own_k(hb, r0 + 4u, 2u * lane, alpha, &nn1);
    kb.m[1] = own_k(hb, r0 + 4u, 2u * lane + 1u, alpha, &nn1);
    va.m[1] = transpose(v_cols(hb, r0 + 4u, 2u * lane));
    vb.m[1] = transpose(v_cols(hb, r0 + 4u, 2u * lane + 1u));
    key_bias.v[1] = l2_bias4(subgroupAdd(nn1));
    var nn2 = vec4(0.0);
    ka.m[2] = own_k(hb, r0 + 8u, 2u * lane, alpha, &nn2);
    kb.m[2] = own_k(hb, r0 + 8u, 2u * lane + 1u, alpha, &nn2);
    va.m[2] = transpose(v_cols(hb, r0 + 8u, 2u * lane));
    vb.m[2] = transpose(v_cols(hb, r0 + 8u, 2u * lane + 1u));
    key_bias.v[2] = l2_bias4(subgroupAdd(nn2));
    var nn3 = vec4(0.0);
    ka.m[3] = own_k(hb, r0 + 12u, 2u * lane, alpha, &nn3);
    kb.m[3] = own_k(hb, r0 + 12u, 2u * lane + 1u, alpha, &nn3);
    va.m[3] = transpose(v_cols(hb, r0 + 12u, 2u * lane));
    vb.m[3] = transpose(v_cols(hb, r0 + 12u, 2u * lane + 1u));
    key_bias.v[3] = l2_bias4(subgroupAdd(nn3));

    var dk: Out16;
    var dv: Out16;
    var ds_sum: Stat16;  // Σ_i dS_ij of the key rows, over this lane's queries
    for (var step0 = 0u; step0 < p.seq_len; step0 = step0 + SG_STEP) {
        let query0 = step0 + 4u * lane;
        var st: Rows16;
        var dpt: Rows16;
        var nq = vec4(0.0);
        for (var q = 0u; q < 8u; q = q + 1u) {
            dkdv_score_step(&st, &dpt, &nq, ka, kb, va, vb, q, hb, query0);
        }
        // per query column: r_i − lse_i (MASKED past the sequence) and D_i
        let col_shift = column_bias(query0, nq) - lse_rows(stat_base, query0);
        let col_delta = delta_rows(stat_base, query0);
        var pt: Rows16;
        var dst: Rows16;
        pt.m[0] = probs_t(st.m[0], key_bias.v[0], col_shift);
        dst.m[0] = score_grad_t(pt.m[0], dpt.m[0], col_delta);
        ds_sum.v[0] = ds_sum.v[0] + dst.m[0][0] + dst.m[0][1] + dst.m[0][2] + dst.m[0][3];
        pt.m[1] = probs_t(st.m[1], key_bias.v[1], col_shift);
        dst.m[1] = score_grad_t(pt.m[1], dpt.m[1], col_delta);
        ds_sum.v[1] = ds_sum.v[1] + dst.m[1][0] + dst.m[1][1] + dst.m[1][2] + dst.m[1][3];
        pt.m[2] = probs_t(st.m[2], key_bias.v[2], col_shift);
        dst.m[2] = score_grad_t(pt.m[2], dpt.m[2], col_delta);
        ds_sum.v[2] = ds_sum.v[2] + dst.m[2][0] + dst.m[2][1] + dst.m[2][2] + dst.m[2][3];
        pt.m[3] = probs_t(st.m[3], key_bias.v[3], col_shift);
        dst.m[3] = score_grad_t(pt.m[3], dpt.m[3], col_delta);
        ds_sum.v[3] = ds_sum.v[3] + dst.m[3][0] + dst.m[3][1] + dst.m[3][2] + dst.m[3][3];
        for (var q = 0u; q < 8u; q = q + 1u) {
            dkdv_accumulate_step(&dk, &dv, pt, dst, q, hb, step0, lane);
        }
    }

    // dk = α (Σ dS q − [L2] k Σ dS), with ka/kb holding α k
    let l2 = select(0.0, 1.0, is_l2());
    let k_term0 = l2 * subgroupAdd(ds_sum.v[0]);
    store_dk_rows(hb, r0 + 0u, 2u * lane, alpha * dk.a[0] - scale_rows(ka.m[0], k_term0), ok);
    store_dk_rows(hb, r0 + 0u, 2u * lane + 1u, alpha * dk.b[0] - scale_rows(kb.m[0], k_term0), ok);
    store_dv_rows(hb, r0 + 0u, 2u * lane, dv.a[0], ok);
    store_dv_rows(hb, r0 + 0u, 2u * lane + 1u, dv.b[0], ok);
    let k_term1 = l2 * subgroupAdd(ds_sum.v[1]);
    store_dk_rows(hb, r0 + 4u, 2u * lane, alpha * dk.a[1] - scale_rows(ka.m[1], k_term1), ok);
    store_dk_rows(hb, r0 + 4u, 2u * lane + 1u, alpha * dk.b[1] - scale_rows(kb.m[1], k_term1), ok);
    store_dv_rows(hb, r0 + 4u, 2u * lane, dv.a[1], ok);
    store_dv_rows(hb, r0 + 4u, 2u * lane + 1u, dv.b[1], ok);
    let k_term2 = l2 * subgroupAdd(ds_sum.v[2]);
    store_dk_rows(hb, r0 + 8u, 2u * lane, alpha * dk.a[2] - scale_rows(ka.m[2], k_term2), ok);
    store_dk_rows(hb, r0 + 8u, 2u * lane + 1u, alpha * dk.b[2] - scale_rows(kb.m[2], k_term2), ok);
    store_dv_rows(hb, r0 + 8u, 2u * lane, dv.a[2], ok);
    store_dv_rows(hb, r0 + 8u, 2u * lane + 1u, dv.b[2], ok);
    let k_term3 = l2 * subgroupAdd(ds_sum.v[3]);
    store_dk_rows(hb, r0 + 12u, 2u * lane, alpha * dk.a[3] - scale_rows(ka.m[3], k_term3), ok);
    store_dk_rows(hb, r0 + 12u, 2u * lane + 1u, alpha * dk.b[3] - scale_rows(kb.m[3], k_term3), ok);
    store_dv_rows(hb, r0 + 12u, 2u * lane, dv.a[3], ok);
    store_dv_rows(hb, r0 + 12u, 2u * lane + 1u, dv.b[3], ok);
}
// --- narrow heads: one row per lane ---------------------------------------------------------------
//
// `_lanes` kernels (CPU adapters with subgroups, HEAD_DIM = 16): a workgroup is one subgroup of 8
// lanes; lane l owns row first_row + l (a query; a key in dk/dv), all 16 dims of it in registers as
// a mat4x4 (column c = dims 4c..4c+4). The other side walks in steps of 8 rows: lane l loads row
// step + l, and each of the 8 rows reaches every lane by `subgroupShuffle`, so no two lanes load the
// same row and there is no workgroup memory or barrier. The 4 × 4 blocks of the kernels above would
// leave 3 of 4 lanes idle at this width. Rows past L are clamped to the last row when loading; their
// scores are masked and their outputs dropped. One loop per kernel, ⌈L / 8⌉ trips.

const LN_ROWS: u32 = 8u;  // rows per workgroup = lanes

// first vec4 of `row` (clamped to the sequence) of `head` in q, k, v (plus the operand's `off`)
// and in out, dout (Params: the layout)
fn in_at(head: u32, row: u32, off: u32) -> u32 {
    let item = head / p.heads_per_item;
    let h = head - item * p.heads_per_item;
    return item * p.in_item + min(row, p.seq_len - 1u) * p.in_row + h * p.in_head + off;
}
fn out_at(head: u32, row: u32) -> u32 {
    let item = head / p.heads_per_item;
    let h = head - item * p.heads_per_item;
    return item * p.out_item + min(row, p.seq_len - 1u) * p.out_row + h * p.out_head;
}

// one row of 16 as a mat4x4, column c = d-quad c
fn q_row(head: u32, row: u32) -> mat4x4<f32> {
    let at = in_at(head, row, p.q_off);
    return mat4x4(q4_at(at), q4_at(at + 1u), q4_at(at + 2u), q4_at(at + 3u));
}
fn k_row(head: u32, row: u32) -> mat4x4<f32> {
    let at = in_at(head, row, p.k_off);
    return mat4x4(k4_at(at), k4_at(at + 1u), k4_at(at + 2u), k4_at(at + 3u));
}
fn v_row(head: u32, row: u32) -> mat4x4<f32> {
    let at = in_at(head, row, p.v_off);
    return mat4x4(v4_at(at), v4_at(at + 1u), v4_at(at + 2u), v4_at(at + 3u));
}
fn dout_row(head: u32, row: u32) -> mat4x4<f32> {
    let at = out_at(head, row);
    return mat4x4(dout4_at(at), dout4_at(at + 1u), dout4_at(at + 2u), dout4_at(at + 3u));
}
fn out_row(head: u32, row: u32) -> mat4x4<f32> {
    let at = out_at(head, row);
    return mat4x4(out4_at(at), out4_at(at + 1u), out4_at(at + 2u), out4_at(at + 3u));
}

// a·b over all 16 dims
fn row_dot(a: mat4x4<f32>, b: mat4x4<f32>) -> f32 {
    return dot(a[0], b[0]) + dot(a[1], b[1]) + dot(a[2], b[2]) + dot(a[3], b[3]);
}

fn ln_place(wid: vec3<u32>, nwg: vec3<u32>) -> Place {
    let group = wid.y * nwg.x + wid.x;
    let head = group / p.row_blocks;
    return Place(min(head, p.heads - 1u), (group % p.row_blocks) * LN_ROWS, head < p.heads);
}

// scores of the own row (qa = α q) against the step's rows t0..t0+4 (kl: lane t's row; bl: lane t's
// score bias b_t, MASKED past the sequence)
fn ln_scores4(qa: mat4x4<f32>, kl: mat4x4<f32>, bl: f32, t0: u32) -> vec4<f32> {
    return vec4(row_dot(qa, sg_lane_mat(kl, t0)) + subgroupShuffle(bl, t0),
                row_dot(qa, sg_lane_mat(kl, t0 + 1u)) + subgroupShuffle(bl, t0 + 1u),
                row_dot(qa, sg_lane_mat(kl, t0 + 2u)) + subgroupShuffle(bl, t0 + 2u),
                row_dot(qa, sg_lane_mat(kl, t0 + 3u)) + subgroupShuffle(bl, t0 + 3u));
}

// Σ_u w[u] · (lane t0 + u's row of m)
fn ln_weighted4(m: mat4x4<f32>, w: vec4<f32>, t0: u32) -> mat4x4<f32> {
    return w.x * sg_lane_mat(m, t0) + w.y * sg_lane_mat(m, t0 + 1u) + w.z * sg_lane_mat(m, t0 + 2u)
        + w.w * sg_lane_mat(m, t0 + 3u);
}

// own row · (lane t0 + u's row of m), u = 0..4
fn ln_dots4(own: mat4x4<f32>, m: mat4x4<f32>, t0: u32) -> vec4<f32> {
    return vec4(row_dot(own, sg_lane_mat(m, t0)), row_dot(own, sg_lane_mat(m, t0 + 1u)),
                row_dot(own, sg_lane_mat(m, t0 + 2u)), row_dot(own, sg_lane_mat(m, t0 + 3u)));
}

// lane t0 + u's value of x, u = 0..4
fn ln_lanes4(x: f32, t0: u32) -> vec4<f32> {
    return vec4(subgroupShuffle(x, t0), subgroupShuffle(x, t0 + 1u), subgroupShuffle(x, t0 + 2u),
                subgroupShuffle(x, t0 + 3u));
}

// the score bias of `row`: b = −c‖row‖² (L2) or 0, MASKED past the sequence
fn ln_bias(m: mat4x4<f32>, row: u32) -> f32 {
    return select(MASKED, l2_bias(row_dot(m, m)), row < p.seq_len);
}

fn ln_store(head: u32, row: u32, m: mat4x4<f32>) {
    let at = out_at(head, row);
    out4_w[at] = m[0];
    out4_w[at + 1u] = m[1];
    out4_w[at + 2u] = m[2];
    out4_w[at + 3u] = m[3];
}

@compute @workgroup_size(8)
fn attention_forward_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(subgroup_invocation_id) lane: u32) {
    let pl = ln_place(wid, nwg);
    let row = pl.first_row + lane;
    let head = pl.head;
    let qi = q_row(head, row);
    let qa = dot_factor() * qi;
    var o = mat4x4<f32>();
    var run_max = MASKED;
    var run_sum = 0.0;
    for (var step0 = 0u; step0 < p.seq_len; step0 = step0 + LN_ROWS) {
        let kl = k_row(head, step0 + lane);
        let vl = v_row(head, step0 + lane);
        let bl = ln_bias(kl, step0 + lane);
        let s_lo = ln_scores4(qa, kl, bl, 0u);
        let s_hi = ln_scores4(qa, kl, bl, 4u);
        let m4 = max(s_lo, s_hi);
        let new_max = max(run_max, max(max(m4.x, m4.y), max(m4.z, m4.w)));
        let rescale = exp(run_max - new_max);
        let p_lo = exp(s_lo - new_max);
        let p_hi = exp(s_hi - new_max);
        run_sum = run_sum * rescale + dot(p_lo + p_hi, vec4(1.0));
        o = rescale * o + ln_weighted4(vl, p_lo, 0u) + ln_weighted4(vl, p_hi, 4u);
        run_max = new_max;
    }
    if (pl.valid_group && row < p.seq_len) {
        ln_store(head, row, (1.0 / run_sum) * o);
        lse_w[pl.head * p.seq_len + row] = run_max + log(run_sum) + l2_bias(row_dot(qi, qi));
    }
}

@compute @workgroup_size(8)
fn attention_backward_dq_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(subgroup_invocation_id) lane: u32) {
    let pl = ln_place(wid, nwg);
    let row = pl.first_row + lane;
    let head = pl.head;
    let stat = pl.head * p.seq_len + min(row, p.seq_len - 1u);
    let alpha = dot_factor();
    let qi = q_row(head, row);
    let qa = alpha * qi;
    let dout_i = dout_row(head, row);
    let delta = row_dot(dout_i, out_row(head, row));
    // P_ij = exp(α q·k + b_j + r_i − lse_i)
    let shift = l2_bias(row_dot(qi, qi)) - lse_in[stat];
    var dq = mat4x4<f32>();
    for (var step0 = 0u; step0 < p.seq_len; step0 = step0 + LN_ROWS) {
        let kl = k_row(head, step0 + lane);
        let vl = v_row(head, step0 + lane);
        let bl = ln_bias(kl, step0 + lane);
        let p_lo = exp(ln_scores4(qa, kl, bl, 0u) + shift);
        let p_hi = exp(ln_scores4(qa, kl, bl, 4u) + shift);
        let ds_lo = p_lo * (ln_dots4(dout_i, vl, 0u) - delta);
        let ds_hi = p_hi * (ln_dots4(dout_i, vl, 4u) - delta);
        dq = dq + ln_weighted4(kl, ds_lo, 0u) + ln_weighted4(kl, ds_hi, 4u);
    }
    if (pl.valid_group && row < p.seq_len) {
        delta_w[stat] = delta;
        let at = in_at(pl.head, row, p.q_off);
        dq4_w[at] = alpha * dq[0];
        dq4_w[at + 1u] = alpha * dq[1];
        dq4_w[at + 2u] = alpha * dq[2];
        dq4_w[at + 3u] = alpha * dq[3];
    }
}

@compute @workgroup_size(8)
fn attention_backward_dkdv_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                                 @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(subgroup_invocation_id) lane: u32) {
    let pl = ln_place(wid, nwg);
    let row = pl.first_row + lane;  // this lane's key
    let head = pl.head;
    let stat_base = pl.head * p.seq_len;
    let alpha = dot_factor();
    let kj = k_row(head, row);
    let ka = alpha * kj;
    let vj = v_row(head, row);
    let bj = l2_bias(row_dot(kj, kj));
    var dk = mat4x4<f32>();  // Σ_i dS_ij q_i
    var dv = mat4x4<f32>();  // Σ_i P_ij dout_i
    var ds_sum = 0.0;
    for (var step0 = 0u; step0 < p.seq_len; step0 = step0 + LN_ROWS) {
        let i = step0 + lane;  // the query this lane loads for the step
        let ql = q_row(head, i);
        let dl = dout_row(head, i);
        let at = stat_base + min(i, p.seq_len - 1u);
        // r_i − lse_i, MASKED for queries past the sequence
        let shift = select(MASKED, l2_bias(row_dot(ql, ql)) - lse_in[at], i < p.seq_len);
        let delta = delta_in[at];
        let p_lo = exp(ln_scores4(ka, ql, shift, 0u) + bj);
        let p_hi = exp(ln_scores4(ka, ql, shift, 4u) + bj);
        dv = dv + ln_weighted4(dl, p_lo, 0u) + ln_weighted4(dl, p_hi, 4u);
        let ds_lo = p_lo * (ln_dots4(vj, dl, 0u) - ln_lanes4(delta, 0u));
        let ds_hi = p_hi * (ln_dots4(vj, dl, 4u) - ln_lanes4(delta, 4u));
        dk = dk + ln_weighted4(ql, ds_lo, 0u) + ln_weighted4(ql, ds_hi, 4u);
        ds_sum = ds_sum + dot(ds_lo + ds_hi, vec4(1.0));
    }
    if (pl.valid_group && row < p.seq_len) {
        // dk = α (Σ dS q − [L2] k Σ dS)
        let k_term = select(0.0, ds_sum, is_l2());
        var dk_row = alpha * (dk - k_term * kj);
        let at = in_at(pl.head, row, p.k_off);
        if (p.accumulate_dk != 0u) {
            // q's gradient, dq (written there by the dq kernel) + dk
            dk_row = mat4x4(dk4_w[at] + dk_row[0], dk4_w[at + 1u] + dk_row[1],
                            dk4_w[at + 2u] + dk_row[2], dk4_w[at + 3u] + dk_row[3]);
        }
        dk4_w[at] = dk_row[0];
        dk4_w[at + 1u] = dk_row[1];
        dk4_w[at + 2u] = dk_row[2];
        dk4_w[at + 3u] = dk_row[3];
        let av = in_at(pl.head, row, p.v_off);
        dv4_w[av] = dv[0];
        dv4_w[av + 1u] = dv[1];
        dv4_w[av + 2u] = dv[2];
        dv4_w[av + 3u] = dv[3];
    }
}
// END SUBGROUP KERNELS
