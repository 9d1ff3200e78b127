"""Jobs and plans: every expensive training is a job, keyed by the content-addressed cache.

- A ``Job`` is one deterministic unit of training (an encoder, one network of an ensemble, a DP encoder, a
  benign-memorisation run, a fine-tune), identified by its cache entry: ``kind`` + ``key`` (config + data
  fingerprint; the cache adds the code version). ``job.fn(ckpt_dir=..., device=..., progress=...,
  epoch_callback=..., **job.args)`` trains and returns the files to commit (name -> object).
- ``run_job`` is the one place a job runs, whatever the executor: it takes the key's lock (``Cache.lock``),
  returns at once if the entry exists, resumes from ``<key>.partial/`` otherwise, and commits. A process that
  finds the lock held gets ``"busy"`` back (``wait=False``) and takes another job, or waits for the holder.
  So two runs sharing a cache never train one key twice, and a killed run resumes at its last epoch.
- A ``Plan`` is the list of a notebook's jobs, declared before anything trains. ``plan.show()`` prints it with
  each job's ``Cost`` (``costs.py``: image-steps, FLOPs, peak memory, and minutes where this device's
  throughput was measured by an earlier job); ``plan.run(executor)`` trains what is pending
  (``executors.py``). Jobs whose keys depend on earlier results (retraining without the top-k SSLMem points)
  are declared with ``plan.defer`` and filled in later with ``plan.add``.
- Tensors travel to worker processes and SLURM nodes as ``Stored``: written once to ``<cache>/tensors/`` and
  memory-mapped there, so a job pickles to a few kilobytes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import filelock
import pandas as pd
import torch

from memlab.engine.config import fingerprint
from memlab.engine.costs import Cost, device_label, known_throughput, record_throughput
from memlab.io.cache import Cache, atomic_save

# Set by ``python -m memlab plan|train`` (cli.py): stop the notebook after its plan is shown / trained.
STOP_ENV = "MEMLAB_STOP_AFTER"


class StopAfterPlan(Exception):
    """Raised by ``Plan.run`` when ``$MEMLAB_STOP_AFTER`` asks to stop after showing (``plan``) or training
    (``train``) the plan; ``python -m memlab`` catches it. ``.table``: the plan's table."""

    def __init__(self, message: str, table=None):
        super().__init__(message)
        self.table = table


class JobsFailed(RuntimeError):
    """Some jobs of a plan failed; the others finished and are cached. ``.failures``: [(job name, log path,
    error)]."""

    def __init__(self, failures):
        self.failures = failures
        lines = "\n".join(f"  - {name}: {err}\n    log: {log}" for name, log, err in failures)
        super().__init__(f"{len(failures)} job(s) failed (the other jobs finished and are cached; rerun to "
                         f"retry only these):\n{lines}")


# ----------------------------------------------------------------------------- tensors for other processes
class Stored:
    """A tensor that pickles as its fingerprint: on first pickling it is written to
    ``<root>/tensors/<sha256>.pt`` (atomically, under a lock) and the receiving process loads it memory-mapped.
    In the same process ``job_args`` unwraps it to the tensor itself."""

    def __init__(self, tensor: torch.Tensor, root: str | Path):
        self.tensor, self.root = tensor.contiguous(), Path(root)

    def __reduce__(self):  # only here is the tensor hashed and written: a job run inline needs neither
        path = self.root / "tensors" / f"{fingerprint(self.tensor)}.pt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with filelock.FileLock(str(path) + ".lock"):
                if not path.is_file():
                    atomic_save(self.tensor, path)
        return _load_stored, (str(path),)


def _load_stored(path: str) -> torch.Tensor:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def job_args(args: dict) -> dict:
    return {k: v.tensor if isinstance(v, Stored) else v for k, v in args.items()}


