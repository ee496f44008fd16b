#!/usr/bin/env python3
"""Parity fixture for the engine's InceptionV3 (src/metrics/inception.rs) — dev-time only.

Builds pytorch-fid's own FID InceptionV3 (`pytorch_fid.inception.InceptionV3`, output blocks 0–3)
with closed-form weights instead of the downloaded ones — the formula of `FormulaWeights` in
src/metrics/inception.rs, computed here in exact integer arithmetic so both sides hold the same f32
values — runs it on a few fixed images and writes what the Rust test compares against:

    tests/fixtures/inception/parity.json

Stored per image: the 2048 pool3 features, the 1008 logits, and for blocks 0–2 (after the first
max pool, after the second, after Mixed_6e) the per-channel spatial means and 64 sampled values.
No weights are stored.

    pip install torch torchvision pytorch-fid numpy
    python3 scripts/inception_fixture.py
"""

import json
import os

import numpy as np
import torch

import pytorch_fid.inception as pfi

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "inception", "parity.json")
MASK = np.uint64(0xFFFFFFFF)


def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def formula_unit(name, n):
    """u in [0, 1) for flat indices 0..n of tensor `name` (murmur3 finaliser, mod 2^32)."""
    x = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B1) + np.uint64(fnv1a32(name))) & MASK
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & MASK
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & MASK
    x ^= x >> np.uint64(16)
    return x.astype(np.float64) / 4294967296.0


def formula_tensor(name, shape):
    n = int(np.prod(shape))
    u = formula_unit(name, n)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if name.endswith("conv.weight"):
        v = (u - 0.5) * np.sqrt(24.0 / fan_in)
    elif name.endswith("bn.weight"):
        v = 0.8 + 0.4 * u
    elif name.endswith("bn.bias"):
        v = 0.2 * u - 0.05
    elif name.endswith("bn.running_mean"):
        v = 0.1 * (u - 0.5)
    elif name.endswith("bn.running_var"):
        v = 0.5 + u
    elif name == "fc.weight":
        v = (u - 0.5) * np.sqrt(12.0 / fan_in)
    elif name == "fc.bias":
        v = 0.1 * (u - 0.5)
    else:
        raise ValueError(name)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def formula_inception():
    """pytorch-fid's fid_inception_v3() with the formula's state dict instead of the download."""
    inception = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    state = {}
    for name, t in inception.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = t
        else:
            state[name] = formula_tensor(name, tuple(t.shape))
    inception.load_state_dict(state)
    return inception


def image_u8(k, size):
    """Fixed test images (HWC uint8): a smooth colour pattern, hash noise, a disc on a gradient."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    if k == 0:
        img = np.stack([x, y, 0.5 + 0.5 * np.sin(6.0 * (x + y))], -1)
    elif k == 1:
        img = formula_unit("image1", size * size * 3).reshape(size, size, 3)
    else:
        disc = ((x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.08).astype(np.float64)
        img = np.stack([0.8 * disc + 0.1, 0.3 + 0.4 * y, 1.0 - 0.7 * disc * x], -1)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


SIZE = 32
IMAGES = 3
SAMPLES = 64


def round_floats(v):
    """7 significant digits (f32 precision) keep the fixture small."""
    if isinstance(v, float):
        return float(f"{v:.7g}")
    if isinstance(v, list):
        return [round_floats(x) for x in v]
    if isinstance(v, dict):
        return {k: round_floats(x) for k, x in v.items()}
    return v


def main():
    torch.manual_seed(0)
    made = []
    pfi.fid_inception_v3 = lambda: made.append(formula_inception()) or made[-1]
    model = pfi.InceptionV3(output_blocks=[0, 1, 2, 3]).eval()
    fc = made[0].fc
    images = np.stack([image_u8(k, SIZE) for k in range(IMAGES)])
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        blocks = model(x)
        logits = fc(torch.flatten(blocks[3], 1))
    out = {
        "size": SIZE,
        "images_u8": images.reshape(-1).tolist(),
        "weights_bits": {
            n: formula_tensor(n, s).reshape(-1)[:4].numpy().view(np.uint32).tolist()
            for n, s in [
                ("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)),
                ("Mixed_7c.branch_pool.bn.running_var", (192,)),
                ("fc.weight", (1008, 2048)),
            ]
        },
        "features": blocks[3].reshape(IMAGES, -1).tolist(),
        "logits": logits.tolist(),
        "blocks": [],
    }
    rng = np.random.default_rng(7)
    for b in blocks[:3]:
        n, c, h, w = b.shape
        coords = [[int(rng.integers(c)), int(rng.integers(h)), int(rng.integers(w))] for _ in range(SAMPLES)]
        out["blocks"].append({
            "shape_nchw": [n, c, h, w],
            "channel_means": b.mean(dim=(2, 3)).tolist(),
            "coords_chw": coords,
            "values": [[float(b[i, cc, yy, xx]) for cc, yy, xx in coords] for i in range(n)],
            "std": float(b.std()),
        })
    feats = blocks[3].reshape(IMAGES, -1)
    print("feature std over all", float(feats.std()), "per-dim std across images (mean)",
          float(feats.std(dim=0).mean()), "logit std", float(logits.std()))
    for i, b in enumerate(out["blocks"]):
        print(f"block {i}: shape {b['shape_nchw']} std {b['std']:.4f}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(round_floats(out), f, separators=(",", ":"))
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
