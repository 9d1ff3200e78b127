"""The figures of the SSLMem paper (Wang et al. 2024; notebooks 02 and 03): score distributions per subset
(Fig. 2c), alignment on f against g (Fig. 2a), training curves (Fig. 2b), image galleries (Fig. 1) and the fraction
above a threshold (Fig. 5), and the intuition toys of appendix D.3 (Figs. 10 and 11)."""
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


def toy_line(inputs, panels: list, train_x, jitter: float, title: str, cap: str):
    """Fig. 10 (appendix D.3): one panel per case, ``(panel title, theta_f (T,), theta_g (T,), values)`` with the
    representations (radians) of f and g over ``inputs`` (T,) and ``values`` {"x", "L_align(f, x)",
    "L_align(g, x)", "SSLMem m(x)"}; ``train_x``: the points both trained on; Aug(x) shaded as x +- 2 jitter."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), sharey=True)
    t = as_numpy(inputs)
    for ax, (name, f, g, v) in zip(np.atleast_1d(axes), panels):
        f, g, x = as_numpy(f), as_numpy(g), v["x"]
        ax.axvspan(x - 2 * jitter, x + 2 * jitter, color="#ffbb78", alpha=0.5, label="Aug(x): x +- 2 sd")
        ax.plot(t, f, color="#d62728", lw=1.8, label="f (trained with x)")
        ax.plot(t, g, color="#1f77b4", lw=1.8, ls="--", label="g (trained without x)")
        lo, hi = min(f.min(), g.min()), max(f.max(), g.max())
        ax.plot(as_numpy(train_x), np.full(len(train_x), lo - 0.12 * (hi - lo)), "|", color="k", ms=10,
                label="training points (S)")
        ax.plot([x], [np.interp(x, t, f)], "*", color="#d62728", ms=13, mec="k", label="x (f trains on it)")
        ax.text(0.02, 0.5, f"L_align(f, x) = {v['L_align(f, x)']:.3f}\nL_align(g, x) = {v['L_align(g, x)']:.3f}\n"
                f"m(x) = {v['SSLMem m(x)']:+.3f}", transform=ax.transAxes, va="top", fontsize=8,
                bbox={"fc": "white", "ec": "#999999", "alpha": 0.9})
        ax.set(title=name, xlabel="input x (1-D)", ylabel="representation theta (radians)")
    fig.suptitle(title)
    caption(fig, cap)
    fig.subplots_adjust(bottom=0.27)
    fig.legend(*np.atleast_1d(axes)[0].get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 0.06),
               ncol=5)
    return fig


def toy_plane(grid, maps, points, outlier, m, title: str, cap: str):
    """Fig. 11 (appendix D.3): the alignment loss of f and of g over the plane (``maps`` (2, G, G), rows = y on
    the ``grid`` (G,) axis) and their difference g - f (SSLMem over the plane), with the training ``points``
    (N, 2), the ``outlier`` mask (N,) and each point's SSLMem ``m`` (N,) in the last panel's legend."""
    grid, maps, pts, out, m = (as_numpy(a) for a in (grid, maps, points, outlier, m))
    out = out.astype(bool)
    ext = (grid[0], grid[-1], grid[0], grid[-1])
    diff = maps[1] - maps[0]
    lim = max(np.abs(diff).max(), 1e-9)
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.6))
    panels = [("(a) L_align of f (trained with the outliers)", maps[0], "viridis", 0, maps.max()),
              ("(b) L_align of g (trained without them)", maps[1], "viridis", 0, maps.max()),
              ("(c) g - f: SSLMem over the plane", diff, "coolwarm", -lim, lim)]
    for ax, (name, z, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(z, origin="lower", extent=ext, cmap=cmap, vmin=lo, vmax=hi, aspect="equal")
        fig.colorbar(im, ax=ax, fraction=0.046, label="alignment loss (0-2)" if cmap == "viridis" else "m (raw)")
        ax.scatter(pts[~out, 0], pts[~out, 1], s=9, c="white", edgecolors="k", lw=0.5,
                   label=f"cluster points (f and g): mean m {m[~out].mean():+.3f}")
        ax.scatter(pts[out, 0], pts[out, 1], s=110, marker="*", c="#ff7f0e", edgecolors="k", lw=0.7,
                   label="outliers (f only): m " + ", ".join(f"{v:+.3f}" for v in m[out]))
        ax.set(title=name, xlabel="input coordinate 1", ylabel="input coordinate 2")
        ax.grid(False)
    fig.suptitle(title)
    caption(fig, cap)
    fig.subplots_adjust(bottom=0.24)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 0.05), ncol=2)
    return fig
