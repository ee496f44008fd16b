"""Class mix of generated Fashion-MNIST samples — dev-time only, not used by the crate or CI.

Trains a small CNN classifier on the 60,000 Fashion-MNIST training images at 16×16 (torch's area
downsampling, approximately what the crate does to 28×28 images; once, then kept in
`target/class_mix_classifier.pt`), reports its accuracy on the 10,000 test images, then
classifies each given `.npy` of samples (uint8 NHWC, C = 1 or 3, as `generate --npy` and
`baseline_dcgan.py` write them; RGB is averaged to grey, sizes other than 16×16 are
area-downsampled to it) and prints, per file, the fraction of
samples in each class, the total-variation distance of that histogram from the uniform training mix
(0 = balanced, 0.9 = one class), the mean top-class probability (how confidently the samples
read as garments), and a Fréchet distance in the classifier's 128-d penultimate features (ReLU
outputs) against the 10,000 test images — FID's formula, ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½,
in features trained on this dataset, a stand-in for Inception's that sees garment shape and
texture. Its floor (5,000 training images against the test images) is printed as the first line.
Chroma is the mean over pixels of the standard deviation of R, G, B (÷255; 0 for grey samples and
for the data): the colour speckle that the grey classifier does not see and an RGB Inception
network would.

    python3 scripts/class_mix.py target/vitgan_samples.npy target/dcgan_samples.npy
"""
import argparse
import gzip
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
ROOT = "/usr/share/datasets/fashion-mnist/"


def idx(path, offset):
    with gzip.open(ROOT + path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def images(path):
    x = torch.tensor(idx(path, 16).reshape(-1, 1, 28, 28), dtype=torch.float32) / 255.0
    return F.interpolate(x, size=(16, 16), mode="area") * 2 - 1


def classifier():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10))


def features(net, x):
    """The classifier's penultimate activations (after the 128-unit ReLU)."""
    return net[:-1](x).double().numpy()


def frechet(a, b):
    """‖μa−μb‖² + tr Σa + tr Σb − 2 tr (Σa Σb)^½, the trace from the eigenvalues of Σa^½ Σb Σa^½."""
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, u = np.linalg.eigh(ca)
    root = (u * np.sqrt(np.clip(w, 0, None))) @ u.T
    cross = np.linalg.eigvalsh(root @ cb @ root)
    return float(((ma - mb) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("samples", nargs="+", help=".npy files of uint8 NHWC samples")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classifier", default="target/class_mix_classifier.pt",
                    help="the trained classifier is kept here and reused (delete it to retrain)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x, y = images("train-images-idx3-ubyte.gz"), torch.tensor(idx("train-labels-idx1-ubyte.gz", 8), dtype=torch.long)
    xt, yt = images("t10k-images-idx3-ubyte.gz"), torch.tensor(idx("t10k-labels-idx1-ubyte.gz", 8), dtype=torch.long)
    net = classifier()
    if os.path.exists(a.classifier):
        net.load_state_dict(torch.load(a.classifier))
    else:
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        for _ in range(a.epochs):
            for i in torch.randperm(len(x)).split(128):
                loss = F.cross_entropy(net(x[i]), y[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
        os.makedirs(os.path.dirname(a.classifier) or ".", exist_ok=True)
        torch.save(net.state_dict(), a.classifier)
    net.eval()
    with torch.no_grad():
        acc = float((net(xt).argmax(1) == yt).float().mean())
        print(f"classifier: test accuracy {acc:.3f} at 16x16")
        test_features = features(net, xt)
        print(f"{'file':<40} " + " ".join(f"{c[:7]:>7}" for c in CLASSES) + "   TV   conf  C-FID  chroma")
        for path in ["(5,000 training images)"] + a.samples:
            chroma = 0.0
            if path.startswith("("):
                s = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:5000]]
            else:
                u8 = torch.tensor(np.load(path), dtype=torch.float32)
                chroma = float(u8.std(3, unbiased=False).mean()) / 255 if u8.shape[3] > 1 else 0.0
                s = u8.mean(3, keepdim=True).permute(0, 3, 1, 2) / 127.5 - 1
                if s.shape[2:] != (16, 16):
                    # larger samples (tiny32's 32×32) are area-downsampled to the classifier's size
                    s = F.interpolate(s, size=(16, 16), mode="area")
            p = F.softmax(net(s), 1)
            hist = torch.bincount(p.argmax(1), minlength=10).float() / len(s)
            tv = 0.5 * float((hist - 0.1).abs().sum())
            print(f"{path[-40:]:<40} " + " ".join(f"{float(h):7.3f}" for h in hist)
                  + f" {tv:5.3f} {float(p.max(1).values.mean()):5.3f} {frechet(features(net, s), test_features):6.3f}"
                  + f" {chroma:7.4f}")


if __name__ == "__main__":
    main()
