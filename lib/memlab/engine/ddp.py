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

``train.train`` does this by itself inside a process group, and ``launch`` starts the group: an encoder job
with ``processes = W`` (``MEMLAB_DDP_PROCESSES``, read by ``jobs.run_job``) trains over W processes, one per
GPU. Rank 0 writes the checkpoint and the snapshots; every rank resumes from them, so an interrupted DDP job
resumes like any other. The cache key does not change: DDP gives the single-process loss and gradients up to
float rounding (summation order), not the same bits.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch
import torch.distributed as dist

from memlab.objectives.collectives import all_gather_with_grad, world


def average(t: torch.Tensor) -> torch.Tensor:
    """The mean over processes of a detached tensor (a step's loss for the record: SimCLR and VICReg compute the
    global batch's loss in every process, DINO, MAE and supervised losses their shard's). ``t`` itself in a single
    process."""
    _, w = world()
    if w == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / w


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


def _rank_main(rank: int, world_size: int, init_file: str, backend: str, fn, kwargs: dict, out: str) -> None:
    """One process of ``launch``: join the group, run ``fn`` on this rank's device, rank 0 saves the result."""
    from memlab.io.cache import atomic_save
    setup(rank, world_size, init_file, backend)
    try:
        device = torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
        if device.type == "cpu":
            torch.set_num_threads(1)  # one core per process
        result = fn(device=device, **kwargs)
        if rank == 0:
            atomic_save(result, Path(out))
    finally:
        teardown()


def launch(fn, processes: int, folder, device, kwargs: dict):
    """``fn(device=..., **kwargs)`` in ``processes`` new processes forming one group (``torch.multiprocessing``;
    nccl with one GPU each on CUDA, gloo on the CPU), and rank 0's return value (saved to ``folder``, a tensor
    tree that ``torch.load(weights_only=True)`` reads). Raises ValueError before starting when CUDA has fewer
    GPUs than ``processes``, and ``ProcessRaisedException`` with a rank's traceback when one fails."""
    import torch.multiprocessing as mp
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and torch.cuda.device_count() < processes:
        raise ValueError(f"{processes} DDP processes need {processes} GPUs; {torch.cuda.device_count()} are visible "
                         f"(set MEMLAB_DDP_PROCESSES to at most that)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    init, out = folder / f".ddp-{uuid.uuid4().hex}", folder / f".ddp-result-{os.getpid()}.pt"
    try:
        mp.spawn(_rank_main, args=(processes, str(init), backend, fn, kwargs, str(out)), nprocs=processes, join=True)
        return torch.load(out, map_location="cpu", weights_only=True)
    finally:
        out.unlink(missing_ok=True)
        init.unlink(missing_ok=True)
