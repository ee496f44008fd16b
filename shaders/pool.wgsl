// Max and average pooling of NHWC images [B, H, W, C] over k_h × k_w windows at stride (sy, sx) with
// padding (py, px); output [B, OH, OW, C], OH = (H + 2·py − kh)/sy + 1 (floor), OW likewise.
//   max_pool[b, oy, ox, c] = max over the window's in-image pixels (padding never wins)
//   avg_pool[b, oy, ox, c] = (Σ over the window's in-image pixels) / (their count)
// i.e. PyTorch's max_pool2d and avg_pool2d(count_include_pad=False). One invocation per output
// element (`max_pool`, `avg_pool`: kh·kw loop trips), or, when C is a multiple of 4, per output
// pixel looping over its C/4 vec4s (`max_pool_vec4`, `avg_pool_vec4`: `channels` counts vec4s, `n`
// pixels; C/4·kh·kw trips). Integer division is scalar on CPU adapters: the vec4 kernels decode
// their index once per pixel. A launcher check keeps the trips within the CPU loop budget.

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

// The window of output element `idx` clipped to the image: (y0, y1, x0, x1) half-open, and the
// base offset of its image.
fn window(idx: u32) -> vec4<i32> {
    let ox = (idx / p.channels) % p.out_w;
    let oy = (idx / (p.channels * p.out_w)) % p.out_h;
    let y0 = i32(oy * p.stride_y) - i32(p.pad_y);
    let x0 = i32(ox * p.stride_x) - i32(p.pad_x);
    return vec4<i32>(max(y0, 0), min(y0 + i32(p.kernel_h), i32(p.height)),
                     max(x0, 0), min(x0 + i32(p.kernel_w), i32(p.width)));
}

fn image_offset(idx: u32) -> u32 {
    let b = idx / (p.channels * p.out_w * p.out_h);
    return b * p.height * p.width * p.channels + idx % p.channels;
}

@compute @workgroup_size(256)
fn max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let w = window(idx);
    let base = image_offset(idx);
    var best = -3.4028234e38;
    for (var y = w.x; y < w.y; y++) {
        for (var x = w.z; x < w.w; x++) {
            best = max(best, img[base + (u32(y) * p.width + u32(x)) * p.channels]);
        }
    }
    pooled[idx] = best;
}

@compute @workgroup_size(256)
fn avg_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let w = window(idx);
    let base = image_offset(idx);
    var sum = 0.0;
    for (var y = w.x; y < w.y; y++) {
        for (var x = w.z; x < w.w; x++) {
            sum += img[base + (u32(y) * p.width + u32(x)) * p.channels];
        }
    }
    pooled[idx] = sum / f32((w.y - w.x) * (w.w - w.z));
}

// The window of output pixel `pixel` (= (b·OH + oy)·OW + ox) clipped to the image, and the offset of
// its image, for the vec4 kernels.
fn pixel_window(pixel: u32) -> vec4<i32> {
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let y0 = i32(oy * p.stride_y) - i32(p.pad_y);
    let x0 = i32(ox * p.stride_x) - i32(p.pad_x);
    return vec4<i32>(max(y0, 0), min(y0 + i32(p.kernel_h), i32(p.height)),
                     max(x0, 0), min(x0 + i32(p.kernel_w), i32(p.width)));
}

@compute @workgroup_size(256)
fn max_pool_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let pixel = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (pixel >= p.n) {
        return;
    }
    let w = pixel_window(pixel);
    let base = (pixel / (p.out_w * p.out_h)) * p.height * p.width * p.channels;
    for (var c = 0u; c < p.channels; c++) {
        var best = vec4<f32>(-3.4028234e38);
        for (var y = w.x; y < w.y; y++) {
            for (var x = w.z; x < w.w; x++) {
                best = max(best, img4[base + (u32(y) * p.width + u32(x)) * p.channels + c]);
            }
        }
        pooled4[pixel * p.channels + c] = best;
    }
}

@compute @workgroup_size(256)
fn avg_pool_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let pixel = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (pixel >= p.n) {
        return;
    }
    let w = pixel_window(pixel);
    let base = (pixel / (p.out_w * p.out_h)) * p.height * p.width * p.channels;
    let inv_count = 1.0 / f32((w.y - w.x) * (w.w - w.z));
    for (var c = 0u; c < p.channels; c++) {
        var sum = vec4<f32>(0.0);
        for (var y = w.x; y < w.y; y++) {
            for (var x = w.z; x < w.w; x++) {
                sum += img4[base + (u32(y) * p.width + u32(x)) * p.channels + c];
            }
        }
        pooled4[pixel * p.channels + c] = sum * inv_count;
    }
}
