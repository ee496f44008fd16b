#!/usr/bin/env python3
"""OpenBLAS SGEMM yardstick for `cargo bench --bench kernels` (via numpy).

Usage: numpy_sgemm.py M,K,N[,TA,TB] ...
For each shape prints one line `M K N TA TB median_ms gflops`, where TA/TB (0/1) say whether A is
stored [K, M] and B is stored [N, K] (the product is always op(A)·op(B), 2·M·N·K flops).
Threads: OPENBLAS_NUM_THREADS if set, else every core.
Exits with status 2 and a message on stderr when numpy is missing (the bench then skips the ratio).
"""

import os
import sys
import time

if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = str(os.cpu_count() or 1)

try:
    import numpy as np
except ImportError as e:  # the bench prints this and goes on without the ratio
    print(f"numpy is not installed ({e}); `pip install numpy` to get the OpenBLAS yardstick",
          file=sys.stderr)
    sys.exit(2)

BUDGET_S = float(os.environ.get("NUMPY_SGEMM_SECONDS", "1.0"))


def bench(m, k, n, ta, tb):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
    opa = a.T if ta else a
    opb = b.T if tb else b
    out = np.empty((m, n), dtype=np.float32)
    np.matmul(opa, opb, out=out)  # warm-up (thread pool start, page faults)
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < BUDGET_S and len(times) < 50):
        t0 = time.perf_counter()
        np.matmul(opa, opb, out=out)
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return med * 1e3, 2.0 * m * n * k / med / 1e9


def main():
    for arg in sys.argv[1:]:
        v = [int(x) for x in arg.split(",")]
        m, k, n = v[:3]
        ta = bool(v[3]) if len(v) > 3 else False
        tb = bool(v[4]) if len(v) > 4 else False
        ms, gflops = bench(m, k, n, ta, tb)
        print(f"{m} {k} {n} {int(ta)} {int(tb)} {ms:.4f} {gflops:.3f}", flush=True)


if __name__ == "__main__":
    main()
