"""The labels and training sets of the benign-memorization runs (Anagnostidis et al., ICLR 2023, sections 4-5;
methods.md section 5), and the inputs a training step or a fit check draws from them.

Labels (``make_labels``): a label-noise fraction p replaces the clean labels of exactly round(p * n) samples,
chosen by the seed, by labels drawn uniformly over ``num_classes`` (p = 1: the random labels of Zhang et al.
2017; a randomised label may coincide with the clean one). ``per_sample`` gives every sample its own class
(C = n, Fig. 8). A label belongs to a training *item*, drawn once: every augmentation of the item, every epoch,
keeps it.

Training sets (``TrainSet``) cover the paper's regimes:

- ``plain``: item i is image i, augmented online (a fresh draw each epoch) or not (``aug="none"``);
- ``fixed``: item (i, k) is the k-th of B fixed, precomputed augmentations of image i (section 5.1, Fig. 5);
  its label is the image's (preserved) or its own (not preserved);
- ``iid``: item i is an anchor image with B same-class real examples; each epoch it is replaced by one of
  them ("i.i.d. augmentations", section 5, Table 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memlab.augmentation.augment import hash_uniform
from memlab.engine.train import fingerprint
from memlab.streams import BENIGN_FIXED_VIEWS, BENIGN_IID


# ----------------------------------------------------------------------------------------- labels
def make_labels(clean, noise: float, num_classes: int, seed: int, per_sample: bool = False) -> torch.Tensor:
    """Training labels, int64 (n,): exactly round(noise * n) samples (a seeded random choice) get a label drawn
    uniformly from {0..num_classes-1}; the others keep ``clean`` (int (n,)). ``per_sample``: label i -> a random
    permutation of 0..n-1 (one class per sample; requires noise = 1). Raises ValueError for a noise outside
    [0, 1], num_classes < 1, or clean labels >= num_classes that would be kept."""
    clean = torch.as_tensor(clean).long()
    n = len(clean)
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"label noise must be in [0, 1], got {noise}")
    rng = np.random.default_rng(seed)
    if per_sample:
        if noise != 1.0:
            raise ValueError("per_sample labels replace every label: use noise = 1")
        return torch.from_numpy(rng.permutation(n)).long()
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if noise < 1.0 and n and int(clean.max()) >= num_classes:
        raise ValueError(f"clean labels go up to {int(clean.max())} but num_classes = {num_classes}")
    k = int(round(noise * n))
    noisy = rng.permutation(n)[:k]
    out = clean.clone()
    out[torch.from_numpy(noisy).long()] = torch.from_numpy(rng.integers(0, num_classes, size=k)).long()
    return out


def noisy_mask(n: int, noise: float, seed: int) -> torch.Tensor:
    """Bool (n,): which samples ``make_labels(..., noise, seed)`` randomised (the same seeded choice)."""
    rng = np.random.default_rng(seed)
    m = torch.zeros(n, dtype=torch.bool)
    m[torch.from_numpy(rng.permutation(n)[:int(round(noise * n))]).long()] = True
    return m


# ----------------------------------------------------------------------------------------- training sets
@dataclass
class TrainSet:
    """Training items: ``images`` (uint8 pool (P, 3, H, W)), per item its source image ``src`` (int64), its label
    (int64, < ``num_classes``), and for ``fixed`` its view slot ``view`` (0..B-1), for ``iid`` its B candidate
    images ``groups`` (int64 (items, B)). Raises ValueError for an unknown kind, labels outside 0..C-1 or
    missing per-item fields."""
    images: torch.Tensor
    src: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    kind: str = "plain"                   # plain | fixed | iid
    view: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    def __post_init__(self):
        if self.kind not in ("plain", "fixed", "iid"):
            raise ValueError(f"kind must be plain, fixed or iid, got {self.kind!r}")
        self.src, self.labels = torch.as_tensor(self.src).long(), torch.as_tensor(self.labels).long()
        if len(self.src) != len(self.labels) or len(self.src) == 0:
            raise ValueError(f"{len(self.src)} items but {len(self.labels)} labels")
        if int(self.labels.max()) >= self.num_classes or int(self.labels.min()) < 0:
            raise ValueError(f"labels outside 0..{self.num_classes - 1}")
        if self.kind == "fixed" and (self.view is None or len(self.view) != len(self.src)):
            raise ValueError("a fixed-view training set needs one view slot per item")
        if self.kind == "iid" and (self.groups is None or len(self.groups) != len(self.src)):
            raise ValueError("an i.i.d. training set needs a group of examples per item")

    def __len__(self):
        return len(self.src)

    def fingerprint(self) -> str:
        """The content hash of the items (it enters the run's cache key)."""
        return fingerprint(self.images, self.src, self.labels, self.view, self.groups) + f"-{self.kind}"


def plain_set(images, labels, num_classes: int) -> TrainSet:
    """Item i = image i (uint8 (n, 3, H, W)) with label i (int (n,))."""
    return TrainSet(images, torch.arange(len(images)), labels, num_classes)


def fixed_views_set(images, B: int, num_classes: int, seed: int, image_labels=None) -> TrainSet:
    """n * B items (i, k), k < B: the k-th fixed augmentation of image i (Fig. 5). ``image_labels`` given: labels
    preserved (item (i, k) -> image_labels[i]); else every item gets its own random label (``make_labels`` with
    ``seed``). The views of B are the first B of any larger B' (they are nested)."""
    n = len(images)
    if B < 1:
        raise ValueError(f"B must be >= 1, got {B}")
    src = torch.arange(n).repeat(B)
    view = torch.arange(B).repeat_interleave(n)
    labels = (torch.as_tensor(image_labels).long()[src] if image_labels is not None
              else make_labels(torch.zeros(n * B, dtype=torch.long), 1.0, num_classes, seed))
    return TrainSet(images, src, labels, num_classes, "fixed", view=view)


def iid_set(pool_images, pool_labels, anchors, B: int, labels, num_classes: int, seed: int) -> TrainSet:
    """Anchors (indices into the pool) each with B same-class examples from the rest of the pool, drawn without
    replacement with ``seed``: member 0 is the anchor itself, members 1..B-1 are other images ("i.i.d.
    augmentations", Table 4). ``labels``: one per anchor. Raises ValueError when a class has too few images."""
    anchors = torch.as_tensor(anchors).long()
    pool_labels = torch.as_tensor(pool_labels).long()
    rng = np.random.default_rng(seed)
    free = np.ones(len(pool_labels), bool)
    free[anchors.numpy()] = False
    groups = []
    for a in anchors.tolist():
        cand = np.flatnonzero(free & (pool_labels.numpy() == int(pool_labels[a])))
        if len(cand) < B - 1:
            raise ValueError(f"not enough class-{int(pool_labels[a])} images for B = {B} i.i.d. examples")
        pick = rng.choice(cand, B - 1, replace=False)
        free[pick] = False
        groups.append([a, *pick.tolist()])
    return TrainSet(pool_images, anchors, labels, num_classes, "iid", groups=torch.tensor(groups).long())


# ----------------------------------------------------------------------------------------- inputs
def batch_inputs(ts: TrainSet, items: torch.Tensor, aug, seed: int, epoch: int, device) -> torch.Tensor:
    """Model inputs (float (b, 3, H, W) on ``device``) of ``items`` in ``epoch``: online augmentation (plain),
    the fixed views (fixed) or an i.i.d. example drawn per epoch (iid, then ``aug`` on top unless it is
    ``none``)."""
    items = torch.as_tensor(items).long()
    if ts.kind == "iid":
        u = hash_uniform(seed, BENIGN_IID + epoch, items.numpy(), 1)[:, 0]
        pick = torch.from_numpy(np.minimum((u * ts.groups.shape[1]).astype(np.int64), ts.groups.shape[1] - 1))
        src = ts.groups[items, pick]
    else:
        src = ts.src[items]
    x = ts.images[src].to(device)
    if ts.kind == "fixed":
        return aug(x, (src + ts.view[items] * len(ts.images)).numpy(), seed, BENIGN_FIXED_VIEWS)
    if getattr(aug, "name", "") == "none":
        return aug.normalize(x)
    return aug(x, src.numpy(), seed, epoch)


def fit_inputs(ts: TrainSet, items: torch.Tensor, aug, seed: int, device) -> torch.Tensor:
    """The *unaugmented* training items (what Definition 4.1's fit is measured on): the images themselves, or
    the fixed views for ``fixed``."""
    items = torch.as_tensor(items).long()
    x = ts.images[ts.src[items]].to(device)
    if ts.kind == "fixed":
        return aug(x, (ts.src[items] + ts.view[items] * len(ts.images)).numpy(), seed, BENIGN_FIXED_VIEWS)
    return aug.normalize(x)
