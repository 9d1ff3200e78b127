"""The figures of the SSLMem paper (Wang et al. 2024; notebooks 02 and 03): score distributions per subset
(Fig. 2c), alignment on f against g (Fig. 2a), training curves (Fig. 2b), image galleries (Fig. 1) and the fraction
above a threshold (Fig. 5)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from memlab.io.plots.style import SUBSET_COLORS, SUBSET_LABELS, as_numpy, caption


def subset_distributions(scores: dict, title: str, cap: str, xlabel: str = "SSLMem score (normalised)"):
    """Fig. 2c: histograms of the per-point scores of each subset, with their means."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    allv = np.concatenate([as_numpy(v) for v in scores.values()])
    bins = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5), 40)
    for name, v in scores.items():
        v = as_numpy(v)
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
    af, ag, m = as_numpy(align_f), as_numpy(align_g), as_numpy(m)
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
            ax.plot(as_numpy(x), as_numpy(y), marker="o", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel=label, title=label)
        if len(lines) > 1:
            ax.legend()
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def gallery(images, titles: list, title: str, cap: str, ncols: int = 10):
    """Fig. 1: a grid of uint8 images (N,3,H,W) with a short title each."""
    imgs = as_numpy(images)
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
    t = as_numpy(thresholds)
    for name, v in scores.items():
        v = as_numpy(v)
        ax.plot(t, [(v > x).mean() for x in t], lw=1.8, color=SUBSET_COLORS.get(name),
                label=SUBSET_LABELS.get(name, name))
    ax.set(title=title, xlabel="threshold on SSLMem (normalised)", ylabel="fraction of points above")
    ax.legend()
    caption(fig, cap)
    return fig
