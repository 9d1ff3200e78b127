"""Peak device memory of a training job, estimated before anything trains; a job that cannot fit is refused.

    peak = 4 x parameter bytes           weights, gradients and two optimiser moments (Adam; SGD/LARS need less)
         + batch x views x activations   what one view keeps for the backward pass (fp32; halved under autocast)
         + per-image gradients           DP-SGD only: physical batch x parameter bytes
         then x 1.1 for workspace and fragmentation.

The activations of one view are measured, not guessed: one forward pass of the model on two images with a
hook on every leaf module adds up the bytes of the distinct tensors they output (``activation_bytes``; an
in-place ReLU's output is its input and counts once). On CUDA the plan trains under autocast, so
``check_fits`` halves the activations there. MAE encodes a quarter of the tokens: its estimate is high.
``MEMLAB_MEMORY_CHECK=off`` skips the check (a warning is printed instead). The estimate is meant
to catch the configurations that cannot run (a batch of 1024 per-image gradients, a ResNet-50 at batch 1024 on a
24 GB card) before a cluster job starts, not to predict the allocator to the megabyte.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

import torch

OVERHEAD = 1.1


class JobTooLarge(MemoryError):
    pass


@lru_cache(maxsize=64)
def _model_bytes(model: str, model_kw_json: str, size: int) -> tuple[int, int]:
    """(parameter bytes, activation bytes of one image view) of ``model`` in fp32, in training mode."""
    from memlab.models.networks import build_model
    net = build_model(model, **json.loads(model_kw_json)).train()
    total, seen = [0], set()

    def hook(_m, _inp, out):
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total[0] += t.numel() * 4

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(torch.randn(2, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() * 4 for p in net.parameters())
    return params, total[0] // 2


def activation_bytes(model: str, model_kw: dict, size: int = 32) -> int:
    """Bytes the forward pass of one ``size`` x ``size`` image view keeps for the backward pass (fp32)."""
    return _model_bytes(model, json.dumps(model_kw, sort_keys=True, default=list), size)[1]


def peak_bytes(model: str, model_kw: dict, *, batch: int, views: int, size: int = 32, amp: bool = False,
               per_sample_grads: int = 0) -> int:
    """The estimated peak memory of one training step (see the module docstring). ``per_sample_grads``: how many
    per-image gradients are held at once (DP-SGD's physical batch; 0 otherwise)."""
    params, act = _model_bytes(model, json.dumps(model_kw, sort_keys=True, default=list), size)
    acts = batch * views * act * (0.5 if amp else 1.0)
    return int(OVERHEAD * (4 * params + acts + per_sample_grads * params))


def activations(model: str, model_kw: dict, *, batch: int, views: int, size: int = 32) -> int:
    """The fp32 activation part of ``peak_bytes`` (before the overhead factor)."""
    return batch * views * activation_bytes(model, model_kw, size)


def device_memory(device) -> int | None:
    """Total memory of ``device`` in bytes: the GPU's, or this machine's RAM for the CPU (None if unknown)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_properties(dev).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def needed(cost, device) -> int:
    """``cost.peak_bytes`` on ``device``: with the activations halved on CUDA (autocast)."""
    amp = torch.device(device).type == "cuda"
    return int(cost.peak_bytes - (0.5 * OVERHEAD * getattr(cost, "activation_bytes", 0) if amp else 0))


def check_fits(jobs, device) -> None:
    """Raise ``JobTooLarge`` naming every job of ``jobs`` whose estimated peak (``needed``) exceeds ``device``'s
    memory, with the knobs that lower it. Jobs without an estimate pass; ``MEMLAB_MEMORY_CHECK=off`` only warns."""
    limit = device_memory(device)
    if not limit:
        return
    big = [j for j in jobs if getattr(j.cost, "peak_bytes", 0) and needed(j.cost, device) > limit]
    if big:
        lines = "\n".join(f"  {j.name}: about {needed(j.cost, device) / 2**30:.1f} GiB" for j in big)
        msg = (f"{len(big)} job(s) would not fit in the {limit / 2**30:.1f} GiB of {device}:\n{lines}\n"
               f"Fix: lower batch_size (for DP jobs dp_physical_batch, which leaves the privacy accounting "
               f"unchanged; for supervised, random-label and MAE encoders micro_batch, which leaves the batch "
               f"unchanged), or the encoder's width, or run on a device with more memory. The estimate is "
               f"conservative; MEMLAB_MEMORY_CHECK=off runs anyway.")
        if os.environ.get("MEMLAB_MEMORY_CHECK", "").lower() == "off":
            print(f"warning: {msg}")
            return
        raise JobTooLarge(msg)
