"""Dataset registry: in-memory uint8 image tensors (N, 3, H, W), int64 labels and class names.

Sources, in the order they are tried:
1. a local ``.npz`` archive in the data root (``$MEMLAB_DATA``, else ``~/.cache/memlab``), decoded arrays or
   JPEG bytes (``archives.py``);
2. a torchvision download into ``<root>/torchvision`` (cifar10, cifar100, svhn, stl10 resized to 32x32,
   mnist and fashion_mnist padded to 3x32x32; food101 and flowers102, photos of any size, centre-cropped and
   resized to 32x32 once and kept there as ``<name>_<split>_32.npz``: SSLMem paper, Table 14's probes);
3. ``synthetic``: generated offline and deterministically (``synthetic.py``), any size.

Class-per-folder datasets (``imagenet``, ``tiny_imagenet``) are read from their folders (``folders.py``); in a dry
run a missing Tiny-ImageNet is faked in memory at its real size (``fakes.fake_folder``).
STL-10 also has its ``unlabeled`` split (100,000 images, labels -1), the SSLMem paper's pre-training data.

Offline and not found: ``DatasetNotFound`` names the files looked for and the ``MEMLAB_DATA`` variable.
A damaged archive (``archives.DatasetDamaged``: truncated, not a zip, wrong layout, or a checksum that differs
from ``SHA256SUMS``) is treated like a missing one: the next source is tried, and if none works
``DatasetNotFound`` names the damaged file and how to replace it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from memlab.data.archives import DatasetDamaged, DatasetNotFound, SubsetTooLarge, read_archive, to_chw3
from memlab.data.fakes import FAKE_DATA_ENV, FOLDER_SIZES, REAL_SIZES, fake_archive, fake_folder
from memlab.streams import SYNTHETIC_TEST_OFFSET

ARCHIVES = {
    "cifar10": ["cifar10.npz", "cifar10_jpeg.npz"],
    "cifar100": ["cifar100.npz", "cifar100_jpeg.npz"],
    "svhn": ["svhn.npz"],
    "stl10": ["stl10.npz"],
    "mnist": ["mnist.npz", "mnist_5k.npz"],
    "fashion_mnist": ["fashion_mnist.npz"],
    "food101": ["food101.npz"],
    "flowers102": ["flowers102.npz"],
}
PHOTO_DATASETS = {"food101": "Food101", "flowers102": "Flowers102"}   # photos of any size: centre-cropped to 32x32
FOLDER_DATASETS = ("imagenet", "tiny_imagenet")   # folders.FOLDERS
DATASETS = sorted(ARCHIVES) + list(FOLDER_DATASETS) + ["synthetic"]
SPLITS = ("train", "test", "unlabeled")
UNLABELED = ("stl10",)                           # datasets with an unlabeled split


@dataclass
class ImageData:
    name: str
    split: str
    images: torch.Tensor                   # uint8 (N, 3, H, W)
    labels: torch.Tensor                   # int64 (N,)
    class_names: list
    atypical: torch.Tensor | None = None   # synthetic: indices of planted atypical points
    atypical_kind: list = field(default_factory=list)

    def __len__(self):
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def stats(self) -> tuple:
        """Per-channel (mean, std) of the images in [0, 1] units: the normalisation constants."""
        x = self.images.float().div(255)
        return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())

    def subset(self, idx) -> "ImageData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        atyp, kinds = None, []
        if self.atypical is not None:
            pos = {int(a): k for a, k in zip(self.atypical, self.atypical_kind)}
            keep = [j for j, i in enumerate(idx.tolist()) if i in pos]
            atyp = torch.tensor(keep, dtype=torch.long)
            kinds = [pos[int(idx[j])] for j in keep]
        return ImageData(self.name, self.split, self.images[idx], self.labels[idx], self.class_names,
                         atyp, kinds)


def data_root(root=None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get("MEMLAB_DATA") or Path.home() / ".cache" / "memlab")


def _torchvision(name: str, split: str, root: Path, download: bool):
    import torchvision.datasets as tvd
    train = split == "train"
    r = str(root / "torchvision")
    if name == "cifar10":
        ds = tvd.CIFAR10(r, train=train, download=download)
        return to_chw3(ds.data), torch.tensor(ds.targets), list(ds.classes)
    if name == "cifar100":
        ds = tvd.CIFAR100(r, train=train, download=download)
        return to_chw3(ds.data), torch.tensor(ds.targets), list(ds.classes)
    if name == "svhn":
        ds = tvd.SVHN(r, split=split, download=download)
        return to_chw3(ds.data), torch.from_numpy(ds.labels.astype(np.int64)), [str(i) for i in range(10)]
    if name == "stl10":
        ds = tvd.STL10(r, split=split, download=download)
        return to_chw3(ds.data), torch.from_numpy(ds.labels.astype(np.int64)), list(ds.classes)
    if name in PHOTO_DATASETS:
        return _photos(name, split, root / "torchvision", download)
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}[name]
    ds = cls(r, train=train, download=download)
    return to_chw3(ds.data.numpy()), ds.targets.long(), list(ds.classes)


def _photos(name: str, split: str, root: Path, download: bool, size: int = 32):
    """A torchvision photo dataset (``PHOTO_DATASETS``: Food-101, Flowers-102) as (N, 3, size, size) uint8 images:
    each photo centre-cropped to a square and resized (bicubic), done once and kept as ``<name>_<split>_32.npz``
    under ``root`` (written atomically), since decoding 100k JPEGs takes minutes. Flowers-102's "train" split
    joins torchvision's train and val (1,020 + 1,020 images); "test" is its test split."""
    import torchvision.datasets as tvd
    from PIL import Image, ImageOps
    kept = root / f"{name}_{split}_{size}.npz"
    if kept.is_file():
        with np.load(kept) as z:
            return torch.from_numpy(z["x"]), torch.from_numpy(z["y"]), [str(c) for c in z["class_names"]]
    cls = getattr(tvd, PHOTO_DATASETS[name])
    parts = [cls(str(root), split=sp, download=download)
             for sp in (["train", "val"] if name == "flowers102" and split == "train" else [split])]
    xs, ys = [], []
    for ds in parts:
        for img, label in ds:   # PIL images of any size
            xs.append(np.asarray(ImageOps.fit(img.convert("RGB"), (size, size), Image.BICUBIC)))
            ys.append(int(label))
    x, y = to_chw3(np.stack(xs)), torch.tensor(ys, dtype=torch.long)
    names = list(getattr(parts[0], "classes", None) or [str(i) for i in range(int(y.max()) + 1)])
    root.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_name(f".{kept.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x.numpy(), y=y.numpy(), class_names=np.array(names))
    os.replace(tmp, kept)
    return x, y, names


def load_dataset(name: str, split: str = "train", *, root=None, download: bool = True, n: int | None = None,
                 seed: int = 0, atypical_frac: float = 0.05, size: int | None = None) -> ImageData:
    """Load ``name`` (see ``DATASETS``) ``split`` ("train", "test", or "unlabeled" for ``UNLABELED`` datasets,
    whose labels are -1). ``n``, ``seed``, ``atypical_frac`` apply to ``synthetic`` (``n`` also takes a
    class-balanced subset of real data when given); ``size``: the image side of a folder dataset (default 64).
    Raises ``ValueError`` for an unknown name or split, ``DatasetNotFound`` when the data is nowhere."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    if split == "unlabeled" and name not in UNLABELED:
        raise ValueError(f"dataset {name!r} has no unlabeled split (only {list(UNLABELED)}); use 'train'")
    if name in FOLDER_DATASETS:
        from memlab.data.folders import load_folder
        try:
            x, y, names = load_folder(name, split, data_root(root), n=n, seed=seed, size=size)
        except DatasetNotFound:
            if not (os.environ.get(FAKE_DATA_ENV) and name in FOLDER_SIZES):   # a real run: missing is missing
                raise
            x, y, names = fake_folder(name, split, n=n, seed=seed, size=size)
        return ImageData(name, split, x, y, names)
    if name == "synthetic":
        from memlab.data.synthetic import make_synthetic
        if n is None:
            n = 5000 if split == "train" else 1000
        d = make_synthetic(n, seed=seed if split == "train" else seed + SYNTHETIC_TEST_OFFSET, atypical_frac=atypical_frac)
        return ImageData(name, split, d["images"], d["labels"], list(d["class_names"]), d["atypical"],
                         list(d["atypical_kind"]))
    root = data_root(root)
    tried = [root / f for f in ARCHIVES[name]]
    got, damaged = None, []
    for path in (p for p in tried if p.is_file()):
        try:
            got = read_archive(path, split)
            break
        except DatasetDamaged as e:
            damaged.append(str(e))
    dry = os.environ.get(FAKE_DATA_ENV)  # a dry run (dryrun.py): no downloads, fakes for what is missing
    if got is None:
        try:
            got = _torchvision(name, split, root, download and not dry)
        except Exception as e:  # offline, or download disabled
            if dry and name in REAL_SIZES and not damaged:
                got = read_archive(fake_archive(Path(dry), name), split)
                return _finish(name, split, got, n, seed)
            bad = (f" Damaged: {'; '.join(damaged)}. Replace it with a fresh copy (delete it to fall back to the "
                   f"torchvision download)." if damaged else "")
            raise DatasetNotFound(
                f"dataset {name!r} ({split}) not found.{bad} Looked for {[str(p) for p in tried]} and a torchvision "
                f"copy under {root / 'torchvision'}; the download {'failed' if download else 'is disabled'} "
                f"({type(e).__name__}: {e}). Fix: run once with internet access, so that torchvision "
                f"downloads it, or, offline, put one of {ARCHIVES[name]} (a NumPy .npz with arrays x_train, "
                f"y_train, x_test, y_test: uint8 images N x H x W x C) in a folder and point MEMLAB_DATA at it, "
                f"e.g. `export MEMLAB_DATA=$HOME/memlab-data`.") from e
    return _finish(name, split, got, n, seed)


def _finish(name: str, split: str, got: tuple, n: int | None, seed: int) -> ImageData:
    """``ImageData`` of an archive's or torchvision's (images, labels, class names), subset to ``n``."""
    x, y, names = got
    names = names or [str(i) for i in range(int(y.max()) + 1)]
    if split == "unlabeled" and (y >= 0).any():
        y = torch.full_like(y, -1)
    data = ImageData(name, split, x, y, names)
    if n is not None:
        if n > len(data):
            raise SubsetTooLarge(f"asked for {n} {name} {split} images; only {len(data)} available")
        from memlab.data.splits import balanced_subset
        data = data.subset(balanced_subset(data.labels.numpy(), n, seed))
    return data


def stand_in(error: DatasetNotFound, name: str, allowed: bool) -> None:
    """Called where dataset ``name`` failed to load with ``error``: raise ``DatasetNotFound`` (the error, and the
    parameter that would allow a substitute) unless ``allowed`` (a notebook's ``synthetic_fallback``
    parameter); else print that synthetic data stands in for ``name``. The caller then loads the synthetic set
    and names it in every caption, table and claim, so a missing dataset never turns silently into another."""
    if not allowed:
        raise DatasetNotFound(f"{error}\nOr set the parameter synthetic_fallback: true to let synthetic data stand "
                              f"in for {name!r} (captions and tables then name the synthetic set).") from error
    print(f"{name} unavailable ({str(error)[:160]}...); synthetic_fallback: synthetic data stands in for it")
