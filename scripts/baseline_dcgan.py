#!/usr/bin/env python3
"""A plain convolutional GAN (DCGAN-style) for calibration — dev-time only, not used by the crate or CI.

Trains on Fashion-MNIST at 16×16 (RGB by grey replication, as `--channels 3` gives the crate) — or,
with `--data synthetic` / `synthetic-colour`, on the built-in shapes as scripts/recipe_search.py
draws them (that import needs its `safetensors` too) — for a
fixed wall-clock budget on the CPU, then writes N samples as a uint8 NHWC `.npy` that
`examples/evaluate.rs --images` scores exactly like the crate's own samples:

    python3 scripts/baseline_dcgan.py --seconds 720 --threads 2 --out target/dcgan_samples.npy
    cargo run --release --example evaluate -- --data /usr/share/datasets/fashion-mnist \
        --images target/dcgan_samples.npy

Architecture (16×16): G z(64) → linear 4·4·256 → BN ReLU → ConvT 4/2 (128) → BN ReLU → ConvT 4/2
(64) → BN ReLU → conv 3×3 (3) → tanh; D conv 4/2 (64) → LReLU 0.2 → conv 4/2 (128) → BN LReLU →
conv 4/2 (256) → BN LReLU → linear → logit. Non-saturating loss, Adam 2e-4, betas (0.5, 0.999),
batch 64 (Radford et al. 2016's recipe).
"""

import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_fashion_mnist(path, size):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, rows, cols).astype(np.float32) / 255.0
    x = F.interpolate(torch.from_numpy(x), size=(size, size), mode="area")
    return (x * 2 - 1).repeat(1, 3, 1, 1)


class Generator(nn.Module):
    def __init__(self, z_dim=64):
        super().__init__()
        self.fc = nn.Linear(z_dim, 4 * 4 * 256)
        self.net = nn.Sequential(
            nn.BatchNorm2d(256), nn.ReLU(),
            nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 3, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.net(self.fc(z).view(-1, 256, 4, 4))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
            nn.Conv2d(128, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.LeakyReLU(0.2))
        self.fc = nn.Linear(256 * 2 * 2, 1)

    def forward(self, x):
        return self.fc(self.net(x).flatten(1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                   help="an IDX images file, or `synthetic` (the crate's built-in shapes, as "
                        "scripts/recipe_search.py draws them) or `synthetic-colour` (the coloured "
                        "set they replaced)")
    p.add_argument("--seconds", type=float, default=720.0, help="training wall-clock budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=5000, help="samples written")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="target/dcgan_samples.npy")
    p.add_argument("--steps", type=int, default=0,
                   help="train for this many steps instead of --seconds (for runs that share the "
                        "cores: convert with the steps/s of a run alone)")
    p.add_argument("--snapshot-at", default="", metavar="S1,S2,...",
                   help="also write samples after these many training seconds (or steps, with "
                        "--steps), to OUT_<S>s.npy (OUT_<S>steps.npy); sampling time is not "
                        "counted as training time")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.data in ("synthetic", "synthetic-colour"):
        import recipe_search  # (sets 2 threads on import)
        load = recipe_search.load_synthetic if a.data == "synthetic" else recipe_search.load_synthetic_colour
        data = load(16).permute(0, 3, 1, 2).contiguous()
        torch.set_num_threads(a.threads)
    else:
        data = load_fashion_mnist(a.data, 16)
    g, d = Generator(), Discriminator()
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    snapshots = sorted(float(t) for t in a.snapshot_at.split(",") if t)
    start, step = time.time(), 0
    progress = (lambda: step) if a.steps > 0 else (lambda: time.time() - start)
    budget, unit = (a.steps, "steps") if a.steps > 0 else (a.seconds, "s")
    while progress() < budget:
        if snapshots and progress() >= snapshots[0]:
            paused = time.time()
            path = a.out.removesuffix(".npy") + f"_{snapshots.pop(0):g}{unit}.npy"
            write_samples(g, a.n, path)
            print(f"step {step}: wrote {path}", flush=True)
            g.train()
            start += time.time() - paused
        real = data[torch.randint(len(data), (a.batch,))]
        fake = g(torch.randn(a.batch, 64))
        d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-d(fake)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        step += 1
        if step % 500 == 0:
            el = time.time() - start
            print(f"step {step}  {step * a.batch / el:.0f} img/s  D {d_loss.item():.3f}  G {g_loss.item():.3f}  {el:.0f} s",
                  flush=True)
    print(f"trained {step} steps ({step * a.batch} images) in {time.time() - start:.0f} s")
    write_samples(g, a.n, a.out)
    print("wrote", a.out)


def write_samples(g, n, path):
    """n samples of g (in eval mode: BatchNorm's running statistics) as uint8 NHWC .npy"""
    g.eval()
    with torch.no_grad():
        x = torch.cat([g(torch.randn(500, 64)) for _ in range(n // 500 + 1)])[:n]
    u8 = np.clip(np.floor((x.permute(0, 2, 3, 1).numpy() + 1) / 2 * 255 + 0.5), 0, 255).astype(np.uint8)
    np.save(path, u8)


if __name__ == "__main__":
    main()
