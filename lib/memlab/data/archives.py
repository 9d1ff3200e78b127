"""Reading the local ``.npz`` archives of a dataset into uint8 tensors, and the errors of a dataset not found.

An archive holds decoded arrays (``x_train``/``y_train``/``x_test``/``y_test``, or a single ``x``/``y`` training
split) or JPEG bytes (``train_jpeg`` + ``train_offsets`` + ``y_train``, same for ``test``); a split without labels
(STL-10's ``unlabeled``) gets labels -1. A damaged archive (truncated, not a zip, wrong layout, or a SHA-256 that
differs from a ``SHA256SUMS`` file beside it) raises ``DatasetDamaged``, which ``datasets.load_dataset`` treats like
a missing one. Checksums are verified once per archive version (size and modification time) and remembered in
``<root>/.memlab_verified.json`` (in memory when the folder is read-only).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


class DatasetNotFound(FileNotFoundError):
    """A dataset is nowhere to be read: no local archive, no torchvision copy, no download. The message names the
    files looked for and the fix (``MEMLAB_DATA``); the notebooks' ``synthetic_fallback`` catches it."""


class SubsetTooLarge(ValueError):
    """More images asked for than a split holds; the message names the dataset, the split and both counts. The
    notebooks turn it into a ``ParameterError`` naming their size parameter."""


class DatasetDamaged(DatasetNotFound):
    """A local archive that cannot be read, or whose checksum is wrong; handled like a missing one."""


_VERIFIED: dict = {}   # {(path, size, mtime_ns, expected sha256): True}, this process


def _expected_sha256(path: Path) -> str | None:
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return None


def verify_archive(path: Path) -> None:
    """Raise ``DatasetDamaged`` if ``path``'s SHA-256 differs from its line in ``SHA256SUMS`` beside it (no such
    file or line: nothing to check). A verified version (size, mtime) is not hashed again."""
    want = _expected_sha256(path)
    if want is None:
        return
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, want)
    if key in _VERIFIED:   # this process checked it already: no file I/O on every load
        return
    memo = path.parent / ".memlab_verified.json"
    try:
        done = json.loads(memo.read_text()) if memo.is_file() else []
    except (OSError, ValueError):
        done = []
    if list(key) in done:
        _VERIFIED[key] = True
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != want:
        raise DatasetDamaged(f"{path} is damaged: its SHA-256 {h.hexdigest()[:16]}... differs from "
                             f"{want[:16]}... in {path.parent / 'SHA256SUMS'}")
    _VERIFIED[key] = True
    try:
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps([k for k in done if k[0] != key[0]] + [list(key)]))
        tmp.replace(memo)
    except OSError:  # a read-only data folder: remembered for this process only
        pass


def to_chw3(x: np.ndarray, size: int = 32) -> torch.Tensor:
    """uint8 images (N,H,W), (N,H,W,C) or (N,C,H,W) -> (N,3,size,size): grey repeated, 28x28 padded to
    32x32, larger images resized (antialiased)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    h, w = t.shape[-2:]
    if h < size and w < size and (size - h) % 2 == 0:
        p = (size - h) // 2
        t = F.pad(t, (p, p, p, p))
    elif (h, w) != (size, size):
        t = F.interpolate(t.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        t = t.round().clamp(0, 255).to(torch.uint8)
    return t.contiguous()


def _decode_jpegs(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from PIL import Image
    out = [np.asarray(Image.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
           for i in range(len(offsets) - 1)]
    return np.stack(out)


def read_archive(path: Path, split: str):
    """The ``split`` of the archive at ``path``: (uint8 images (N, 3, 32, 32), int64 labels (N,), class names or
    None), after ``verify_archive``. Any failure to read it is ``DatasetDamaged`` naming the file; a split the
    archive lacks is ``DatasetNotFound``."""
    verify_archive(path)
    try:
        return _read_npz(str(path), split)
    except DatasetNotFound:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error) as e:
        raise DatasetDamaged(f"{path} is damaged and cannot be read ({type(e).__name__}: {e})") from e


@lru_cache(maxsize=8)
def _read_npz(path: str, split: str):
    z = np.load(path, allow_pickle=False)
    keys = set(z.files)
    names = [str(c) for c in z["class_names"]] if "class_names" in keys else None
    if f"{split}_jpeg" in keys:
        x = _decode_jpegs(z[f"{split}_jpeg"], z[f"{split}_offsets"])
        y = z[f"y_{split}"] if f"y_{split}" in keys else np.full(len(x), -1)   # the unlabeled split: -1
    elif f"x_{split}" in keys:
        x = z[f"x_{split}"]
        y = z[f"y_{split}"] if f"y_{split}" in keys else np.full(len(x), -1)
    elif {"x", "y"} <= keys:
        if split != "train":
            raise DatasetNotFound(f"{path} holds a single (training) split, no {split!r} split")
        x, y = z["x"], z["y"]
    else:
        raise ValueError(f"{path}: unrecognised archive layout (keys {sorted(keys)}); expected x_{split}/"
                         f"y_{split}, {split}_jpeg/{split}_offsets/y_{split}, or x/y")
    return to_chw3(x), torch.from_numpy(np.asarray(y).astype(np.int64)), names
