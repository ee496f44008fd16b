// Bilinear resize of NHWC images [B, H, W, C] → [B, OH, OW, C], PyTorch's
// interpolate(mode="bilinear", align_corners=False): for each axis, with scale = in / out,
//   s = max((o + 0.5)·scale − 0.5, 0),  i0 = floor(s),  i1 = min(i0 + 1, in − 1),  t = s − i0
//   out = (1−ty)·((1−tx)·x[i0y, i0x] + tx·x[i0y, i1x]) + ty·((1−tx)·x[i1y, i0x] + tx·x[i1y, i1x])
// One invocation per output element, no loop.

struct Params {
    height: u32,
    width: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    // elements of the output
    n: u32,
    scale_y: f32,
    scale_x: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> img: array<f32>;
@group(0) @binding(2) var<storage, read_write> resized: array<f32>;

// (i0, i1, t) of output coordinate `o` along an axis of `size` input pixels.
fn source(o: u32, scale: f32, size: u32) -> vec3<f32> {
    let s = max((f32(o) + 0.5) * scale - 0.5, 0.0);
    let i0 = min(u32(floor(s)), size - 1u);
    let i1 = min(i0 + 1u, size - 1u);
    return vec3<f32>(f32(i0), f32(i1), s - f32(i0));
}

@compute @workgroup_size(256)
fn resize_bilinear(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let ch = idx % p.channels;
    let ox = (idx / p.channels) % p.out_w;
    let oy = (idx / (p.channels * p.out_w)) % p.out_h;
    let b = idx / (p.channels * p.out_w * p.out_h);
    let sy = source(oy, p.scale_y, p.height);
    let sx = source(ox, p.scale_x, p.width);
    let base = b * p.height * p.width * p.channels + ch;
    let y0 = u32(sy.x) * p.width;
    let y1 = u32(sy.y) * p.width;
    let x0 = u32(sx.x);
    let x1 = u32(sx.y);
    let top = mix(img[base + (y0 + x0) * p.channels], img[base + (y0 + x1) * p.channels], sx.z);
    let bottom = mix(img[base + (y1 + x0) * p.channels], img[base + (y1 + x1) * p.channels], sx.z);
    resized[idx] = mix(top, bottom, sy.z);
}
