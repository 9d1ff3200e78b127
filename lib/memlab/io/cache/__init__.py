"""A content-addressed result cache: trained encoders and computed results, keyed by config + code version.

Layout: ``<root>/<kind>/<key>/`` holding the entry's files and ``MANIFEST.json`` (config, sha256 of every
file). ``key = sha256(canonical JSON of {kind, config, code version})[:20]``.

- Writes are atomic: files go to a temporary sibling directory that is renamed into place, so a killed
  run never leaves a half-written entry under the final name.
- Reads verify every checksum; a corrupted or incomplete entry is reported, deleted and recomputed.
- ``force=True`` recomputes and replaces an entry.
- Work in progress (training checkpoints) lives in ``<root>/<kind>/<key>.partial/``, which survives an
  interruption and is removed when the entry is committed.

Sharing one cache between processes (several notebooks, a job runner, cluster jobs on one file system):

- ``lock(kind, config)`` is a per-key ``filelock.FileLock`` on ``<root>/<kind>/<key>.lock``. It is an OS
  (flock) lock, so the lock of a killed process is released by the kernel. Within a process the same object
  is returned for a key, and it is reentrant: ``with cache.lock(k, c): ... cache.save(k, c, ...)`` works.
- Commits happen under the key's lock. Without ``force`` the first writer wins: a valid entry is kept and
  the newcomer's files are dropped (results are deterministic). With ``force`` the entry is replaced by
  renaming the old folder aside (``.old-<key>-*``), renaming the new one in, then deleting the old one.
- Readers take no lock on the fast path. When a read fails (a file vanished, a checksum does not match)
  they wait for the key's lock, i.e. for a writer's commit to finish, and read again; only an entry still
  broken then is corrupt. ``get_or_compute`` computes under the lock, so a key is computed once.
- Failed writes (disk full, read-only or not ours) raise ``CacheWriteError`` naming the folder, the
  cause and the fix; ``check_writable()`` tests this up front. Both, and ``atomic_save`` for checkpoints, are
  in ``memlab.io.cache.writes`` (importable from here).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import uuid
import warnings
from pathlib import Path
from typing import Callable

import filelock
import torch

from memlab import __version__
from memlab.io.cache.writes import CacheWriteError, atomic_save, writing

__all__ = ["Cache", "CorruptEntry", "CacheWriteError", "atomic_save", "CODE_VERSION", "default_root", "config_hash"]

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


class CorruptEntry(RuntimeError):
    pass


# what a read can raise while another process replaces the entry (or when the entry is broken)
_READ_ERRORS = (CorruptEntry, OSError, RuntimeError, EOFError)


# One FileLock per lock file and process, so that it is reentrant; keyed by pid too, because a forked worker
# must not reuse its parent's instance (filelock refuses a lock inherited across fork).
_LOCKS: dict[tuple[int, str], filelock.FileLock] = {}
_LOCKS_GUARD = threading.Lock()


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
        with self._writing():
            p.mkdir(parents=True, exist_ok=True)
        return p

    # ------------------------------------------------------------------ sharing between processes
    def lock(self, kind: str, config: dict) -> filelock.FileLock:
        """The key's inter-process lock, ``<root>/<kind>/<key>.lock``: reentrant, and released by the OS when
        its process dies. ``with cache.lock(k, c):`` waits; ``acquire(timeout=0)`` raises filelock.Timeout if
        another process holds it."""
        path = self.root / kind / (self.key(kind, config) + ".lock")
        with self._writing():
            path.parent.mkdir(parents=True, exist_ok=True)
        name = str(path.absolute())
        with _LOCKS_GUARD:
            if (os.getpid(), name) not in _LOCKS:
                _LOCKS[os.getpid(), name] = filelock.FileLock(name)
            return _LOCKS[os.getpid(), name]

    def check_writable(self) -> Path:
        """Raise CacheWriteError unless the cache folder can be created and written to (call before computing)."""
        with self._writing():
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"memlab")
            probe.unlink()
        return self.root

    def _writing(self):
        return writing(f"to the cache folder {self.root}", self.root)

    @contextlib.contextmanager
    def _locked(self, kind: str, config: dict):
        """Hold the key's lock (for writers); failing to take it on an unwritable cache is a CacheWriteError."""
        lock = self.lock(kind, config)
        with self._writing():
            lock.acquire()
        try:
            yield lock
        finally:
            lock.release()

    @contextlib.contextmanager
    def _settled(self, kind: str, config: dict):
        """Wait until no writer holds the key's lock, and hold it. A cache we cannot lock (read-only) has no
        writers: go on without it."""
        try:
            lock = self.lock(kind, config)
            lock.acquire()
        except OSError:
            yield
            return
        try:
            yield
        finally:
            lock.release()

    @staticmethod
    def _replacing(entry: Path) -> bool:
        """A forced save renames the entry aside (``.old-<key>-*``) for a moment, under the key's lock."""
        return any(entry.parent.glob(f".old-{entry.name}-*"))

    def _read_settled(self, kind: str, config: dict, read: Callable[[Path], object]):
        """``read(entry)`` without a lock; if that fails while the entry exists or is being replaced, wait for the
        writer (the key's lock) and read again: only an entry still broken then is corrupt."""
        entry = self.path(kind, config)
        try:
            return read(entry)
        except _READ_ERRORS:
            if not (entry.exists() or self._replacing(entry) or entry.exists()):
                raise
        with self._settled(kind, config):
            return read(entry)

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

    def _read(self, entry: Path, name: str):
        self.verify(entry)
        return torch.load(entry / name, map_location="cpu", weights_only=True)

    def exists(self, kind: str, config: dict) -> bool:
        try:
            self._read_settled(kind, config, self.verify)
            return True
        except _READ_ERRORS:
            return False

    def load(self, kind: str, config: dict, name: str = "result.pt"):
        return self._read_settled(kind, config, lambda entry: self._read(entry, name))

    def save(self, kind: str, config: dict, files: dict, force: bool = False) -> Path:
        """Commit an entry atomically. ``files`` maps file name -> object (torch.save'd, weights-only
        friendly: tensors, numbers, strings, lists, dicts) or -> bytes / str (written as is).

        Without ``force`` a valid entry already there is kept (first writer wins) and these files are dropped;
        with ``force`` the entry is replaced. Either way the ``.partial`` folder is deleted."""
        final = self.path(kind, config)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex}"
        try:
            with self._writing():
                tmp.mkdir(parents=True)
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
            with self._locked(kind, config), self._writing():
                self._commit(tmp, final, force)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _commit(self, tmp: Path, final: Path, force: bool) -> None:
        """Rename ``tmp`` into place; the caller holds the key's lock."""
        for stale in final.parent.glob(f".old-{final.name}-*"):  # left by a writer killed mid-replace
            shutil.rmtree(stale, ignore_errors=True)
        if not final.exists():
            os.rename(tmp, final)
        elif force or not self._valid(final):
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        # else: another writer committed this entry first; keep it (results are deterministic)
        shutil.rmtree(final.parent / (final.name + ".partial"), ignore_errors=True)

    def _valid(self, entry: Path) -> bool:
        try:
            self.verify(entry)
            return True
        except (CorruptEntry, OSError):
            return False

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[], object], force: bool = False,
                       name: str = "result.pt"):
        """Return the cached result, computing (and committing) it when missing, corrupt or forced.
        The compute runs under the key's lock: another process asking for the same key waits, then loads."""
        entry = self.path(kind, config)
        if not force:
            with contextlib.suppress(*_READ_ERRORS):
                return self._read(entry, name)
        with self._locked(kind, config):
            if not force and entry.exists():  # committed while we waited, or corrupt (no writer is active now)
                try:
                    return self._read(entry, name)
                except _READ_ERRORS as e:
                    warnings.warn(f"cache entry corrupted, recomputing: {e}")
            result = compute()
            self.save(kind, config, {name: result}, force=True)
        return result

    def invalidate(self, kind: str, config: dict) -> None:
        with self._locked(kind, config):
            shutil.rmtree(self.path(kind, config), ignore_errors=True)
