// Batched matrix multiply with a fused epilogue:
//   C[b] = act(op(A[b]) · op(B[b]) + bias)
// op(A) is A ([M,K]) or Aᵀ (A stored [K,M]) per TRANS_A; op(B) is B ([K,N]) or Bᵀ (B stored [N,K]).
// A batch stride of 0 broadcasts an operand over the batch (a weight matrix shared by all samples).
// With SAVE_PREACT the value before the activation is written to `pre` too (the backward needs it).
// Workgroup grid: x = column blocks (BN wide), y = row blocks (BM tall), z = batch.
//
// Three kernels compute the same thing; the launcher picks one per adapter and problem size:
//   `matmul`           (GPUs) a workgroup of WG_X × WG_Y invocations computes a BM × BN block of C
//                      (BM = WG_Y·TM, BN = WG_X·TN), walking K in steps of TK through workgroup memory;
//                      each invocation keeps TM × TN outputs in registers (strided by WG_Y / WG_X).
//   `matmul_registers` (CPU adapters) no workgroup memory: each invocation loads its operands straight
//                      from storage and keeps a 16 × 8 block of C (REG_ROWS × REG_COLS) in registers
//                      as 4 × 2 blocks of 4 × 4, updated with one mat4x4 product per 4 values of k.
//   `matmul_subgroup`  (CPU adapters with subgroups of ≥ 8 lanes) every lane keeps 32 rows × 8 columns
//                      (SG_ROWS × SG_COLS); the lanes of a subgroup share their rows, so per k-quad each
//                      lane loads one 4 × 4 block of A (4 of the 32 rows) and the others get it by
//                      subgroupBroadcast — A is read from memory once per subgroup instead of once per lane.
// On lavapipe every storage load is a per-lane scalar loop (the dominant cost, ~10 instructions per
// float); the CPU kernels therefore maximise the reuse of each loaded value, use vec4 loads (bindings 6
// and 7, views of A and B, when VEC4_A / VEC4_B say the rows are 16-byte aligned) — or, cheaper still,
// texel loads from copies of A and B in storage textures (bindings 10 and 11, the texture variant, when
// both operands are vec4-aligned); they store C as vec4 rows through bindings 8 and 9 (VEC4_C, views
// of C and the pre-activations, bound to the same buffers as 4 and 5: 9 storage buffers per stage) —
// and are written as straight-line code because loops over register arrays are not reliably unrolled
// by the driver.
// The tile constants below are rewritten by the launcher per adapter (`TileConfig`); the subgroup kernel
// (between the BEGIN/END markers) is dropped from the source for adapters without subgroups.

const WG_X: u32 = 16u;
const WG_Y: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const TK: u32 = 16u;
const BM: u32 = WG_Y * TM;
const BN: u32 = WG_X * TN;
const WG: u32 = WG_X * WG_Y;

// per-invocation blocks of the CPU kernels (fixed by their straight-line code)
const REG_ROWS: u32 = 16u;
const REG_COLS: u32 = 8u;
const SG_ROWS: u32 = 32u;
const SG_COLS: u32 = 8u;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override SAVE_PREACT: bool = false;
// 0 none, 1 gelu (tanh form), 2 leaky relu (slope = alpha), 3 sin, 4 relu
override ACT: u32 = 0u;
// CPU kernels: read A / B through the vec4 views (the launcher checks that every vec4 is aligned)
override VEC4_A: bool = false;
override VEC4_B: bool = false;
// CPU kernels: write C (and the pre-activations) through the vec4 views (the launcher checks N % 4 == 0)
override VEC4_C: bool = false;

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
// the same buffers as `a` and `b`, read four floats at a time (CPU kernels only)
@group(0) @binding(6) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> b4: array<vec4<f32>>;
// C and the pre-activations written four floats at a time (CPU kernels with VEC4_C: N % 4 == 0)
@group(0) @binding(8) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> pre4: array<vec4<f32>>;
// ... or the same operands copied into rgba32float storage textures (CPU kernels, texture variant)
@group(0) @binding(10) var a_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var b_tex: texture_storage_2d<rgba32float, read>;

