"""What every notebook does first, once: validate its parameters, then open a ``Session`` (device, executor,
CPU threads, cache and report).

Each experiments module declares its notebook's parameters as a frozen dataclass whose fields are the names of the
notebook's parameters cell. ``parameters(cls, namespace)`` builds it from the notebook's globals after papermill's
injected cell, checking types and ranges (``memlab.io.params``) before anything is computed, and names the closest
parameter for a misspelt dict key::

    P = parameters(ProfilesParams, globals())     # ParameterError before any compute
    S = start("01_profiles_vs_binomial", P)       # device, executor, report, cache
    status = S.run(plan)                          # the plan on the chosen executor
"""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, fields

import torch

from memlab.engine import executors
from memlab.engine.train import resolve_device
from memlab.io.cache import Cache
from memlab.io.params import ParameterError, check_ranges
from memlab.io.report import Report


@dataclass(frozen=True)
class SessionParams:
    """The parameters every notebook has, the ones ``start`` reads. A notebook's parameters dataclass derives from
    it (``@dataclass(frozen=True) class ProfilesParams(SessionParams)``) and adds its own fields."""
    profile: str       # smoke, laptop or paper: labels the outputs (the smoke profile's claims are not evaluated)
    output_dir: str    # figures, tables and claims go to <output_dir>/{figures,tables}/<notebook>/
    device: str        # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    executor: str      # where the training jobs run: "auto", "inline", "local" or "slurm" ($MEMLAB_EXECUTOR overrides)
    workers: int       # local executor: worker processes (0: one per CPU core, or one per GPU)
    slurm: dict        # slurm executor: partition, time_min, gpus_per_task, ... (engine.executors.Slurm)


def parameters(cls, namespace: dict):
    """``cls`` (a dataclass) from the parameter values in ``namespace`` (a notebook's ``globals()``).

    Reads the fields of ``cls`` by name; a missing one raises ``ParameterError`` naming it. Numeric ranges are
    those of ``memlab.io.params.RANGES``. ``cls.__post_init__`` checks the relations between parameters."""
    missing = [f.name for f in fields(cls) if f.name not in namespace]
    if missing:
        raise ParameterError(f"the notebook defines no parameter {missing}: add it to the parameters cell")
    values = {f.name: namespace[f.name] for f in fields(cls)}
    check_ranges(values)
    return cls(**values)


def check_keys(name: str, given: dict, allowed) -> None:
    """Every key of the dict parameter ``name`` must be one of ``allowed``; ParameterError with the closest one."""
    allowed = list(allowed)
    for k in given:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), [str(a) for a in allowed], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (choose from {allowed})"
            raise ParameterError(f"parameter {name!r} has an unknown key {k!r}{hint}")


def check_snapshots(name: str, epochs_list, epochs: int) -> tuple:
    """The snapshot epochs of an effect-versus-compute curve, checked before any compute: ``[]`` (no curve) or
    at least 2 distinct ints in 1..``epochs`` - 1 (with the last epoch, which is always a compute point, the 3
    points ``metrics.trend`` needs). Returns them sorted as a tuple; ``ParameterError`` naming ``name`` otherwise."""
    snaps = list(epochs_list)
    ok = all(isinstance(e, int) and not isinstance(e, bool) and 1 <= e < epochs for e in snaps)
    if not ok or len(set(snaps)) != len(snaps) or len(snaps) == 1:
        raise ParameterError(f"{name} = {snaps}: give [] (no effect-versus-compute curve) or at least 2 distinct "
                             f"epochs in 1..{epochs - 1}; the last epoch, {epochs}, is always the curve's third point")
    return tuple(sorted(snaps))


@dataclass
class Session:
    """A notebook's run: its device, executor settings, cache and report, and its start time."""
    device: torch.device
    cache: Cache
    report: Report
    executor: str = "auto"
    workers: int = 0
    slurm: dict | None = None
    started: float = 0.0

    def run(self, plan) -> dict:
        """Run ``plan`` (``memlab.engine.jobs.Plan``) on this session's executor; ``{job name: status}``."""
        return plan.run(self.executor, workers=self.workers or None, slurm=self.slurm)

    def elapsed(self) -> float:
        """Seconds since ``start``."""
        return time.time() - self.started


def start(notebook: str, p, dataset: str | None = None, *, threads: int | None = None) -> Session:
    """Open the session of ``notebook`` (e.g. ``"02_sslmem"``) from its parameters ``p``.

    Uses ``p.device``, ``p.executor``, ``p.workers``, ``p.slurm``, ``p.profile`` and ``p.output_dir``, and
    ``dataset`` (default ``p.dataset``) for the figure captions. ``threads`` > 0 sets torch's CPU threads of this
    process (training jobs always run single-threaded on a CPU). A bad device or executor raises here, before any
    compute."""
    dev = resolve_device(p.device)
    executors.make(p.executor, device=dev, workers=p.workers or None, slurm=p.slurm)
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    report = Report(p.output_dir, notebook, p.profile, dataset if dataset is not None else p.dataset)
    return Session(dev, Cache(), report, p.executor, p.workers, p.slurm, time.time())
