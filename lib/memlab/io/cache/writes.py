"""Writes that never leave half a file, and the one error every failed write becomes.

``atomic_save`` writes a checkpoint to a temporary sibling and renames it into place. ``writing(target, folder)``
turns a failed write -- an OSError, or the RuntimeError torch.save raises on a full disk -- into a
``CacheWriteError`` that names what was written, the cause (no space, read-only, permission), the fix, and the
``MEMLAB_CACHE`` variable that chooses the folder. The cache (``memlab.io.cache``) writes its entries through it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path

import filelock
import torch


class CacheWriteError(OSError):
    """Writing to the cache (or a checkpoint) failed: disk full, read-only file system, no permission, ..."""


# torch.save reports a failed write (e.g. a full disk) as a RuntimeError with one of these in its message
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed", "unexpected pos")


def _free_bytes(folder: Path) -> int | None:
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _write_error(e: BaseException, target: str, folder: Path) -> CacheWriteError:
    code = getattr(e, "errno", None)
    free = _free_bytes(folder)
    free_s = "unknown" if free is None else (f"{free / 2**30:.1f} GiB" if free >= 2**30 else f"{free / 2**20:.0f} MiB")
    if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and free is not None and free < 2**30):
        cause = f"no space left on the device ({free_s} free)"
        fix = "free some space (old entries in the cache folder can be deleted) or point MEMLAB_CACHE at a larger disk"
    elif code == errno.EROFS:
        cause, fix = "the file system is read-only", "point MEMLAB_CACHE at a writable folder"
    elif code in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
        fix = "make the folder writable for this user (chmod/chown) or point MEMLAB_CACHE at a folder of your own"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        cause, fix = "a part of the path is a file, not a folder", "point MEMLAB_CACHE at a folder"
    else:
        cause, fix = f"the write failed ({free_s} free)", "check the folder, or point MEMLAB_CACHE at another one"
    env = os.environ.get("MEMLAB_CACHE")
    now = f"now MEMLAB_CACHE={env}" if env else "it is unset, so the cache is ./outputs/cache"
    err = CacheWriteError(f"cannot write {target}: {cause}. Fix: {fix}. (The cache folder is set by the MEMLAB_CACHE "
                          f"environment variable; {now}.) Error: {type(e).__name__}: {e}")
    err.errno = code
    return err


@contextlib.contextmanager
def writing(target: str, folder: Path):
    """Turn a failed write (an OSError, or torch.save's RuntimeError on a full disk) into a CacheWriteError."""
    try:
        yield
    except (filelock.Timeout, CacheWriteError):
        raise
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not any(m in str(e) for m in _TORCH_WRITE_FAILURES):
            raise
        raise _write_error(e, target, folder) from e


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace (atomic on POSIX).
    A failed write raises CacheWriteError naming the checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with writing(f"checkpoint {path}", path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(obj, tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
