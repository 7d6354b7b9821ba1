"""PyTorch/timm reference timings for `cargo bench -p model` (run by the bench, not by hand).

Builds the same Hybrid-ViT as the Rust crate with timm's classes (see make_fixtures.py) and
prints one line `NAME SECONDS_PER_IMAGE` per model: median forward+backward time (train mode,
loss = sum(features * r)) over ITERS timed steps after one warm-up.

  pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0 numpy
  python bench_timm.py THREADS ITERS NAME BATCH '<json config>' [NAME BATCH CONFIG ...]
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import Full  # noqa: E402


def main():
    threads, iters = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    rest = sys.argv[3:]
    for i in range(0, len(rest), 3):
        name, batch, cfg = rest[i], int(rest[i + 1]), json.loads(rest[i + 2])
        torch.manual_seed(0)
        model = Full(cfg).vit
        model.train()
        x = torch.randn(batch, 3, cfg["image_size"], cfg["image_size"])
        r = torch.randn(batch, cfg["embed_dim"])
        times = []
        for it in range(iters + 1):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            f = model.forward_head(model.forward_features(x), pre_logits=True)
            (f * r).sum().backward()
            dt = time.perf_counter() - t0
            if it > 0:
                times.append(dt)
        times.sort()
        print(name, times[len(times) // 2] / batch, flush=True)


if __name__ == "__main__":
    main()
