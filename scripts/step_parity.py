#!/usr/bin/env python3
"""Independent float64 PyTorch reference of ONE training step of the `vitgan` crate.

Mirrors `Trainer::step_with_trace` (src/train/mod.rs): D's step (non-saturating logistic or hinge loss, bCR,
DiffAugment, one power iteration of every spectrally normalised weight, Adam), then G's step (D frozen
with its updated weights, power iteration not advanced, non-saturating loss on augmented fakes).
Every op is re-derived from the crate's documented formulas (src/nn, src/model, src/autodiff,
src/ops, shaders/*.wgsl) and differentiated by torch autograd in float64, so it shares no code and
no float32 shortcut with the crate (e.g. the L2-attention kernel's `α q·k + b_j + r_i` expansion, the
LayerNorm kernel's shifted sums, the attention backward's dropped `Σ_j dS_ij = 0` term: all exact
math, recomputed here in float64). Only values that the crate *defines* in float32 are reproduced in
float32: the augmentation parameters (bit-exact hash of `shaders/augment.wgsl`), the grid coordinates,
the equalised-lr runtime scales, and the f32 hyperparameters/epsilons.

Usage:
    python3 scripts/step_parity.py INPUT.safetensors OUTPUT.json [--compare RUST.json]

INPUT is written by `cargo test --release --test step_parity -- --ignored dump`
(`target/step_parity/<case>.safetensors`): a training checkpoint (src/train/checkpoint.rs) plus
`parity.real`, `parity.z_d`, `parity.z_g` and the metadata `parity.aug_seeds`, `parity.train`.
OUTPUT is the fixture format of tests/step_parity.rs. `--compare` only prints differences against
the crate's own results (`<case>.rust.json`); they are never used for computing.
No weights are written anywhere.
"""

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

torch.set_num_threads(2)
DT = torch.float64


def f32(x):
    """A constant the crate holds as an f32, as the exact double of that f32."""
    return float(np.float32(x))


# f32 constants of the crate
LN_EPS = f32(1e-5)  # src/nn/mod.rs LN_EPS
STYLE_EPS = f32(1e-8)  # src/model/generator.rs Generator::style
DEMOD_EPS = f32(1e-8)  # src/ops/inr.rs DEMOD_EPS
LEAKY = f32(0.2)  # src/model/generator.rs mapping activation
SQRT_2_OVER_PI = f32(0.7978845608028654)  # shaders/elementwise.wgsl, shaders/matmul.wgsl
GELU_CUBIC = f32(0.044715)

# ModelConfig switches this script implements: only the presets' defaults (src/model/config.rs)
DEFAULT_SWITCHES = {
    "config.d_attention": "L2",
    "config.d_weight_norm": "ImprovedSpectral",
    "config.d_overlapping_patches": "true",
    "config.g_style": "SelfModulatedLayerNorm",
    "config.g_decoder": "Implicit",
    "config.d_query_gain": "1",
    "config.g_equalised_affines": "false",
}


# --------------------------------------------------------------------------------------------------
# input


class Config:
    """The model fields of the checkpoint metadata (`ModelConfig::fields`, src/model/config.rs)."""

    def __init__(self, meta):
        for k, want in DEFAULT_SWITCHES.items():
            got = meta.get(k)
            if got != want:
                raise SystemExit(
                    f"{k} = {got!r}: this reference implements only {want!r} (the presets' default)"
                )
        demod = meta.get("config.inr_demodulate_output")
        if demod not in ("true", "false"):
            raise SystemExit(f"config.inr_demodulate_output = {demod!r}: expected true or false")
        self.inr_demodulate_output = demod == "true"
        i = lambda k: int(meta["config." + k])
        self.image_size = i("image_size")
        self.channels = i("channels")
        self.latent_dim = i("latent_dim")
        self.mapping_layers = i("mapping_layers")
        self.inr_hidden = i("inr_hidden")
        for who in ("generator", "discriminator"):
            net = {f: i(f"{who}.{f}") for f in ("patch", "depth", "width", "heads", "mlp_hidden")}
            setattr(self, who[0], net)  # self.g, self.d


