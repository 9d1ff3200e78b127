"""Helpers for ``run_all.sh``: validate a parameter file against a notebook, and record a notebook's result.

    python -m memlab.io.runner check notebooks/02_sslmem.py params/laptop/02_sslmem.yaml [-p name value ...]
    python -m memlab.io.runner record outputs/laptop --profile laptop --line "02_sslmem<TAB>OK<TAB>754<TAB>params/..."
    python -m memlab.io.runner manifest outputs/laptop --profile laptop --results outputs/laptop/build/results.tsv

``record`` runs after each notebook: it replaces that notebook's line of ``results.tsv`` and its entry of
``manifest.json`` and keeps every other notebook's, so an interrupted ``run_all.sh`` keeps what finished, and
two runs of one profile at once (under one lock file, ``<out_dir>/.results.lock``) lose nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml
from filelock import FileLock

from memlab.io.params import ParameterError, notebook_defaults, validate

PACKAGES = ["memlab", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib",
            "timm", "kornia", "papermill", "jupytext", "nbconvert", "opacus"]


def load_params(path) -> dict:
    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    return data


def check(notebook: str, params_file: str | None, extra: list) -> dict:
    values = load_params(params_file)
    for name, raw in extra:
        values[name] = yaml.safe_load(raw)  # as papermill -p would parse it
    validate(values, notebook_defaults(notebook), f"{params_file or notebook}")
    return values


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def _device() -> dict:
    try:
        import torch
        if torch.cuda.is_available():
            return {"type": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    except Exception as e:  # pragma: no cover
        return {"type": "unknown", "error": str(e)}


def _lock(out_dir) -> FileLock:
    """The lock of ``<out_dir>``'s results.tsv and manifest.json (their read-merge-write is not atomic)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(out_dir) / ".results.lock"))


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")   # per process: two writers never share a temp file
    tmp.write_text(text)
    tmp.replace(path)


def record(out_dir: str, profile: str, line: str) -> Path:
    """Merge one notebook's result ``line`` (notebook, status, seconds, params file; tab-separated) into
    ``<out_dir>/results.tsv`` (one line per notebook, sorted) and ``manifest.json``, under the results lock.
    Raises ValueError for a line without those four fields."""
    fields = line.rstrip("\n").split("\t")
    if len(fields) != 4:
        raise ValueError(f"a result line has 4 tab-separated fields (notebook, status, seconds, params), got {line!r}")
    out = Path(out_dir)
    with _lock(out):
        path = out / "results.tsv"
        old = path.read_text().splitlines() if path.is_file() else []
        lines = sorted([ln for ln in old if ln.strip() and ln.split("\t")[0] != fields[0]] + ["\t".join(fields)])
        _write(path, "\n".join(lines) + "\n")
        return _manifest(out_dir, profile, ["\t".join(fields)])


def manifest(out_dir: str, profile: str, results: str | None) -> Path:
    """Write ``<out_dir>/manifest.json`` for this run, merged with the one already there: a notebook this run
    did not execute keeps its entry, including the ``git_commit`` and ``finished`` time of the run that made it.
    ``results``: this run's lines (notebook, status, seconds, params file; tab-separated)."""
    lines = Path(results).read_text().splitlines() if results and Path(results).is_file() else []
    with _lock(out_dir):
        return _manifest(out_dir, profile, lines)


def _manifest(out_dir: str, profile: str, lines: list) -> Path:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain")
    dirty = bool(dirty and dirty != "unknown")
    path = Path(out_dir) / "manifest.json"
    entries = {}
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        old = {}
    for e in old.get("notebooks", []):  # earlier runs; manifests before per-notebook commits: the run's commit
        entries[e["notebook"]] = {"git_commit": old.get("git_commit"), "git_dirty": old.get("git_dirty"),
                                  "finished": old.get("created"), **e}
    for line in lines:
        if line.strip():
            name, status, seconds, params_file = line.split("\t")
            pf = Path(params_file)
            entries[name] = {"notebook": name, "status": status, "seconds": float(seconds), "params": params_file,
                             "params_sha256": hashlib.sha256(pf.read_bytes()).hexdigest() if pf.is_file() else None,
                             "git_commit": commit, "git_dirty": dirty, "finished": now}
    doc = {"created": now, "profile": profile, "git_commit": commit, "git_dirty": dirty,
           "python": sys.version.split()[0], "platform": platform.platform(), "device": _device(),
           "packages": versions, "notebooks": [entries[n] for n in sorted(entries)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, json.dumps(doc, indent=1))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memlab.io.runner")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate a parameter file against a notebook's parameters cell")
    c.add_argument("notebook")
    c.add_argument("params", nargs="?")
    c.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    m = sub.add_parser("manifest", help="write <out_dir>/manifest.json")
    m.add_argument("out_dir")
    m.add_argument("--profile", required=True)
    m.add_argument("--results")
    r = sub.add_parser("record", help="merge one notebook's result line into results.tsv and manifest.json")
    r.add_argument("out_dir")
    r.add_argument("--profile", required=True)
    r.add_argument("--line", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "check":
        try:
            check(a.notebook, a.params, a.p)
        except (ParameterError, OSError, yaml.YAMLError) as e:
            print(f"parameter error: {e}", file=sys.stderr)
            return 2
        return 0
    if a.cmd == "record":
        print(record(a.out_dir, a.profile, a.line))
        return 0
    print(manifest(a.out_dir, a.profile, a.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
