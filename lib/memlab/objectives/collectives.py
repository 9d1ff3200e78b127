"""The collectives that batch-coupled losses need under data parallelism (``memlab.engine.ddp``).

NT-Xent and VICReg compute their loss over the *global* batch (``all_gather_with_grad``), and DINO's centre is
the mean over the global batch (``mean_over_processes``). Each is the identity, or the plain mean, in a single
process, so the objectives run unchanged without a process group.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """The concatenation over processes (in rank order) of ``t`` (B, ...) -> (W B, ...), differentiable: the
    gradient of each process's slice flows back to that process. The identity in a single process."""
    _, w = world()
    if w == 1:
        return t
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(t.contiguous()), 0)


def mean_over_processes(t: torch.Tensor) -> torch.Tensor:
    """The mean over the global batch of ``t`` (B, ...) -> (1, ...): every process's rows summed with
    ``all_reduce``, divided by the global count (as DINO's reference ``update_center``). Not differentiable
    (for statistics such as DINO's centre). ``t.mean(0, keepdim=True)`` in a single process."""
    _, w = world()
    if w == 1:
        return t.mean(0, keepdim=True)
    total = t.sum(0, keepdim=True)
    dist.all_reduce(total)
    return total / (len(t) * w)
