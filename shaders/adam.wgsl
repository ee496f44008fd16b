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

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let m_hat = mi / p.bias_correction1;
    let v_hat = vi / p.bias_correction2;
    let updated = param[i] - p.lr * m_hat / (sqrt(v_hat) + p.eps);
    param[i] = updated;
    if (WITH_EMA) {
        ema[i] = p.ema_decay * ema[i] + (1.0 - p.ema_decay) * updated;
    }
}
