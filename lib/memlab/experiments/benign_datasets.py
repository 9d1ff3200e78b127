"""Table 2 on the other datasets of notebook 06 (``table2_datasets``; Anagnostidis et al., ICLR 2023, Table 2's
CIFAR-100 and Tiny-ImageNet columns and appendix F; methods.md section 5): their data and their run names.

Each dataset trains the three runs of Table 2 (``benign_runs.MAIN_RUNS``) with every encoder of the table
(``arch`` and ``table2_archs``: the appendix also trains VGG on Tiny-ImageNet), with the recipe of the main
dataset except for what the dataset decides: the random labels are drawn over its own classes (C = 100 for
CIFAR-100, 200 for Tiny-ImageNet, the paper's C "the number of classes in the original dataset"), the
normalisation is its own, and 64-px images (Tiny-ImageNet) get the stride-2 first convolution of appendix F
(``networks.stem_kw``). The probes use its own training images (clean labels) as memory and its test images as
queries. The data are loaded before any compute: a missing dataset raises there (``DatasetNotFound``: torchvision
downloads CIFAR-100; Tiny-ImageNet it cannot, and the error says where to get it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memlab.augmentation.augment import Augmentation
from memlab.data.archives import SubsetTooLarge
from memlab.data.datasets import load_dataset
from memlab.engine.benign_sets import make_labels
from memlab.io.params import ParameterError
from memlab.streams import BenignSeed


def dataset_run(name: str, dataset: str, arch: str | None = None) -> str:
    """A Table 2 run (one of ``MAIN_RUNS``, or "at initialisation") on ``dataset`` of ``table2_datasets``, with the
    main encoder (``arch`` None) or another one of ``table2_archs``."""
    return f"{name}{f' ({arch})' if arch else ''} on {dataset}"


@dataclass
class Table2Data:
    """One dataset of ``table2_datasets``: uint8 images ``Xtr`` (n, 3, H, W) and ``Xte`` (m, 3, H, W) with their
    int64 true labels ``Ytr``, ``Yte``; ``C`` classes; the random labels (int64 (n,), over C classes, drawn once
    from the training seed as the main dataset's); the per-channel ``mean``, ``std`` of the training images (in
    [0, 1] units) and ``norm``, the map of uint8 images to the networks' input with them."""
    name: str
    Xtr: torch.Tensor
    Ytr: torch.Tensor
    Xte: torch.Tensor
    Yte: torch.Tensor
    C: int
    rand_labels: torch.Tensor
    mean: tuple
    std: tuple
    norm: object

    @property
    def size(self) -> int:
        """The image side in pixels (32; Tiny-ImageNet 64)."""
        return int(self.Xtr.shape[-1])


def _load(P, name: str, split: str, n: int, seed: int):
    """``n`` class-balanced images of ``name`` ``split`` (0: the whole split), drawn with ``seed``; a folder dataset
    (Tiny-ImageNet) decodes only those. ParameterError when the split holds fewer than ``n``."""
    param = "table2_n_train" if split == "train" else "table2_n_test"
    if name == "synthetic":   # generated: its size is a parameter either way
        fallback = P.synthetic_n_train if split == "train" else P.synthetic_n_test
        return load_dataset(name, split, n=n or fallback, seed=P.data_seed)
    try:
        return load_dataset(name, split, n=n or None, seed=seed)
    except SubsetTooLarge as e:   # more images asked for than the split holds
        raise ParameterError(f"{param}: {e}. Fix: lower {param}, or set it to 0 for the whole split.") from e


def load_table2_data(P) -> dict:
    """``{name: Table2Data}`` of the datasets of ``P.table2_datasets`` (``BenignParams``): ``table2_n_train``
    class-balanced training images (seed ``data_seed``, as the main subset) and ``table2_n_test`` test images (seed
    ``data_seed`` + ``BenignSeed.TEST``), 0 meaning the whole split, as the paper's default splits. Raises
    ``DatasetNotFound`` for a dataset that is nowhere (before any compute) and ``ParameterError`` for a size
    above its split's."""
    out = {}
    for name in P.table2_datasets:
        tr = _load(P, name, "train", P.table2_n_train, P.data_seed)
        te = _load(P, name, "test", P.table2_n_test, P.data_seed + BenignSeed.TEST)
        mean, std = tr.stats()
        out[name] = Table2Data(name, tr.images, tr.labels, te.images, te.labels, tr.num_classes,
                               make_labels(tr.labels, 1.0, tr.num_classes, P.seed), mean, std,
                               Augmentation("none", mean=mean, std=std).normalize)
        print(f"Table 2 on {name}: {len(tr)} training / {len(te)} test images, {tr.num_classes} classes (the random "
              f"labels' too), {out[name].size}x{out[name].size} px")
    return out
