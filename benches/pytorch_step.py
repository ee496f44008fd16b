#!/usr/bin/env python3
"""The PyTorch eager yardstick of `cargo bench --bench model -- train_step`: the same training step
(D then G, Adam, G's EMA), float32, on the CPU, timed.

    python3 benches/pytorch_step.py STEP_INPUTS.safetensors --expect D_LOSS,G_LOSS \\
        [--repeat N] [--threads T]

STEP_INPUTS is `Trainer::step_inputs` (a checkpoint plus the step's real batch, latents and
augmentation seeds), written by the bench. The model is `scripts/step_parity.py`'s, which matches
one whole step of the crate to ~1e-5 in float64. Before timing, one step is computed from the file
exactly as the crate computes its first step, and its two losses must agree with `--expect` (the
crate's) to 1e-3 relative: a yardstick that computes another step measures nothing. Then the timed
steps: D's step (one power iteration per ISN weight, bCR and augmentation as configured, Adam), G's
step (D frozen), the EMA of G's weights; LeCam's term and moving averages and the (lazy) R1 term
when configured; new latents, augmentation seeds and R1 noise every step, the same real batch (as
the crate's bench). Like the crate bench's, the figure is the median step, over steps with and
without lazy R1 alike: with R1 every 4 steps, in both a step without it. torch.optim.Adam
(foreach), as a PyTorch user would write it.

Prints one line: `d_loss g_loss median_ms images_per_s`. A dev-time tool: nothing in the crate or
CI needs PyTorch.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import step_parity as sp  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("--expect", required=True, help="the crate's D and G losses, `d,g`")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    k = ap.parse_args()
    torch.set_num_threads(k.threads)
    sp.DT = torch.float32

    with safe_open(k.input, "np") as f:
        meta = f.metadata()
        tensors = {n: f.get_tensor(n) for n in f.keys()}

    # the crate's first step, recomputed
    first = sp.run_step(tensors, meta)
    want_d, want_g = (float(x) for x in k.expect.split(","))
    for what, got, want in (("D", first["d_loss"], want_d), ("G", first["g_loss"], want_g)):
        if abs(got - want) > 1e-3 * max(abs(want), 1e-3):
            raise SystemExit(f"{what}'s loss: PyTorch {got:.6f}, the crate {want:.6f}: "
                             "not the same step, nothing timed")

    cfg = sp.Config(meta)
    train = sp.json.loads(meta["parity.train"])
    B = int(train["batch"])
    aug_prob = sp.f32(train["aug_prob"])
    bcr_real, bcr_fake = sp.f32(train["bcr_real"]), sp.f32(train["bcr_fake"])
    bcr = bcr_real > 0 or bcr_fake > 0
    lecam = sp.f32(train["lecam"])
    r1 = sp.f32(train.get("r1", 0.0))
    r1_every = int(train.get("r1_every", 1))
    r1_std = sp.f32(train.get("r1_noise_std", 0.05))
    lecam_avg = {"real": 0.0, "fake": 0.0}
    loss = train.get("loss", "logistic")
    reuse_fakes = bool(train.get("reuse_fakes", False))
    real = torch.tensor(tensors["parity.real"], dtype=torch.float32)
    G = sp.Store(tensors, "generator", trainable=True)
    Dn = sp.Store(tensors, "discriminator", trainable=True)
    ema = {n: p.detach().clone() for n, p in G.params.items()}
    betas = (train["beta1"], train["beta2"])
    opt_g = torch.optim.Adam(list(G.params.values()), lr=train["lr_g"], betas=betas, eps=1e-8)
    opt_d = torch.optim.Adam(list(Dn.params.values()), lr=train["lr_d"], betas=betas, eps=1e-8)
    gen = torch.Generator().manual_seed(int(train["seed"]))

    def augment(x, seed):
        return sp.diff_augment(x, seed, aug_prob, sp.OPS_ALL) if aug_prob > 0 else x

    def step(t):
        seeds = [(t * 5 + i) % 2**31 for i in range(5)]
        # D: G frozen
        for p in Dn.params.values():
            p.requires_grad_(True)
        if reuse_fakes:  # G's step trains on these fakes: keep their graph, D sees them detached
            fake_g = sp.generator_forward(G, cfg, torch.randn(B, cfg.latent_dim, generator=gen))
            fake = fake_g.detach()
        else:
            with torch.no_grad():
                fake = sp.generator_forward(G, cfg, torch.randn(B, cfg.latent_dim, generator=gen))
        xa, fa = augment(real, seeds[0]), augment(fake, seeds[1])
        inputs = [xa, fa]
        if bcr:
            inputs += [sp.diff_augment(xa, seeds[2], 1.0, sp.OPS_SHIFT),
                       sp.diff_augment(fa, seeds[3], 1.0, sp.OPS_SHIFT)]
        r1_now = r1 > 0 and t % r1_every == 0
        if r1_now:  # the crate's R1 estimate: D on the real batch plus Gaussian noise
            inputs.append(xa + r1_std * torch.randn(xa.shape, generator=gen))
        logits = sp.discriminator_forward(Dn, cfg, torch.cat(inputs, 0), iters=1)
        part = lambda i: logits[i * B:(i + 1) * B]
        lr_, lf = part(0), part(1)
        d_loss = sp.d_loss_terms(lr_, lf, loss)
        if bcr:
            d_loss = (d_loss + bcr_real * ((lr_ - part(2)) ** 2).mean()
                      + bcr_fake * ((lf - part(3)) ** 2).mean())
        if r1_now:
            w = r1 * r1_every / (2 * r1_std * r1_std)
            d_loss = d_loss + w * ((part(len(inputs) - 1) - lr_) ** 2).mean()
        if lecam > 0:
            d_loss = d_loss + lecam * (((lr_ - lecam_avg["fake"]) ** 2).mean()
                                       + ((lf - lecam_avg["real"]) ** 2).mean())
            for key, v in (("real", lr_), ("fake", lf)):
                lecam_avg[key] = 0.99 * lecam_avg[key] + 0.01 * float(v.detach().mean())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # G: D frozen, its power iteration not advanced
        for p in Dn.params.values():
            p.requires_grad_(False)
        if not reuse_fakes:
            fake_g = sp.generator_forward(G, cfg, torch.randn(B, cfg.latent_dim, generator=gen))
        g_loss = sp.g_loss_of(sp.discriminator_forward(Dn, cfg, augment(fake_g, seeds[4]), iters=0),
                              loss)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        decay = min(0.999, (1 + t) / (10 + t))
        with torch.no_grad():
            for n, p in G.params.items():
                ema[n].lerp_(p.detach(), 1 - decay)
        return float(d_loss.detach()), float(g_loss.detach())

    step(0)  # warm-up
    times = []
    for t in range(1, k.repeat + 1):
        t0 = time.perf_counter()
        d, g = step(t)
        times.append((time.perf_counter() - t0) * 1e3)
        if not (abs(d) < float("inf") and abs(g) < float("inf")):
            raise SystemExit(f"non-finite loss at timed step {t}")
    med = statistics.median(times)
    print(f"{first['d_loss']:.6f} {first['g_loss']:.6f} {med:.3f} {B / med * 1e3:.2f}")


if __name__ == "__main__":
    sys.exit(main())