class Store:
    """Named tensors of one network by their ParamStore names (src/autodiff/params.rs).

    `leaf(name)` enters a parameter as a float64 leaf (requiring a gradient when trainable), like
    `Tape::param`; `used` records every parameter read, to check that the model covers the file."""

    def __init__(self, tensors, prefix, trainable):
        self.params = {}
        self.states = {}
        for k, v in tensors.items():
            if not k.startswith(prefix + "."):
                continue
            t = torch.tensor(v, dtype=DT)
            if k.endswith(".sn_u") or k.endswith(".sn_sigma_init"):
                self.states[k] = t
            else:
                self.params[k] = t.requires_grad_(trainable)
        self.used = set()
        self.used_states = set()

    @classmethod
    def frozen(cls, params, states):
        """A store of constants (D in G's step)."""
        s = cls({}, "", trainable=False)
        s.params = {k: v.detach() for k, v in params.items()}
        s.states = dict(states)
        return s

    def __getitem__(self, name):
        self.used.add(name)
        return self.params[name]

    def state(self, name):
        self.used_states.add(name)
        return self.states[name]

    def check_covered(self, what):
        missing = sorted(set(self.params) - self.used) + sorted(set(self.states) - self.used_states)
        if missing:
            raise SystemExit(f"{what}: tensors in the file this model never used: {missing}")


# --------------------------------------------------------------------------------------------------
# layers (src/nn/mod.rs)


def spectral_normalize(w, store, prefix, iters):
    """ISN `W̄ = σ0·W/σ(W)` (src/ops/spectral_norm.rs, shaders/spectral_norm.wgsl,
    src/autodiff/spectral_norm.rs). One iteration from the persistent u:
    `v = normalize(Wᵀu)`, `u' = normalize(W v)`, `σ = ‖W v‖ = u'ᵀ W v`; the backward holds u', v
    constant (so here σ is written as u'ᵀ W v with u', v detached). `iters = 1` (D's step) stores u'
    back as the new persistent u; `iters = 0` (G's step) estimates σ the same way without storing it."""
    assert iters in (0, 1)
    u = store.state(prefix + ".sn_u")
    sigma0 = store.state(prefix + ".sn_sigma_init")[0]
    wd = w.detach()
    v = wd.t() @ u
    v = v / v.norm()
    u_new = wd @ v
    u_new = u_new / u_new.norm()
    if iters == 1:
        store.states[prefix + ".sn_u"] = u_new
    sigma = u_new @ (w @ v)
    return w * (sigma0 / sigma)


def effective_weight(store, prefix, fan_in, equalised_lr=False, isn=False, iters=1):
    """`Linear::effective_weight`: stored weight × (1/√fan_in as f32 if equalised lr), then ISN."""
    w = store[prefix + ".weight"]
    if equalised_lr:
        scale = float(np.float32(1.0) / np.sqrt(np.float32(fan_in)))
        if scale != 1.0:
            w = w * scale
    if isn:
        w = spectral_normalize(w, store, prefix, iters)
    return w


def gelu_tanh(x):
    """GELU, tanh form (shaders/matmul.wgsl `activate`, shaders/elementwise.wgsl op 4)."""
    return 0.5 * x * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))


def activation(x, act):
    if act is None:
        return x
    if act == "gelu":
        return gelu_tanh(x)
    if act == "leaky":
        return torch.where(x > 0, x, LEAKY * x)
    if act == "sin":
        return torch.sin(x)
    raise ValueError(act)


def linear(store, prefix, x, act=None, equalised_lr=False, isn=False, iters=1):
    """`Linear::forward_act`: `act(x·Ŵᵀ + b)`, weights `[out, in]`."""
    fan_in = x.shape[-1]
    w = effective_weight(store, prefix, fan_in, equalised_lr, isn, iters)
    assert w.shape[1] == fan_in
    return activation(x @ w.t() + store[prefix + ".bias"], act)


