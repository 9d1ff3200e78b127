"""Fake archives for a dry run: a dataset that is not present locally (no archive, no torchvision copy, no
download) is replaced by random pixels and balanced labels at its real size, so a laptop without SVHN, STL-10 or
CIFAR-100 can dry-run every notebook (``memlab.engine.dryrun``). ``load_dataset`` uses them only while
``$MEMLAB_FAKE_DATA`` (``FAKE_DATA_ENV``) names their folder. A missing folder dataset of ``FOLDER_SIZES``
(Tiny-ImageNet) is faked in memory instead (``fake_folder``): only the images asked for, at its real image size.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from memlab.data.archives import SubsetTooLarge

# (train, test, unlabeled, classes) of each archive dataset, as torchvision ships it
REAL_SIZES = {"cifar10": (50000, 10000, 0, 10), "cifar100": (50000, 10000, 0, 100), "svhn": (73257, 26032, 0, 10),
              "stl10": (5000, 8000, 100000, 10), "mnist": (60000, 10000, 0, 10),
              "fashion_mnist": (60000, 10000, 0, 10), "food101": (75750, 25250, 0, 101),
              "flowers102": (2040, 6149, 0, 102)}
# (train, test, classes, image side) of the folder datasets a dry run may fake (folders.py; the benign-memorisation
# paper's Tiny-ImageNet: 500 training and 50 validation images per class, 64x64)
FOLDER_SIZES = {"tiny_imagenet": (100000, 10000, 200, 64)}
FAKE_VERSION = "1"
# set by `python -m memlab plan --dry-run`: the folder of fake archives that load_dataset uses for missing datasets
FAKE_DATA_ENV = "MEMLAB_FAKE_DATA"


def write_fake_archive(path: Path, name: str, seed: int = 0) -> None:
    """A ``.npz`` archive with ``REAL_SIZES[name]`` random 32 x 32 colour images per split and balanced labels,
    written atomically."""
    n_train, n_test, n_unlabeled, classes = REAL_SIZES[name]
    g = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        if n:
            arrays[f"x_{split}"] = g.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            if split != "unlabeled":
                arrays[f"y_{split}"] = g.permutation(np.arange(n) % classes).astype(np.int64)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays, class_names=np.array([f"fake {c}" for c in range(classes)]))
    os.replace(tmp, path)


def fake_archive(folder: Path, name: str) -> Path:
    """The fake archive of ``name`` in ``folder`` (``$FAKE_DATA_ENV``), written on first use and kept (a file lock
    keeps two processes from writing it twice). KeyError for a dataset without a known size."""
    import filelock
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-fake-v{FAKE_VERSION}.npz"
    with filelock.FileLock(str(path) + ".lock"):
        if not path.is_file():
            print(f"dry run: {name} is not present here; writing a fake archive of its real size "
                  f"({', '.join(map(str, REAL_SIZES[name][:3]))} train/test/unlabeled images) to {path}", flush=True)
            write_fake_archive(path, name)
    return path


def fake_folder(name: str, split: str, n: int | None = None, seed: int = 0, size: int | None = None):
    """(uint8 images (N, 3, size, size), int64 labels (N,), class names) standing in for folder dataset ``name``
    (``FOLDER_SIZES``) in a dry run: random pixels and class-balanced labels, ``n`` images (default: the split's real
    count), ``size`` default its real side. Made in memory from ``seed`` (a real run decodes only the ``n`` images
    it asks for, and so does this). KeyError for a dataset without a known size, SubsetTooLarge (a ValueError) for ``n`` above the
    real count (as ``folders.load_folder``)."""
    import torch
    n_train, n_test, classes, side = FOLDER_SIZES[name]
    real = n_train if split == "train" else n_test
    n = real if n is None else int(n)
    if n > real:
        raise SubsetTooLarge(f"asked for {n} {name} {split} images; the real split holds {real}")
    size = int(size or side)
    print(f"dry run: {name} is not present here; {n} fake {size}x{size} images of its {split} split", flush=True)
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    y = g.permutation(np.arange(n) % classes).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y), [f"fake {c}" for c in range(classes)]
