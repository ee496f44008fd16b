// The hidden layer of the composed INR decoder after its matmul (`inr_decode_unfused` in
// src/autodiff/inr.rs): demodulate, add the phase, take the sine and modulate for the output layer in
// one pass, and the backward in one pass. For patch n, pixel t and hidden unit o, with x [N, T, H]
// (the modulated Fourier features times W1ᵀ), d1 [N, H] (the demodulation), b1 [H] and s2 [N, H]:
//   z_{n,t,o} = d1_{n,o} x_{n,t,o} + b1_o,   out_{n,t,o} = s2_{n,o} sin z_{n,t,o}
// Backward, with g = ∂L/∂out and c = s2_{n,o} g_{n,t,o} cos z_{n,t,o} (= ∂L/∂z):
//   dx_{n,t,o} = d1_{n,o} c
//   ds2_{n,o} = Σ_t g_{n,t,o} sin z_{n,t,o},   dd1_{n,o} = Σ_t c x_{n,t,o},   db1_o = Σ_n Σ_t c
// (db1 leaves this kernel as one partial sum per patch, `sums[2]`; the launcher adds them up).
//
// One invocation per patch and 4 hidden units (H % 4 == 0), looping over the T pixels of the patch, so
// the per-patch operands are loaded once and the sums over t stay in registers; the launcher keeps
// T within the CPU loop budget. Each invocation owns the elements it writes: no races, no atomics.

struct Params {
    patches: u32,
    pixels: u32,
    hidden4: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> d1: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b1: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> s2: array<vec4<f32>>;
// forward
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
// backward
@group(0) @binding(5) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dx: array<vec4<f32>>;
// [3, N, H]: ds2, dd1 and the per-patch partial sums of db1
@group(0) @binding(7) var<storage, read_write> sums: array<vec4<f32>>;

// Readers of the per-pixel operands; the launcher's texture variant (CPU adapters, larger tensors)
// swaps these lines for loads from the operand textures below (vec4 i at texel (i % TEXTURE_WIDTH,
// i / TEXTURE_WIDTH)): a vector gather on lavapipe, where a storage-buffer load is a loop over the lanes.
@group(0) @binding(8) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var g_tex: texture_storage_2d<rgba32float, read>;
const TEXTURE_WIDTH: u32 = 1024u;
fn texel(i: u32) -> vec2<u32> {
    return vec2(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH);
}
fn x4_at(i: u32) -> vec4<f32> { return x[i]; }
fn g4_at(i: u32) -> vec4<f32> { return g[i]; }

// linear index of the invocation over the grid (grid_1d's x/y split)
fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64)
fn inr_sine_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.patches * p.hidden4) {
        return;
    }
    let n = i / p.hidden4;
    let o4 = i % p.hidden4;
    let demod = d1[i];
    let phase = b1[o4];
    let style = s2[i];
    let first = n * p.pixels * p.hidden4 + o4;
    for (var t = 0u; t < p.pixels; t = t + 1u) {
        let at = first + t * p.hidden4;
        out[at] = style * sin(demod * x4_at(at) + phase);
    }
}

@compute @workgroup_size(64)
fn inr_sine_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    let per_sum = p.patches * p.hidden4;
    if (i >= per_sum) {
        return;
    }
    let n = i / p.hidden4;
    let o4 = i % p.hidden4;
    let demod = d1[i];
    let phase = b1[o4];
    let style = s2[i];
    let first = n * p.pixels * p.hidden4 + o4;
    var ds2 = vec4(0.0);
    var dd1 = vec4(0.0);
    var db1 = vec4(0.0);
    for (var t = 0u; t < p.pixels; t = t + 1u) {
        let at = first + t * p.hidden4;
        let xv = x4_at(at);
        let gv = g4_at(at);
        let z = demod * xv + phase;
        let c = style * gv * cos(z);
        dx[at] = demod * c;
        ds2 = ds2 + gv * sin(z);
        dd1 = dd1 + c * xv;
        db1 = db1 + c;
    }
    sums[i] = ds2;
    sums[per_sum + i] = dd1;
    sums[2u * per_sum + i] = db1;
}
