#!/usr/bin/env python3
"""Dev-time recipe search: the crate's ViTGAN (as mirrored op by op in scripts/step_parity.py) trained
in float32 PyTorch eager on the CPU, ~5x faster than the crate on lavapipe, so that many recipe
variants can be screened. Candidates found here are then confirmed by training with the crate
itself (README "Recipe"); nothing here is used by the crate or by CI.

    python3 scripts/recipe_search.py --data fmnist|synthetic|synthetic-colour --steps 1000 [--knob value ...]

Knobs (defaults = the crate's recipe before issue 11):
    --lr 0.002 --warmup 0 --bcr 10 --aug 0.8 --beta1 0 --beta2 0.99
    --q-gain 1.0        multiplier on the q half of D's tied qkv projection at init (before ISN's σ0)
    --mapping-lr 1.0    learning-rate multiplier of G's mapping network
    --torgb-demod 1     demodulate the INR output layer (0: modulated only, as StyleGAN2's toRGB)
    --siren 0           SIREN init of the INR's hidden weights (uniform ±√(6/fan_in))
    --inr-freq 2.0      std of the INR's Fourier-feature frequencies (patch coordinates in [-1, 1])
    --bcr-mode shift    shift (T on top of what D saw) | pair (two independent DiffAugment draws)
    --eq-affine 0       SLN γ/β and INR style layers with equalised lr (stored N(0,1), ×0.1/√fan_in)
    --w2-gain 1.0       multiplier on the init of the INR output layer's weights
    --w2-tied 0         1: its rows (one per output channel) equal at init, so G starts grey
    --reuse-fakes 0     1: G's step reuses the fakes of D's step (one generator forward fewer a step)
    --loss logistic     logistic (non-saturating, the crate's) | hinge
    --threads 2         PyTorch's CPU threads (another count changes reduction orders, i.e. rounding:
                        a way to see how far two runs of one recipe drift apart)
Prints the multi-scale SWD (x1e3, mean of levels) of 2,048 EMA samples against 2,048 real images.
"""

import argparse
import gzip
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import step_parity as sp  # noqa: E402

sp.DT = torch.float32
torch.set_num_threads(2)


# ---------------------------------------------------------------------------------------------- data

def load_fmnist(size):
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    x = torch.tensor(raw, dtype=torch.float32) / 255.0
    x = F.interpolate(x, size=(size, size), mode="area")
    x = x.permute(0, 2, 3, 1).repeat(1, 1, 1, 3)  # NHWC RGB
    return x * 2.0 - 1.0


