"""Benchmark: UnitMem for all units of all layers over |D| points x K views, with memlab's streaming
pass (batched views, every layer from one forward pass) against a batch-size-1 loop per point and view.
Checks that both give the same scores and prints the speed-up (a benchmark, not a test).

    python benchmarks/bench_unitmem.py [--device auto] [--points 256] [--views 4] [--width 0.25]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.models.networks import build_model
from memlab.data.synthetic import make_synthetic
from memlab.engine.train import resolve_device
from memlab.metrics.unitmem import UnitStats, unit_stats, unitmem


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def naive(enc, images, labels, bank, k, dev):
    """One image at a time: for each point, each view, one forward per layer truncation-free pass."""
    per_layer = {l: [] for l in enc.layer_names}
    for i in range(len(images)):
        acc = {l: 0 for l in enc.layer_names}
        for v in range(k):
            x = bank.view(images[i:i + 1].to(dev), np.array([i]), v)
            f = enc.forward_features(x, pool=True)
            for l in enc.layer_names:
                acc[l] = acc[l] + f[l][0].float()
        for l in enc.layer_names:
            per_layer[l].append(acc[l] / k)
    out = {}
    for l, rows in per_layer.items():
        v = torch.stack(rows)
        out[l] = UnitStats(l, v.max(0).values.cpu(), v.argmax(0).cpu(), v.sum(0).cpu(), len(v),
                           torch.zeros(1, v.shape[1]), torch.zeros(1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--width", type=float, default=0.25)
    a = ap.parse_args()
    dev = resolve_device(a.device)
    d = make_synthetic(a.points, seed=0)
    torch.manual_seed(0)
    enc = build_model("resnet9", width=a.width).to(dev).to(memory_format=torch.channels_last).eval()
    bank = ViewBank(Augmentation("simclr"), a.views, seed=0)
    idx = torch.arange(a.points)

    unit_stats(enc, d["images"][:8], idx[:8], d["labels"][:8], bank, device=dev)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    fast = unit_stats(enc, d["images"], idx, d["labels"], bank, device=dev, batch_size=256)
    sync(dev)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive(enc, d["images"], d["labels"], bank, a.views, dev)
    sync(dev)
    t_slow = time.perf_counter() - t0
    err = max(float((unitmem(fast[l]) - unitmem(slow[l])).abs().nan_to_num().max()) for l in enc.layer_names)
    units = sum(s.units for s in fast.values())
    print(f"device {dev} | resnet9 x{a.width} | {len(enc.layer_names)} layers, {units} units | "
          f"|D| = {a.points}, K = {a.views} views | torch {torch.__version__}")
    print(f"streaming, batched, one pass for all layers : {t_fast:8.2f} s  ({a.points * a.views / t_fast:8.0f} views/s)")
    print(f"batch-size-1 loop per point and view        : {t_slow:8.2f} s  ({a.points * a.views / t_slow:8.0f} views/s)")
    print(f"speed-up: {t_slow / t_fast:.1f}x   max |UnitMem difference| = {err:.2e}")


if __name__ == "__main__":
    main()
