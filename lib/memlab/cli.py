"""Batch use of the notebooks' plans, without rendering them:

    python -m memlab plan NOTEBOOK|all [--profile P] [-p NAME VALUE ...] [--dry-run]
    python -m memlab train NOTEBOOK [--profile P] [--executor inline|local|slurm] [--workers N] [--ddp-processes W]
                       [--partition P] [--time-min M] [--gpus-per-task G] [--sbatch KEY=VALUE ...]

then ``./run_all.sh --profile P NOTEBOOK`` renders the notebook from the cache.

The plan is the notebook's own: its code runs (parameters from ``params/<profile>/``, validated as run_all.sh
does) up to its ``plan.run(...)``, which prints the plan and stops (``plan``), or trains every pending job with
the executor and stops once the notebook's last plan has run (``train``). So there is no second copy of any
config. ``plan all`` adds a table of job counts and estimated GPU-hours per notebook.

``--dry-run`` runs every job of the plan for 2 optimisation steps on this machine (``dryrun.py``: the real
models, image sizes and losses, 4 images per step; no cache entry is written), with fake archives of the real
sizes for datasets that are not present (kept in ``<cache>/dryrun-data`` for the next dry run), and prints pass/fail, the estimated peak memory at the real
batch size and the estimated GPU-hours per job (with ``all``: per notebook).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

def notebook_path(name: str, root: Path) -> Path:
    """A notebook by name (02_sslmem), prefix (02) or path; ValueError listing the notebooks otherwise."""
    all_ = sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))
    s = Path(name).name.removesuffix(".py").removesuffix(".ipynb")
    match = [p for p in all_ if p.stem == s or p.stem.startswith(s + "_")]
    if len(match) != 1:
        raise ValueError(f"notebook {name!r} matches {len(match)} notebooks; available: {[p.stem for p in all_]}")
    return match[0]


def run_notebook_code(nb: Path, profile: str, root: Path, extra: list, stop: str):
    """Execute ``nb``'s code cells with the profile's parameters until a plan stops it (``stop`` is "plan" or
    "train"). Returns the ``StopAfterPlan`` (message and plan table); RuntimeError when the notebook declares
    no plan."""
    import jupytext

    from memlab.engine.jobs import STOP_ENV, StopAfterPlan
    from memlab.io.runner import check
    params_file = root / "params" / profile / f"{nb.stem}.yaml"
    if not params_file.is_file():
        raise FileNotFoundError(f"no parameter file {params_file} (profiles: {sorted(p.name for p in (root / 'params').iterdir())})")
    # what the notebook's code writes on the way to its plan (figures of a first stage) goes to a scratch folder:
    # outputs/<profile>/ is run_all.sh's
    out_dir = tempfile.mkdtemp(prefix=f"memlab-{stop}-{nb.stem}-")
    values = check(str(nb), str(params_file), [*extra, ("output_dir", json.dumps(out_dir)), ("profile", profile)])
    cells = [c for c in jupytext.read(nb).cells if c.cell_type == "code"]
    ns = {"__name__": "__main__"}
    os.environ[STOP_ENV] = stop
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        for cell in cells:
            exec(compile(cell.source, f"{nb.name}", "exec"), ns)
            if "parameters" in cell.metadata.get("tags", []):
                ns.update(values)
    except StopAfterPlan as e:
        return e
    finally:
        os.environ.pop(STOP_ENV, None)
        import matplotlib.pyplot as plt
        plt.close("all")
        shutil.rmtree(out_dir, ignore_errors=True)
    raise RuntimeError(f"{nb.stem} ran to its end without a plan to {stop}")


def _plan_table(nb: Path, profile: str, root: Path, extra: list, stop: str = "plan"):
    return run_notebook_code(nb, profile, root, extra, stop).table


@contextlib.contextmanager
def fake_data():
    """For the body (a dry run, and the processes it starts): a fake archive of the real size for each dataset
    that is not present (``memlab.data.fakes.fake_archive``, kept in ``<cache>/dryrun-data`` for the next dry run; delete it
    freely), and no downloads. The variable is restored afterwards, so later loads in this process are real."""
    from memlab.io.cache import Cache
    from memlab.data.fakes import FAKE_DATA_ENV
    before = os.environ.get(FAKE_DATA_ENV)
    os.environ[FAKE_DATA_ENV] = str(Cache().root / "dryrun-data")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(FAKE_DATA_ENV, None)
        else:
            os.environ[FAKE_DATA_ENV] = before


def _tables(profile: str, root: Path, extra: list, stop: str):
    """(notebook name, its plan table, or None when its code failed: the error is printed), for every notebook.
    Each notebook's code runs in a fresh process: the paper profile's datasets of six notebooks together exceed
    a 24 GiB machine when one process holds them all."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.py")):
        print(f"\n=== {nb.stem} ({profile}{', dry run' if stop == 'dryrun' else ''})", flush=True)
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                t = pool.submit(_plan_table, nb, profile, root, extra, stop).result()
        except Exception as e:
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            t = None
        yield nb.stem, t


