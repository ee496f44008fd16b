// Convolution as im2col + matmul: the gather that lays the receptive fields out as rows.
// Image [B, H, W, C] (NHWC); kernel kh × kw, stride (sy, sx), zero padding (py, px); output
// OH = (H + 2·py − kh)/sy + 1, OW = (W + 2·px − kw)/sx + 1. Row r = (b·OH + oy)·OW + ox of the
// column matrix holds the window in (ky, kx, channel) order:
//   cols[r, (ky·kw + kx)·C + ch] = img[b, oy·sy − py + ky, ox·sx − px + kx, ch]   (0 outside the image)
// so that conv(img) = cols · W with W [kh·kw·C, C_out] in the same (ky, kx, ch) row order.
// `im2col`: one invocation per element of cols, no loop. `im2col_vec4` (C a multiple of 4): one
// invocation per window tap (row, ky, kx), copying its pixel's C/4 vec4s in a loop of C/4 trips
// (`channels` then counts vec4s, `n` counts taps).

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
    // elements of cols
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> img: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

// im2col_vec4
@group(0) @binding(1) var<storage, read> img4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> cols4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let row_len = p.kernel_h * p.kernel_w * p.channels;
    let col = idx % row_len;
    let row = idx / row_len;
    let ch = col % p.channels;
    let kx = (col / p.channels) % p.kernel_w;
    let ky = col / (p.channels * p.kernel_w);
    let ox = row % p.out_w;
    let oy = (row / p.out_w) % p.out_h;
    let b = row / (p.out_w * p.out_h);
    let y = i32(oy * p.stride_y + ky) - i32(p.pad_y);
    let x = i32(ox * p.stride_x + kx) - i32(p.pad_x);
    var value = 0.0;
    if (y >= 0 && y < i32(p.height) && x >= 0 && x < i32(p.width)) {
        value = img[((b * p.height + u32(y)) * p.width + u32(x)) * p.channels + ch];
    }
    cols[idx] = value;
}

@compute @workgroup_size(256)
fn im2col_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    // one invocation per (row, ky, kx): copies the pixel's C/4 vec4s (integer division is scalar on
    // CPU adapters, so the index is decoded once per pixel, not per element)
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let taps = p.kernel_h * p.kernel_w;
    let tap = idx % taps;
    let row = idx / taps;
    let kx = tap % p.kernel_w;
    let ky = tap / p.kernel_w;
    let ox = row % p.out_w;
    let oy = (row / p.out_w) % p.out_h;
    let b = row / (p.out_w * p.out_h);
    let y = i32(oy * p.stride_y + ky) - i32(p.pad_y);
    let x = i32(ox * p.stride_x + kx) - i32(p.pad_x);
    let dst = idx * p.channels;
    if (y >= 0 && y < i32(p.height) && x >= 0 && x < i32(p.width)) {
        let src = ((b * p.height + u32(y)) * p.width + u32(x)) * p.channels;
        for (var c = 0u; c < p.channels; c++) {
            cols4[dst + c] = img4[src + c];
        }
    } else {
        for (var c = 0u; c < p.channels; c++) {
            cols4[dst + c] = vec4<f32>(0.0);
        }
    }
}
