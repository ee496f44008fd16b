// Implicit neural representation patch decoder of the ViTGAN generator: a two-layer StyleGAN2-modulated
// sine MLP over Fourier features. For patch n and pixel p, with E [T, F], s1 [N, F], s2 [N, Hd],
// W1 [Hd, F], b1 [Hd], W2 [C, Hd], b2 [C]:
//   a_{o,i} = W1_{o,i} s1_{n,i},  d1_o = 1/√(Σ_i a_{o,i}² + ε),  x_{p,o} = Σ_i a_{o,i} E_{p,i}
//   z_{p,o} = d1_o x_{p,o} + b1_o,  h_{p,o} = sin z_{p,o}
//   v_{c,j} = W2_{c,j} s2_{n,j},  d2_c = 1/√(Σ_j v_{c,j}² + ε)  (d2_c = 1 when p.demodulate_out = 0:
//   the output layer modulated only, as StyleGAN2's toRGB; then κ2 = 0 below)
//   out_{n,p,c} = d2_c Σ_j v_{c,j} h_{p,j} + b2_c
// Backward, with g = ∂L/∂out and κ1_o = d1_o³ Σ_p dz_{p,o} x_{p,o}, κ2_c = d2_c³ Σ_j v_{c,j} Σ_p g_{p,c} h_{p,j}:
//   db2_c = Σ_{n,p} g_{p,c}
//   P_{c,j} = d2_c Σ_p g_{p,c} h_{p,j};  dW2_{c,j} = Σ_n s2_j P_{c,j} − κ2_c W2_{c,j} s2_j²
//   ds2_j = Σ_c W2_{c,j} P_{c,j} − s2_j Σ_c κ2_c W2_{c,j}²
//   dh_{p,j} = s2_j Σ_c d2_c g_{p,c} W2_{c,j};  dz = dh cos z;  dx = d1 dz;  db1_o = Σ_{n,p} dz_{p,o}
//   Q_{p,i} = Σ_o dx_{p,o} W1_{o,i};  dE_{p,i} = Σ_n s1_i Q_{p,i}
//   dW1_{o,i} = Σ_n s1_i Σ_p dx_{p,o} E_{p,i} − κ1_o W1_{o,i} s1_i²
//   ds1_i = Σ_p E_{p,i} Q_{p,i} − s1_i Σ_o κ1_o W1_{o,i}²
//
// Work split (WG = 64 invocations, hidden units in chunks of 64, pixels in blocks of TB = 16).
// Layer 1 (`hidden_preactivation`, shared by both passes): the chunk's modulated weights a and E are
// staged KC = 16 features at a time; each invocation accumulates a 4×4 register block (4 hidden units ×
// 4 pixels), then the blocks are exchanged through workgroup memory so that invocation `lid` holds hidden
// unit hc·64 + lid for the 16 pixels of the block. Forward: one workgroup per patch; h of the block goes
// to workgroup memory and the layer-2 sums over the chunk are added into the output. Backward: one
// workgroup per run of consecutive patches; it recomputes h per patch, writes ds1 and ds2 of its patches,
// and accumulates the shared-weight gradients into its own partial record [dE | dW1 | db1 | dW2 | db2]
// (the layout of the packed inputs); `inr_sum_partials` adds the records up. Every global
// read-modify-write is done by the one invocation that owns the element (a fixed mapping), so there are
// no races and no atomics.

