// Differentiable augmentation (DiffAugment-style), on NHWC images [B, H, W, C].
//
// augment_params: per-sample random parameters from a counter-based hash (no host data), each enabled op
// (bit mask `ops`) applied with probability `prob` (else its neutral value). Row b of the [B, 12] output:
//   0 brightness offset β ∈ [−0.5, 0.5)     (neutral 0)
//   1 saturation factor s ∈ [0, 2)          (neutral 1)
//   2 contrast factor   c ∈ [0.5, 1.5)      (neutral 1)
//   3 translation ty, 4 translation tx      integers in [−H/8, H/8] (neutral 0)
//   5 scale σ ∈ [0.8, 1.25)                 (neutral 1)
//   6 cutout centre y, 7 cutout centre x, 8 cutout size (0 = no cutout; else H/2)
//
// geometric_forward: out[b,y,x,c] = mask(y,x) · Σ_s tent(u_y − s_y)·tent(u_x − s_x)·img[b,s_y,s_x,c]
//   with u = (o − centre)/σ + centre − t (bilinear, zero outside), tent(d) = max(0, 1 − |d|), and
//   mask = 0 inside the cutout square. geometric_backward is its exact transpose, as a gather over the
//   few outputs that read each input pixel (no atomics).

struct Params {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,
    seed: u32,
    prob: f32,
    ops: u32, // bit k enables op k: 0 brightness, 1 saturation, 2 contrast, 3 translation, 4 scale, 5 cutout
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params_out: array<f32>;

@group(0) @binding(1) var<storage, read> aug: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

const STRIDE: u32 = 12u;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

/// Uniform in [0, 1) for (seed, sample, slot).
fn rand01(sample: u32, slot: u32) -> f32 {
    let h = pcg(p.seed ^ pcg(sample * 64u + slot));
    return f32(h >> 8u) / 16777216.0;
}

fn enabled(op: u32) -> bool {
    return (p.ops & (1u << op)) != 0u;
}

@compute @workgroup_size(64)
fn augment_params(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (b >= p.batch) {
        return;
    }
    let o = b * STRIDE;
    for (var k = 0u; k < STRIDE; k = k + 1u) {
        params_out[o + k] = 0.0;
    }
    params_out[o + 1u] = 1.0;
    params_out[o + 2u] = 1.0;
    params_out[o + 5u] = 1.0;
    if (enabled(0u) && rand01(b, 0u) < p.prob) {
        params_out[o + 0u] = rand01(b, 10u) - 0.5;
    }
    if (enabled(1u) && rand01(b, 1u) < p.prob) {
        params_out[o + 1u] = rand01(b, 11u) * 2.0;
    }
    if (enabled(2u) && rand01(b, 2u) < p.prob) {
        params_out[o + 2u] = rand01(b, 12u) + 0.5;
    }
    if (enabled(3u) && rand01(b, 3u) < p.prob) {
        let ry = i32(p.h / 8u);
        let rx = i32(p.w / 8u);
        params_out[o + 3u] = f32(i32(floor(rand01(b, 13u) * f32(2 * ry + 1))) - ry);
        params_out[o + 4u] = f32(i32(floor(rand01(b, 14u) * f32(2 * rx + 1))) - rx);
    }
    if (enabled(4u) && rand01(b, 4u) < p.prob) {
        params_out[o + 5u] = 0.8 + rand01(b, 15u) * 0.45;
    }
    if (enabled(5u) && rand01(b, 5u) < p.prob) {
        params_out[o + 6u] = floor(rand01(b, 16u) * f32(p.h));
        params_out[o + 7u] = floor(rand01(b, 17u) * f32(p.w));
        params_out[o + 8u] = f32(p.h / 2u);
    }
}

fn tent(d: f32) -> f32 {
    return max(0.0, 1.0 - abs(d));
}

/// Source coordinate (continuous) read by output coordinate o along one axis.
fn source_coord(o: f32, centre: f32, scale: f32, shift: f32) -> f32 {
    return (o - centre) / scale + centre - shift;
}

fn cutout_keep(b: u32, y: u32, x: u32) -> f32 {
    let o = b * STRIDE;
    let size = aug[o + 8u];
    if (size <= 0.0) {
        return 1.0;
    }
    let dy = abs(f32(y) - aug[o + 6u]);
    let dx = abs(f32(x) - aug[o + 7u]);
    return select(1.0, 0.0, dy < size * 0.5 && dx < size * 0.5);
}

@compute @workgroup_size(256)
fn geometric_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    let total = p.batch * p.h * p.w * p.c;
    if (i >= total) {
        return;
    }
    let ch = i % p.c;
    let x = (i / p.c) % p.w;
    let y = (i / (p.c * p.w)) % p.h;
    let b = i / (p.c * p.w * p.h);
    let o = b * STRIDE;
    let scale = aug[o + 5u];
    let uy = source_coord(f32(y), f32(p.h - 1u) * 0.5, scale, aug[o + 3u]);
    let ux = source_coord(f32(x), f32(p.w - 1u) * 0.5, scale, aug[o + 4u]);
    let y0 = i32(floor(uy));
    let x0 = i32(floor(ux));
    var acc = 0.0;
    for (var dy = 0; dy < 2; dy = dy + 1) {
        for (var dx = 0; dx < 2; dx = dx + 1) {
            let sy = y0 + dy;
            let sx = x0 + dx;
            if (sy >= 0 && sy < i32(p.h) && sx >= 0 && sx < i32(p.w)) {
                let wgt = tent(uy - f32(sy)) * tent(ux - f32(sx));
                acc = acc + wgt * src[((b * p.h + u32(sy)) * p.w + u32(sx)) * p.c + ch];
            }
        }
    }
    dst[i] = acc * cutout_keep(b, y, x);
}

