"""SSLMem data splits, class-balanced subsets and random labels, all seeded.

SSLMem (Wang et al. 2024, §3.2 and appendix A; methods.md §2): the training set is split into disjoint
S_S (shared: trains f and g), S_C (candidates: f only) and S_I (independent: g only); S_E (extra) comes
from the test split and trains neither. f trains on S_S u S_C, g on S_S u S_I. CIFAR-10 paper sizes:
40k / 5k / 5k / 5k.

Sizes are counts (int) or fractions (float in (0, 1]; of the training split for S/C/I, of the test split
for E). Selection is class-balanced: indices are ordered so that every prefix holds the classes in equal
proportion (round robin over classes, each shuffled by the seed), and S_C, S_I, S_S, S_E are consecutive
blocks of that order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from memlab.streams import S_E_ORDER_OFFSET


def balanced_order(labels, seed: int) -> np.ndarray:
    """A permutation of range(len(labels)) whose every prefix is as class-balanced as possible."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx[rng.permutation(len(idx))]] = np.arange(len(idx))
    tiebreak = rng.random(len(labels))
    return np.lexsort((tiebreak, rank))


def _count(size, total: int, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} size must be an int count or a float fraction, got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0 < size <= 1:
            raise ValueError(f"{what} fraction must be in (0, 1], got {size}")
        return int(round(size * total))
    if size < 0:
        raise ValueError(f"{what} count must be >= 0, got {size}")
    return int(size)


def balanced_subset(labels, n, seed: int) -> torch.Tensor:
    """``n`` (count or fraction) class-balanced indices, sorted."""
    k = _count(n, len(labels), "subset")
    if k > len(labels):
        raise ValueError(f"subset of {k} asked from {len(labels)} points")
    return torch.from_numpy(np.sort(balanced_order(labels, seed)[:k]))


def random_labels(n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Labels drawn once per sample, uniform over the classes (every augmentation keeps its label)."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, num_classes, size=n)).long()


@dataclass
class Splits:
    shared: torch.Tensor        # S_S, indices into the training split
    candidates: torch.Tensor    # S_C, training split
    independent: torch.Tensor   # S_I, training split
    extra: torch.Tensor         # S_E, indices into the test split
    seed: int

    NAMES = {"S_S": "shared", "S_C": "candidates", "S_I": "independent", "S_E": "extra"}

    @property
    def f_train(self) -> torch.Tensor:
        return torch.cat([self.shared, self.candidates]).sort().values

    @property
    def g_train(self) -> torch.Tensor:
        return torch.cat([self.shared, self.independent]).sort().values

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, self.NAMES.get(name, name))

    def sizes(self) -> dict:
        return {k: len(self[k]) for k in self.NAMES}

    def to_dict(self) -> dict:
        return {"seed": self.seed, **{k: self[k].tolist() for k in self.NAMES}}

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path) -> "Splits":
        d = json.loads(Path(path).read_text())
        return cls(*(torch.tensor(d[k], dtype=torch.long) for k in cls.NAMES), seed=d["seed"])


def make_splits(train_labels, test_labels, *, shared, candidates, independent, extra, seed: int = 0) -> Splits:
    """Disjoint, class-balanced, seeded S_S / S_C / S_I (training split) and S_E (test split)."""
    n_train, n_test = len(train_labels), len(test_labels)
    nc = _count(candidates, n_train, "S_C")
    ni = _count(independent, n_train, "S_I")
    ns = _count(shared, n_train, "S_S")
    ne = _count(extra, n_test, "S_E")
    if ns + nc + ni > n_train:
        raise ValueError(f"split sizes S_S={ns} + S_C={nc} + S_I={ni} = {ns + nc + ni} exceed the "
                         f"{n_train} training images")
    if ne > n_test:
        raise ValueError(f"S_E={ne} exceeds the {n_test} test images")
    order = balanced_order(train_labels, seed)
    c, i, s = order[:nc], order[nc:nc + ni], order[nc + ni:nc + ni + ns]
    e = balanced_order(test_labels, seed + S_E_ORDER_OFFSET)[:ne]
    as_t = lambda a: torch.from_numpy(np.sort(a)).long()  # noqa: E731
    return Splits(as_t(s), as_t(c), as_t(i), as_t(e), seed)