struct Params {
    patches: u32,
    pixels: u32,
    features: u32,
    hidden: u32,
    channels: u32,
    patches_per_group: u32,
    // offsets into the packed shared inputs [E | W1 | b1 | W2 | b2]; E starts at 0
    off_w1: u32,
    off_b1: u32,
    off_w2: u32,
    off_b2: u32,
    // length of the packed inputs (= one partial record)
    record: u32,
    groups: u32,
    // inr_backward: patches [first_in_group, first_in_group + per_dispatch) of each group's run (the
    // CPU loop budget splits a run over several dispatches; partial records accumulate)
    first_in_group: u32,
    per_dispatch: u32,
    // 1: demodulate the output layer (d2 as above); 0: d2 = 1
    demodulate_out: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// forward and backward
@group(0) @binding(1) var<storage, read> style1: array<f32>;
@group(0) @binding(2) var<storage, read> style2: array<f32>;
@group(0) @binding(3) var<storage, read> packed: array<f32>;
// forward
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// backward
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> dstyle1: array<f32>;
@group(0) @binding(6) var<storage, read_write> dstyle2: array<f32>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;
// partial sums
@group(0) @binding(1) var<storage, read> sum_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum_out: array<f32>;

// invocations per workgroup = hidden units per chunk = features per chunk of the backward's column
// phase (the 4×4 blocking of hidden_preactivation assumes WG = 64 and TB = 16)
const WG: u32 = 64u;
// pixels per block (four vec4 accumulators)
const TB: u32 = 16u;
// features per staged chunk of the layer-1 weights
const KC: u32 = 16u;
// channel limit (workgroup arrays below); the launcher checks it
const MAX_C: u32 = 8u;
// vec4s per row of a_tile: WG/4 and one of padding, so the staging writes of a row's KC features
// spread over the memory banks
const A_ROW: u32 = WG / 4u + 1u;
const EPS: f32 = 1e-8;

// modulated weights of a hidden chunk, KC features at a time: a_tile[i·A_ROW + o/4][o % 4]
var<workgroup> a_tile: array<vec4<f32>, KC * A_ROW>;
// Σ_i a_{o,i}² of the chunk: sumsq_tile[o/4][o % 4]
var<workgroup> sumsq_tile: array<vec4<f32>, WG / 4u>;
// E block of TB pixels × KC features: e_tile[i·4 + q] = E[pixel0 + 4q .. +4, k0 + i]
var<workgroup> e_tile: array<vec4<f32>, KC * TB / 4u>;
// forward: h of the block, backward: dx of the block; h_tile[o·4 + q] = pixels pixel0 + 4q .. +4
var<workgroup> h_tile: array<vec4<f32>, WG * TB / 4u>;
var<workgroup> s2_tile: array<f32, WG>;
var<workgroup> d2_tile: array<f32, MAX_C>;
// backward: g of the block, g_tile[c·4 + q] = pixels pixel0 + 4q .. +4
var<workgroup> g_tile: array<vec4<f32>, MAX_C * TB / 4u>;
var<workgroup> kappa1_tile: array<f32, WG>;
// backward: per-invocation partial sums of Σ_j v_{c,j} Σ_p g_{p,c} h_{p,j}, dd2_parts[c·WG + lid]
var<workgroup> dd2_parts: array<f32, MAX_C * WG>;
var<workgroup> kappa2_tile: array<f32, MAX_C>;

/// d2_c of patch n.
fn demod_out(n: u32, c: u32) -> f32 {
    if (p.demodulate_out == 0u) {
        return 1.0;
    }
    var ss = 0.0;
    for (var j = 0u; j < p.hidden; j = j + 1u) {
        let v = packed[p.off_w2 + c * p.hidden + j] * style2[n * p.hidden + j];
        ss = ss + v * v;
    }
    return inverseSqrt(ss + EPS);
}

struct Preactivation {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    // Σ_i a_{o,i}²
    sumsq: f32,
}

/// x_{p,o} for the TB pixels from pixel0 (zero beyond the patch) and Σ_i a_{o,i}² for hidden unit
/// o = hc·WG + lid. Called by the whole workgroup (with barriers): the chunk's modulated weights and
/// the E block are staged KC features at a time; invocation (og, pg) = (lid % 16, lid / 16) computes
/// the 4×4 block of hidden units hc·WG + 4·og .. +4 and pixels pixel0 + 4·pg .. +4, and the blocks are
/// exchanged through h_tile so that each invocation returns its own hidden unit's TB pixels.
fn hidden_preactivation(n: u32, patch_ok: bool, pixel0: u32, hc: u32, lid: u32) -> Preactivation {
    let nf = p.features;
    let og = lid % (WG / 4u);
    let pg = lid / (WG / 4u);
    var x0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0);
    var x3 = vec4<f32>(0.0);
    var ss = vec4<f32>(0.0);
    let chunks = (nf + KC - 1u) / KC;
    for (var kc = 0u; kc < chunks; kc = kc + 1u) {
        let k0 = kc * KC;
        workgroupBarrier();
        // a_tile[i·A_ROW + o/4][o % 4] = W1_{hc·WG + o, k0 + i} · s1_{k0 + i}; KC consecutive lanes read
        // one row
        for (var e = lid; e < KC * WG; e = e + WG) {
            let i = e % KC;
            let o = e / KC;
            let k = k0 + i;
            let row = hc * WG + o;
            var a = 0.0;
            if (patch_ok && k < nf && row < p.hidden) {
                a = packed[p.off_w1 + row * nf + k] * style1[n * nf + k];
            }
            a_tile[i * A_ROW + o / 4u][o % 4u] = a;
        }
        // e_tile[i·4 + q] = E[pixel0 + 4q .. +4, k0 + i]
        for (var e = lid; e < KC * TB / 4u; e = e + WG) {
            let k = k0 + e / 4u;
            let first = pixel0 + 4u * (e % 4u);
            var v = vec4<f32>(0.0);
            if (k < nf) {
                for (var r = 0u; r < 4u; r = r + 1u) {
                    if (first + r < p.pixels) {
                        v[r] = packed[(first + r) * nf + k];
                    }
                }
            }
            e_tile[e] = v;
        }
        workgroupBarrier();
        for (var i = 0u; i < KC; i = i + 1u) {
            let a = a_tile[i * A_ROW + og];
            let e = e_tile[i * 4u + pg];
            ss = ss + a * a;
            x0 = x0 + a.x * e;
            x1 = x1 + a.y * e;
            x2 = x2 + a.z * e;
            x3 = x3 + a.w * e;
        }
    }
    // exchange: h_tile[o·4 + q] = x of hidden unit o, pixels pixel0 + 4q .. +4
    workgroupBarrier();
    h_tile[(og * 4u) * 4u + pg] = x0;
    h_tile[(og * 4u + 1u) * 4u + pg] = x1;
    h_tile[(og * 4u + 2u) * 4u + pg] = x2;
    h_tile[(og * 4u + 3u) * 4u + pg] = x3;
    if (pg == 0u) {
        sumsq_tile[og] = ss;
    }
    workgroupBarrier();
    return Preactivation(h_tile[lid * 4u], h_tile[lid * 4u + 1u], h_tile[lid * 4u + 2u],
                         h_tile[lid * 4u + 3u], sumsq_tile[lid / 4u][lid % 4u]);
}

