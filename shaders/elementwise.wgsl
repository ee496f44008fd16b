// Elementwise kernels: unary maps, their backward, binary ops with broadcasting, fill.
// The operation is picked by the `OP` override constant, so each op is its own compiled pipeline.
// `*_chunks4` variants (CPU adapters, element count a multiple of 4, binary ops on equal shapes) give
// each invocation CHUNK4 consecutive vec4s: on lavapipe a vec4 load costs about what a float does, and
// fewer, longer-running invocations cost less than one invocation per element. They and `binary_runs4`
// read their operands through the one-line `*4_at` readers below; the launcher's texture variant
// (CPU adapters, larger tensors) swaps those lines for loads from operand textures `tex_a`, `tex_b`
// (`layout::to_operand_texture`), a vector gather on lavapipe instead of a loop over the lanes.

// Unary ops: y = f(x).
//  0 neg      -x                    1 exp    e^x
//  2 log      ln x                  3 sqrt   √x
//  4 gelu     x/2 (1 + tanh(√(2/π)(x + 0.044715 x³)))
//  5 leaky    x if x > 0 else a·x   (a = alpha)
//  6 sin      sin x                 7 softplus  ln(1 + e^x)
//  8 sigmoid  1/(1 + e^-x)          9 tanh
// 10 relu     max(x, 0)            11 square x²
// 12 affine   alpha·x + beta       13 recip  1/x
// 14 cos      cos x
override OP: u32 = 0u;

struct UnaryParams {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> up: UnaryParams;
@group(0) @binding(1) var<storage, read> ux: array<f32>;
@group(0) @binding(2) var<storage, read_write> uy: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// ln(1 + y) for y ≥ 0, with relative precision for small y (WGSL has no log1p, and a CPU driver's
// log near 1 has too large an absolute error): the series y − y²/2 + … + y⁶/6 below 0.05 (truncation
// < y⁷/7, relative < 1e-9), ln otherwise
fn log1p(y: f32) -> f32 {
    if (y < 0.05) {
        return y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * (0.25 - y * (0.2 - y / 6.0)))));
    }
    return log(1.0 + y);
}

// max(x, 0) + ln(1 + e^−|x|): no overflow, and accurate where ln(1 + e^x) is tiny (x ≪ 0)
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p(exp(-abs(x)));
}

fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_stable(x: f32) -> f32 {
    // tanh(x) = 1 - 2 / (e^{2x} + 1), clamped so e^{2x} stays finite.
    let c = clamp(x, -15.0, 15.0);
    return 1.0 - 2.0 / (exp(2.0 * c) + 1.0);
}

fn unary_apply(x: f32, alpha: f32, beta: f32) -> f32 {
    switch OP {
        case 0u: { return -x; }
        case 1u: { return exp(x); }
        case 2u: { return log(x); }
        case 3u: { return sqrt(x); }
        case 4u: { return 0.5 * x * (1.0 + tanh_stable(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
        case 5u: { return select(alpha * x, x, x > 0.0); }
        case 6u: { return sin(x); }
        case 7u: { return softplus(x); }
        case 8u: { return sigmoid(x); }
        case 9u: { return tanh_stable(x); }
        case 10u: { return max(x, 0.0); }
        case 11u: { return x * x; }
        case 12u: { return alpha * x + beta; }
        case 13u: { return 1.0 / x; }
        case 14u: { return cos(x); }
        default: { return x; }
    }
}

/// dy/dx of the unary op at x.
fn unary_derivative(x: f32, alpha: f32) -> f32 {
    switch OP {
        case 0u: { return -1.0; }
        case 1u: { return exp(x); }
        case 2u: { return 1.0 / x; }
        case 3u: { return 0.5 / sqrt(x); }
        case 4u: {
            let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            let t = tanh_stable(u);
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
        }
        case 5u: { return select(alpha, 1.0, x > 0.0); }
        case 6u: { return cos(x); }
        case 7u: { return sigmoid(x); }
        case 8u: { let s = sigmoid(x); return s * (1.0 - s); }
        case 9u: { let t = tanh_stable(x); return 1.0 - t * t; }
        case 10u: { return select(0.0, 1.0, x > 0.0); }
        case 11u: { return 2.0 * x; }
        case 12u: { return alpha; }
        case 13u: { return -1.0 / (x * x); }
        case 14u: { return -sin(x); }
        default: { return 1.0; }
    }
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

/// y[i] = f(x[i])
@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < up.n) {
        uy[i] = unary_apply(ux[i], up.alpha, up.beta);
    }
}

@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> bdx: array<f32>;

/// dx[i] = dy[i] · f'(x[i])
@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < up.n) {
        bdx[i] = bdy[i] * unary_derivative(bx[i], up.alpha);
    }
}

