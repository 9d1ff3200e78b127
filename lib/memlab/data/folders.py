"""Class-per-folder image datasets: ImageNet subsets (the SSLMem paper's 100,000 ImageNet images) and
Tiny-ImageNet (the benign-memorisation paper), decoded into memlab's in-memory uint8 tensors.

Layout under the data root (``$MEMLAB_DATA``): ``<folder>/<split folder>/<class>/<image files>``, e.g.
``imagenet/train/n01440764/*.JPEG`` or ``tiny-imagenet-200/train/n01443537/images/*.JPEG`` (images may sit one
level down). Tiny-ImageNet's ``val/`` (``images/`` plus ``val_annotations.txt``) is read as it is shipped.

``n`` images are drawn class-balanced and deterministically (``splits.balanced_subset`` with ``seed``) before
anything is decoded; each is centre-cropped to a square and resized to ``size`` x ``size`` (antialiased). The
decoded subset is cached beside the images (``.memlab-<split>-<size>-<n>-<seed>.npz``, written atomically), so a
100,000-image subset is decoded once. torchvision cannot download these datasets: a missing folder raises
``DatasetNotFound`` naming the folder expected and where to get the data.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from memlab.data.archives import SubsetTooLarge

# name: (folder under the data root, {memlab split: split folder}, default size, where to get it)
FOLDERS = {
    "imagenet": ("imagenet", {"train": "train", "test": "val"}, 64,
                 "https://image-net.org (ILSVRC2012; val/ sorted into class folders)"),
    "tiny_imagenet": ("tiny-imagenet-200", {"train": "train", "test": "val"}, 64,
                      "http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
}
EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


def _images_under(folder: Path) -> list:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)


def list_images(split_dir: Path) -> tuple[list, np.ndarray, list]:
    """(image paths, int64 labels, class names) of a class-per-folder tree, classes sorted by name; or of
    Tiny-ImageNet's ``val/`` with its ``val_annotations.txt`` (file -> class)."""
    ann = split_dir / "val_annotations.txt"
    if ann.is_file():
        rows = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
        names = sorted({c for _, c in rows})
        cls = {c: i for i, c in enumerate(names)}
        paths = [split_dir / "images" / f for f, _ in rows]
        return paths, np.array([cls[c] for _, c in rows], dtype=np.int64), names
    names = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    paths, labels = [], []
    for i, c in enumerate(names):
        files = _images_under(split_dir / c)
        paths += files
        labels += [i] * len(files)
    return paths, np.array(labels, dtype=np.int64), names


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return np.asarray(im.resize((size, size), Image.BICUBIC, reducing_gap=None), dtype=np.uint8)


def load_folder(name: str, split: str, root: Path, *, n: int | None = None, seed: int = 0,
                size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(uint8 images (N, 3, size, size), int64 labels (N,), class names) of folder dataset ``name``.

    Raises ``DatasetNotFound`` for a missing or empty folder, ``SubsetTooLarge`` (a ValueError) for ``n`` above the images there."""
    from memlab.data.datasets import DatasetNotFound
    from memlab.data.splits import balanced_subset
    folder, splits, default_size, source = FOLDERS[name]
    size = int(size or default_size)
    split_dir = Path(root) / folder / splits[split]
    if not split_dir.is_dir():
        raise DatasetNotFound(f"dataset {name!r} ({split}) not found: expected a class-per-folder tree at {split_dir}. "
                              f"torchvision cannot download it: get it from {source}, unpack it under {Path(root)} "
                              f"(or point MEMLAB_DATA at the folder that holds {folder}/).")
    cached = split_dir.parent / f".memlab-{split}-{size}-{n}-{seed}.npz"
    if cached.is_file():
        z = np.load(cached, allow_pickle=False)
        return torch.from_numpy(z["x"]), torch.from_numpy(z["y"]), [str(c) for c in z["names"]]
    paths, labels, names = list_images(split_dir)
    if not paths:
        raise DatasetNotFound(f"dataset {name!r} ({split}): no images ({sorted(EXTENSIONS)}) under {split_dir}")
    if n is not None:
        if n > len(paths):
            raise SubsetTooLarge(f"asked for {n} {name} {split} images; {split_dir} holds {len(paths)}")
        keep = balanced_subset(labels, n, seed).numpy()
        paths, labels = [paths[i] for i in keep], labels[keep]
    from tqdm import tqdm
    x = np.stack([_decode(p, size) for p in tqdm(paths, desc=f"decoding {name} {split}", leave=False)])
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    try:  # best effort: a read-only data folder just decodes again next time
        tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=labels, names=np.array(names))
        tmp.replace(cached)
    except OSError:
        pass
    return torch.from_numpy(x), torch.from_numpy(labels), names