def layer_norm(x, gamma, beta):
    """`γ ⊙ (x − μ)/√(σ² + eps) + β` over the last axis, biased variance (shaders/layer_norm.wgsl).
    LN: γ, β `[D]`; SLN: γ, β `[B, D]` for x `[B, T, D]` (one row of γ, β per sample)."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    xhat = (x - mu) / torch.sqrt(var + LN_EPS)
    if gamma.dim() == 2 and x.dim() == 3:
        gamma, beta = gamma[:, None, :], beta[:, None, :]
    return gamma * xhat + beta


def grid_coordinates(rows, cols):
    """`nn::grid_coordinates`: (row, col) normalised to [-1, 1] in f32, row-major `[rows·cols, 2]`."""

    def norm(i, n):
        if n <= 1:
            return np.float32(0.0)
        return np.float32(-1.0) + np.float32(2.0) * np.float32(i) / np.float32(n - 1)

    out = [[norm(r, rows), norm(c, cols)] for r in range(rows) for c in range(cols)]
    return torch.tensor(np.array(out, dtype=np.float32), dtype=DT)


def sine_embedding(store, prefix, rows, cols):
    """`SineEmbedding::forward`: `sin(coords·Wᵀ + b)` (a plain Linear, no eq-lr, no ISN)."""
    return linear(store, prefix, grid_coordinates(rows, cols), act="sin")


def attention(store, prefix, x, heads, kind, isn=False, equalised_lr=False, iters=1):
    """`nn::Attention::forward` + the fused kernels' math (src/ops/attention.rs):
    c = 1/√Dh; dot: `s_ij = c q_i·k_j`; L2 (tied, k = q, `qkv` is D→2D = [q | v]):
    `s_ij = −c ‖q_i − q_j‖²`; `out = softmax_j(s)·V`; heads split as `[B, L, parts, H, Dh]`."""
    B, L, D = x.shape
    dh = D // heads
    parts = 2 if kind == "L2" else 3
    p = linear(store, prefix + ".qkv", x, equalised_lr=equalised_lr, isn=isn, iters=iters)
    p = p.reshape(B, L, parts, heads, dh).permute(2, 0, 3, 1, 4)  # [parts, B, H, L, Dh]
    c = float(np.float32(1.0) / np.sqrt(np.float32(dh)))
    if kind == "L2":
        q, v = p[0], p[1]
        # ‖q_i − q_j‖² as ‖q_i‖² + ‖q_j‖² − 2 q_i·q_j: exact math; in float64 the cancellation is
        # ~1e-16 of ‖q‖², far below the tolerances (the direct form would hold [B,H,L,L,Dh])
        sq = (q * q).sum(-1)
        dist = sq[..., :, None] + sq[..., None, :] - 2.0 * (q @ q.transpose(-1, -2))
        s = -c * dist
    else:
        q, k, v = p[0], p[1], p[2]
        s = c * (q @ k.transpose(-1, -2))
    o = torch.softmax(s, dim=-1) @ v  # [B, H, L, Dh]
    o = o.permute(0, 2, 1, 3).reshape(B, L, D)
    return linear(store, prefix + ".out", o, equalised_lr=equalised_lr, isn=isn, iters=iters)


def mlp(store, prefix, x, isn=False, equalised_lr=False, iters=1):
    """`nn::Mlp`: fc1 · GELU (tanh form) · fc2."""
    h = linear(store, prefix + ".fc1", x, act="gelu", equalised_lr=equalised_lr, isn=isn, iters=iters)
    return linear(store, prefix + ".fc2", h, equalised_lr=equalised_lr, isn=isn, iters=iters)


# --------------------------------------------------------------------------------------------------
# generator (src/model/generator.rs)


def sln(store, prefix, h, w):
    """`SelfModulatedLayerNorm::forward`: γ(w), β(w) plain Linears (no eq-lr), then LN of h."""
    return layer_norm(h, linear(store, prefix + ".gamma", w), linear(store, prefix + ".beta", w))


def inr_decode(store, prefix, y, patch, demodulate_output=True):
    """`InrDecoder::forward` (src/nn/mod.rs, src/ops/inr.rs, src/autodiff/inr.rs): per patch n,
    pixel p: `a = W1 ⊙ s1_n` (input channels modulated), `d1 = 1/√(Σ_i a_oi² + 1e-8)`,
    `h = sin(d1 · a·E_p + b1)`; `v = W2 ⊙ s2_n`, `d2 = 1/√(Σ_j v_cj² + 1e-8)`,
    `out = d2 · v·h + b2` (d2 = 1 when the output layer is not demodulated,
    `ModelConfig::inr_demodulate_output`). y `[N, D]` → `[N, P², C]`."""
    e = sine_embedding(store, prefix + ".fourier", patch, patch)  # [T, F]
    s1 = linear(store, prefix + ".style1", y)  # [N, F]
    s2 = linear(store, prefix + ".style2", y)  # [N, Hd]
    w1, b1 = store[prefix + ".w1"], store[prefix + ".b1"]  # [Hd, F], [Hd]
    w2, b2 = store[prefix + ".w2"], store[prefix + ".b2"]  # [C, Hd], [C]
    d1 = 1.0 / torch.sqrt((s1 * s1) @ (w1 * w1).t() + DEMOD_EPS)  # [N, Hd]
    x = torch.einsum("pi,ni,oi->npo", e, s1, w1)  # [N, T, Hd]
    h = torch.sin(x * d1[:, None, :] + b1)
    out = torch.einsum("npj,nj,cj->npc", h, s2, w2)
    if not demodulate_output:
        return out + b2
    d2 = 1.0 / torch.sqrt((s2 * s2) @ (w2 * w2).t() + DEMOD_EPS)  # [N, C]
    return out * d2[:, None, :] + b2


def patches_to_image(patches, size, patch):
    """`ops::patches::patches_to_image`: `[B, L, P·P·C]` → `[B, H, W, C]`,
    `img[b, y, x, ch] = patches[b, (y/P)·(W/P) + x/P, ((y mod P)·P + x mod P)·C + ch]`."""
    B, L, n = patches.shape
    g = size // patch
    C = n // (patch * patch)
    t = patches.reshape(B, g, g, patch, patch, C).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(B, size, size, C)


def generator_forward(G, cfg, z):
    """`Generator::forward`: `w = mapping(z/rms(z))` (eq-lr Linears, leaky ReLU 0.2 after every
    layer), tokens = positional embedding, blocks `h += MSA(SLN(h)); h += MLP(SLN(h))` (dot-product
    attention, eq-lr), final SLN, INR decoder per patch, patches → image, tanh."""
    net = cfg.g
    D, P = net["width"], net["patch"]
    B = z.shape[0]
    grid = cfg.image_size // P
    T = grid * grid
    rms = torch.sqrt((z * z).mean(1, keepdim=True) + STYLE_EPS)
    w = z / rms
    for i in range(max(cfg.mapping_layers, 1)):
        w = linear(G, f"generator.mapping.{i}", w, act="leaky", equalised_lr=True)
    pos = sine_embedding(G, "generator.pos_embed", grid, grid)  # [T, D]
    h = pos.reshape(1, T, D).expand(B, T, D)
    for i in range(net["depth"]):
        b = f"generator.blocks.{i}"
        h = h + attention(G, b + ".attn", sln(G, b + ".norm1", h, w), net["heads"], "Dot",
                          equalised_lr=True)
        h = h + mlp(G, b + ".mlp", sln(G, b + ".norm2", h, w), equalised_lr=True)
    y = sln(G, "generator.final_norm", h, w)
    pix = inr_decode(G, "generator.decoder", y.reshape(B * T, D), P,
                     cfg.inr_demodulate_output)  # [B·T, P², C]
    img = patches_to_image(pix.reshape(B, T, P * P * cfg.channels), cfg.image_size, P)
    return torch.tanh(img)


# --------------------------------------------------------------------------------------------------
# discriminator (src/model/discriminator.rs)


def extract_patches(img, patch, overlap):
    """`ops::patches::extract_patches`: `[B, H, W, C]` → `[B, L, K²·C]`, K = P + 2o; patch
    l = gy·gw + gx is the K×K window at (gy·P − o, gx·P − o), zero outside, (row, col, ch) order.
    Written as a gather from the zero-padded image (its autograd is the transposed gather)."""
    B, H, W, C = img.shape
    K = patch + 2 * overlap
    pad = F.pad(img, (0, 0, overlap, overlap, overlap, overlap))  # pads W then H
    gh, gw = H // patch, W // patch
    r = torch.arange(K)
    ys = (torch.arange(gh) * patch)[:, None] + r[None, :]  # padded coordinates [gh, K]
    xs = (torch.arange(gw) * patch)[:, None] + r[None, :]  # [gw, K]
    Y = ys[:, None, :, None].expand(gh, gw, K, K)
    X = xs[None, :, None, :].expand(gh, gw, K, K)
    t = pad[:, Y, X, :]  # [B, gh, gw, K, K, C]
    return t.reshape(B, gh * gw, K * K * C)


def discriminator_forward(Dn, cfg, img, iters):
    """`Discriminator::forward`: overlapping patches (o = P/2) → ISN patch embedding + sine
    positional embedding → [class token; tokens] → blocks `h += MSA_L2(LN(h)); h += MLP(LN(h))`
    (all Linears ISN) → LN of the class token → ISN head → `[B, 1]`."""
    net = cfg.d
    D, P = net["width"], net["patch"]
    B = img.shape[0]
    grid = cfg.image_size // P
    T = grid * grid
    x = extract_patches(img, P, P // 2)
    e = linear(Dn, "discriminator.patch_embed", x, isn=True, iters=iters)
    e = e + sine_embedding(Dn, "discriminator.pos_embed", grid, grid).reshape(1, T, D)
    cls = Dn["discriminator.class_token"].expand(B, 1, D)
    h = torch.cat([cls, e], 1)
    for i in range(net["depth"]):
        b = f"discriminator.blocks.{i}"
        n1 = layer_norm(h, Dn[b + ".norm1.gamma"], Dn[b + ".norm1.beta"])
        h = h + attention(Dn, b + ".attn", n1, net["heads"], "L2", isn=True, iters=iters)
        n2 = layer_norm(h, Dn[b + ".norm2.gamma"], Dn[b + ".norm2.beta"])
        h = h + mlp(Dn, b + ".mlp", n2, isn=True, iters=iters)
    c = layer_norm(h[:, 0, :], Dn["discriminator.final_norm.gamma"],
                   Dn["discriminator.final_norm.beta"])
    return linear(Dn, "discriminator.head", c, isn=True, iters=iters)


# --------------------------------------------------------------------------------------------------
# augmentation (shaders/augment.wgsl, src/train/augment.rs), parameters bit-exact in u32/f32

OPS_ALL = 63
OPS_SHIFT = 8 | 16
STRIDE = 12


def _pcg(v):
    """`pcg` of augment.wgsl on numpy uint32 arrays (wrapping arithmetic)."""
    v = np.asarray(v, dtype=np.uint32)
    with np.errstate(over="ignore"):
        state = v * np.uint32(747796405) + np.uint32(2891336453)
        word = ((state >> ((state >> np.uint32(28)) + np.uint32(4))) ^ state) * np.uint32(277803737)
    return (word >> np.uint32(22)) ^ word


def _rand01(seed, samples, slot):
    """`rand01(sample, slot)`: `f32(pcg(seed ^ pcg(sample·64 + slot)) >> 8) / 2^24` (exact in f32)."""
    with np.errstate(over="ignore"):
        inner = _pcg(samples * np.uint32(64) + np.uint32(slot))
    h = _pcg(np.uint32(seed) ^ inner)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(16777216.0)


def augment_params(B, H, W, seed, prob, ops):
    """`augment_params` kernel: `[B, 12]` f32 — brightness, saturation, contrast, ty, tx, scale,
    cutout cy, cx, size. All arithmetic in numpy float32 like the shader (each op rounded)."""
    f = np.float32
    b = np.arange(B, dtype=np.uint32)
    out = np.zeros((B, STRIDE), dtype=np.float32)
    out[:, 1] = 1.0
    out[:, 2] = 1.0
    out[:, 5] = 1.0
    prob = f(prob)
    on = lambda op: (ops >> op) & 1 == 1
    r = lambda slot: _rand01(seed, b, slot)
    if on(0):
        m = r(0) < prob
        out[m, 0] = (r(10) - f(0.5))[m]
    if on(1):
        m = r(1) < prob
        out[m, 1] = (r(11) * f(2.0))[m]
    if on(2):
        m = r(2) < prob
        out[m, 2] = (r(12) + f(0.5))[m]
    if on(3):
        m = r(3) < prob
        ry, rx = H // 8, W // 8
        ty = np.floor(r(13) * f(2 * ry + 1)).astype(np.int64) - ry
        tx = np.floor(r(14) * f(2 * rx + 1)).astype(np.int64) - rx
        out[m, 3] = ty[m].astype(np.float32)
        out[m, 4] = tx[m].astype(np.float32)
    if on(4):
        m = r(4) < prob
        out[m, 5] = (f(0.8) + r(15) * f(0.45))[m]
    if on(5):
        m = r(5) < prob
        out[m, 6] = np.floor(r(16) * f(H))[m]
        out[m, 7] = np.floor(r(17) * f(W))[m]
        out[m, 8] = f(H // 2)
    return out


def geometric(x, prm):
    """`geometric_forward`: `out[b,y,x,c] = keep(y,x) · Σ tent(u_y − s_y)·tent(u_x − s_x)·img[b,s_y,s_x,c]`,
    `u = (o − centre)/σ + centre − t`, centre = (H−1)/2, bilinear with zeros outside, cutout square
    `|y − cy| < size/2 ∧ |x − cx| < size/2` zeroed. Gather form; autograd gives the exact transpose
    (what `geometric_backward` computes)."""
    B, H, W, C = x.shape
    p = torch.tensor(prm.astype(np.float64), dtype=DT)
    scale, ty, tx = p[:, 5:6], p[:, 3:4], p[:, 4:5]
    cy, cx = (H - 1) * 0.5, (W - 1) * 0.5
    uy = (torch.arange(H, dtype=DT)[None, :] - cy) / scale + cy - ty  # [B, H]
    ux = (torch.arange(W, dtype=DT)[None, :] - cx) / scale + cx - tx  # [B, W]

    def taps(u, n):
        s = torch.floor(u).long()[..., None] + torch.arange(2)  # [B, n, 2]
        wgt = torch.clamp(1.0 - (u[..., None] - s.to(DT)).abs(), min=0.0)
        valid = (s >= 0) & (s < n)
        return s.clamp(0, n - 1), torch.where(valid, wgt, torch.zeros_like(wgt))

    sy, wy = taps(uy, H)
    sx, wx = taps(ux, W)
    bi = torch.arange(B)[:, None, None, None, None]
    g = x[bi, sy[:, :, None, :, None], sx[:, None, :, None, :]]  # [B, H, W, 2, 2, C]
    wts = wy[:, :, None, :, None] * wx[:, None, :, None, :]  # [B, H, W, 2, 2]
    out = (g * wts[..., None]).sum((3, 4))
    size = p[:, 8][:, None, None]
    dy = (torch.arange(H, dtype=DT)[None, :, None] - p[:, 6][:, None, None]).abs()
    dx = (torch.arange(W, dtype=DT)[None, None, :] - p[:, 7][:, None, None]).abs()
    inside = (size > 0) & (dy < size * 0.5) & (dx < size * 0.5)
    keep = torch.where(inside, torch.zeros_like(dy + dx), torch.ones_like(dy + dx))
    return out * keep[..., None]


def diff_augment(x, seed, prob, ops):
    """`train::augment::diff_augment`: `x₁ = x + β`; `x₂ = (x₁ − mean_c x₁)·s + mean_c x₁`;
    `x₃ = (x₂ − mean x₂)·c + mean x₂` (mean over H, W, C); then the geometric part."""
    B, H, W, C = x.shape
    prm = augment_params(B, H, W, seed, prob, ops)
    col = lambda k: torch.tensor(prm[:, k].astype(np.float64), dtype=DT).reshape(B, 1, 1, 1)
    x1 = x + col(0)
    cm = x1.mean(3, keepdim=True)
    x2 = (x1 - cm) * col(1) + cm
    im = x2.reshape(B, -1).mean(1).reshape(B, 1, 1, 1)
    x3 = (x2 - im) * col(2) + im
    return geometric(x3, prm)


# --------------------------------------------------------------------------------------------------
# the step (src/train/mod.rs, src/ops/adam.rs, src/train/optimizer.rs)


def adam_update(param, grad, m, v, t, lr, beta1, beta2, eps):
    """`adam_step` (shaders/adam.wgsl) at step t ≥ 1: `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
    `p ← p − lr·(m/bc1)/(√(v/bc2) + ε)`, bc = (1 − βᵗ) computed in f64 and rounded to f32.
    (With zero moments at t = 1 this is `p − lr·g/(|g| + ε)`.)"""
    b1, b2 = np.float32(beta1), np.float32(beta2)
    one = np.float32(1.0)
    bc1 = f32(max(1.0 - float(b1) ** t, 1e-30))
    bc2 = f32(max(1.0 - float(b2) ** t, 1e-30))
    mi = float(b1) * m + float(one - b1) * grad
    vi = float(b2) * v + float(one - b2) * grad * grad
    return param - f32(lr) * (mi / bc1) / (torch.sqrt(vi / bc2) + f32(eps))


def d_loss_terms(lr, lf, loss):
    """D's adversarial loss (`GanLoss` in src/train/mod.rs): logistic `E softplus(−D(x)) + E
    softplus(D(G(z)))`, or hinge `E max(0, 1 − D(x)) + E max(0, 1 + D(G(z)))`."""
    if loss == "hinge":
        return torch.clamp(1.0 - lr, min=0.0).mean() + torch.clamp(1.0 + lf, min=0.0).mean()
    return softplus(-lr).mean() + softplus(lf).mean()


def g_loss_of(logits, loss):
    """G's loss: logistic `E softplus(−D(G(z)))`, or hinge `−E D(G(z))`."""
    return -logits.mean() if loss == "hinge" else softplus(-logits).mean()


def softplus(x):
    """`ln(1 + eˣ)` (stable form of shaders/elementwise.wgsl; exact math)."""
    return torch.clamp(x, min=0.0) + torch.log1p(torch.exp(-x.abs()))


def entry_indices(n, k=4):
    """tests/step_parity.rs `entry_indices`: `(k·7919 + 3k² + 1) mod n`, consecutive duplicates removed."""
    idx = []
    for i in (((j * 7919 + 3 * j * j + 1) % n) for j in range(k)):
        if not idx or idx[-1] != i:
            idx.append(i)
    return idx


def grads_summary(grads):
    out = {}
    for name in sorted(grads):
        g = grads[name].detach().reshape(-1)
        out[name] = {
            "norm": float(torch.linalg.vector_norm(g)),
            "numel": int(g.numel()),
            "entries": [[i, float(g[i])] for i in entry_indices(g.numel())],
        }
    return out


def collect_grads(store):
    """`Tape::param_grads`: every parameter that was entered and reached by the gradient."""
    return {n: store.params[n].grad for n in store.used if store.params[n].grad is not None}


def run_step(tensors, meta):
    cfg = Config(meta)
    train = json.loads(meta["parity.train"])
    seeds = [int(s) for s in meta["parity.aug_seeds"].split(",")]
    assert len(seeds) == 5
    B = int(train["batch"])
    real = torch.tensor(tensors["parity.real"], dtype=DT)
    z_d = torch.tensor(tensors["parity.z_d"], dtype=DT)
    z_g = torch.tensor(tensors["parity.z_g"], dtype=DT)
    assert real.shape == (B, cfg.image_size, cfg.image_size, cfg.channels), real.shape
    aug_prob = f32(train["aug_prob"])
    bcr_real, bcr_fake, lecam = f32(train["bcr_real"]), f32(train["bcr_fake"]), f32(train["lecam"])
    bcr = bcr_real > 0 or bcr_fake > 0
    # fields added later: older fixtures were made with the logistic loss and fresh latents in G's step
    loss = train.get("loss", "logistic")
    reuse_fakes = bool(train.get("reuse_fakes", False))

    def maybe_augment(x, k):
        return diff_augment(x, seeds[k], aug_prob, OPS_ALL) if aug_prob > 0 else x

    # ---- discriminator step: G frozen (no_grad fakes), one power iteration per ISN weight
    G = Store(tensors, "generator", trainable=False)
    Dn = Store(tensors, "discriminator", trainable=True)
    with torch.no_grad():
        fake = generator_forward(G, cfg, z_d)
    xa, fa = maybe_augment(real, 0), maybe_augment(fake, 1)
    inputs = [xa, fa]
    if bcr:
        inputs.append(diff_augment(xa, seeds[2], 1.0, OPS_SHIFT))
        inputs.append(diff_augment(fa, seeds[3], 1.0, OPS_SHIFT))
    r1 = "parity.r1_noise" in tensors  # R1 acts in this step (lazy R1 skips some steps)
    if r1:
        inputs.append(xa + torch.tensor(tensors["parity.r1_noise"], dtype=DT))
    logits = discriminator_forward(Dn, cfg, torch.cat(inputs, 0), iters=1)
    part = lambda i: logits[i * B:(i + 1) * B]
    lr, lf = part(0), part(1)
    d_loss = d_loss_terms(lr, lf, loss)
    if bcr:
        d_loss = d_loss + bcr_real * ((lr - part(2)) ** 2).mean() + bcr_fake * ((lf - part(3)) ** 2).mean()
    if r1:
        # R1 (γ/2)·E‖∇ₓD(x)‖² as the crate estimates it: (γ·every/(2σ²))·E(D(x + σε) − D(x))²
        sigma = f32(train["r1_noise_std"])
        w = f32(train["r1"]) * int(train["r1_every"]) / (2 * sigma * sigma)
        d_loss = d_loss + w * ((part(len(inputs) - 1) - lr) ** 2).mean()
    if lecam > 0:
        a_f = float(tensors["lecam.fake"][0])
        a_r = float(tensors["lecam.real"][0])
        d_loss = d_loss + lecam * (((lr - a_f) ** 2).mean() + ((lf - a_r) ** 2).mean())
    d_loss.backward()
    d_grads = collect_grads(Dn)
    Dn.check_covered("discriminator")

    # D's Adam step (parameters only: sn_u was advanced by the forward, σ(W_init) is constant)
    t_d = int(meta.get("adam_d.steps", "0")) + 1
    updated = {}
    with torch.no_grad():
        for name, p in Dn.params.items():
            if name not in d_grads:
                updated[name] = p.detach().clone()
                continue
            m = torch.tensor(tensors[f"adam_d.m.{name}"], dtype=DT)
            v = torch.tensor(tensors[f"adam_d.v.{name}"], dtype=DT)
            updated[name] = adam_update(p.detach(), d_grads[name], m, v, t_d, train["lr_d"],
                                        train["beta1"], train["beta2"], train["eps"])
    D2 = Store.frozen(updated, Dn.states)  # D's new weights, its advanced u vectors

    # ---- generator step: D frozen, its power iteration not advanced; with `reuse_fakes` on D's
    # latents (G's weights have not changed, so recomputing G(z_d) is the crate's kept forward)
    G = Store(tensors, "generator", trainable=True)
    fake = generator_forward(G, cfg, z_d if reuse_fakes else z_g)
    g_logits = discriminator_forward(D2, cfg, maybe_augment(fake, 4), iters=0)
    g_loss = g_loss_of(g_logits, loss)
    g_loss.backward()
    g_grads = collect_grads(G)
    G.check_covered("generator")

    return {
        "preset": meta["preset"],
        "train": train,
        "d_loss": float(d_loss.detach()),
        "g_loss": float(g_loss.detach()),
        "d_logits": [float(x) for x in logits.detach().reshape(-1)],
        "g_logits": [float(x) for x in g_logits.detach().reshape(-1)],
        "d_grads": grads_summary(d_grads),
        "g_grads": grads_summary(g_grads),
    }


# --------------------------------------------------------------------------------------------------
# optional comparison (the metrics of tests/step_parity.rs `compare`)


def compare(mine, rust, batch):
    rel = lambda g, w, s: abs(g - w) / max(abs(w), s)
    worst = {}
    bad = []

    def note(kind, e, msg, tol):
        worst[kind] = max(worst.get(kind, 0.0), e)
        if e > tol:
            bad.append((e, kind, msg))

    for key in ("d_loss", "g_loss"):
        e = rel(rust[key], mine[key], 1e-3)
        note("loss", e, f"{key}: rust {rust[key]} vs {mine[key]}", 1e-4)
    for key in ("d_logits", "g_logits"):
        g, w = rust[key], mine[key]
        assert len(g) == len(w), key
        scale = max(abs(x) for x in w)
        errs = [rel(a, b, 0.1 * max(scale, 1e-3)) for a, b in zip(g, w)]
        for i, e in enumerate(errs):
            note("logit", e, f"{key}[{i}]: rust {g[i]} vs {w[i]}", 1e-4)
        bad_idx = [i for i, e in enumerate(errs) if e > 1e-4]
        if key == "d_logits" and len(w) % batch == 0:
            groups = ["real", "fake", "shift real", "shift fake"][: len(w) // batch]
            for gi, gname in enumerate(groups):
                ids = [i - gi * batch for i in bad_idx if gi * batch <= i < (gi + 1) * batch]
                print(f"  d_logits {gname:10s}: worst {max(errs[gi * batch:(gi + 1) * batch]):.2e}, "
                      f"images over 1e-4: {ids}")
        else:
            print(f"  {key}: worst {max(errs):.2e}, over 1e-4: {bad_idx}")
    for key in ("d_grads", "g_grads"):
        g, w = rust[key], mine[key]
        if set(g) != set(w):
            print(f"  {key}: parameter sets differ: only rust {sorted(set(g) - set(w))}, "
                  f"only here {sorted(set(w) - set(g))}")
        per = []
        for name in sorted(set(g) & set(w)):
            gn, wn = g[name]["norm"], w[name]["norm"]
            e = rel(gn, wn, 1e-6)
            note("gradient norm", e, f"{key} {name}: norm rust {gn} vs {wn}", 1e-3)
            rms = wn / math.sqrt(w[name]["numel"])
            emax = 0.0
            for ge, we in zip(g[name]["entries"], w[name]["entries"]):
                assert ge[0] == we[0], name
                ee = abs(ge[1] - we[1]) / max(rms, 1e-12)
                emax = max(emax, ee)
                note("gradient entry (of RMS)", ee,
                     f"{key} {name}[{we[0]}]: rust {ge[1]} vs {we[1]} ({ee:.2e} of RMS {rms:.3e})", 1e-3)
            per.append((e, emax, name))
        per.sort(reverse=True)
        print(f"  {key}: worst norms: " + ", ".join(f"{n} {e:.1e}/{x:.1e}" for e, x, n in per[:4]))
    print("worst relative differences:", {k: f"{v:.3e}" for k, v in sorted(worst.items())})
    bad.sort(reverse=True)
    print(f"{len(bad)} values over the tolerances" + (", e.g.:" if bad else ""))
    for e, kind, msg in bad[:15]:
        print("   ", msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="<case>.safetensors written by the step_parity dump test")
    ap.add_argument("output", help="fixture JSON to write")
    ap.add_argument("--compare", metavar="RUST_JSON", help="print differences against the crate's results")
    args = ap.parse_args()
    t0 = time.time()
    with safe_open(args.input, "np") as f:
        meta = f.metadata()
        # G's EMA copy and G's Adam moments play no part in the traced outputs
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(("ema.", "adam_g."))}
    result = run_step(tensors, meta)
    with open(args.output, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
    print(f"{meta.get('parity.case', args.input)}: d_loss {result['d_loss']:.6f}, "
          f"g_loss {result['g_loss']:.6f} ({time.time() - t0:.1f} s) → {args.output}")
    if args.compare:
        with open(args.compare) as fh:
            rust = json.load(fh)
        compare(result, rust, int(result["train"]["batch"]))


if __name__ == "__main__":
    sys.exit(main())
