"""The one style of every figure: matplotlib settings, the subset and paradigm colours, ``caption`` (the line under
every figure naming profile and dataset) and ``save`` (PNG and PDF)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

SUBSET_COLORS = {"S_C": "#d62728", "S_S": "#7f7f7f", "S_E": "#1f77b4", "S_I": "#2ca02c"}
SUBSET_LABELS = {"S_C": "S_C candidates (f only)", "S_S": "S_S shared (f and g)",
                 "S_E": "S_E extra (neither)", "S_I": "S_I independent (g only)"}
PARADIGM_COLORS = {"supervised": "#d62728", "simclr": "#1f77b4", "random_labels": "#2ca02c",
                   "random_labels_aug": "#9467bd"}

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
                     "axes.titlesize": 11, "legend.fontsize": 8, "legend.frameon": False})


def as_numpy(x) -> np.ndarray:
    """A tensor (any device) or array-like as a NumPy array, for matplotlib."""
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def caption(fig, text: str) -> None:
    """Write ``text`` (profile, dataset, what is drawn) under ``fig`` and lay the figure out above it."""
    fig.text(0.01, 0.005, text, ha="left", va="bottom", fontsize=7.5, color="#444444", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))


def save(fig, path_stem) -> list:
    """Save ``fig`` as ``<path_stem>.png`` and ``.pdf``; returns the paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, bbox_inches="tight")
    return paths