// Operand textures hold vec4 i at texel (i % 1024, i / 1024) (layout::to_operand_texture; the
// generated texture readers compute it).

// vec4 i of A / B, the reads of the CPU kernels. The launcher's texture variant (CPU adapters) swaps
// these two lines for texel loads from `a_tex` / `b_tex` (`ops::texture_reader`): on lavapipe a
// texel load costs about a quarter of a storage-buffer load (a vector gather instead of a scalar loop
// over the lanes with a bounds check each).
fn a4_at(i: u32) -> vec4<f32> { return a4[i]; }
fn b4_at(i: u32) -> vec4<f32> { return b4[i]; }

var<workgroup> tile_a: array<f32, TK * BM>;
var<workgroup> tile_b: array<f32, TK * BN>;

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

fn activate4(x: vec4<f32>) -> vec4<f32> {
    return vec4(activate(x.x), activate(x.y), activate(x.z), activate(x.w));
}

// the epilogue for one element of C (row < M, col < N) whose bias is already added: pre-activation,
// activation
fn write_output(c_base: u32, row: u32, col: u32, v: f32) {
    if (SAVE_PREACT) {
        pre[c_base + row * p.n + col] = v;
    }
    c[c_base + row * p.n + col] = activate(v);
}

// ---------------------------------------------------------------------------------------------------
// `matmul`: workgroup-memory tiles (GPUs)

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
        for (var j = 0u; j < TN; j = j + 1u) {
            let col = col0 + tx + j * WG_X;
            if (row < p.m && col < p.n) {
                var v = acc[i][j];
                if (HAS_BIAS) {
                    v = v + bias[col];
                }
                write_output(c_base, row, col, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// 4 × 4 blocks for the CPU kernels. Rows and columns past the edge are clamped to the last one (their
// results are computed but never stored), so loads need no bounds branches; k past K reads as zero.
// With VEC4_A / VEC4_B the launcher guarantees that the contiguous dimension of the stored operand is a
// multiple of 4 (then every vec4 below starts at a multiple of 4 and lies inside the operand).

// op(A)[r0..r0+4, k] (zero for k ≥ K), A stored [K, M]: the 4 rows are contiguous.
fn a_rows_at_k(base: u32, r0: u32, k: u32) -> vec4<f32> {
    let o = base + min(k, p.k - 1u) * p.m;
    var v: vec4<f32>;
    if (VEC4_A) {
        v = a4_at((o + min(r0, p.m - 4u)) / 4u);
    } else {
        v = vec4(a[o + min(r0, p.m - 1u)], a[o + min(r0 + 1u, p.m - 1u)],
                 a[o + min(r0 + 2u, p.m - 1u)], a[o + min(r0 + 3u, p.m - 1u)]);
    }
    return select(vec4(0.0), v, k < p.k);
}

// op(A)[r, k0..k0+4] (zero for k ≥ K), A stored [M, K]: the 4 k-values are contiguous.
fn a_ks_at_row(base: u32, r: u32, k0: u32) -> vec4<f32> {
    let o = base + min(r, p.m - 1u) * p.k;
    var v: vec4<f32>;
    if (VEC4_A) {
        v = a4_at((o + min(k0, p.k - 4u)) / 4u);
    } else {
        v = vec4(a[o + min(k0, p.k - 1u)], a[o + min(k0 + 1u, p.k - 1u)],
                 a[o + min(k0 + 2u, p.k - 1u)], a[o + min(k0 + 3u, p.k - 1u)]);
    }
    return select(vec4(0.0), v, vec4(k0, k0 + 1u, k0 + 2u, k0 + 3u) < vec4(p.k));
}

// op(A)[r0..r0+4, k0..k0+4] as a matrix whose column j holds the 4 rows at k = k0 + j.
fn a_block(base: u32, r0: u32, k0: u32) -> mat4x4<f32> {
    if (TRANS_A) {
        return mat4x4(a_rows_at_k(base, r0, k0), a_rows_at_k(base, r0, k0 + 1u),
                      a_rows_at_k(base, r0, k0 + 2u), a_rows_at_k(base, r0, k0 + 3u));
    }
    return transpose(mat4x4(a_ks_at_row(base, r0, k0), a_ks_at_row(base, r0 + 1u, k0),
                            a_ks_at_row(base, r0 + 2u, k0), a_ks_at_row(base, r0 + 3u, k0)));
}

// op(B)[k, c0..c0+4] (zero for k ≥ K), B stored [K, N]: the 4 columns are contiguous.
fn b_cols_at_k(base: u32, k: u32, c0: u32) -> vec4<f32> {
    let o = base + min(k, p.k - 1u) * p.n;
    var v: vec4<f32>;
    if (VEC4_B) {
        v = b4_at((o + min(c0, p.n - 4u)) / 4u);
    } else {
        v = vec4(b[o + min(c0, p.n - 1u)], b[o + min(c0 + 1u, p.n - 1u)],
                 b[o + min(c0 + 2u, p.n - 1u)], b[o + min(c0 + 3u, p.n - 1u)]);
    }
    return select(vec4(0.0), v, k < p.k);
}

// op(B)[k0..k0+4, col] (zero for k ≥ K), B stored [N, K]: the 4 k-values are contiguous.
fn b_ks_at_col(base: u32, k0: u32, col: u32) -> vec4<f32> {
    let o = base + min(col, p.n - 1u) * p.k;
    var v: vec4<f32>;
    if (VEC4_B) {
        v = b4_at((o + min(k0, p.k - 4u)) / 4u);
    } else {
        v = vec4(b[o + min(k0, p.k - 1u)], b[o + min(k0 + 1u, p.k - 1u)],
                 b[o + min(k0 + 2u, p.k - 1u)], b[o + min(k0 + 3u, p.k - 1u)]);
    }
    return select(vec4(0.0), v, vec4(k0, k0 + 1u, k0 + 2u, k0 + 3u) < vec4(p.k));
}

// op(B)[k0..k0+4, c0..c0+4] as a matrix whose column j holds the 4 k-values of column c0 + j,
// so that a_block(r0, k0) * b_block(k0, c0) is the 4 × 4 block of C at (r0, c0) (column j = column c0 + j).
fn b_block(base: u32, k0: u32, c0: u32) -> mat4x4<f32> {
    if (TRANS_B) {
        return mat4x4(b_ks_at_col(base, k0, c0), b_ks_at_col(base, k0, c0 + 1u),
                      b_ks_at_col(base, k0, c0 + 2u), b_ks_at_col(base, k0, c0 + 3u));
    }
    return transpose(mat4x4(b_cols_at_k(base, k0, c0), b_cols_at_k(base, k0 + 1u, c0),
                            b_cols_at_k(base, k0 + 2u, c0), b_cols_at_k(base, k0 + 3u, c0)));
}

// bias[c0..c0+4] (zero without HAS_BIAS; columns past N clamped), loaded once per column block
fn bias_at(c0: u32) -> vec4<f32> {
    if (HAS_BIAS) {
        return vec4(bias[min(c0, p.n - 1u)], bias[min(c0 + 1u, p.n - 1u)],
                    bias[min(c0 + 2u, p.n - 1u)], bias[min(c0 + 3u, p.n - 1u)]);
    }
    return vec4(0.0);
}

// Store the 4 × 4 block acc (acc[j][i] = C[r0 + i, c0 + j]) plus bias4[j] through the epilogue.
fn store_block(acc: mat4x4<f32>, bias4: vec4<f32>, c_base: u32, r0: u32, c0: u32) {
    if (VEC4_C) {
        // N % 4 == 0: the 4 columns are inside C together or not at all; one vec4 per row (on lavapipe
        // a store, like a load, is a loop over the lanes, so this is 4× fewer of them)
        let rows = transpose(acc);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let row = r0 + i;
            if (row < p.m && c0 < p.n) {
                let at = (c_base + row * p.n + c0) / 4u;
                let v = rows[i] + bias4;
                if (SAVE_PREACT) {
                    pre4[at] = v;
                }
                c4[at] = activate4(v);
            }
        }
        return;
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = r0 + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = c0 + j;
            if (row < p.m && col < p.n) {
                write_output(c_base, row, col, acc[j][i] + bias4[j]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// `matmul_registers`: REG_ROWS × REG_COLS = 16 × 8 outputs per invocation, no workgroup memory (CPUs)

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_registers(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_id) lid3: vec3<u32>) {
    let batch = wid.z;
    let a_base = batch * p.a_batch_stride;
    let b_base = batch * p.b_batch_stride;
    let r0 = (wid.y * WG_Y + lid3.y) * REG_ROWS;
    let c0 = (wid.x * WG_X + lid3.x) * REG_COLS;
    // acc_ij: rows r0 + 4i.., columns c0 + 4j..
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    var acc20 = mat4x4<f32>();
    var acc21 = mat4x4<f32>();
    var acc30 = mat4x4<f32>();
    var acc31 = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 = k0 + 4u) {
        let b0 = b_block(b_base, k0, c0);
        let b1 = b_block(b_base, k0, c0 + 4u);
        let a0 = a_block(a_base, r0, k0);
        acc00 = acc00 + a0 * b0;
        acc01 = acc01 + a0 * b1;
        let a1 = a_block(a_base, r0 + 4u, k0);
        acc10 = acc10 + a1 * b0;
        acc11 = acc11 + a1 * b1;
        let a2 = a_block(a_base, r0 + 8u, k0);
        acc20 = acc20 + a2 * b0;
        acc21 = acc21 + a2 * b1;
        let a3 = a_block(a_base, r0 + 12u, k0);
        acc30 = acc30 + a3 * b0;
        acc31 = acc31 + a3 * b1;
    }
    let c_base = batch * p.m * p.n;
    let bias0 = bias_at(c0);
    let bias1 = bias_at(c0 + 4u);
    store_block(acc00, bias0, c_base, r0, c0);
    store_block(acc01, bias1, c_base, r0, c0 + 4u);
    store_block(acc10, bias0, c_base, r0 + 4u, c0);
    store_block(acc11, bias1, c_base, r0 + 4u, c0 + 4u);
    store_block(acc20, bias0, c_base, r0 + 8u, c0);
    store_block(acc21, bias1, c_base, r0 + 8u, c0 + 4u);
    store_block(acc30, bias0, c_base, r0 + 12u, c0);
    store_block(acc31, bias1, c_base, r0 + 12u, c0 + 4u);
}

// BEGIN SUBGROUP KERNEL
// ---------------------------------------------------------------------------------------------------
// `matmul_subgroup`: SG_ROWS × SG_COLS = 32 × 8 outputs per lane; a workgroup is one row of WG_X lanes
// (all lanes share the 32 rows, each has its own 8 columns), walking K one k-quad at a time: lane l
// loads the 4 × 4 block of A at rows r0 + 4(l % 8).., and row block i is broadcast from lane i.
// Per k-quad a lane loads 12 vec4 (4 of A, 8 of B) for 256 fma on 8 lanes; each loaded A block is
// consumed right away, so only the accumulators stay live (loading the 32 rows of 8 k-quads at once,
// one k-quad per lane, kept 128 more values live across the step and was ~15% slower on lavapipe).
// Reading A with uniform addresses instead (every lane the same address, no broadcast) was 2x slower:
// lavapipe 22.3 runs such loads as the same per-lane loop.
// Needs subgroups of at least 8 lanes (the launcher checks the adapter's minimum subgroup size).

// the 8 × 2 accumulators: m[2i + j] holds rows r0 + 4i.., columns c0 + 4j..
struct SubgroupAcc {
    m: array<mat4x4<f32>, 16>,
}

// `v` of subgroup lane `q` (q is a constant at every call site, so the switch folds away)
fn from_lane(v: vec4<f32>, q: u32) -> vec4<f32> {
    switch q {
        case 0u: { return subgroupBroadcast(v, 0u); }
        case 1u: { return subgroupBroadcast(v, 1u); }
        case 2u: { return subgroupBroadcast(v, 2u); }
        case 3u: { return subgroupBroadcast(v, 3u); }
        case 4u: { return subgroupBroadcast(v, 4u); }
        case 5u: { return subgroupBroadcast(v, 5u); }
        case 6u: { return subgroupBroadcast(v, 6u); }
        default: { return subgroupBroadcast(v, 7u); }
    }
}

// acc rows of block i += A[rows r0 + 4i.., k-quad] · B[k-quad, this lane's columns], with the A block
// taken from lane i
fn subgroup_rows(acc: ptr<function, SubgroupAcc>, own: mat4x4<f32>, i: u32, b0: mat4x4<f32>,
                 b1: mat4x4<f32>) {
    let ai = mat4x4(from_lane(own[0], i), from_lane(own[1], i), from_lane(own[2], i),
                    from_lane(own[3], i));
    (*acc).m[2u * i] = (*acc).m[2u * i] + ai * b0;
    (*acc).m[2u * i + 1u] = (*acc).m[2u * i + 1u] + ai * b1;
}

@compute @workgroup_size(WG_X, 1)
fn matmul_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(subgroup_invocation_id) lane: u32) {
    let batch = wid.z;
    let a_base = batch * p.a_batch_stride;
    let b_base = batch * p.b_batch_stride;
    let r0 = wid.y * SG_ROWS;
    let c0 = (wid.x * WG_X + lid) * SG_COLS;
    let own_r = r0 + 4u * (lane % 8u);
    var acc: SubgroupAcc;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + 4u) {
        let b0 = b_block(b_base, k0, c0);
        let b1 = b_block(b_base, k0, c0 + 4u);
        let own = a_block(a_base, own_r, k0);
        subgroup_rows(&acc, own, 0u, b0, b1);
        subgroup_rows(&acc, own, 1u, b0, b1);
        subgroup_rows(&acc, own, 2u, b0, b1);
        subgroup_rows(&acc, own, 3u, b0, b1);
        subgroup_rows(&acc, own, 4u, b0, b1);
        subgroup_rows(&acc, own, 5u, b0, b1);
        subgroup_rows(&acc, own, 6u, b0, b1);
        subgroup_rows(&acc, own, 7u, b0, b1);
    }
    let c_base = batch * p.m * p.n;
    let bias0 = bias_at(c0);
    let bias1 = bias_at(c0 + 4u);
    store_block(acc.m[0], bias0, c_base, r0, c0);
    store_block(acc.m[1], bias1, c_base, r0, c0 + 4u);
    store_block(acc.m[2], bias0, c_base, r0 + 4u, c0);
    store_block(acc.m[3], bias1, c_base, r0 + 4u, c0 + 4u);
    store_block(acc.m[4], bias0, c_base, r0 + 8u, c0);
    store_block(acc.m[5], bias1, c_base, r0 + 8u, c0 + 4u);
    store_block(acc.m[6], bias0, c_base, r0 + 12u, c0);
    store_block(acc.m[7], bias1, c_base, r0 + 12u, c0 + 4u);
    store_block(acc.m[8], bias0, c_base, r0 + 16u, c0);
    store_block(acc.m[9], bias1, c_base, r0 + 16u, c0 + 4u);
    store_block(acc.m[10], bias0, c_base, r0 + 20u, c0);
    store_block(acc.m[11], bias1, c_base, r0 + 20u, c0 + 4u);
    store_block(acc.m[12], bias0, c_base, r0 + 24u, c0);
    store_block(acc.m[13], bias1, c_base, r0 + 24u, c0 + 4u);
    store_block(acc.m[14], bias0, c_base, r0 + 28u, c0);
    store_block(acc.m[15], bias1, c_base, r0 + 28u, c0 + 4u);
}
// END SUBGROUP KERNEL
