#!/usr/bin/env python3
"""Writes tests/fixtures/fid/{fid,inception_score}.json: expected FID and IS values that
tests/fid.rs checks src/metrics/fid.rs and src/metrics/inception_score.rs against.

Run by hand from the repository root (dev-time only; needs numpy, scipy, torch, pytorch-fid):

    python3 scripts/fid_fixture.py

Inputs are not stored: both sides generate them from the same closed-form integer formula
(`feature_set`, `logit_set`, mirrored in tests/fid.rs), so every f32 input is exact on both sides.
The fixtures hold only expected outputs: per feature set its mean and checksums of its covariance,
per pair the FID of pytorch-fid's own `calculate_frechet_distance` (scipy.linalg.sqrtm of Σ₁Σ₂)
and of an eigendecomposition-based float64 formula, and per logit set the Inception score by
the definition (numpy), cross-checked against torch-fidelity's `isc_features_to_metric` body
(torch, shuffle=False) and the original Salimans et al. code path.
"""

import json
import os

import numpy as np
import scipy.linalg
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "fid")


def mix(x):
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash3(a, b, c):
    """hash(a, b, c) = mix(mix(mix(a) ^ b) ^ c) for integer arrays broadcast together."""
    a, b, c = (np.asarray(v, dtype=np.uint64) for v in (a, b, c))
    with np.errstate(over="ignore"):
        return mix(mix(mix(a) ^ b) ^ c)


def grid(salt, rows, cols, modulus):
    """hash(salt, r, c) mod modulus as int64, [rows, cols]."""
    r = np.arange(rows, dtype=np.uint64)[:, None]
    c = np.arange(cols, dtype=np.uint64)[None, :]
    return (hash3(salt, r, c) % np.uint64(modulus)).astype(np.int64)


DIM = 64
LATENT = 64


def feature_set(u_salt, w_salt, offset_salt, n):
    """Features [n, 64] f32: x = (Σ_k u_rk·(1 + k mod 4)·W_kj + 16·o_j) / 16 with
    u = hash(u_salt, r, k) mod 17 − 8, W = hash(1000 + w_salt, k, j) mod 7 − 3 + 24·[k = j]
    (the diagonal keeps W well conditioned), o = hash(2000 + offset_salt, 0, j) mod 33 − 16 —
    an exact integer / 16 (|·| < 2^24)."""
    u = grid(u_salt, n, LATENT, 17) - 8
    u = u * (1 + np.arange(LATENT) % 4)[None, :]
    w = grid(1000 + w_salt, LATENT, DIM, 7) - 3 + 24 * np.eye(LATENT, DIM, dtype=np.int64)
    o = grid(2000 + offset_salt, 1, DIM, 33) - 16
    x = u @ w + 16 * o
    assert np.abs(x).max() < 2**24
    return (x.astype(np.float64) / 16).astype(np.float32)


def logit_set(salt, n, classes, modes, peak):
    """Logits [n, classes] f32: (hash(3000 + salt, r, c) mod 1025 − 512) / 256, plus `peak` at
    class hash(4000 + salt, r, 0) mod `modes` — exact in f32."""
    z = grid(3000 + salt, n, classes, 1025) - 512
    top = grid(4000 + salt, n, 1, modes)[:, 0]
    z = z.astype(np.float64) / 256
    z[np.arange(n), top] += peak
    return z.astype(np.float32)


FEATURE_SETS = {
    "a": dict(u_salt=0, w_salt=0, offset_salt=0, n=300),
    "b": dict(u_salt=1, w_salt=1, offset_salt=1, n=400),
    # same offsets as "a": its FID to "a" is mostly the covariance term
    "c": dict(u_salt=2, w_salt=2, offset_salt=0, n=257),
}
PAIRS = [("a", "b"), ("a", "c"), ("b", "c")]

LOGIT_SETS = [
    dict(salt=0, n=500, classes=1008, modes=50, peak=8.0, splits=10),
    dict(salt=1, n=503, classes=1008, modes=7, peak=5.0, splits=7),
    dict(salt=2, n=64, classes=10, modes=3, peak=2.0, splits=1),
]


def checksum_weights(d):
    """w_ij = ((31 i + 17 j) mod 11) − 5."""
    i = np.arange(d)[:, None]
    j = np.arange(d)[None, :]
    return ((31 * i + 17 * j) % 11 - 5).astype(np.float64)


def covariance_checksums(cov):
    return {
        "trace": float(np.trace(cov)),
        "sum": float(cov.sum()),
        "weighted_sum": float((cov * checksum_weights(cov.shape[0])).sum()),
        "frobenius_squared": float((cov * cov).sum()),
        "entry_0_1": float(cov[0, 1]),
        "entry_40_5": float(cov[40, 5]),
    }


