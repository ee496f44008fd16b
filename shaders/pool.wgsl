// Max and average pooling of NHWC images [B, H, W, C] over k_h × k_w windows at stride (sy, sx) with
// padding (py, px); output [B, OH, OW, C], OH = (H + 2·py − kh)/sy + 1 (floor), OW likewise.
//   max_pool[b, oy, ox, c] = max over the window's in-image pixels (padding never wins)
//   avg_pool[b, oy, ox, c] = (Σ over the window's in-image pixels) / (their count)
// i.e. PyTorch's max_pool2d and avg_pool2d(count_include_pad=False); the `AVERAGE` override picks
// which. `pool`: one invocation per output element (kh·kw loop trips). `pool_vec4` (C a multiple of
// 4): one invocation per output pixel looping over its C/4 vec4s (`channels` counts vec4s, `n`
// pixels; C/4·kh·kw trips) — integer division is scalar on CPU adapters, so the index is decoded
// once per pixel. A launcher check keeps the trips within the CPU loop budget.

override AVERAGE: bool = false;

struct Params {
    height: u32,
    width: u32,
    channels: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_y: u32,
    stride_x: u32,
    pad_y: u32,
    pad_x: u32,
    out_h: u32,
    out_w: u32,
    // elements of the output
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> img: array<f32>;
@group(0) @binding(2) var<storage, read_write> pooled: array<f32>;
@group(0) @binding(1) var<storage, read> img4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> pooled4: array<vec4<f32>>;

// The window of output pixel `pixel` (= (b·OH + oy)·OW + ox) clipped to the image, as
// (y0, y1, x0, x1) half-open.
fn pixel_window(pixel: u32) -> vec4<i32> {
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let y0 = i32(oy * p.stride_y) - i32(p.pad_y);
    let x0 = i32(ox * p.stride_x) - i32(p.pad_x);
    return vec4<i32>(max(y0, 0), min(y0 + i32(p.kernel_h), i32(p.height)),
                     max(x0, 0), min(x0 + i32(p.kernel_w), i32(p.width)));
}

// The pooling reduction, maximum or (AVERAGE) mean, as start → combine per pixel → finish.
fn pool_start() -> vec4<f32> {
    return vec4<f32>(select(-3.4028234e38, 0.0, AVERAGE));
}

fn pool_combine(acc: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    return select(max(acc, v), acc + v, AVERAGE);
}

fn pool_finish(acc: vec4<f32>, w: vec4<i32>) -> vec4<f32> {
    return select(acc, acc / f32((w.y - w.x) * (w.w - w.z)), AVERAGE);
}

@compute @workgroup_size(256)
fn pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let pixel = idx / p.channels;
    let w = pixel_window(pixel);
    let base = (pixel / (p.out_w * p.out_h)) * p.height * p.width * p.channels + idx % p.channels;
    var acc = pool_start();
    for (var y = w.x; y < w.y; y++) {
        for (var x = w.z; x < w.w; x++) {
            acc = pool_combine(acc, vec4<f32>(img[base + (u32(y) * p.width + u32(x)) * p.channels]));
        }
    }
    pooled[idx] = pool_finish(acc, w).x;
}

@compute @workgroup_size(256)
fn pool_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let pixel = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (pixel >= p.n) {
        return;
    }
    let w = pixel_window(pixel);
    let base = (pixel / (p.out_w * p.out_h)) * p.height * p.width * p.channels;
    for (var c = 0u; c < p.channels; c++) {
        var acc = pool_start();
        for (var y = w.x; y < w.y; y++) {
            for (var x = w.z; x < w.w; x++) {
                acc = pool_combine(acc, img4[base + (u32(y) * p.width + u32(x)) * p.channels + c]);
            }
        }
        pooled4[pixel * p.channels + c] = pool_finish(acc, w);
    }
}
