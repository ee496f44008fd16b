// Overlapping patches of NHWC images and the transposed gather.
// Image [B, H, W, C]; patch size P, overlap o, window K = P + 2o; a grid of gh × gw = (H/P) × (W/P)
// patches with stride P, numbered l = gy·gw + gx. Patch values are in (row, col, channel) order:
//   patches[b, l, (r·K + c)·C + ch] = img[b, gy·P − o + r, gx·P − o + c, ch]   (0 outside the image)
// extract_patches_backward is the transpose (overlapping windows add up), gathered per image element:
//   dimg[b, y, x, ch] = Σ_{gy, gx : 0 ≤ y + o − gy·P < K, 0 ≤ x + o − gx·P < K}
//                         dpatches[b, gy·gw + gx, ((y + o − gy·P)·K + (x + o − gx·P))·C + ch]
// With o = 0 the backward is the inverse of the forward (the generator's patches → image).

struct Params {
    batch: u32,
    height: u32,
    width: u32,
    channels: u32,
    patch_size: u32,
    overlap: u32,
    grid_w: u32,
    grid_h: u32,
    // elements of the output of the entry point
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// extract_patches
@group(0) @binding(1) var<storage, read> ex_img: array<f32>;
@group(0) @binding(2) var<storage, read_write> ex_patches: array<f32>;

// extract_patches_backward
@group(0) @binding(1) var<storage, read> bw_dpatches: array<f32>;
@group(0) @binding(2) var<storage, read_write> bw_dimg: array<f32>;

@compute @workgroup_size(256)
fn extract_patches(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let k = p.patch_size + 2u * p.overlap;
    let ch = idx % p.channels;
    var t = idx / p.channels;
    let c = t % k;
    t = t / k;
    let r = t % k;
    t = t / k;
    let l = t % (p.grid_h * p.grid_w);
    let b = t / (p.grid_h * p.grid_w);
    let y = i32((l / p.grid_w) * p.patch_size + r) - i32(p.overlap);
    let x = i32((l % p.grid_w) * p.patch_size + c) - i32(p.overlap);
    var value = 0.0;
    if (y >= 0 && y < i32(p.height) && x >= 0 && x < i32(p.width)) {
        value = ex_img[((b * p.height + u32(y)) * p.width + u32(x)) * p.channels + ch];
    }
    ex_patches[idx] = value;
}

// Grid cells g whose window [g·P − o, g·P − o + K) contains pixel coordinate `pos`, clamped to the grid:
// returns (first, last + 1).
fn covering_cells(pos: u32, cells: u32) -> vec2<u32> {
    let k = p.patch_size + 2u * p.overlap;
    let shifted = pos + p.overlap; // g·P ≤ shifted < g·P + K
    var first = 0u;
    if (shifted + 1u > k) {
        first = (shifted + 1u - k + p.patch_size - 1u) / p.patch_size;
    }
    let last_plus_one = min(shifted / p.patch_size + 1u, cells);
    return vec2<u32>(first, max(first, last_plus_one));
}

@compute @workgroup_size(256)
fn extract_patches_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= p.n) {
        return;
    }
    let k = p.patch_size + 2u * p.overlap;
    let ch = idx % p.channels;
    var t = idx / p.channels;
    let x = t % p.width;
    t = t / p.width;
    let y = t % p.height;
    let b = t / p.height;
    let rows = covering_cells(y, p.grid_h);
    let cols = covering_cells(x, p.grid_w);
    var acc = 0.0;
    for (var gy = rows.x; gy < rows.y; gy = gy + 1u) {
        let r = y + p.overlap - gy * p.patch_size;
        for (var gx = cols.x; gx < cols.y; gx = gx + 1u) {
            let c = x + p.overlap - gx * p.patch_size;
            let l = gy * p.grid_w + gx;
            acc = acc + bw_dpatches[(((b * p.grid_h * p.grid_w + l) * k + r) * k + c) * p.channels + ch];
        }
    }
    bw_dimg[idx] = acc;
}
