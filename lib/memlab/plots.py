"""One function per figure type, one style. Every figure has a title, axis labels, a legend where there
is more than one series, and a caption line naming the profile and dataset; ``save`` writes PNG and PDF.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

SUBSET_COLORS = {"S_C": "#d62728", "S_S": "#7f7f7f", "S_E": "#1f77b4", "S_I": "#2ca02c"}
SUBSET_LABELS = {"S_C": "S_C candidates (f only)", "S_S": "S_S shared (f and g)",
                 "S_E": "S_E extra (neither)", "S_I": "S_I independent (g only)"}

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
                     "axes.titlesize": 11, "legend.fontsize": 8, "legend.frameon": False})


def _np(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def caption(fig, text: str) -> None:
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


def subset_distributions(scores: dict, title: str, cap: str, xlabel: str = "SSLMem score (normalised)"):
    """Fig. 2c: histograms of the per-point scores of each subset, with their means."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    allv = np.concatenate([_np(v) for v in scores.values()])
    bins = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5), 40)
    for name, v in scores.items():
        v = _np(v)
        c = SUBSET_COLORS.get(name)
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.6, color=c,
                label=f"{SUBSET_LABELS.get(name, name)}: mean {v.mean():+.3f} (n={len(v)})")
        ax.axvline(v.mean(), color=c, ls="--", lw=1)
    ax.axvline(0, color="k", lw=0.6)
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    caption(fig, cap)
    return fig


def alignment_scatter(align_f, align_g, m, title: str, cap: str):
    """Fig. 2a: alignment loss on f vs on g per candidate, coloured by its memorization score."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    af, ag, m = _np(align_f), _np(align_g), _np(m)
    lim = max(np.abs(m).max(), 1e-12)
    sc = ax.scatter(af, ag, c=m, cmap="coolwarm", vmin=-lim, vmax=lim, s=8, alpha=0.8)
    lo, hi = min(af.min(), ag.min()), max(af.max(), ag.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="equal alignment (m = 0)")
    ax.set(title=title, xlabel="alignment loss on f (trained on x)", ylabel="alignment loss on g (not trained on x)")
    fig.colorbar(sc, ax=ax, label="SSLMem (normalised)")
    ax.legend(loc="upper left")
    caption(fig, cap)
    return fig


def training_curves(epochs, series: dict, title: str, cap: str):
    """Fig. 2b: one panel per series (e.g. training loss, probe accuracy, mean SSLMem) over epochs.
    ``series``: {panel label: values or {line label: values}}."""
    fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.3))
    axes = np.atleast_1d(axes)
    for ax, (label, ys) in zip(axes, series.items()):
        lines = ys if isinstance(ys, dict) else {label: ys}
        for name, y in lines.items():
            x = epochs[name] if isinstance(epochs, dict) else epochs
            ax.plot(_np(x), _np(y), marker="o", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel=label, title=label)
        if len(lines) > 1:
            ax.legend()
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def gallery(images, titles: list, title: str, cap: str, ncols: int = 10):
    """Fig. 1: a grid of uint8 images (N,3,H,W) with a short title each."""
    imgs = _np(images)
    n = len(imgs)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.25 * ncols, 1.45 * nrows + 0.5))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(np.atleast_1d(axes).ravel(), imgs)):
        ax.imshow(np.transpose(img, (1, 2, 0)), interpolation="nearest")
        ax.set_title(titles[i], fontsize=6.5)
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def threshold_fraction(scores: dict, thresholds, title: str, cap: str):
    """Fig. 5: fraction of points whose score exceeds each threshold."""
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    t = _np(thresholds)
    for name, v in scores.items():
        v = _np(v)
        ax.plot(t, [(v > x).mean() for x in t], lw=1.8, color=SUBSET_COLORS.get(name),
                label=SUBSET_LABELS.get(name, name))
    ax.set(title=title, xlabel="threshold on SSLMem (normalised)", ylabel="fraction of points above")
    ax.legend()
    caption(fig, cap)
    return fig


def roc(curves: dict, title: str, cap: str):
    """ROC curves: {label: (fpr, tpr, auc)}."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(_np(fpr), _np(tpr), lw=1.8, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right")
    caption(fig, cap)
    return fig


def bars(values: dict, title: str, ylabel: str, cap: str, errors: dict | None = None):
    """Bar chart of named values (with optional error bars)."""
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(values)), 3.4))
    names = list(values)
    ax.bar(names, [values[k] for k in names], yerr=[errors[k] for k in names] if errors else None,
           color="#4c72b0", capsize=3)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", rotation=30)
    caption(fig, cap)
    return fig