# ----------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One training, named ``name`` in the plan, committed as cache entry (``kind``, ``key``).
    ``fn`` must be a module-level function (it is pickled by reference) and ``args`` picklable
    (wrap tensors in ``Stored``)."""
    name: str
    kind: str
    key: dict
    fn: Callable
    args: dict
    cost: Cost
    force: bool = False
    members: tuple = ()   # names of the jobs this one trains too (a vmap group of networks)

    def cache_key(self, cache: Cache) -> str:
        return cache.key(self.kind, self.key)

    def log_path(self, cache: Cache) -> Path:
        return cache.root / "logs" / self.kind / f"{self.cache_key(cache)}.log"


DDP_ENV = "MEMLAB_DDP_PROCESSES"


def ddp_processes(job: Job) -> int:
    """Processes that train ``job``'s one encoder together (``ddp.launch``): ``$MEMLAB_DDP_PROCESSES`` (default 1)
    for encoder jobs, 1 for every other kind. ValueError when it is not a positive integer, or when it does not
    divide the job's batch (each process takes an equal shard)."""
    raw = os.environ.get(DDP_ENV, "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{DDP_ENV}={raw!r}: give the number of processes (GPUs) per encoder, a positive integer")
    n = int(raw)
    if n == 1 or job.kind != "encoder":
        return 1
    cfg = job.args["cfg"]
    if cfg.batch_size % n:
        raise ValueError(f"job {job.name!r}: batch_size {cfg.batch_size} does not split over {DDP_ENV}={n} "
                         f"processes; use a number of processes that divides it")
    return n


def run_job(job: Job, root=None, *, device="cpu", wait: bool = True, progress: bool = False,
            epoch_callback=None) -> str:
    """Train ``job`` into the cache at ``root`` unless it is there: returns ``"cached"``, ``"trained"`` or, with
    ``wait=False`` while another process holds the key's lock, ``"busy"``. A failure writes its traceback to
    ``job.log_path`` and re-raises."""
    from memlab.engine.train import resolve_device
    cache, device = Cache(root), resolve_device(device)
    if not job.force and cache.exists(job.kind, job.key):  # no lock needed to read (a read-only cache works)
        return "cached"
    lock = cache.lock(job.kind, job.key)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except filelock.Timeout:
        return "busy"
    try:
        if not job.force and cache.exists(job.kind, job.key):
            return "cached"
        ckpt = cache.partial_dir(job.kind, job.key)
        if job.force:
            (ckpt / "last.pt").unlink(missing_ok=True)
        # On a CPU every job trains single-threaded, whatever the executor: the thread count changes the
        # reduction order of a convolution, so this is what makes inline, local and SLURM runs bit-identical.
        threads = torch.get_num_threads()
        if device.type == "cpu":
            torch.set_num_threads(1)
        t0 = time.time()
        processes = ddp_processes(job)
        extra = {"processes": processes} if processes > 1 else {}
        try:
            files = job.fn(ckpt_dir=ckpt, device=device, progress=progress, epoch_callback=epoch_callback,
                           **job_args(job.args), **extra)
        except BaseException:
            import traceback
            log = job.log_path(cache)
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"job {job.name!r} ({job.kind} {job.cache_key(cache)}) on {device}\n"
                           + traceback.format_exc())
            raise
        finally:
            torch.set_num_threads(threads)
        cache.save(job.kind, job.key, files, force=job.force)
        record_throughput(cache, device, job.cost.model, job.cost.flops, time.time() - t0)
        return "trained"
    finally:
        lock.release()


# ----------------------------------------------------------------------------- plans
@dataclass
class _Deferred:
    name: str
    kind: str
    cost: Cost
    stand_in: Callable | None = None   # () -> a Job of the same code and sizes, for the dry run


