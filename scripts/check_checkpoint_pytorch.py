#!/usr/bin/env python3
"""Open a vitgan trainer checkpoint with PyTorch and summarise it (dev-time check; the crate never
needs Python).

    python3 scripts/check_checkpoint_pytorch.py out/checkpoint.safetensors

Loads every tensor with `safetensors.torch.load_file` (what the README says PyTorch users call),
reads the string metadata with `safetensors.safe_open`, and prints the tensor count, the values per
group of state, a few names with shapes, and the metadata. Exits non-zero if the file is not a
vitgan checkpoint: no `format` entry, a tensor that is not float32 or not finite, or a group of
state (G, D, EMA, both Adam moments, LeCam) missing.
"""
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

FORMAT = "vitgan-checkpoint-1"
GROUPS = ["generator.", "discriminator.", "ema.", "adam_g.m.", "adam_g.v.", "adam_d.m.",
          "adam_d.v.", "lecam."]


def main(path):
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    print(f"{path}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values()):,} values "
          f"(torch {torch.__version__})")
    problems = []
    for group in GROUPS:
        names = [n for n in tensors if n.startswith(group)]
        if not names:
            problems.append(f"no `{group}*` tensor")
        print(f"  {group:<15} {len(names):4d} tensors {sum(tensors[n].numel() for n in names):>10,} values")
    states = [n for n in tensors if n.endswith((".sn_u", ".sn_sigma_init"))]
    print(f"  {'*.sn_u/sigma':<15} {len(states):4d} tensors (power-iteration vectors, σ(W_init))")
    names = sorted(tensors)
    for name in names[:3] + ["..."] + names[-3:]:
        if name == "...":
            print("  ...")
            continue
        t = tensors[name]
        print(f"  {name}: {t.dtype} {list(t.shape)} mean {t.double().mean().item():+.4g}")
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            problems.append(f"`{name}` is {t.dtype}")
        elif not torch.isfinite(t).all():
            problems.append(f"`{name}` has non-finite values")
    print("metadata:")
    for key in sorted(metadata):
        print(f"  {key} = {metadata[key]}")
    if metadata.get("format") != FORMAT:
        problems.append(f"metadata has no `format: {FORMAT}` entry")
    if problems:
        print("NOT a complete vitgan checkpoint: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("ok: PyTorch opens it; every tensor float32 and finite; every group of state present")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
