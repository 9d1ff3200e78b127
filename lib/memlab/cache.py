"""A content-addressed result cache: trained encoders and computed results, keyed by config + code version.

Layout: ``<root>/<kind>/<key>/`` holding the entry's files and ``MANIFEST.json`` (config, sha256 of every
file). ``key = sha256(canonical JSON of {kind, config, code version})[:20]``.

- Writes are atomic: files go to a temporary sibling directory that is renamed into place, so a killed
  run never leaves a half-written entry under the final name.
- Reads verify every checksum; a corrupted or incomplete entry is reported, deleted and recomputed.
- ``force=True`` recomputes and replaces an entry.
- Work in progress (training checkpoints) lives in ``<root>/<kind>/<key>.partial/``, which survives an
  interruption and is removed when the entry is committed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Callable

import torch

from . import __version__

CODE_VERSION = f"{__version__}+c1"  # bump the suffix when cached semantics change


def default_root() -> Path:
    return Path(os.environ.get("MEMLAB_CACHE", Path.cwd() / "outputs" / "cache"))


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(o):
    if isinstance(o, Path):
        return str(o)
    if torch.is_tensor(o):
        return o.tolist()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"cannot put {type(o).__name__} in a cache key")


def config_hash(obj, n: int = 20) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:n]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class CorruptEntry(RuntimeError):
    pass


class Cache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    # ------------------------------------------------------------------ keys and paths
    def key(self, kind: str, config: dict) -> str:
        return config_hash({"kind": kind, "config": config, "code": CODE_VERSION})

    def path(self, kind: str, config: dict) -> Path:
        return self.root / kind / self.key(kind, config)

    def partial_dir(self, kind: str, config: dict) -> Path:
        """Scratch folder for resumable work on this entry (e.g. per-epoch checkpoints)."""
        p = self.root / kind / (self.key(kind, config) + ".partial")
        p.mkdir(parents=True, exist_ok=True)
        return p

    # ------------------------------------------------------------------ read / write
    def verify(self, entry: Path) -> dict:
        man_path = entry / "MANIFEST.json"
        if not man_path.is_file():
            raise CorruptEntry(f"{entry}: no MANIFEST.json")
        try:
            manifest = json.loads(man_path.read_text())
        except json.JSONDecodeError as e:
            raise CorruptEntry(f"{entry}: unreadable manifest ({e})") from e
        for name, digest in manifest["files"].items():
            f = entry / name
            if not f.is_file():
                raise CorruptEntry(f"{entry}: missing file {name}")
            if _sha256(f) != digest:
                raise CorruptEntry(f"{entry}: checksum mismatch for {name}")
        return manifest

    def exists(self, kind: str, config: dict) -> bool:
        entry = self.path(kind, config)
        if not entry.exists():
            return False
        try:
            self.verify(entry)
            return True
        except CorruptEntry:
            return False

    def load(self, kind: str, config: dict, name: str = "result.pt"):
        entry = self.path(kind, config)
        self.verify(entry)
        return torch.load(entry / name, map_location="cpu", weights_only=True)

    def save(self, kind: str, config: dict, files: dict) -> Path:
        """Commit an entry atomically. ``files`` maps file name -> object (torch.save'd, weights-only
        friendly: tensors, numbers, strings, lists, dicts) or -> bytes / str (written as is)."""
        final = self.path(kind, config)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            digests = {}
            for name, obj in files.items():
                f = tmp / name
                if isinstance(obj, (bytes, str)):
                    f.write_bytes(obj.encode() if isinstance(obj, str) else obj)
                else:
                    torch.save(obj, f)
                digests[name] = _sha256(f)
            manifest = {"kind": kind, "key": final.name, "code": CODE_VERSION, "config": config,
                        "files": digests}
            (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True,
                                                          default=_jsonable))
            if final.exists():  # forced recompute or a concurrent writer: replace
                old = final.parent / f".old-{final.name}-{uuid.uuid4().hex}"
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final.parent / (final.name + ".partial"), ignore_errors=True)
        return final

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[], object], force: bool = False,
                       name: str = "result.pt"):
        """Return the cached result, computing (and committing) it when missing, corrupt or forced."""
        entry = self.path(kind, config)
        if entry.exists() and not force:
            try:
                return self.load(kind, config, name)
            except (CorruptEntry, RuntimeError, EOFError, OSError) as e:
                warnings.warn(f"cache entry corrupted, recomputing: {e}")
                shutil.rmtree(entry, ignore_errors=True)
        result = compute()
        self.save(kind, config, {name: result})
        return result

    def invalidate(self, kind: str, config: dict) -> None:
        shutil.rmtree(self.path(kind, config), ignore_errors=True)
