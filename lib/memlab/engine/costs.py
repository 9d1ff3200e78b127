"""What a job costs, estimated before it runs: image-steps, FLOPs (``torch.utils.flop_counter``) and peak device
memory (``memory.peak_bytes``) in a ``Cost``; the A100-hour yardstick of the estimates; and the throughput each
device measured on earlier jobs (``<cache>/throughput.json``), which turns FLOPs into minutes in ``Plan.show``.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import filelock
import torch

from memlab.io.cache import Cache


@lru_cache(maxsize=32)
def _flops_per_image(model: str, model_kw_json: str, size: int) -> float:
    """FLOPs of one forward + backward pass of ``model`` on one size x size image (counted on a batch of 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from memlab.models.networks import build_model
    net = build_model(model, **json.loads(model_kw_json)).train()
    x = torch.randn(2, 3, size, size)
    with FlopCounterMode(display=False) as fc:
        out = net(x)
        (out[0] if isinstance(out, (tuple, list)) else out).float().sum().backward()
    return fc.get_total_flops() / 2


@dataclass
class Cost:
    """Estimated cost of one job: ``epochs``, ``image_steps`` (image views passed forward and backward over the
    whole training), ``flops`` (image_steps x FLOPs of one view through the encoder, forward + backward) and
    ``peak_bytes`` (the peak device memory of one step, ``memory.peak_bytes``; 0: not estimated)."""
    epochs: int
    image_steps: int
    flops: float
    model: str = ""
    peak_bytes: int = 0
    activation_bytes: int = 0   # the fp32 activations inside peak_bytes (halved on CUDA: memory.needed)

    @classmethod
    def of(cls, model: str, model_kw: dict, *, epochs: int, steps_per_epoch: int, batch: int, views: int,
           size: int = 32, per_sample_grads: int = 0, memory_batch: int | None = None) -> "Cost":
        """``batch`` images of ``views`` views per step; ``per_sample_grads``: per-image gradients held at once
        (DP-SGD's physical batch); ``memory_batch``: the images whose activations are held at once (default
        ``batch``; DP-SGD's physical batch)."""
        from memlab.engine.memory import activations, peak_bytes
        steps = int(epochs) * int(steps_per_epoch) * int(batch) * int(views)
        per = _flops_per_image(model, json.dumps(model_kw, sort_keys=True, default=list), size)
        peak = peak_bytes(model, model_kw, batch=int(memory_batch or batch), views=int(views), size=size,
                          per_sample_grads=int(per_sample_grads))
        act = activations(model, model_kw, batch=int(memory_batch or batch), views=int(views), size=size)
        return cls(int(epochs), steps, steps * per, model, peak, act)


A100_PEAK_TFLOPS = 312   # an A100's bf16 dense peak: the yardstick of the GPU-hour estimates (cli, dryrun)


def a100_hours(flops: float, fraction: float) -> float:
    """Hours an A100 needs for ``flops`` when it sustains ``fraction`` of its bf16 peak."""
    return flops / (fraction * A100_PEAK_TFLOPS * 1e12) / 3600


def device_label(device) -> str:
    """A name for this device's measured throughput: the GPU's name, or the CPU (jobs train single-threaded)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu {platform.processor() or platform.machine()}, 1 thread per job"


def _throughput_file(cache: Cache) -> Path:
    return cache.root / "throughput.json"


def record_throughput(cache: Cache, device, model: str, flops: float, seconds: float) -> None:
    """Remember this device's FLOP/s for ``model`` (an average over the jobs it trained), for plan estimates."""
    if seconds <= 0 or flops <= 0:
        return
    path = _throughput_file(cache)
    try:
        with filelock.FileLock(str(path) + ".lock", timeout=10):
            data = json.loads(path.read_text()) if path.is_file() else {}
            rec = data.setdefault(device_label(device), {}).setdefault(model, {"flops": 0.0, "seconds": 0.0})
            rec["flops"] += flops
            rec["seconds"] += seconds
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
    except (OSError, ValueError, filelock.Timeout):
        pass  # an estimate only; never fail a job over it


def known_throughput(cache: Cache, device) -> dict:
    """{model: FLOP/s} measured on this device by earlier jobs (empty when none)."""
    try:
        data = json.loads(_throughput_file(cache).read_text())
    except (OSError, ValueError):
        return {}
    return {m: r["flops"] / r["seconds"] for m, r in data.get(device_label(device), {}).items() if r["seconds"] > 0}
