#!/usr/bin/env python3
"""Torch reference timing for benches/paco.rs: PaCo (GPaCo form, float32) forward+backward.

Called by `cargo bench -p supcon --bench paco` (env SPMIX_PYTHON, else
python3); needs torch (`pip install torch==2.15.0 numpy==2.4.6`).
Usage: bench_torch.py B K D C THREADS ITERS. Prints `median_ms=<float>`.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import paco_ref  # noqa: E402  (the same formulation the fixtures use)


def main():
    b, k, d, c, threads, iters = (int(x) for x in sys.argv[1:7])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    unit = lambda x: x / x.norm(dim=1, keepdim=True)  # noqa: E731
    q = unit(torch.randn(b, d, generator=g)).requires_grad_()
    key = unit(torch.randn(b, d, generator=g)).requires_grad_()
    queue = unit(torch.randn(k, d, generator=g))
    counts = torch.tensor([4700, 780, 770, 360, 230, 100, 80][:c])
    y = torch.randint(0, c, (b,), generator=g)
    labels = torch.cat([y, y, torch.randint(0, c, (k,), generator=g)])
    z = torch.randn(2 * b, c, generator=g).requires_grad_()

    def step():
        f = torch.cat([q, key, queue])
        loss = paco_ref(f, labels, z, counts, 0.05, 1.0, 1.0, 0.2, 0.0)
        loss.backward()
        q.grad = key.grad = z.grad = None

    for _ in range(3):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"median_ms={1e3 * times[len(times) // 2]:.4f}")


if __name__ == "__main__":
    main()