@compute @workgroup_size(256)
fn geometric_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    // src = dout, dst = dimg; i indexes an input pixel s.
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    let total = p.batch * p.h * p.w * p.c;
    if (i >= total) {
        return;
    }
    let ch = i % p.c;
    let sx = (i / p.c) % p.w;
    let sy = (i / (p.c * p.w)) % p.h;
    let b = i / (p.c * p.w * p.h);
    let o = b * STRIDE;
    let scale = aug[o + 5u];
    let cy = f32(p.h - 1u) * 0.5;
    let cx = f32(p.w - 1u) * 0.5;
    let ty = aug[o + 3u];
    let tx = aug[o + 4u];
    // outputs whose source coordinate lies within 1 of s: o ∈ (c + σ(s − 1 − c + t), c + σ(s + 1 − c + t))
    let oy_lo = max(0, i32(floor(cy + scale * (f32(sy) - 1.0 - cy + ty))));
    let oy_hi = min(i32(p.h) - 1, i32(ceil(cy + scale * (f32(sy) + 1.0 - cy + ty))));
    let ox_lo = max(0, i32(floor(cx + scale * (f32(sx) - 1.0 - cx + tx))));
    let ox_hi = min(i32(p.w) - 1, i32(ceil(cx + scale * (f32(sx) + 1.0 - cx + tx))));
    var acc = 0.0;
    for (var oy = oy_lo; oy <= oy_hi; oy = oy + 1) {
        let wy = tent(source_coord(f32(oy), cy, scale, ty) - f32(sy));
        if (wy <= 0.0) {
            continue;
        }
        for (var ox = ox_lo; ox <= ox_hi; ox = ox + 1) {
            let wx = tent(source_coord(f32(ox), cx, scale, tx) - f32(sx));
            if (wx > 0.0) {
                let keep = cutout_keep(b, u32(oy), u32(ox));
                acc = acc + wy * wx * keep * src[((b * p.h + u32(oy)) * p.w + u32(ox)) * p.c + ch];
            }
        }
    }
    dst[i] = acc;
}