def _dry_all(profile: str, root: Path, extra: list) -> int:
    import pandas as pd
    rows = [{"notebook": name, "jobs": None} if t is None else
            {"notebook": name, "jobs": len(t), "pass": int((t["dry run"] == "pass").sum()),
             "largest peak GiB": t["peak GiB"].max(), "GPU-h at 40%": round(t["GPU-h"].sum(), 1),
             "seconds here": round(t["seconds"].sum())}
            for name, t in _tables(profile, root, extra, "dryrun")]
    df = pd.DataFrame(rows).convert_dtypes()
    print(f"\nDry run summary ({profile}; peak memory at the real batch size, GPU-hours at 40% of an A100's bf16 "
          f"peak):")
    print(df.to_string(index=False))
    ok = df["jobs"].notna().all() and (df["pass"] == df["jobs"]).all()
    print(f"total: {int(df['pass'].sum())}/{int(df['jobs'].sum())} jobs pass, {df['GPU-h at 40%'].sum():,.1f} "
          f"GPU-hours" if df["jobs"].notna().all() else "some notebooks did not reach their plan")
    return 0 if ok else 1


def _plan_all(profile: str, root: Path, extra: list) -> int:
    """The job counts and the A100-hours left to train per notebook, at two sustained rates: 40% and 10% of the
    bf16 peak (small convnets on 32 px images sit near the low end; once a job has run on the device, the
    plan's "est. minutes" uses the measured throughput instead)."""
    import pandas as pd

    from memlab.engine.costs import A100_PEAK_TFLOPS, a100_hours
    rows = []
    for name, t in _tables(profile, root, extra, "plan"):
        if t is None:
            rows.append({"notebook": name, "jobs to train": None})
            continue
        t = t[t.status != "cached"]  # what is left to train (pending and deferred)
        flops = t.TFLOPs.sum() * 1e12
        rows.append({"notebook": name, "jobs to train": len(t), "of them deferred": int((t.status == "deferred").sum()),
                     "image-steps": int(t["image-steps"].sum()), "PFLOPs": round(t.TFLOPs.sum() / 1e3, 1),
                     **{f"A100-h at {f:.0%}": round(a100_hours(flops, f), 1) for f in (0.4, 0.1)}})
    df = pd.DataFrame(rows).convert_dtypes()
    print(f"\nSummary ({profile}; A100-hours at 40% and 10% of its bf16 peak of {A100_PEAK_TFLOPS} TFLOP/s):")
    print(df.to_string(index=False))
    ok = df["jobs to train"].notna().all()
    if ok:
        print(f"total: {int(df['jobs to train'].sum())} jobs to train, {df['A100-h at 40%'].sum():,.1f} A100-hours at "
              f"40% of peak, {df['A100-h at 10%'].sum():,.1f} at 10%")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memlab", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("plan", "train"):
        c = sub.add_parser(cmd, help="print the plan and its cost" if cmd == "plan" else "train every pending job")
        c.add_argument("notebook", help="name, prefix (02) or path" + ("; 'all' for every notebook" if cmd == "plan" else ""))
        c.add_argument("--profile", default="laptop")
        c.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="override a parameter (YAML value), as papermill -p")
        if cmd == "plan":
            c.add_argument("--dry-run", action="store_true",
                           help="run every job for 2 steps here (fake archives for missing datasets) and report")
        if cmd == "train":
            c.add_argument("--executor", choices=["inline", "local", "slurm"], default=None)
            c.add_argument("--workers", type=int, default=None)
            c.add_argument("--ddp-processes", type=int, default=None, metavar="W",
                           help="train each encoder over W processes, one per GPU (sets MEMLAB_DDP_PROCESSES)")
            c.add_argument("--partition")
            c.add_argument("--time-min", type=int)
            c.add_argument("--gpus-per-task", type=int)
            c.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                           help="extra #SBATCH option, e.g. --sbatch account=abc123 --sbatch qos=high")
    a = ap.parse_args(argv)
    root = Path.cwd()
    if not (root / "notebooks").is_dir():
        root = Path(__file__).resolve().parents[2]
    extra = [tuple(p) for p in a.p]
    dry = a.cmd == "plan" and a.dry_run
    try:
        with fake_data() if dry else contextlib.nullcontext():
            return _run(a, root, extra, dry)
    except Exception as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def _run(a, root: Path, extra: list, dry: bool) -> int:
    """``plan`` or ``train`` of the parsed arguments ``a``; 0, or 1 when a dry run has a failing job."""
    if a.cmd == "plan" and a.notebook == "all":
        return (_dry_all if dry else _plan_all)(a.profile, root, extra)
    nb = notebook_path(a.notebook, root)
    if a.cmd == "train":
        if a.executor:  # the flag wins over the notebook's parameter and over $MEMLAB_EXECUTOR
            extra.append(("executor", a.executor))
            os.environ["MEMLAB_EXECUTOR"] = a.executor
        if a.ddp_processes is not None:
            os.environ["MEMLAB_DDP_PROCESSES"] = str(a.ddp_processes)
        if a.workers is not None:
            extra.append(("workers", str(a.workers)))
        slurm = {k: v for k, v in (("partition", a.partition), ("time_min", a.time_min),
                                   ("gpus_per_task", a.gpus_per_task)) if v is not None}
        if a.sbatch:
            bad = [s for s in a.sbatch if "=" not in s]
            if bad:
                raise ValueError(f"--sbatch takes KEY=VALUE, got {bad}")
            slurm["sbatch"] = dict(s.split("=", 1) for s in a.sbatch)
        if slurm:
            extra.append(("slurm", json.dumps(slurm)))
    stopped = run_notebook_code(nb, a.profile, root, extra, "dryrun" if dry else a.cmd)
    if a.cmd == "train" or dry:
        print(stopped)
    if dry and (stopped.table["dry run"] != "pass").any():
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