@compute @workgroup_size(64)
fn inr_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let n = wid.y * nwg.x + wid.x;
    // patches beyond the end still take part in the barriers, writing nothing
    let patch_ok = n < p.patches;
    let nh = p.hidden;
    let nc = p.channels;
    if (lid < MAX_C) {
        var d = 0.0;
        if (patch_ok && lid < nc) {
            d = demod_out(n, lid);
        }
        d2_tile[lid] = d;
    }
    let hidden_chunks = (nh + WG - 1u) / WG;
    let pixel_blocks = (p.pixels + TB - 1u) / TB;
    for (var hc = 0u; hc < hidden_chunks; hc = hc + 1u) {
        let o = hc * WG + lid;
        let o_ok = patch_ok && o < nh;
        var b1 = 0.0;
        var s2 = 0.0;
        if (o_ok) {
            b1 = packed[p.off_b1 + o];
            s2 = style2[n * nh + o];
        }
        for (var pb = 0u; pb < pixel_blocks; pb = pb + 1u) {
            let pixel0 = pb * TB;
            let pre = hidden_preactivation(n, patch_ok, pixel0, hc, lid);
            let d1 = inverseSqrt(pre.sumsq + EPS);
            // the previous block's layer-2 sums are done reading h_tile and s2_tile
            workgroupBarrier();
            if (o_ok) {
                h_tile[lid * 4u] = sin(d1 * pre.x0 + b1);
                h_tile[lid * 4u + 1u] = sin(d1 * pre.x1 + b1);
                h_tile[lid * 4u + 2u] = sin(d1 * pre.x2 + b1);
                h_tile[lid * 4u + 3u] = sin(d1 * pre.x3 + b1);
            } else {
                for (var q = 0u; q < 4u; q = q + 1u) {
                    h_tile[lid * 4u + q] = vec4<f32>(0.0);
                }
            }
            s2_tile[lid] = s2;
            workgroupBarrier();
            // out_{p,c} += d2_c Σ_{o in chunk} v_{c,o} h_{p,o}; pair (q, c) always goes to the same invocation
            let len = min(WG, nh - hc * WG);
            for (var pair = lid; pair < TB * nc; pair = pair + WG) {
                let q = pair / nc;
                let c = pair % nc;
                let pix = pixel0 + q;
                if (patch_ok && pix < p.pixels) {
                    let row = p.off_w2 + c * nh + hc * WG;
                    var acc = 0.0;
                    for (var j = 0u; j < len; j = j + 1u) {
                        acc = acc + packed[row + j] * s2_tile[j] * h_tile[j * 4u + q / 4u][q % 4u];
                    }
                    let idx = (n * p.pixels + pix) * nc + c;
                    var prev = packed[p.off_b2 + c];
                    if (hc > 0u) {
                        prev = out[idx];
                    }
                    out[idx] = prev + d2_tile[c] * acc;
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn inr_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let group = wid.y * nwg.x + wid.x;
    let nt = p.pixels;
    let nf = p.features;
    let nh = p.hidden;
    let nc = p.channels;
    let rec = group * p.record;
    // groups beyond the end loop over no patches
    let run_end = min(group * p.patches_per_group + p.patches_per_group, p.patches);
    let first_patch = min(group * p.patches_per_group + p.first_in_group, run_end);
    let end_patch = min(first_patch + p.per_dispatch, run_end);
    let hidden_chunks = (nh + WG - 1u) / WG;
    let pixel_blocks = (nt + TB - 1u) / TB;
    let feature_chunks = (nf + WG - 1u) / WG;
    for (var n = first_patch; n < end_patch; n = n + 1u) {
        // the previous patch is done with d2_tile, dd2_parts and kappa2_tile
        workgroupBarrier();
        if (lid < MAX_C) {
            var d = 0.0;
            if (lid < nc) {
                d = demod_out(n, lid);
                var gsum = 0.0;
                for (var q = 0u; q < nt; q = q + 1u) {
                    gsum = gsum + dout[(n * nt + q) * nc + lid];
                }
                partials[rec + p.off_b2 + lid] += gsum;
            }
            d2_tile[lid] = d;
        }
        for (var c = 0u; c < MAX_C; c = c + 1u) {
            dd2_parts[c * WG + lid] = 0.0;
        }
        for (var i = lid; i < nf; i = i + WG) {
            dstyle1[n * nf + i] = 0.0;
        }
        for (var hc = 0u; hc < hidden_chunks; hc = hc + 1u) {
            let o = hc * WG + lid;
            let o_ok = o < nh;
            var b1 = 0.0;
            var s2 = 0.0;
            if (o_ok) {
                b1 = packed[p.off_b1 + o];
                s2 = style2[n * nh + o];
            }
            var dd1 = 0.0;
            var db1 = 0.0;
            var ds2 = 0.0;
            for (var pb = 0u; pb < pixel_blocks; pb = pb + 1u) {
                let pixel0 = pb * TB;
                // g of the block (published by the first barrier of hidden_preactivation)
                if (lid < MAX_C * TB / 4u) {
                    let c = lid / 4u;
                    let first = pixel0 + 4u * (lid % 4u);
                    var v = vec4<f32>(0.0);
                    if (c < nc) {
                        for (var r = 0u; r < 4u; r = r + 1u) {
                            if (first + r < nt) {
                                v[r] = dout[(n * nt + first + r) * nc + c];
                            }
                        }
                    }
                    g_tile[lid] = v;
                }
                let pre = hidden_preactivation(n, true, pixel0, hc, lid);
                let d1 = inverseSqrt(pre.sumsq + EPS);
                let z0 = d1 * pre.x0 + b1;
                let z1 = d1 * pre.x1 + b1;
                let z2 = d1 * pre.x2 + b1;
                let z3 = d1 * pre.x3 + b1;
                let h0 = sin(z0);
                let h1 = sin(z1);
                let h2 = sin(z2);
                let h3 = sin(z3);
                // layer 2 (pixels beyond the patch have g = 0; hidden units beyond Hd have w2 = s2 = 0)
                var dh0 = vec4<f32>(0.0);
                var dh1 = vec4<f32>(0.0);
                var dh2 = vec4<f32>(0.0);
                var dh3 = vec4<f32>(0.0);
                for (var c = 0u; c < nc; c = c + 1u) {
                    var w2 = 0.0;
                    if (o_ok) {
                        w2 = packed[p.off_w2 + c * nh + o];
                    }
                    let g0 = g_tile[c * 4u];
                    let g1 = g_tile[c * 4u + 1u];
                    let g2 = g_tile[c * 4u + 2u];
                    let g3 = g_tile[c * 4u + 3u];
                    let d2 = d2_tile[c];
                    let dyw = d2 * w2;
                    dh0 = dh0 + dyw * g0;
                    dh1 = dh1 + dyw * g1;
                    dh2 = dh2 + dyw * g2;
                    dh3 = dh3 + dyw * g3;
                    // Σ_p g_{p,c} h_{p,o}
                    let gh = dot(g0, h0) + dot(g1, h1) + dot(g2, h2) + dot(g3, h3);
                    if (o_ok) {
                        partials[rec + p.off_w2 + c * nh + o] += s2 * d2 * gh;
                    }
                    ds2 = ds2 + dyw * gh;
                    dd2_parts[c * WG + lid] += w2 * s2 * gh;
                }
                // layer 1
                let dz0 = s2 * dh0 * cos(z0);
                let dz1 = s2 * dh1 * cos(z1);
                let dz2 = s2 * dh2 * cos(z2);
                let dz3 = s2 * dh3 * cos(z3);
                let ones = vec4<f32>(1.0);
                db1 = db1 + dot(dz0 + dz1 + dz2 + dz3, ones);
                dd1 = dd1 + dot(dz0, pre.x0) + dot(dz1, pre.x1) + dot(dz2, pre.x2) + dot(dz3, pre.x3);
                // the previous block's column phase is done reading h_tile (dx) and kappa1_tile
                workgroupBarrier();
                h_tile[lid * 4u] = d1 * dz0;
                h_tile[lid * 4u + 1u] = d1 * dz1;
                h_tile[lid * 4u + 2u] = d1 * dz2;
                h_tile[lid * 4u + 3u] = d1 * dz3;
                // the demodulation term enters once, with the last block (when dd1 is complete)
                var kappa1 = 0.0;
                if (o_ok && pb + 1u == pixel_blocks) {
                    kappa1 = dd1 * d1 * d1 * d1;
                }
                kappa1_tile[lid] = kappa1;
                workgroupBarrier();
                // column phase: invocation owns feature i = kc·WG + lid
                let len = min(WG, nh - hc * WG);
                for (var kc = 0u; kc < feature_chunks; kc = kc + 1u) {
                    let i = kc * WG + lid;
                    if (i < nf) {
                        let s1 = style1[n * nf + i];
                        var e0 = vec4<f32>(0.0);
                        var e1 = vec4<f32>(0.0);
                        var e2 = vec4<f32>(0.0);
                        var e3 = vec4<f32>(0.0);
                        for (var r = 0u; r < 4u; r = r + 1u) {
                            if (pixel0 + r < nt) { e0[r] = packed[(pixel0 + r) * nf + i]; }
                            if (pixel0 + 4u + r < nt) { e1[r] = packed[(pixel0 + 4u + r) * nf + i]; }
                            if (pixel0 + 8u + r < nt) { e2[r] = packed[(pixel0 + 8u + r) * nf + i]; }
                            if (pixel0 + 12u + r < nt) { e3[r] = packed[(pixel0 + 12u + r) * nf + i]; }
                        }
                        var q0 = vec4<f32>(0.0);
                        var q1 = vec4<f32>(0.0);
                        var q2 = vec4<f32>(0.0);
                        var q3 = vec4<f32>(0.0);
                        var corr = 0.0;
                        for (var j = 0u; j < len; j = j + 1u) {
                            let oj = hc * WG + j;
                            let w = packed[p.off_w1 + oj * nf + i];
                            let x0 = h_tile[j * 4u];
                            let x1 = h_tile[j * 4u + 1u];
                            let x2 = h_tile[j * 4u + 2u];
                            let x3 = h_tile[j * 4u + 3u];
                            q0 = q0 + w * x0;
                            q1 = q1 + w * x1;
                            q2 = q2 + w * x2;
                            q3 = q3 + w * x3;
                            let xe = dot(x0, e0) + dot(x1, e1) + dot(x2, e2) + dot(x3, e3);
                            let k1 = kappa1_tile[j];
                            partials[rec + p.off_w1 + oj * nf + i] += s1 * (xe - k1 * w * s1);
                            corr = corr + k1 * w * w;
                        }
                        let eq = dot(e0, q0) + dot(e1, q1) + dot(e2, q2) + dot(e3, q3);
                        dstyle1[n * nf + i] += eq - s1 * corr;
                        for (var r = 0u; r < 4u; r = r + 1u) {
                            if (pixel0 + r < nt) { partials[rec + (pixel0 + r) * nf + i] += s1 * q0[r]; }
                            if (pixel0 + 4u + r < nt) { partials[rec + (pixel0 + 4u + r) * nf + i] += s1 * q1[r]; }
                            if (pixel0 + 8u + r < nt) { partials[rec + (pixel0 + 8u + r) * nf + i] += s1 * q2[r]; }
                            if (pixel0 + 12u + r < nt) { partials[rec + (pixel0 + 12u + r) * nf + i] += s1 * q3[r]; }
                        }
                    }
                }
            }
            if (o_ok) {
                partials[rec + p.off_b1 + o] += db1;
                dstyle2[n * nh + o] = ds2;
            }
        }
        // κ2_c = d2_c³ Σ_j v_{c,j} Σ_p g_{p,c} h_{p,j}
        workgroupBarrier();
        if (lid < MAX_C) {
            var k2 = 0.0;
            if (lid < nc) {
                var dd2 = 0.0;
                for (var l = 0u; l < WG; l = l + 1u) {
                    dd2 = dd2 + dd2_parts[lid * WG + l];
                }
                let d2 = d2_tile[lid];
                k2 = select(0.0, dd2 * d2 * d2 * d2, p.demodulate_out != 0u);
            }
            kappa2_tile[lid] = k2;
        }
        workgroupBarrier();
        // demodulation terms of layer 2; j = hc·WG + lid as above, so each element keeps its owner
        for (var j = lid; j < nh; j = j + WG) {
            let s2 = style2[n * nh + j];
            var corr = 0.0;
            for (var c = 0u; c < nc; c = c + 1u) {
                let w = packed[p.off_w2 + c * nh + j];
                let k2 = kappa2_tile[c];
                corr = corr + k2 * w * w;
                partials[rec + p.off_w2 + c * nh + j] -= k2 * w * s2 * s2;
            }
            dstyle2[n * nh + j] -= s2 * corr;
        }
    }
}

// sum_out[x] = Σ_g sum_in[g · record + x]
@compute @workgroup_size(256)
fn inr_sum_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let x = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (x < p.record) {
        var s = 0.0;
        for (var g = 0u; g < p.groups; g = g + 1u) {
            s = s + sum_in[g * p.record + x];
        }
        sum_out[x] = s;
    }
}
