"""A dry run of a plan on the CPU (``python -m memlab plan NOTEBOOK --profile paper --dry-run``).

Every job of the plan -- cached or not, and a stand-in for each deferred one -- runs its real code (model,
image size, objective, optimiser, DP accounting, epoch-end callbacks) for ``steps`` optimisation steps on the
first ``batch`` images of each batch, into a scratch folder; no cache entry is written. The epoch-end
callbacks then run as at the last epoch (records, snapshots, fit checks and monitors, each on at most
``eval_images`` images). So shape, configuration and data errors of a GPU run show up here in minutes. The
table gives each job's result, its estimated peak device memory at the real batch size (``memory.peak_bytes``)
and its estimated GPU-hours (FLOPs at ``GPU_FRACTION`` of an A100's bf16 peak).

A dataset that is not present locally (no archive, no torchvision copy, no download) is replaced by a fake
archive of its real size (random pixels, balanced labels; ``memlab.data.fakes``), written on first use, so a laptop
without SVHN, STL-10 or CIFAR-100 can dry-run every notebook.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch


GPU_FRACTION = 0.4         # sustained share of an A100's peak assumed for the GPU-hours column (costs.a100_hours)

@dataclass(frozen=True)
class DryRun:
    """The limits of a dry run: ``steps`` optimiser steps per job, ``batch`` images per step (at least 2, for
    the losses that contrast a batch), ``eval_images`` images per evaluation (records, fit checks, monitors)."""
    steps: int = 2
    batch: int = 4
    eval_images: int = 32

    def __post_init__(self):
        if self.steps < 1 or self.batch < 2 or self.eval_images < 2:
            raise ValueError(f"dry run: steps >= 1, batch >= 2 and eval_images >= 2 are needed, got {self}")


_ACTIVE: DryRun | None = None


def active() -> DryRun | None:
    """The dry run in progress in this process, or None (a real run)."""
    return _ACTIVE


def cap(n: int) -> int:
    """``n`` in a real run; at most ``eval_images`` during a dry run (the images an evaluation looks at)."""
    return n if _ACTIVE is None else min(int(n), _ACTIVE.eval_images)


def head(batch):
    """A batch cut to the dry run's ``batch`` items: a tensor of positions, or a tuple of them (one per network of
    a stacked ensemble)."""
    if isinstance(batch, torch.Tensor):
        return batch[:_ACTIVE.batch]
    return tuple(head(b) for b in batch)


@contextlib.contextmanager
def limits(dry: DryRun):
    """Run the body as a dry run (``engine.fit`` and the evaluations read ``active()``)."""
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, dry
    try:
        yield dry
    finally:
        _ACTIVE = before


# ----------------------------------------------------------------------------- running a plan dry
def _run_one(job, scratch: Path, device) -> None:
    from memlab.engine.jobs import job_args
    args = job_args(job.args)
    if "root" in args:  # a vmap group commits its networks itself: into the scratch cache, never the real one
        args["root"] = str(scratch / "cache")
    ckpt = scratch / "ckpt"
    shutil.rmtree(ckpt, ignore_errors=True)
    files = job.fn(ckpt_dir=ckpt, device=device, progress=False, epoch_callback=None, **args)
    if not isinstance(files, dict) or not files:
        raise RuntimeError(f"the job returned {type(files).__name__}, not its files")


def dry_run(plan, dry: DryRun | None = None, device="cpu"):
    """Run every job of ``plan`` (and the stand-in of every deferred job) under ``limits(dry)`` on ``device``.
    Returns the table (pandas): job, kind, result ("pass" or the error), seconds here, estimated peak GiB at the
    real batch size, estimated GPU-hours. The first lines of each failure's traceback are printed."""
    import pandas as pd
    from tqdm import tqdm

    from memlab.engine.costs import a100_hours
    dry = dry or DryRun()
    todo = [(j.name, j.kind, j) for j in plan.jobs]
    todo += [(d.name, d.kind, d.stand_in) for d in plan.deferred]
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="memlab-dryrun-"))
    try:
        with limits(dry):
            for name, kind, job in tqdm(todo, desc=f"dry run {plan.name}", unit="job"):
                t0, result = time.time(), "pass"
                try:
                    if job is None:
                        raise RuntimeError("deferred without a stand-in job")
                    if callable(job):
                        job = job()  # a deferred job's stand-in (a Job is not callable), built only now
                    _run_one(job, scratch, device)
                except Exception as e:  # noqa: BLE001 -- every failure is reported, the other jobs still run
                    result = f"FAIL {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                    tqdm.write(f"{name}: {result}\n" + "".join(traceback.format_exc().splitlines(True)[-6:]))
                cost = getattr(job, "cost", None)
                flops = cost.flops if cost is not None else 0.0
                rows.append({"job": name, "kind": kind, "dry run": result, "seconds": round(time.time() - t0, 1),
                             "peak GiB": round(cost.peak_bytes / 2**30, 2) if cost is not None and cost.peak_bytes
                             else None,
                             "GPU-h": round(a100_hours(flops, GPU_FRACTION), 2)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return pd.DataFrame(rows)


def summary(name: str, table) -> str:
    ok = (table["dry run"] == "pass").sum()
    return (f"dry run {name}: {ok}/{len(table)} jobs pass | largest estimated peak "
            f"{table['peak GiB'].max() or 0:.3g} GiB | {table['GPU-h'].sum():,.1f} GPU-hours at {GPU_FRACTION:.0%} "
            f"of an A100's peak | {table['seconds'].sum():,.0f} s here")