@dataclass
class Plan:
    """A notebook's jobs, declared before anything trains (see the module docstring)."""
    name: str
    cache: Cache = field(default_factory=Cache)
    device: str = "cpu"
    jobs: list = field(default_factory=list)
    deferred: list = field(default_factory=list)

    def add(self, job: Job) -> Job:
        """Declare ``job`` (a job with the same cache entry is declared once); it fills a deferred entry of the
        same name if there is one."""
        key = (job.kind, job.cache_key(self.cache))
        for j in self.jobs:
            if (j.kind, j.cache_key(self.cache)) == key:
                self._fill(job.name)
                return j
            if j.name == job.name:
                raise ValueError(f"plan {self.name}: two different jobs are named {job.name!r}")
        self._fill(job.name)
        self.jobs.append(job)
        return job

    def _fill(self, name: str) -> None:
        self.deferred = [d for d in self.deferred if d.name != name]

    def defer(self, name: str, kind: str, cost: Cost, stand_in: Callable | None = None) -> None:
        """Declare a job whose key depends on earlier jobs' results; ``add`` it under the same name later.
        ``stand_in() -> Job``: a job with the same code, model and sizes (e.g. other points removed), which the
        dry run (``dryrun.py``) runs in its place."""
        self.deferred.append(_Deferred(name, kind, cost, stand_in))

    def status(self, job: Job) -> str:
        """"cached" or "pending" (a cache lookup, which verifies the entry's checksums: done once per call)."""
        return "cached" if not job.force and self.cache.exists(job.kind, job.key) else "pending"

    def pending(self) -> list:
        return [j for j in self.jobs if self.status(j) == "pending"]

    def table(self, pending: list | None = None) -> pd.DataFrame:
        """The plan as a table; ``pending`` (the jobs ``pending()`` returned) spares a second cache lookup."""
        rate = known_throughput(self.cache, self.device)
        todo = {id(j) for j in (self.pending() if pending is None else pending)}
        rows = [(j.name, j.kind, j.cache_key(self.cache), "pending" if id(j) in todo else "cached", j.cost)
                for j in self.jobs]
        rows += [(d.name, d.kind, "", "deferred", d.cost) for d in self.deferred]
        return pd.DataFrame([{"job": n, "kind": k, "key": key, "status": s, "epochs": c.epochs,
                              "image-steps": c.image_steps, "TFLOPs": float(f"{c.flops / 1e12:.3g}"),
                              "peak GiB": float(f"{c.peak_bytes / 2**30:.2g}") if c.peak_bytes else None,
                              "est. minutes": float(f"{c.flops / rate[c.model] / 60:.2g}") if c.model in rate else None}
                             for n, k, key, s, c in rows])

    def summary(self, table: pd.DataFrame | None = None) -> str:
        t = self.table() if table is None else table
        todo = t[t.status != "cached"]
        minutes = todo["est. minutes"]
        est = ("nothing to train" if not len(todo) else
               f"{minutes.sum():.3g} min one after another on {device_label(self.device)}" if minutes.notna().all()
               else "minutes: not yet measured on this device")
        return (f"plan {self.name}: {len(t)} jobs ({(t.status == 'cached').sum()} cached, "
                f"{(t.status == 'pending').sum()} pending, {(t.status == 'deferred').sum()} deferred) | "
                f"to train: {todo['image-steps'].sum():,} image-steps, {todo.TFLOPs.sum():,.4g} TFLOPs, {est}")

    def show(self, pending: list | None = None) -> pd.DataFrame:
        t = self.table(pending)
        with pd.option_context("display.max_rows", 500, "display.width", 200):
            print(t.to_string(index=False) if len(t) else "(no jobs)")
        print(self.summary(t))
        return t

    def add_all(self, jobs) -> list:
        """``add`` each job; returns the declared jobs."""
        return [self.add(j) for j in jobs]

    def run(self, executor: str = "auto", *, workers: int | None = None, progress: bool = True,
            slurm: dict | None = None) -> dict:
        """Show the plan, then train its pending jobs with ``executor`` (``executors.make``; ``$MEMLAB_EXECUTOR``
        overrides it). Returns {job name: "cached" | "trained"} for every declared job. Raises ``JobsFailed``
        naming the failed jobs (and their logs) after the others finish; ``cache.CacheWriteError`` before any
        training when the cache cannot be written; ``memory.JobTooLarge`` before any training when a pending job's
        estimated peak memory exceeds the device's (on a SLURM cluster, the nodes' cards are checked by the
        workers)."""
        from memlab.engine.executors import make
        from memlab.engine.memory import check_fits
        pending = self.pending()
        ex = make(executor, device=self.device, workers=workers, slurm=slurm, n_jobs=len(pending))
        stop = os.environ.get(STOP_ENV, "")
        table = self.show(pending)
        if stop == "plan":
            raise StopAfterPlan(self.summary(table), table)
        if stop == "dryrun":  # every job for a few steps on this machine, into a scratch folder (dryrun.py)
            from memlab.engine.dryrun import dry_run, summary
            table = dry_run(self, device=self.device)
            with pd.option_context("display.max_rows", 1000, "display.width", 200):
                print(table.to_string(index=False))
            raise StopAfterPlan(summary(self.name, table), table)
        if type(ex).__name__ != "Slurm":  # this machine's device trains them
            check_fits(pending, self.device)
        for j in pending:
            ddp_processes(j)  # a bad MEMLAB_DDP_PROCESSES is refused before anything trains
        status = {j.name: "cached" for j in self.jobs}
        if pending:
            self.cache.check_writable()
            status.update(ex.run(pending, self.cache, progress=progress))
        for j in pending:
            j.force = False  # forced once: a later stage of this plan must not train it again
        for j in self.jobs:
            status.update(dict.fromkeys(j.members, status[j.name]))
        if stop == "train" and not self.deferred:
            raise StopAfterPlan(f"plan {self.name}: {len(pending)} job(s) trained, nothing left to train")
        return status
