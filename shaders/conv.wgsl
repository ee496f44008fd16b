// Convolution as im2col + matmul: the gather that lays the receptive fields out as rows.
// Image [B, H, W, C] (NHWC); kernel kh × kw, stride (sy, sx), zero padding (py, px); output
// OH = (H + 2·py − kh)/sy + 1, OW = (W + 2·px − kw)/sx + 1. Row r = (b·OH + oy)·OW + ox of the
// column matrix holds the window in (ky, kx, channel) order:
//   cols[r, (ky·kw + kx)·C + ch] = img[b, oy·sy − py + ky, ox·sx − px + kx, ch]   (0 outside the image)
// so that conv(img) = cols · W with W [kh·kw·C, C_out] in the same (ky, kx, ch) row order.
// One invocation per element of cols: no loop.

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
