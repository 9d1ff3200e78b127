"""Figures of any notebook: bars, lines, grouped bars, scatter, ROC curves, annotated heat maps and error-bar
panels. Each takes a title and a caption and returns the figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from memlab.io.plots.style import as_numpy, caption


def roc(curves: dict, title: str, cap: str):
    """ROC curves: {label: (fpr, tpr, auc)}."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(as_numpy(fpr), as_numpy(tpr), lw=1.8, label=f"{name} (AUC {auc:.3f})")
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


def lines(x, series: dict, title: str, xlabel: str, ylabel: str, cap: str, vline=None):
    """Line plot of named series over a common x (or {name: (x, y)})."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for name, y in series.items():
        xs, ys = y if isinstance(y, tuple) else (x, y)
        ax.plot(as_numpy(xs), as_numpy(ys), marker="o", ms=3, label=name)
    if vline is not None:
        ax.axvline(vline, color="k", ls=":", lw=1, label="end of warm-up")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(series) > 1 or vline is not None:
        ax.legend()
    caption(fig, cap)
    return fig


def grouped_bars(df, x: str, group: str, y: str, title: str, ylabel: str, cap: str, panels: str | None = None):
    """Bars of ``y`` for each ``x`` (groups side by side), one panel per value of ``panels``."""
    keys = [None] if panels is None else list(dict.fromkeys(df[panels]))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        d = df if k is None else df[df[panels] == k]
        xs, gs = list(dict.fromkeys(d[x])), list(dict.fromkeys(d[group]))
        w = 0.8 / len(gs)
        for j, g in enumerate(gs):
            vals = [d[(d[x] == xv) & (d[group] == g)][y].mean() for xv in xs]
            ax.bar(np.arange(len(xs)) + (j - (len(gs) - 1) / 2) * w, vals, w, label=str(g))
        ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
        ax.set(title=f"{title}" + (f": {k}" if k is not None else ""), xlabel=x, ylabel=ylabel)
        lo = np.nanmin(d[y]) if len(d) else 0
        ax.set_ylim(max(0, lo - 0.05), None)
        ax.legend(title=group)
    caption(fig, cap)
    return fig


def scatter(x, y, title: str, xlabel: str, ylabel: str, cap: str, note: str = ""):
    """A plain scatter with an optional note (e.g. a correlation) in the corner."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.scatter(as_numpy(x), as_numpy(y), s=7, alpha=0.6)
    if note:
        ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top", fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    caption(fig, cap)
    return fig


def heatmap(matrix, title: str, cap: str, fmt: str = "{:.2f}", cmap: str = "viridis", cbar: str = ""):
    """A labelled matrix (pandas DataFrame) with its values written in the cells (Tables 12-13)."""
    vals = np.asarray(matrix.values, dtype=float)
    n_r, n_c = vals.shape
    fig, ax = plt.subplots(figsize=(1.1 * n_c + 2.5, 0.8 * n_r + 1.8))
    im = ax.imshow(vals, cmap=cmap)
    ax.set_xticks(range(n_c), [str(c) for c in matrix.columns], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n_r), [str(r) for r in matrix.index], fontsize=8)
    for i in range(n_r):
        for j in range(n_c):
            ax.text(j, i, fmt.format(vals[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if vals[i, j] < np.nanmean(vals) else "black")
    fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(title)
    caption(fig, cap)
    return fig


def errorbar_panels(df, x: str, y: str, err: str, group: str, panels: str, title: str, xlabel: str, ylabel: str,
                    cap: str, styles: dict | None = None):
    """Mean ``y`` +- ``err`` (e.g. the std over seeds) against ``x``, one line per ``group``, one panel per value
    of ``panels`` (SSLMem Fig. 3/4: accuracy against k or lambda). ``styles``: {group: matplotlib kwargs}."""
    keys = list(dict.fromkeys(df[panels]))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        d = df[df[panels] == k]
        for g in dict.fromkeys(d[group]):
            s = d[d[group] == g].sort_values(x)
            ax.errorbar(s[x], s[y], yerr=s[err], marker="o", ms=4, capsize=3, label=str(g),
                        **(styles or {}).get(g, {}))
        ax.set(title=f"{title}: {k}", xlabel=xlabel, ylabel=ylabel)
        ax.legend(title=group)
    caption(fig, cap)
    return fig


def trend(t, title: str, ylabel: str, cap: str):
    """Effect versus compute (``metrics.trend.Trend``): the statistic at each compute point with its 95% interval,
    the fitted line with its 95% band (extended to the crossing when that is within 8x the largest point), the
    claim's threshold, and the verdict in the legend. Log2 compute axis."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    _trend_axes(ax, t, title, ylabel)
    caption(fig, cap)
    return fig


def trend_panels(trends: dict, title: str, ylabel: str, cap: str):
    """``trend`` for several claims side by side: {panel title: Trend}, one panel each (at most 4 per row)."""
    n = len(trends)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, (k, t) in zip(axes.flat, trends.items()):
        _trend_axes(ax, t, k, ylabel)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def _trend_axes(ax, t, title: str, ylabel: str) -> None:
    ax.errorbar(t.x, t.y, yerr=1.96 * t.se, fmt="o", ms=4, capsize=3, label="measured (95% interval)")
    hi = t.x[-1] if t.crossing is None or not t.x[-1] < t.crossing <= 8 * t.x[-1] else t.crossing
    xs = np.geomspace(t.x[0], hi, 64)
    fit, lo, up = t.fitted(xs)
    ax.plot(xs, fit, color="C1", label=f"fit: {t.slope:+.3g} per doubling")
    ax.fill_between(xs, lo, up, color="C1", alpha=0.2, label="95% band of the fit")
    ax.axhline(t.threshold, color="k", ls=":", lw=1, label=f"claim's threshold ({t.threshold:.3g})")
    ax.set_xscale("log", base=2)
    ax.set(title=title, xlabel=t.unit, ylabel=ylabel)
    ax.legend(title=f"verdict: {t.verdict}", fontsize=7, title_fontsize=8)
