"""A dataset, or synthetic data standing in for it when it is unavailable and the notebook allows that.

Notebooks 03, 04 and 05 use a second dataset (downstream probes, transfer, a second encoder). Where that dataset
is missing (offline, no archive) and the notebook's ``synthetic_fallback`` parameter is true, the synthetic set of
``memlab.data.synthetic`` takes its place; otherwise the error names the missing files and the parameter. The
stand-in's ``ImageData.name`` is ``"synthetic"``, so every caption, table and cache key built from that name says
which data was really used.
"""
from __future__ import annotations

from memlab.data.datasets import DatasetNotFound, ImageData, load_dataset, stand_in


def load_or_stand_in(name: str, *, synthetic_fallback: bool, n: tuple = (None, None), seed: int = 0,
                     download: bool = True, stand_in_n: tuple | None = None, stand_in_seed: int | None = None,
                     atypical_frac: float = 0.05) -> tuple[ImageData, ImageData]:
    """The train and test splits of dataset ``name``, or of the synthetic set when ``name`` is unavailable.

    ``n``: (train, test) image counts, a class-balanced subset drawn with ``seed`` (None: the whole split).
    ``download``: let torchvision fetch a missing dataset. The synthetic stand-in has ``stand_in_n`` images per
    split (default ``n``), generated with ``stand_in_seed`` (default ``seed``) and ``atypical_frac``; asking for
    ``name="synthetic"`` loads that set directly with ``n`` and ``seed``.

    Returns ``(train, test)``; the stand-in's ``.name`` is ``"synthetic"``, so ``train.name != name`` tells that
    it stood in. Raises ``DatasetNotFound`` when ``name`` is unavailable and ``synthetic_fallback`` is false (the
    message names the parameter that would allow the stand-in); ``ValueError`` for an unknown name or for more
    images than a split holds."""
    try:
        return (load_dataset(name, "train", n=n[0], seed=seed, download=download, atypical_frac=atypical_frac),
                load_dataset(name, "test", n=n[1], seed=seed, download=download, atypical_frac=atypical_frac))
    except DatasetNotFound as e:
        stand_in(e, name, synthetic_fallback)   # raises unless the stand-in is allowed
    sn = n if stand_in_n is None else stand_in_n
    ss = seed if stand_in_seed is None else stand_in_seed
    return (load_dataset("synthetic", "train", n=sn[0], seed=ss, atypical_frac=atypical_frac),
            load_dataset("synthetic", "test", n=sn[1], seed=ss, atypical_frac=atypical_frac))
