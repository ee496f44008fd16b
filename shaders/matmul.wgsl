// Batched matrix multiply with a fused epilogue:
//   C[b] = act(op(A[b]) · op(B[b]) + bias)
// op(A) is A ([M,K]) or Aᵀ (A stored [K,M]) per TRANS_A; op(B) is B ([K,N]) or Bᵀ (B stored [N,K]).
// A batch stride of 0 broadcasts an operand over the batch (a weight matrix shared by all samples).
// With SAVE_PREACT the value before the activation is written to `pre` too (the backward needs it).
//
// Tiling: a workgroup of WG_X × WG_Y invocations computes a BM × BN block of C (BM = WG_Y·TM,
// BN = WG_X·TN), walking K in steps of TK through workgroup memory; each invocation keeps a TM × TN
// block of C in registers. The tile constants below are rewritten by the launcher per adapter.

const WG_X: u32 = 16u;
const WG_Y: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const TK: u32 = 16u;
const BM: u32 = WG_Y * TM;
const BN: u32 = WG_X * TN;
const WG: u32 = WG_X * WG_Y;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override SAVE_PREACT: bool = false;
// 0 none, 1 gelu (tanh form), 2 leaky relu (slope = alpha), 3 sin, 4 relu
override ACT: u32 = 0u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    alpha: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;

var<workgroup> tile_a: array<f32, TK * BM>;
var<workgroup> tile_b: array<f32, TK * BN>;

fn load_a(base: u32, row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) {
        return 0.0;
    }
    if (TRANS_A) {
        return a[base + kk * p.m + row];
    }
    return a[base + row * p.k + kk];
}

fn load_b(base: u32, kk: u32, col: u32) -> f32 {
    if (col >= p.n || kk >= p.k) {
        return 0.0;
    }
    if (TRANS_B) {
        return b[base + col * p.k + kk];
    }
    return b[base + kk * p.n + col];
}

fn activate(x: f32) -> f32 {
    switch ACT {
        case 1u: {
            let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0));
        }
        case 2u: { return select(p.alpha * x, x, x > 0.0); }
        case 3u: { return sin(x); }
        case 4u: { return max(x, 0.0); }
        default: { return x; }
    }
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let batch = wid.z;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let a_base = batch * p.a_batch_stride;
    let b_base = batch * p.b_batch_stride;
    let tx = lid3.x;
    let ty = lid3.y;

    var acc: array<array<f32, TN>, TM>;
    for (var i = 0u; i < TM; i = i + 1u) {
        for (var j = 0u; j < TN; j = j + 1u) {
            acc[i][j] = 0.0;
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 = k0 + TK) {
        // stage A[row0.., k0..] as tile_a[kk][r] and B[k0.., col0..] as tile_b[kk][c]
        for (var l = lid; l < TK * BM; l = l + WG) {
            var r: u32;
            var kk: u32;
            if (TRANS_A) { r = l % BM; kk = l / BM; } else { r = l / TK; kk = l % TK; }
            tile_a[kk * BM + r] = load_a(a_base, row0 + r, k0 + kk);
        }
        for (var l = lid; l < TK * BN; l = l + WG) {
            var cc: u32;
            var kk: u32;
            if (TRANS_B) { cc = l / TK; kk = l % TK; } else { cc = l % BN; kk = l / BN; }
            tile_b[kk * BN + cc] = load_b(b_base, k0 + kk, col0 + cc);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var av: array<f32, TM>;
            var bv: array<f32, TN>;
            for (var i = 0u; i < TM; i = i + 1u) {
                av[i] = tile_a[kk * BM + ty + i * WG_Y];
            }
            for (var j = 0u; j < TN; j = j + 1u) {
                bv[j] = tile_b[kk * BN + tx + j * WG_X];
            }
            for (var i = 0u; i < TM; i = i + 1u) {
                for (var j = 0u; j < TN; j = j + 1u) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    let c_base = batch * p.m * p.n;
    for (var i = 0u; i < TM; i = i + 1u) {
        let row = row0 + ty + i * WG_Y;
        if (row >= p.m) {
            continue;
        }
        for (var j = 0u; j < TN; j = j + 1u) {
            let col = col0 + tx + j * WG_X;
            if (col >= p.n) {
                continue;
            }
            var v = acc[i][j];
            if (HAS_BIAS) {
                v = v + bias[col];
            }
            if (SAVE_PREACT) {
                pre[c_base + row * p.n + col] = v;
            }
            c[c_base + row * p.n + col] = activate(v);
        }
    }
}
