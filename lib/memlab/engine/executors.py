"""Executors: where a plan's pending jobs train. Every executor calls ``jobs.run_job``, so each key trains once
(under its cache lock), resumes from its last epoch, and gives the same bits.

- ``inline``: one after another in this process (the notebook's kernel).
- ``local``: a pool of worker processes on this machine. On a CPU, one single-threaded worker per core (small
  networks barely use a second thread, so whole networks in parallel are the cheap speed-up:
  ``benchmarks/bench_executor.py``); with several GPUs, one worker per visible GPU, always spawned (a process
  forked after CUDA started is unusable).
- ``slurm``: submitit, one SLURM job array per plan (``slurm.py``); workers write to the shared cache and this
  process waits with a bar of finished jobs. ``slurm={"cluster": "local"}`` runs the same path through
  submitit's ``LocalExecutor`` (tests, and a dry run without a cluster).
- ``auto``: ``local`` on a CPU with >= 2 cores or with >= 2 GPUs when >= 2 jobs are pending, else ``inline``.

``$MEMLAB_EXECUTOR`` overrides the notebook's ``executor`` parameter (batch runs). Bad choices fail in ``make``,
before any training.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch
from tqdm import tqdm

from memlab.engine.jobs import JobsFailed, run_job
from memlab.engine.slurm import Slurm

EXECUTORS = ("auto", "inline", "local", "slurm")
ENV = "MEMLAB_EXECUTOR"
SLURM_OPTIONS = {"cluster": "slurm", "partition": None, "time_min": 24 * 60, "gpus_per_task": 1,
                 "cpus_per_task": 8, "mem_gb": None, "array_parallelism": 64, "sbatch": {}, "folder": None}


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def make(name: str = "auto", *, device="cpu", workers: int | None = None, slurm: dict | None = None,
         n_jobs: int = 2):
    """The executor called ``name`` (``$MEMLAB_EXECUTOR`` wins). Raises ValueError for an unknown name, a bad
    worker count or unknown SLURM options, ImportError for ``slurm`` without submitit -- all before any job runs."""
    name = (os.environ.get(ENV) or "").strip() or name
    if name not in EXECUTORS:
        raise ValueError(f"executor {name!r} is unknown: choose one of {list(EXECUTORS)} (parameter 'executor' "
                         f"or the environment variable {ENV})")
    device = torch.device(device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    capacity = gpus if device.type == "cuda" else cpu_cores()
    what = f"{gpus} visible GPU(s)" if device.type == "cuda" else f"{capacity} CPU core(s)"
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if device.type not in ("cpu", "cuda"):  # e.g. mps: one device, trained in this process
        if name == "local":
            raise ValueError(f"executor 'local' runs on a CPU or CUDA GPUs, not on {device.type!r}; use 'inline'")
        capacity = 1
    if name == "auto":
        name = "local" if capacity >= 2 and n_jobs >= 2 else "inline"
    if name == "inline":
        return Inline(device)
    if name == "local":
        if workers is not None and workers > capacity:
            raise ValueError(f"executor 'local' with {workers} workers: this machine has {what}; use workers <= "
                             f"{capacity} (one worker per {'GPU' if gpus else 'core'})")
        return Local(device, workers or capacity)
    try:
        import submitit  # noqa: F401
    except ImportError as e:
        raise ImportError("executor 'slurm' needs submitit: pip install -e \".[cluster]\" (or pip install "
                          "submitit)") from e
    opts = dict(SLURM_OPTIONS)
    unknown = sorted(set(slurm or {}) - set(opts))
    if unknown:
        raise ValueError(f"unknown slurm option(s) {unknown}; known: {sorted(opts)}")
    opts.update(slurm or {})
    if opts["cluster"] not in ("slurm", "local"):
        raise ValueError(f"slurm cluster must be 'slurm' or 'local' (submitit's LocalExecutor), got {opts['cluster']!r}")
    if opts["cluster"] == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("executor 'slurm' needs SLURM's sbatch on this machine's PATH (run on a login node of the "
                         "cluster); slurm={'cluster': 'local'} runs the same path locally")
    return Slurm(device, opts)


def _failure(job, cache, err) -> tuple:
    return job.name, str(job.log_path(cache)), f"{type(err).__name__}: {err}"


class Inline:
    def __init__(self, device):
        self.device = device

    def run(self, jobs, cache, progress: bool = True) -> dict:
        """Train ``jobs`` here, one after another; keys another process is training are done last (waiting for
        it). Returns {name: status}; raises JobsFailed after trying every job."""
        todo, status, failed = list(jobs), {}, []
        bar = tqdm(total=sum(j.cost.epochs for j in todo), disable=not progress, unit="epoch", desc="jobs (inline)")
        for wait_ in (False, True):
            busy = []
            for job in todo:
                bar.set_postfix_str(job.name)
                done_before = bar.n
                try:
                    s = run_job(job, cache.root, device=self.device, wait=wait_, progress=False,
                                epoch_callback=lambda *a: bar.update(1))
                except Exception as e:  # reported with the others at the end
                    failed.append(_failure(job, cache, e))
                    continue
                if s == "busy":
                    busy.append(job)
                    continue
                status[job.name] = s
                bar.update(job.cost.epochs - (bar.n - done_before))
            todo = busy
        bar.close()
        if failed:
            raise JobsFailed(failed)
        return status


# ----------------------------------------------------------------------------- local process pool
_REPORTS = None
MAX_BREAKS = 2  # a job running when a worker died is retried (resuming); failed after this many such deaths


def _init(reports, gpu_ids, threads):
    global _REPORTS
    _REPORTS = reports
    if gpu_ids is not None:
        torch.cuda.set_device(gpu_ids.get())
    torch.set_num_threads(threads)


def _work(job, root, device, wait_, jid):
    if _REPORTS is not None:
        _REPORTS.put((jid, 0))  # started
    report = None if _REPORTS is None else (lambda *a: _REPORTS.put((jid, 1)))
    return run_job(job, root, device=device, wait=wait_, epoch_callback=report)


class Local:
    def __init__(self, device, workers: int):
        self.device, self.workers = device, workers

    def run(self, jobs, cache, progress: bool = True) -> dict:
        """Train ``jobs`` in ``workers`` processes. Workers are killed at once on an interrupt, so a rerun never
        races a leftover worker (a killed job resumes from its checkpoint on the next run). When a worker dies
        (killed, out of memory) the pool restarts: jobs that had not started are resubmitted, and jobs that were
        running resume from their last epoch, up to ``MAX_BREAKS`` deaths each; then they are reported failed."""
        gpu = self.device.type == "cuda"
        fork_ok = "fork" in mp.get_all_start_methods() and not gpu and not torch.cuda.is_initialized()
        ctx = mp.get_context("fork" if fork_ok else "spawn")
        device = "cuda" if gpu else "cpu"
        # the bar counts TFLOPs, so its rate and time left hold across jobs of different sizes (epochs where a
        # job's FLOPs are unknown)
        by_flops = all(j.cost.flops > 0 for j in jobs)
        weight = [j.cost.flops / 1e12 / max(j.cost.epochs, 1) if by_flops else 1.0 for j in jobs]   # per epoch
        bar = tqdm(total=round(sum(w * j.cost.epochs for w, j in zip(weight, jobs)), 3), disable=not progress,
                   unit="TFLOP" if by_flops else "epoch",
                   desc=f"jobs ({self.workers} {'GPU' if gpu else 'CPU'} workers)")
        reached, breaks = [0] * len(jobs), [0] * len(jobs)
        status, failed, todo, waiting = {}, [], list(range(len(jobs))), set()
        try:
            while todo:
                todo = self._pool(ctx, jobs, todo, waiting, cache, device, gpu, bar, weight, reached, breaks, status,
                                  failed)
        finally:
            bar.close()
        if failed:
            raise JobsFailed(failed)
        return status

    def _pool(self, ctx, jobs, todo, waiting, cache, device, gpu, bar, weight, reached, breaks, status, failed) -> list:
        """One process pool over the job indices ``todo``; returns the indices to run again in a fresh pool."""
        reports = ctx.Queue()
        gpu_ids = None
        if gpu:
            gpu_ids = ctx.Queue()
            for i in range(self.workers):
                gpu_ids.put(i)
        ex = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init,
                                 initargs=(reports, gpu_ids, 1 if not gpu else torch.get_num_threads()))
        started, again = set(), []

        def drain():
            while True:
                try:
                    i, epoch = reports.get_nowait()
                except queue.Empty:
                    return
                started.add(i)
                reached[i] += epoch

        try:
            futures = {ex.submit(_work, jobs[i], cache.root, device, i in waiting, i): i for i in todo}
            while futures:
                finished, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for f in finished:
                    i = futures.pop(f)
                    try:
                        s = f.result()
                    except BrokenProcessPool:
                        drain()
                        breaks[i] += i in started
                        if breaks[i] >= MAX_BREAKS:
                            log = jobs[i].log_path(cache)
                            log.parent.mkdir(parents=True, exist_ok=True)
                            log.write_text(f"job {jobs[i].name!r}: its worker process died {breaks[i]} times while "
                                           f"it ran (killed by a signal, e.g. out of memory)\n")
                            failed.append(_failure(jobs[i], cache, RuntimeError(
                                "a worker process died while it ran (killed, or out of memory?)")))
                        else:
                            again.append(i)
                        continue
                    except Exception as e:
                        failed.append(_failure(jobs[i], cache, e))
                        continue
                    if s == "busy":  # another process trains it: wait for that one, after the other jobs
                        waiting.add(i)
                        futures[ex.submit(_work, jobs[i], cache.root, device, True, i)] = i
                        continue
                    status[jobs[i].name], reached[i] = s, jobs[i].cost.epochs
                bar.n = round(sum(w * min(r, j.cost.epochs) for w, r, j in zip(weight, reached, jobs)), 3)
                bar.set_postfix(jobs=f"{len(status)}/{len(jobs)}")
                bar.refresh()
        except BaseException:
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.terminate()
            raise
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
        return sorted(again)
