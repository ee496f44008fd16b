#!/usr/bin/env python3
"""Convert pytorch-fid's InceptionV3 weights to safetensors for the engine (run once, by hand).

    wget https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
    pip install torch safetensors
    python3 scripts/convert_inception_weights.py pt_inception-2015-12-05-6726825d.pth inception-2015-12-05.safetensors

The file's SHA-256 must begin with 6726825d (torch hub's naming convention, which pytorch-fid's
download checks too); the output holds every tensor of the state dict as F32 under its PyTorch name
(`num_batches_tracked` counters dropped), which `vitgan::metrics::inception::InceptionV3::load` reads.
"""

import hashlib
import sys

import torch
from safetensors.torch import save_file

EXPECTED_SHA256_PREFIX = "6726825d"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if not digest.startswith(EXPECTED_SHA256_PREFIX):
        sys.exit(f"{src}: SHA-256 {digest} does not begin with {EXPECTED_SHA256_PREFIX}; "
                 "this is not pytorch-fid's pt_inception-2015-12-05 file")
    state = torch.load(src, map_location="cpu", weights_only=True)
    tensors = {k: v.float().contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(tensors, dst, metadata={"source": "pt_inception-2015-12-05-6726825d.pth", "sha256": digest})
    print(f"wrote {dst}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
