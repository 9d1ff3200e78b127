"""Benchmark: LayerMem of every layer from ONE forward pass per view (memlab's ``layermem.layer_scores``)
against scoring the layers one truncated model at a time (one pass per layer per view, each stopping after its
layer). Both use the same f/g pair and views; the script checks that they give the same raw scores and prints
the time of each and their ratio (a benchmark, not a test). Each truncated model is a separate scoring run, so it
draws the views again: the ratio counts the augmentation too, and can exceed the number of layers.

    python benchmarks/bench_layermem.py [--device auto] [--arch resnet9] [--width 0.25] [--points 256] [--pairs 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from memlab.metrics import layermem as LM
from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.models.networks import build_model
from memlab.data.synthetic import make_synthetic
from memlab.engine.train import resolve_device

ARCH_KW = {"resnet9": lambda w: {"width": w}, "resnet18": lambda w: {"width": w}, "resnet50": lambda w: {"width": w},
           "vit_tiny": lambda w: {"depth": 4, "embed_dim": 128, "num_heads": 4}}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default="resnet9", choices=sorted(ARCH_KW))
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    d = make_synthetic(a.points, seed=0)
    encs = []
    for s in (0, 1):  # f and g: timing does not depend on training, so two seeded random inits stand in
        torch.manual_seed(s)
        e = build_model(a.arch, **ARCH_KW[a.arch](a.width)).to(dev).eval()
        encs.append(e.to(memory_format=torch.channels_last) if a.arch.startswith("resnet") else e)
    f, g = encs
    layers = LM.layermem_layers(f)
    bank = ViewBank(Augmentation("simclr"), 2 * a.pairs, seed=0)
    idx = np.arange(a.points)
    kw = dict(n_pairs=a.pairs, rep="flat", device=dev, batch_size=256)

    LM.layer_scores([f], [g], d["images"][:8], idx[:8], bank, layers=layers, **kw)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    one = LM.layer_scores([f], [g], d["images"], idx, bank, layers=layers, **kw)
    sync(dev)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    per = {l: LM.layer_scores([LM.Truncated(f, l)], [LM.Truncated(g, l)], d["images"], idx, bank, layers=[l], **kw)[l]
           for l in layers}
    sync(dev)
    t_per = time.perf_counter() - t0
    err = max(float((one[l]["raw"] - per[l]["raw"]).abs().max()) for l in layers)
    views = 2 * a.points * 2 * a.pairs
    print(f"device {dev} | {a.arch}" + (f" x{a.width}" if a.arch.startswith("resnet") else "") +
          f" | {len(layers)} layers | {a.points} points x {a.pairs} view pairs x (f, g) | torch {torch.__version__}")
    print(f"one pass per view, all layers       : {t_one:8.2f} s  ({views / t_one:8.0f} views/s)")
    print(f"one truncated model per layer       : {t_per:8.2f} s  ({len(layers)} passes per view)")
    print(f"ratio (truncated / one pass): {t_per / t_one:.1f}x   max |raw score difference| = {err:.2e}")


if __name__ == "__main__":
    main()
