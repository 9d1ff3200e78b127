"""One encoder across several processes with ``torch.distributed``: DistributedDataParallel for the gradients,
SyncBatchNorm on GPUs for the batch statistics, and the batch-coupled losses over the *global* batch.

NT-Xent and VICReg couple the images of a batch (negatives; variance and covariance over the batch). With the
batch split over W processes, each process computes the projections of its shard, and ``all_gather_with_grad``
concatenates every process's projections with their gradients (``torch.distributed.nn.functional.all_gather``,
as the SimCLR and DINO reference implementations do). Every process then computes the same loss: the loss of the
global batch. Backward through the gather returns to each shard W times its share of that loss's gradient, and
DDP averages the parameter gradients over the W processes, so the step equals one process on the global batch
(``tests/test_ddp.py`` checks loss and gradients with the ``gloo`` backend on the CPU, for SimCLR and VICReg).

BatchNorm: on CUDA, ``distribute`` converts BatchNorm layers to ``SyncBatchNorm``; PyTorch's SyncBatchNorm runs
on GPUs only, so a CPU run (the tests) uses normalisations without batch statistics (GroupNorm encoder,
LayerNorm heads).

    setup(rank, world, backend, init_file) ; model = distribute(encoder, objective, device)
    loss = model(shard_views) ; loss.backward() ; opt.step() ; teardown()
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


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous part of a global batch (positions, or images): equal parts, rank order. Raises
    ValueError when the batch does not split evenly (the global loss would weight processes unequally)."""
    r, w = world()
    if len(batch) % w:
        raise ValueError(f"a global batch of {len(batch)} does not split over {w} processes; use a batch_size "
                         f"divisible by the number of GPUs")
    n = len(batch) // w
    return batch[r * n:(r + 1) * n]


class _Step(torch.nn.Module):
    """encoder + objective as one module whose forward is the objective's loss (what DDP wraps)."""

    def __init__(self, encoder, objective):
        super().__init__()
        self.encoder, self.objective = encoder, objective

    def forward(self, views, labels=None):
        return self.objective.loss(self.encoder, views, labels)


def distribute(encoder, objective, device) -> torch.nn.Module:
    """``encoder`` and ``objective`` as one ``DistributedDataParallel`` module (forward(views, labels) -> the
    global-batch loss), with ``objective.gather`` set to ``all_gather_with_grad`` and, on CUDA, BatchNorm
    layers converted to SyncBatchNorm. Call after ``setup``."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    step = _Step(encoder, objective)
    device = torch.device(device)
    if device.type == "cuda":
        step = torch.nn.SyncBatchNorm.convert_sync_batchnorm(step)
    objective.gather = all_gather_with_grad
    return DDP(step.to(device), device_ids=[device.index] if device.type == "cuda" else None)


def setup(rank: int, world_size: int, init_file: str, backend: str | None = None) -> None:
    """Join the process group of ``world_size`` processes (rendezvous through ``init_file``, a path every process
    sees). ``backend``: nccl on GPUs, gloo on the CPU (default: by whether CUDA is available)."""
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())


def teardown() -> None:
    """Leave the process group. The barrier first: a process that destroys its group while another still has
    collectives in flight aborts the other (gloo: 'terminate called without an active exception')."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
