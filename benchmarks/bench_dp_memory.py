"""DP-SGD memory follows the physical batch, not the logical one (issue 18).

Trains notebook 05's DP encoder (GroupNorm ResNet-9, SimSiam, DP-SGD at epsilon 8) for a few logical steps at
logical batches 256 and 1024 with the same physical batch, each in a fresh process, and prints the peak resident
memory of each (ru_maxrss, on the CPU; torch.cuda.max_memory_allocated on a GPU), side by side in one run. The
claim: going from 256 to 1024 at a fixed physical batch adds less than 10% to the peak.

    python benchmarks/bench_dp_memory.py [--width 0.25] [--physical 32] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def one(logical: int, physical: int, width: float, device: str, steps: int) -> dict:
    import torch

    from memlab.data.datasets import load_dataset
    from memlab.engine.dp import train_dp
    from memlab.engine.train import TrainConfig
    n = max(2 * logical, 2048)
    data = load_dataset("synthetic", "train", n=n, seed=0)
    mean, std = data.stats()
    cfg = TrainConfig(model="resnet9", model_kw={"width": width, "norm": "group"}, objective="simsiam",
                      objective_kw={"norm": "layer"}, epochs=1, batch_size=logical, lr=0.05, warmup_epochs=0,
                      mean=mean, std=std)
    # a few logical steps suffice for the peak: cut the data to `steps` expected batches
    idx = torch.arange(min(n, steps * logical))
    train_dp(cfg, data.images[idx], idx, target_epsilon=8.0, device=device, progress=False, physical_batch=physical)
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"logical": logical, "physical": physical, "peak_mib": peak / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--physical", type=int, default=32)
    ap.add_argument("--logical", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--steps", type=int, default=2, help="logical steps per run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(one(a.child, a.physical, a.width, a.device, a.steps)))
        return 0
    rows = []
    for logical in a.logical:  # each in a fresh process: ru_maxrss is a high-water mark
        out = subprocess.run([sys.executable, __file__, "--child", str(logical), "--physical", str(a.physical),
                              "--width", str(a.width), "--device", a.device, "--steps", str(a.steps)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"logical batch {logical:5d}, physical {a.physical}: peak {rows[-1]['peak_mib']:.0f} MiB", flush=True)
    base = rows[0]["peak_mib"]
    for r in rows[1:]:
        print(f"logical {r['logical']} vs {rows[0]['logical']}: {100 * (r['peak_mib'] / base - 1):+.1f}% peak memory "
              f"(target: under +10%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