def fid_eigen(mu1, s1, mu2, s2):
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 Σ √λ(A Σ₂ A), A = Σ₁^½ by eigh (negative λ clipped)."""
    lam, v = scipy.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(lam, 0, None))) @ v.T
    m = a @ s2 @ a
    m = (m + m.T) / 2
    tr_sqrt = np.sqrt(np.clip(scipy.linalg.eigvalsh(m), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def inception_score_numpy(logits, splits):
    """The definition: per contiguous split exp(mean_i KL(p(y|x_i) ‖ p(y))), mean and
    population std over splits."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    n = len(x)
    scores = []
    for s in range(splits):
        lo, hi = s * n // splits, (s + 1) * n // splits
        q = p[lo:hi].mean(axis=0)
        kl = (p[lo:hi] * (log_p[lo:hi] - np.log(q)[None, :])).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_torch_fidelity(logits, splits):
    """torch-fidelity's isc_features_to_metric(feature, splits, shuffle=False), line for line."""
    feature = torch.from_numpy(logits).double()
    n = feature.shape[0]
    p = feature.softmax(dim=1)
    log_p = feature.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        p_chunk = p[(i * n // splits):((i + 1) * n // splits), :]
        log_p_chunk = log_p[(i * n // splits):((i + 1) * n // splits), :]
        q_chunk = p_chunk.mean(dim=0, keepdim=True)
        log_q_chunk = torch.log(q_chunk)
        kl = p_chunk * (log_p_chunk - log_q_chunk)
        kl = kl.sum(dim=1).mean().exp().item()
        scores.append(kl)
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_salimans(logits, splits):
    """The original improved-gan code path on softmax outputs: log(part) − log(mean(part))."""
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    preds = e / e.sum(axis=1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def main():
    os.makedirs(OUT, exist_ok=True)
    stats = {}
    sets = {}
    for name, spec in FEATURE_SETS.items():
        x = feature_set(**spec).astype(np.float64)
        mu = x.mean(axis=0)
        cov = np.cov(x, rowvar=False)
        eig = np.linalg.eigvalsh(cov)
        assert eig.min() > 1e-3 * eig.max(), f"covariance of {name} is ill-conditioned: {eig}"
        stats[name] = (mu, cov)
        sets[name] = dict(spec, dim=DIM, mean=[float(v) for v in mu],
                          covariance=covariance_checksums(cov))
    pairs = []
    for a, b in PAIRS:
        (mu1, s1), (mu2, s2) = stats[a], stats[b]
        pytorch_fid = float(calculate_frechet_distance(mu1, s1, mu2, s2))
        eigen = fid_eigen(mu1, s1, mu2, s2)
        assert abs(pytorch_fid - eigen) <= 1e-9 * abs(eigen), (pytorch_fid, eigen)
        mean_term = float(((mu1 - mu2) ** 2).sum())
        pairs.append(dict(a=a, b=b, fid_pytorch_fid=pytorch_fid, fid_eigen=eigen,
                          mean_term=mean_term))
        print(f"FID({a}, {b}) = {pytorch_fid:.10f} (pytorch-fid) {eigen:.10f} (eigen), "
              f"mean term {mean_term:.4f}")
    with open(os.path.join(OUT, "fid.json"), "w") as f:
        json.dump(dict(
            note="written by scripts/fid_fixture.py; features are generated by its feature_set "
                 "formula (mirrored in tests/fid.rs); statistics in float64, covariance as "
                 "numpy.cov(rowvar=False)",
            sets=sets, pairs=pairs), f, indent=1)

    cases = []
    for spec in LOGIT_SETS:
        args = {k: spec[k] for k in ("salt", "n", "classes", "modes", "peak")}
        logits = logit_set(**args)
        mean, std = inception_score_numpy(logits, spec["splits"])
        for other, label in ((inception_score_torch_fidelity, "torch-fidelity"),
                             (inception_score_salimans, "salimans")):
            m2, s2 = other(logits, spec["splits"])
            assert abs(m2 - mean) <= 1e-12 * mean and abs(s2 - std) <= 1e-10 * max(mean, 1), \
                (label, mean, std, m2, s2)
        cases.append(dict(spec, mean=mean, std=std))
        print(f"IS(salt {spec['salt']}, splits {spec['splits']}) = {mean:.10f} ± {std:.10f}")
    with open(os.path.join(OUT, "inception_score.json"), "w") as f:
        json.dump(dict(
            note="written by scripts/fid_fixture.py; logits are generated by its logit_set "
                 "formula (mirrored in tests/fid.rs); contiguous splits, population std",
            cases=cases), f, indent=1)


if __name__ == "__main__":
    main()
