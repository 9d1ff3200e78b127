"""The ``slurm`` executor (``executors.make``): a plan's pending jobs as one SLURM job array through submitit
(``pip install -e ".[cluster]"``). Each task runs ``jobs.run_job`` on a node and writes to the shared cache; this
process waits with a bar of finished jobs, then removes submitit's files of the tasks that succeeded.
``cluster="local"`` runs the same path through submitit's ``LocalExecutor`` (tests, and a dry run without a
cluster)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from tqdm import tqdm

from memlab.engine.jobs import JobsFailed, run_job


def _slurm_work(job, root, device):
    from memlab.engine.train import resolve_device
    return run_job(job, root, device=resolve_device(device), wait=True)


class Slurm:
    """Runs jobs as a SLURM array on ``device``'s kind of node; ``opts``: ``executors.SLURM_OPTIONS`` updated with
    the notebook's ``slurm`` dict (checked by ``executors.make``)."""

    def __init__(self, device, opts: dict):
        self.device, self.opts = device, opts

    def executor(self, cache):
        import submitit
        o = self.opts
        folder = Path(o["folder"] or cache.root / "submitit") / "%j"
        if o["cluster"] == "local":
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=o["time_min"], gpus_per_node=o["gpus_per_task"] if self.device.type == "cuda" else 0)
            return ex
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {"timeout_min": o["time_min"], "cpus_per_task": o["cpus_per_task"], "nodes": 1, "tasks_per_node": 1,
                  "slurm_array_parallelism": o["array_parallelism"], "name": "memlab"}
        if self.device.type == "cuda":
            params["gpus_per_node"] = o["gpus_per_task"]
        if o["partition"]:
            params["slurm_partition"] = o["partition"]
        if o["mem_gb"]:
            params["mem_gb"] = o["mem_gb"]
        if o["sbatch"]:
            params["slurm_additional_parameters"] = dict(o["sbatch"])
        ex.update_parameters(**params)
        return ex

    def run(self, jobs, cache, progress: bool = True) -> dict:
        """Submit ``jobs`` as one job array and wait for all of them (a bar of finished jobs)."""
        if not jobs:
            return {}
        device = "auto" if self.device.type == "cuda" else "cpu"
        handles = self.executor(cache).map_array(_slurm_work, jobs, [str(cache.root)] * len(jobs),
                                                 [device] * len(jobs))
        print(f"submitted {len(jobs)} job(s) as array {handles[0].job_id.split('_')[0]}; logs under "
              f"{handles[0].paths.folder}")
        status, failed, left = {}, [], dict(enumerate(handles))
        bar = tqdm(total=len(jobs), disable=not progress, unit="job", desc=f"jobs ({self.opts['cluster']})")
        while left:
            for i, h in list(left.items()):
                if h.done():
                    del left[i]
                    err = h.exception()
                    if err is None:
                        status[jobs[i].name] = h.result()
                    else:
                        failed.append((jobs[i].name, str(h.paths.stderr), f"{type(err).__name__}: {err}"[:2000]))
                    bar.update(1)
            if left:
                time.sleep(1.0)
        bar.close()
        self._clean(handles, failed)
        if failed:
            raise JobsFailed(failed)
        return status

    @staticmethod
    def _clean(handles, failed) -> None:
        """Once every task is done, their results are in the cache: remove submitit's pickles and logs, except
        the logs of failed tasks (named in the error). One folder may hold several tasks (LocalExecutor)."""
        keep = {f[1] for f in failed}
        kept = {Path(h.paths.folder) for h in handles if str(h.paths.stderr) in keep}
        for h in handles:
            if Path(h.paths.folder) not in kept:
                shutil.rmtree(h.paths.folder, ignore_errors=True)
            elif str(h.paths.stderr) not in keep:
                for f in (h.paths.stdout, h.paths.stderr, h.paths.result_pickle):
                    Path(f).unlink(missing_ok=True)
        folders = {h.paths.folder for h in handles}
        for f in folders:  # submitit's staging folder, named by the unformatted pattern, is empty by now
            try:
                (Path(f).parent / "%j").rmdir()
            except OSError:
                pass