@group(0) @binding(1) var<storage, read_write> fill_out: array<f32>;

/// y[i] = value (alpha)
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < up.n) {
        fill_out[i] = up.alpha;
    }
}

// Binary ops with broadcasting: out[idx] = a[idx·sa] ∘ b[idx·sb], where a stride of 0 broadcasts.
//  0 add  1 sub  2 mul  3 div  4 max  5 min
struct BinaryParams {
    n: u32,
    rank: u32,
    _pad0: u32,
    _pad1: u32,
    dims: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> bp: BinaryParams;
@group(0) @binding(1) var<storage, read> ba: array<f32>;
@group(0) @binding(2) var<storage, read> bb: array<f32>;
@group(0) @binding(3) var<storage, read_write> bout: array<f32>;

fn binary_apply(a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        case 3u: { return a / b; }
        case 4u: { return max(a, b); }
        case 5u: { return min(a, b); }
        default: { return a; }
    }
}

// (a, b) offsets of linear index i over the first `rank` dimensions of bp.dims
fn broadcast_offsets(i: u32, rank: u32) -> vec2<u32> {
    var rem = i;
    var at = vec2(0u);
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let k = u32(d);
        let dim = bp.dims[k / 4u][k % 4u];
        let c = rem % dim;
        rem = rem / dim;
        at = at + c * vec2(bp.a_strides[k / 4u][k % 4u], bp.b_strides[k / 4u][k % 4u]);
    }
    return at;
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i >= bp.n) {
        return;
    }
    let at = broadcast_offsets(i, bp.rank);
    bout[i] = binary_apply(ba[at.x], bb[at.y]);
}

// out = a ∘ b with broadcasting, along runs of the innermost dimension (CPU adapters, where
// binary_runs4 does not apply): an invocation decodes its run's outer coordinates once and applies the
// op to up to RUN_CHUNK consecutive elements of that run, each side stepping by its innermost stride
// (bp.n counts runs). Integer division is slow on a CPU lane, so this saves the per-element decode.
const RUN_CHUNK: u32 = 32u;

// The share of a run-based launch that invocation `id` takes: run `run` of the innermost dimension
// (`len` units long), units [start, end), `per` at a time.
struct RunShare {
    run: u32,
    start: u32,
    end: u32,
}

fn run_share(id: u32, len: u32, per: u32) -> RunShare {
    let shares = (len + per - 1u) / per;
    let start = (id % shares) * per;
    return RunShare(id / shares, start, min(start + per, len));
}

@compute @workgroup_size(64)
fn binary_runs(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let inner = bp.rank - 1u;
    let run_len = bp.dims[inner / 4u][inner % 4u];
    let share = run_share(gid.y * nwg.x * 64u + gid.x, run_len, RUN_CHUNK);
    if (share.run >= bp.n) {
        return;
    }
    let at = broadcast_offsets(share.run, inner);
    let step = vec2(bp.a_strides[inner / 4u][inner % 4u], bp.b_strides[inner / 4u][inner % 4u]);
    for (var j = share.start; j < share.end; j = j + 1u) {
        bout[share.run * run_len + j] = binary_apply(ba[at.x + j * step.x], bb[at.y + j * step.y]);
    }
}

// ---- chunks of vec4s per invocation (CPU adapters)

const CHUNK4: u32 = 8u;

fn chunk_start(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (gid.y * nwg.x * 64u + gid.x) * CHUNK4;
}

fn unary_apply4(x: vec4<f32>) -> vec4<f32> {
    return vec4(unary_apply(x.x, up.alpha, up.beta), unary_apply(x.y, up.alpha, up.beta),
                unary_apply(x.z, up.alpha, up.beta), unary_apply(x.w, up.alpha, up.beta));
}

