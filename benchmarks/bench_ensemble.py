"""Networks per hour when training an ensemble of N networks with recognition records (notebook 01): one job
per network run inline (``inline``, one after another), the same jobs on the local executor (``local``: one
single-threaded worker per CPU core, or one per GPU) and torch.func (``vmap``: stacked weights, all networks
in one job), and which backend ``memlab.experiments.ensemble.ensemble_backend`` picks here.

    python benchmarks/bench_ensemble.py --device auto [--objective supervised] [--networks 4] [--epochs 2]

Each backend trains the same N networks (same seeds, same data, same recorded epochs) into a fresh temporary
cache; the time includes training and recording. Networks/hour = N / seconds * 3600 for that many epochs
(scale by epochs for other lengths).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache
from memlab.experiments.ensemble import ensemble_backend, train_ensemble, views_needed
from memlab.engine.executors import cpu_cores
from memlab.data.splits import random_labels
from memlab.engine.train import TrainConfig, resolve_device


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--objective", default="supervised", choices=["supervised", "simclr"])
    ap.add_argument("--networks", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--points", type=int, default=250)
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--channels", default="32,64,128,256")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--backends", default="inline,local,vmap", help="comma-separated: inline, local, vmap")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (a.images, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = random_labels(a.images, 10, 0) if a.objective == "supervised" else None
    okw = {"temperature": 0.07} if a.objective == "simclr" else {}
    cfg = TrainConfig(model="cnn", model_kw={"channels": tuple(int(c) for c in a.channels.split(","))},
                      objective=a.objective, objective_kw=okw, aug="weak" if a.objective == "supervised" else "simclr",
                      epochs=a.epochs, batch_size=a.batch_size, optimizer="adam", lr=1e-3, warmup_epochs=0)
    bank = ViewBank(Augmentation(cfg.aug), views_needed(cfg, a.views), seed=1)
    x_pos = np.arange(a.points)
    print(f"device {dev} | {cpu_cores()} CPU cores | torch threads {torch.get_num_threads()} | {a.objective} CNN({a.channels}) | "
          f"N={a.networks}, {a.epochs} epochs of {a.images} images, records of {a.points} points x {a.views} views "
          f"every epoch")
    res = {}
    for backend in a.backends.split(","):
        if backend == "local" and dev.type == "cuda" and torch.cuda.device_count() < 2:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            train_ensemble(cfg, range(a.networks), images, labels, None, x_pos, bank, a.views, range(1, a.epochs + 1),
                           cache=Cache(tmp), device=dev, backend="vmap" if backend == "vmap" else "jobs",
                           executor="inline" if backend == "vmap" else backend, progress=False)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        res[backend] = dt
        print(f"  {backend:6s}: {dt:7.1f} s  ->  {a.networks / dt * 3600:8.0f} networks/hour ({a.epochs} epochs each)")
    if len(res) >= 2:
        fast = min(res, key=res.get)
        print(f"  fastest here: {fast} ({max(res.values()) / min(res.values()):.2f}x the slowest); "
              f"ensemble_backend picks: {ensemble_backend(dev, cfg, n_networks=a.networks)}")


if __name__ == "__main__":
    main()
