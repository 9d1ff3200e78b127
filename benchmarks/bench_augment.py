"""Benchmark: SimCLR training throughput with memlab's on-device batched augmentation against the usual
torchvision per-sample PIL pipeline in a DataLoader, on the same model; the share of each step spent in
augmentation; and SSLMem scoring throughput. Prints a table (a benchmark, not a test).

    python benchmarks/bench_augment.py [--device auto] [--model resnet9] [--width 0.25] [--batch 256]
                                       [--steps 10] [--workers 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.models.networks import build_model
from memlab.objectives.losses import build_objective
from memlab.metrics.sslmem import alignment_losses
from memlab.data.synthetic import make_synthetic
from memlab.engine.train import resolve_device

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def torchvision_loader(images: torch.Tensor, batch: int, workers: int):
    """The reference pipeline: PIL images, per-sample torchvision transforms, two views, a DataLoader."""
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(32), T.RandomHorizontalFlip(),
                    T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
                    T.ToTensor(), T.Normalize(MEAN, STD)])
    pil = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, i):
            return tf(pil[i]), tf(pil[i])

    return torch.utils.data.DataLoader(Pairs(), batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="resnet9")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--score-points", type=int, default=512)
    ap.add_argument("--view-pairs", type=int, default=5)
    a = ap.parse_args()
    dev = resolve_device(a.device)
    n = a.batch * (a.steps + 2)
    images = make_synthetic(n, seed=0)["images"]
    kw = {"width": a.width} if a.model.startswith("resnet") else {}
    torch.manual_seed(0)
    enc = build_model(a.model, **kw).to(dev).to(memory_format=torch.channels_last)
    obj = build_objective("simclr", enc.out_dim).to(dev)
    opt = torch.optim.SGD(list(enc.parameters()) + list(obj.parameters()), lr=0.01, momentum=0.9)
    aug = Augmentation("simclr", mean=MEAN, std=STD)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step(v1, v2):
        with amp:
            loss = obj.loss(enc, [v1, v2], None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # memlab: uint8 batch on the device, augmented there
    data = images.to(dev)
    t_aug = t_all = 0.0
    for s in range(a.steps + 1):
        sync(dev)
        t0 = time.perf_counter()
        idx = np.arange(s * a.batch, (s + 1) * a.batch)
        x = data[idx]
        v1, v2 = aug(x, idx, 0, 2 * s), aug(x, idx, 0, 2 * s + 1)
        sync(dev)
        t1 = time.perf_counter()
        step(v1, v2)
        sync(dev)
        if s > 0:  # skip warm-up
            t_aug += t1 - t0
            t_all += time.perf_counter() - t0
    ours = a.steps * a.batch / t_all

    # torchvision: per-sample PIL transforms in DataLoader workers, then copied to the device
    loader = torchvision_loader(images, a.batch, a.workers)
    it = iter(loader)
    t_wait = t_tv = 0.0
    for s in range(a.steps + 1):
        sync(dev)
        t0 = time.perf_counter()
        v1, v2 = next(it)
        v1, v2 = v1.to(dev, non_blocking=True), v2.to(dev, non_blocking=True)
        sync(dev)
        t1 = time.perf_counter()
        step(v1, v2)
        sync(dev)
        if s > 0:
            t_wait += t1 - t0
            t_tv += time.perf_counter() - t0
    theirs = a.steps * a.batch / t_tv

    # SSLMem scoring throughput: K view pairs per point through the encoder, no gradients
    bank = ViewBank(aug, 2 * a.view_pairs)
    pts = images[:a.score_points]
    alignment_losses(enc, pts[:64], np.arange(64), bank, device=dev)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    alignment_losses(enc, pts, np.arange(len(pts)), bank, device=dev, batch_size=512)
    sync(dev)
    score_rate = len(pts) / (time.perf_counter() - t0)

    print(f"device {dev} | model {a.model} {kw} | batch {a.batch} | {a.steps} timed steps | "
          f"torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(f"{'pipeline':<44}{'images/s':>10}{'aug share':>11}")
    print(f"{'memlab on-device batched augmentation':<44}{ours:>10.0f}{t_aug / t_all:>10.1%}")
    print(f"{'torchvision PIL DataLoader (' + str(a.workers) + ' workers)':<44}{theirs:>10.0f}{t_wait / t_tv:>10.1%}")
    print(f"speed-up: {ours / theirs:.2f}x")
    print(f"SSLMem scoring: {score_rate:.0f} points/s ({a.view_pairs} view pairs = {2 * a.view_pairs} "
          f"forward passes per point)")


if __name__ == "__main__":
    main()