def gradient(size, c0, c1, angle):
    """A linear gradient from c0 to c1 along `angle` (src/data/synthetic.rs), [size, size, ...]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    t = np.clip(((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)) / size + 0.5, 0, 1)
    return c0 + (c1 - c0) * t[..., None]


def shape_coverage(size, kind, cx, cy, r):
    """Anti-aliased coverage clamp(0.5 − d, 0, 1) of a disc (0), square (1) or ring (2, inner
    radius 0.55 r) from the signed distance d in pixels, [size, size, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    px, py = xx - cx, yy - cy
    rho = np.sqrt(px * px + py * py)
    if kind == 0:
        dist = rho - r
    elif kind == 1:
        dist = np.maximum(np.abs(px), np.abs(py)) - r
    else:
        dist = np.maximum(rho - r, 0.55 * r - rho)
    return np.clip(0.5 - dist, 0, 1)[..., None]


def load_synthetic(size, n=4096, seed=0):
    """The distribution of src/data/synthetic.rs (not its exact images): grey; a dark gradient
    (levels in [0, 0.4]) and one bright (level in [0.6, 1]) anti-aliased disc, square or ring
    (inner radius 0.55 r), centre in [0.35, 0.65]·size, radius in [0.25, 0.4]·size."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 3), np.float32)
    for i in range(n):
        img = gradient(size, rng.uniform(0, 0.4), rng.uniform(0, 0.4), rng.random() * 2 * math.pi)
        kind, level = rng.integers(3), rng.uniform(0.6, 1.0)
        cx, cy = rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size
        alpha = shape_coverage(size, kind, cx, cy, rng.uniform(0.25, 0.4) * size)
        out[i] = img + alpha * (level - img)
    return torch.tensor(out) * 2.0 - 1.0


def load_synthetic_colour(size, n=4096, seed=0):
    """The built-in set until late 2026-12-01 (`--data synthetic-colour`; not its exact images): a
    two-colour gradient and 1-3 anti-aliased discs, squares or rings (inner radius 0.55 r), centres
    in [0.2, 0.8]·size, radii in [0.08, 0.25]·size."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 3), np.float32)
    for i in range(n):
        img = gradient(size, rng.random(3), rng.random(3), rng.random() * 2 * math.pi)
        for _ in range(1 + rng.integers(3)):
            kind, col = rng.integers(3), rng.random(3)
            cx, cy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size
            alpha = shape_coverage(size, kind, cx, cy, rng.uniform(0.08, 0.25) * size)
            img = img + alpha * (col - img)
        out[i] = img
    return torch.tensor(out) * 2.0 - 1.0


# ---------------------------------------------------------------------------------------------- init

class Params:
    """Stand-in for sp.Store built from a fresh init."""

    def __init__(self):
        self.params, self.states = {}, {}

    def __getitem__(self, name):
        return self.params[name]

    def state(self, name):
        return self.states[name]


def sigma_max(w, iters=50):
    u = torch.randn(w.shape[0])
    u = u / u.norm()
    for _ in range(iters):
        v = w.t() @ u
        v = v / v.norm()
        u = w @ v
        u = u / u.norm()
    return u, float(u @ (w @ v))


def add_linear(P, name, fin, fout, gain=1.0, eq=False, bias=0.0, norm=None, row_gain=None):
    std = gain if eq else gain / math.sqrt(fin)
    w = torch.randn(fout, fin) * std
    if row_gain is not None:
        w = w * row_gain[:, None]
    P.params[name + ".weight"] = w
    P.params[name + ".bias"] = torch.full((fout,), bias)
    if norm is not None:
        u, s = sigma_max(w)
        P.states[name + ".sn_u"] = u
        P.states[name + ".sn_sigma_init"] = torch.tensor([s if norm == "isn" else 1.0])


def add_sine(P, name, dim, freq):
    P.params[name + ".weight"] = torch.randn(dim, 2) * freq
    P.params[name + ".bias"] = (torch.rand(dim) * 2 - 1) * math.pi


AFFINE_SCALE = {}  # name -> runtime weight multiplier of equalised-lr affine layers


def add_affine(P, name, fin, fout, bias, k):
    """A style affine (SLN γ/β, INR styles): effective weights N(0, (0.1/√fan_in)²) either way."""
    if k.eq_affine:
        add_linear(P, name, fin, fout, gain=1.0, eq=True, bias=bias)
        AFFINE_SCALE[name] = 0.1 / math.sqrt(fin)
    else:
        add_linear(P, name, fin, fout, gain=0.1, bias=bias)


def affine(G, name, w):
    x = w @ (G[name + ".weight"] * AFFINE_SCALE.get(name, 1.0)).t()
    return x + G[name + ".bias"]


def sln(G, prefix, h, w):
    return sp.layer_norm(h, affine(G, prefix + ".gamma", w), affine(G, prefix + ".beta", w))


def init_g(P, cfg, k):
    d = cfg["g"]["width"]
    for i in range(cfg["mapping"]):
        add_linear(P, f"generator.mapping.{i}", cfg["latent"] if i == 0 else d, d, eq=True)
    add_sine(P, "generator.pos_embed", d, 3.0)

    def sln(n):
        add_affine(P, n + ".gamma", d, d, 1.0, k)
        add_affine(P, n + ".beta", d, d, 0.0, k)

    for i in range(cfg["g"]["depth"]):
        b = f"generator.blocks.{i}"
        sln(b + ".norm1")
        add_linear(P, b + ".attn.qkv", d, 3 * d, eq=True)
        add_linear(P, b + ".attn.out", d, d, eq=True)
        sln(b + ".norm2")
        add_linear(P, b + ".mlp.fc1", d, cfg["g"]["mlp"], eq=True)
        add_linear(P, b + ".mlp.fc2", cfg["g"]["mlp"], d, eq=True)
    sln("generator.final_norm")
    hd, c = cfg["inr"], cfg["channels"]
    dec = "generator.decoder"
    add_sine(P, dec + ".fourier", hd, k.inr_freq)
    add_affine(P, dec + ".style1", d, hd, 1.0, k)
    add_affine(P, dec + ".style2", d, hd, 1.0, k)
    if k.siren:
        bound = math.sqrt(6.0 / hd)
        P.params[dec + ".w1"] = (torch.rand(hd, hd) * 2 - 1) * bound
    else:
        P.params[dec + ".w1"] = torch.randn(hd, hd)
    P.params[dec + ".b1"] = (torch.rand(hd) * 2 - 1) * 0.5
    P.params[dec + ".w2"] = (torch.randn(c, hd) * (1.0 if k.torgb_demod else 1.0 / math.sqrt(hd))
                             * k.w2_gain)
    if k.w2_tied:  # every channel's row the same at init: G starts grey (R = G = B)
        P.params[dec + ".w2"] = P.params[dec + ".w2"][:1].repeat(c, 1)
    P.params[dec + ".b2"] = torch.zeros(c)


def init_d(P, cfg, k):
    d, p = cfg["d"]["width"], cfg["d"]["patch"]
    kk = p + 2 * (p // 2)
    add_linear(P, "discriminator.patch_embed", kk * kk * cfg["channels"], d, norm="isn")
    P.params["discriminator.class_token"] = torch.randn(1, 1, d) * 0.02
    add_sine(P, "discriminator.pos_embed", d, 3.0)
    for i in range(cfg["d"]["depth"]):
        b = f"discriminator.blocks.{i}"
        for n in ("norm1", "norm2"):
            P.params[f"{b}.{n}.gamma"] = torch.ones(d)
            P.params[f"{b}.{n}.beta"] = torch.zeros(d)
        rg = torch.cat([torch.full((d,), k.q_gain), torch.ones(d)])
        add_linear(P, b + ".attn.qkv", d, 2 * d, norm="isn", row_gain=rg)
        add_linear(P, b + ".attn.out", d, d, norm="isn")
        add_linear(P, b + ".mlp.fc1", d, cfg["d"]["mlp"], norm="isn")
        add_linear(P, b + ".mlp.fc2", cfg["d"]["mlp"], d, norm="isn")
    P.params["discriminator.final_norm.gamma"] = torch.ones(d)
    P.params["discriminator.final_norm.beta"] = torch.zeros(d)
    add_linear(P, "discriminator.head", d, 1, norm="isn")


# ---------------------------------------------------------------------------------------------- model

def inr_decode(G, prefix, y, patch, demod_out):
    e = sp.sine_embedding(G, prefix + ".fourier", patch, patch)
    s1 = affine(G, prefix + ".style1", y)
    s2 = affine(G, prefix + ".style2", y)
    w1, b1, w2, b2 = (G[prefix + n] for n in (".w1", ".b1", ".w2", ".b2"))
    d1 = 1.0 / torch.sqrt((s1 * s1) @ (w1 * w1).t() + 1e-8)
    x = torch.einsum("pi,ni,oi->npo", e, s1, w1)
    h = torch.sin(x * d1[:, None, :] + b1)
    out = torch.einsum("npj,nj,cj->npc", h, s2, w2)
    if demod_out:
        out = out * (1.0 / torch.sqrt((s2 * s2) @ (w2 * w2).t() + 1e-8))[:, None, :]
    return out + b2


def generator(G, cfg, z, k):
    d, p = cfg["g"]["width"], cfg["g"]["patch"]
    B = z.shape[0]
    grid = cfg["size"] // p
    T = grid * grid
    w = z / torch.sqrt((z * z).mean(1, keepdim=True) + 1e-8)
    for i in range(cfg["mapping"]):
        w = sp.linear(G, f"generator.mapping.{i}", w, act="leaky", equalised_lr=True)
    h = sp.sine_embedding(G, "generator.pos_embed", grid, grid).reshape(1, T, d).expand(B, T, d)
    for i in range(cfg["g"]["depth"]):
        b = f"generator.blocks.{i}"
        h = h + sp.attention(G, b + ".attn", sln(G, b + ".norm1", h, w), cfg["g"]["heads"], "Dot",
                             equalised_lr=True)
        h = h + sp.mlp(G, b + ".mlp", sln(G, b + ".norm2", h, w), equalised_lr=True)
    y = sln(G, "generator.final_norm", h, w)
    pix = inr_decode(G, "generator.decoder", y.reshape(B * T, d), p, k.torgb_demod)
    img = sp.patches_to_image(pix.reshape(B, T, p * p * cfg["channels"]), cfg["size"], p)
    return torch.tanh(img)


def discriminator(Dn, cfg, img, iters):
    class C:
        pass

    c = C()
    c.image_size = cfg["size"]
    c.d = {"width": cfg["d"]["width"], "patch": cfg["d"]["patch"], "depth": cfg["d"]["depth"],
           "heads": cfg["d"]["heads"]}
    return sp.discriminator_forward(Dn, c, img, iters)


# ---------------------------------------------------------------------------------------------- SWD

def chroma(x):
    """Mean absolute deviation of each pixel's channels from their mean, in [0, 1] units of the
    [-1, 1] range: 0 for grey images; what colour speckle on grey data adds."""
    x = x.clamp(-1, 1)
    return float((x - x.mean(-1, keepdim=True)).abs().mean() / 2)


def gauss_down(x):
    """[N, C, H, W] → blur [1 4 6 4 1]/16 (reflect) and take every other pixel."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    k2 = (k[:, None] * k[None, :])[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k2, groups=x.shape[1])[:, :, ::2, ::2]


def laplacian_levels(x, min_size=8):
    levels = []
    while x.shape[-1] > min_size:
        small = gauss_down(x)
        up = F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)
        levels.append(x - up)
        x = small
    levels.append(x)
    return levels


def descriptors(level, per_image, rng):
    n, c, h, w = level.shape
    ys = rng.integers(0, h - 6, size=(n, per_image))
    xs = rng.integers(0, w - 6, size=(n, per_image))
    pats = level.unfold(2, 7, 1).unfold(3, 7, 1)  # [n, c, h-6, w-6, 7, 7]
    idx = torch.arange(n)[:, None]
    d = pats.permute(0, 2, 3, 1, 4, 5)[idx, torch.tensor(ys), torch.tensor(xs)]
    d = d.reshape(n * per_image, -1)
    return d


def swd(a, b, seed=0, per_image=16, dirs=256, repeats=1):
    """a, b NHWC in [-1, 1]: per level, sliced W1 between normalised 7x7 descriptors, ×1e3."""
    rng = np.random.default_rng(seed)
    la = laplacian_levels(a.permute(0, 3, 1, 2))
    lb = laplacian_levels(b.permute(0, 3, 1, 2))
    out = []
    for xa, xb in zip(la, lb):
        da, db = descriptors(xa, per_image, rng), descriptors(xb, per_image, rng)
        da = (da - da.mean(0)) / da.std(0).clamp(min=1e-8)
        db = (db - db.mean(0)) / db.std(0).clamp(min=1e-8)
        vals = []
        for _ in range(repeats):
            dirs_ = torch.tensor(rng.standard_normal((da.shape[1], dirs)), dtype=torch.float32)
            dirs_ = dirs_ / dirs_.norm(dim=0, keepdim=True)
            pa = torch.sort(da @ dirs_, dim=0).values
            pb = torch.sort(db @ dirs_, dim=0).values
            vals.append(float((pa - pb).abs().mean()))
        out.append(1e3 * float(np.mean(vals)))
    return out


# ---------------------------------------------------------------------------------------------- train

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fmnist", choices=["fmnist", "synthetic", "synthetic-colour"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--lr-d", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--bcr", type=float, default=10.0)
    ap.add_argument("--bcr-mode", default="shift")
    ap.add_argument("--aug", type=float, default=0.8)
    ap.add_argument("--beta1", type=float, default=0.0)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--q-gain", type=float, default=1.0)
    ap.add_argument("--mapping-lr", type=float, default=1.0)
    ap.add_argument("--torgb-demod", type=int, default=1)
    ap.add_argument("--siren", type=int, default=0)
    ap.add_argument("--inr-freq", type=float, default=2.0)
    ap.add_argument("--eq-affine", type=int, default=0)
    ap.add_argument("--w2-gain", type=float, default=1.0)
    ap.add_argument("--reuse-fakes", type=int, default=0,
                    help="1: G's step trains on the fakes (and latents) D's step just saw, saving one "
                         "generator forward a step, as the PyTorch DCGAN example does")
    ap.add_argument("--w2-tied", type=int, default=0,
                    help="1: the INR output layer's rows (one per channel) equal at init")
    ap.add_argument("--loss", default="logistic", choices=["logistic", "hinge"])
    ap.add_argument("--seed", type=int, default=0)
    for who in ("g", "d"):  # the crate's --g-depth … --d-mlp (tiny's sizes by default)
        ap.add_argument(f"--{who}-patch", type=int, default=4)
        ap.add_argument(f"--{who}-depth", type=int, default=2)
        ap.add_argument(f"--{who}-width", type=int, default=64)
        ap.add_argument(f"--{who}-heads", type=int, default=4)
        ap.add_argument(f"--{who}-mlp", type=int, default=128)
    ap.add_argument("--inr", type=int, default=32, help="the INR decoder's hidden width")
    ap.add_argument("--eval-n", type=int, default=2048)
    ap.add_argument("--save", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ema-ramps", default="10",
                    help="comma-separated c of the EMA decays min(0.999, (1+t)/(c+t)) to track; each is "
                         "scored at the end (the first is saved); 0 = G's own weights (no EMA). The crate "
                         "uses c = 10: roughly the mean over the last 1/c of the run")
    k = ap.parse_args()
    torch.set_num_threads(k.threads)
    torch.manual_seed(k.seed)
    net = lambda who: {f: getattr(k, f"{who}_{f}") for f in ("patch", "depth", "width", "heads", "mlp")}
    cfg = dict(size=16, channels=3, latent=64, mapping=2, g=net("g"), d=net("d"),
               inr=k.inr)
    loaders = {"fmnist": load_fmnist, "synthetic": load_synthetic, "synthetic-colour": load_synthetic_colour}
    data = loaders[k.data](cfg["size"])
    G, Dn = Params(), Params()
    init_g(G, cfg, k)
    init_d(Dn, cfg, k)
    for s in (G, Dn):
        for p in s.params.values():
            p.requires_grad_(True)
    ramps = [float(c) for c in k.ema_ramps.split(",")]
    emas = [{n: p.detach().clone() for n, p in G.params.items()} for _ in ramps]
    mapping = [p for n, p in G.params.items() if ".mapping." in n]
    rest = [p for n, p in G.params.items() if ".mapping." not in n]
    opt_g = torch.optim.Adam([{"params": rest, "lr": k.lr},
                              {"params": mapping, "lr": k.lr * k.mapping_lr}],
                             betas=(k.beta1, k.beta2), eps=1e-8)
    opt_d = torch.optim.Adam(list(Dn.params.values()), lr=k.lr_d or k.lr,
                             betas=(k.beta1, k.beta2), eps=1e-8)
    warm = lambda t: min(1.0, (t + 1) / k.warmup) if k.warmup > 0 else 1.0
    sched = [torch.optim.lr_scheduler.LambdaLR(o, warm) for o in (opt_g, opt_d)]
    rng = np.random.default_rng(k.seed)
    B = k.batch
    t0 = time.time()
    aug = lambda x, s: sp.diff_augment(x, s, k.aug, sp.OPS_ALL) if k.aug > 0 else x
    for step in range(k.steps):
        real = data[rng.integers(0, len(data), B)]
        seeds = rng.integers(0, 2**31, 5)
        # D
        if k.reuse_fakes:
            fake_g = generator(G, cfg, torch.randn(B, cfg["latent"]), k)
            fake = fake_g.detach()
        else:
            with torch.no_grad():
                fake = generator(G, cfg, torch.randn(B, cfg["latent"]), k)
        xa, fa = aug(real, seeds[0]), aug(fake, seeds[1])
        inputs = [xa, fa]
        if k.bcr > 0:
            if k.bcr_mode == "shift":
                inputs += [sp.diff_augment(xa, seeds[2], 1.0, sp.OPS_SHIFT),
                           sp.diff_augment(fa, seeds[3], 1.0, sp.OPS_SHIFT)]
            else:
                inputs += [aug(real, seeds[2]), aug(fake, seeds[3])]
        logits = discriminator(Dn, cfg, torch.cat(inputs, 0), 1)
        part = lambda i: logits[i * B:(i + 1) * B]
        lr_, lf = part(0), part(1)
        if k.loss == "hinge":
            d_loss = F.relu(1 - lr_).mean() + F.relu(1 + lf).mean()
        else:
            d_loss = F.softplus(-lr_).mean() + F.softplus(lf).mean()
        if k.bcr > 0:
            d_loss = d_loss + k.bcr * (((lr_ - part(2)) ** 2).mean() + ((lf - part(3)) ** 2).mean())
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # G
        if k.reuse_fakes:
            fake = fake_g
        else:
            fake = generator(G, cfg, torch.randn(B, cfg["latent"]), k)
        g_logits = discriminator(Dn, cfg, aug(fake, seeds[4]), 0)
        g_loss = -g_logits.mean() if k.loss == "hinge" else F.softplus(-g_logits).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        for s in sched:
            s.step()
        with torch.no_grad():
            for c, ema in zip(ramps, emas):
                decay = min(0.999, (1 + step) / (c + step)) if c > 0 else 0.0
                for n, p in G.params.items():
                    ema[n].mul_(decay).add_(p.detach(), alpha=1 - decay)
        if step % 100 == 0 or step == k.steps - 1:
            gap = float(lr_.mean() - lf.mean())
            print(f"step {step:5d} D {float(d_loss):.4f} G {float(g_loss):.4f} gap {gap:+.3f} "
                  f"{time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0
    ref = data[torch.tensor(rng.choice(len(data), k.eval_n, replace=False))]
    ref2 = data[torch.tensor(rng.choice(len(data), k.eval_n, replace=False))]
    floor = swd(ref2, ref)
    z_eval = torch.randn(k.eval_n // 256 * 256, cfg["latent"])
    for i, (c, ema) in enumerate(zip(ramps, emas)):
        E = Params()
        E.params, E.states = ema, G.states
        with torch.no_grad():
            g = torch.cat([generator(E, cfg, z, k) for z in z_eval.split(256)])
            s = swd(g, ref)
        if i == 0:
            gen = g
        print(f"RESULT swd {np.mean(s):.1f} levels {[round(v, 1) for v in s]} "
              f"floor {np.mean(floor):.1f} chroma {chroma(g):.4f} (real {chroma(ref):.4f}) "
              f"ema_ramp {c:g} train_s {train_s:.0f} args {vars(k)}", flush=True)
    if k.save:
        grid = ((gen[:64].clamp(-1, 1) + 1) * 127.5).byte().numpy()
        g = grid.reshape(8, 8, 16, 16, 3).transpose(0, 2, 1, 3, 4).reshape(128, 128, 3)
        g = np.repeat(np.repeat(g, 3, 0), 3, 1)
        import zlib, struct
        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        raw = b"".join(b"\x00" + g[y].tobytes() for y in range(g.shape[0]))
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", g.shape[1], g.shape[0], 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
        open(k.save, "wb").write(png)


if __name__ == "__main__":
    main()
