// Adam update fused with the exponential moving average of the weights (for G's sampling copy).
//   m ← β1·m + (1−β1)·g
//   v ← β2·v + (1−β2)·g²
//   p ← p − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)
//   ema ← β_ema·ema + (1−β_ema)·p          (only when WITH_EMA)

override WITH_EMA: bool = false;

struct Params {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32, // 1 − β1ᵗ
    bias_correction2: f32, // 1 − β2ᵗ
    ema_decay: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> ema: array<f32>;

// One Adam (and EMA) update of four parameters.
struct Update4 {
    m: vec4<f32>,
    v: vec4<f32>,
    param: vec4<f32>,
}

fn adam_update(g: vec4<f32>, m_old: vec4<f32>, v_old: vec4<f32>, param_old: vec4<f32>) -> Update4 {
    let mi = p.beta1 * m_old + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v_old + (1.0 - p.beta2) * g * g;
    let m_hat = mi / p.bias_correction1;
    let v_hat = vi / p.bias_correction2;
    return Update4(mi, vi, param_old - p.lr * m_hat / (sqrt(v_hat) + p.eps));
}

fn ema_update(ema_old: vec4<f32>, param: vec4<f32>) -> vec4<f32> {
    return p.ema_decay * ema_old + (1.0 - p.ema_decay) * param;
}

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) {
        return;
    }
    let u = adam_update(vec4(grad[i]), vec4(m[i]), vec4(v[i]), vec4(param[i]));
    m[i] = u.m.x;
    v[i] = u.v.x;
    param[i] = u.param.x;
    if (WITH_EMA) {
        ema[i] = ema_update(vec4(ema[i]), u.param).x;
    }
}

// ---- CPU adapters: CHUNK4 vec4s per invocation (p.n counts vec4s here; on lavapipe a vec4 load costs
// about what a float load does and per-invocation overhead is large)

@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> ema4: array<vec4<f32>>;

// Readers of the chunked kernel; the launcher's texture variant (larger tensors) swaps these lines for
// loads from the operand textures below (a copy of each operand taken just before the kernel; vec4 i
// at texel (i % 1024, i / 1024)): a vector gather on lavapipe, where a storage-buffer
// load is a loop over the lanes. The kernel still writes m, v, the parameter and the EMA in place.
@group(0) @binding(8) var grad_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var param_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(10) var m_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var v_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(12) var ema_tex: texture_storage_2d<rgba32float, read>;
fn grad4_at(i: u32) -> vec4<f32> { return grad4[i]; }
fn param4_at(i: u32) -> vec4<f32> { return param4[i]; }
fn m4_at(i: u32) -> vec4<f32> { return m4[i]; }
fn v4_at(i: u32) -> vec4<f32> { return v4[i]; }
fn ema4_at(i: u32) -> vec4<f32> { return ema4[i]; }

const CHUNK4: u32 = 8u;

@compute @workgroup_size(64)
fn adam_step_chunks4(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let start = (gid.y * nwg.x * 64u + gid.x) * CHUNK4;
    let end = min(start + CHUNK4, p.n);
    for (var i = start; i < end; i = i + 1u) {
        let u = adam_update(grad4_at(i), m4_at(i), v4_at(i), param4_at(i));
        m4[i] = u.m;
        v4[i] = u.v;
        param4[i] = u.param;
        if (WITH_EMA) {
            ema4[i] = ema_update(ema4_at(i), u.param);
        }
    }
}