fn unary_derivative4(x: vec4<f32>) -> vec4<f32> {
    return vec4(unary_derivative(x.x, up.alpha), unary_derivative(x.y, up.alpha),
                unary_derivative(x.z, up.alpha), unary_derivative(x.w, up.alpha));
}

@group(0) @binding(1) var<storage, read> ux4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> uy4: array<vec4<f32>>;

// The operand textures of the texture variant: vec4 i at texel (i % 1024, i / 1024).
@group(0) @binding(8) var tex_a: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var tex_b: texture_storage_2d<rgba32float, read>;

fn ux4_at(i: u32) -> vec4<f32> { return ux4[i]; }

/// y = f(x), CHUNK4 vec4s per invocation (up.n counts vec4s here)
@compute @workgroup_size(64)
fn unary_chunks4(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let start = chunk_start(gid, nwg);
    let end = min(start + CHUNK4, up.n);
    for (var i = start; i < end; i = i + 1u) {
        uy4[i] = unary_apply4(ux4_at(i));
    }
}

@group(0) @binding(1) var<storage, read> bx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bdy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bdx4: array<vec4<f32>>;
fn bx4_at(i: u32) -> vec4<f32> { return bx4[i]; }
fn bdy4_at(i: u32) -> vec4<f32> { return bdy4[i]; }

/// dx = dy · f'(x), CHUNK4 vec4s per invocation (up.n counts vec4s)
@compute @workgroup_size(64)
fn unary_backward_chunks4(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let start = chunk_start(gid, nwg);
    let end = min(start + CHUNK4, up.n);
    for (var i = start; i < end; i = i + 1u) {
        bdx4[i] = bdy4_at(i) * unary_derivative4(bx4_at(i));
    }
}

@group(0) @binding(1) var<storage, read> ba4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bb4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bout4: array<vec4<f32>>;
fn ba4_at(i: u32) -> vec4<f32> { return ba4[i]; }
fn bb4_at(i: u32) -> vec4<f32> { return bb4[i]; }

fn binary_apply4(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return vec4(binary_apply(a.x, b.x), binary_apply(a.y, b.y), binary_apply(a.z, b.z),
                binary_apply(a.w, b.w));
}

/// out = a ∘ b with broadcasting, in vec4 runs (CPU adapters): the innermost dimension is a multiple of
/// 4 and each side steps through it with stride 1 (vec4 loads; its outer strides are multiples of 4) or
/// 0 (one value, splatted). An invocation decodes its run's outer coordinates once and applies the op
/// to up to CHUNK4 vec4s of that run (bp.n counts runs).
@compute @workgroup_size(64)
fn binary_runs4(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let inner = bp.rank - 1u;
    let run4 = bp.dims[inner / 4u][inner % 4u] / 4u;
    let share = run_share(gid.y * nwg.x * 64u + gid.x, run4, CHUNK4);
    if (share.run >= bp.n) {
        return;
    }
    let at = broadcast_offsets(share.run, inner);
    let ia = at.x;
    let ib = at.y;
    let a_runs = bp.a_strides[inner / 4u][inner % 4u] == 1u;
    let b_runs = bp.b_strides[inner / 4u][inner % 4u] == 1u;
    let a_splat = vec4(ba4[ia / 4u][ia % 4u]);
    let b_splat = vec4(bb4[ib / 4u][ib % 4u]);
    for (var j = share.start; j < share.end; j = j + 1u) {
        var a = a_splat;
        if (a_runs) {
            a = ba4_at(ia / 4u + j);
        }
        var b = b_splat;
        if (b_runs) {
            b = bb4_at(ib / 4u + j);
        }
        bout4[share.run * run4 + j] = binary_apply4(a, b);
    }
}

/// out = a ∘ b on equal shapes, CHUNK4 vec4s per invocation (bp.n counts vec4s)
@compute @workgroup_size(64)
fn binary_chunks4(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let start = chunk_start(gid, nwg);
    let end = min(start + CHUNK4, bp.n);
    for (var i = start; i < end; i = i + 1u) {
        bout4[i] = binary_apply4(ba4_at(i), bb4_at(i));
    }
}
