"""One function per figure type, one style. Every figure has a title, axis labels, a legend where there
is more than one series, and a caption line naming the profile and dataset; ``save`` writes PNG and PDF.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from memlab.metrics.unitmem import live_units

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


def per_layer_box(groups: dict, title: str, ylabel: str, cap: str):
    """Box plots of a per-unit quantity per layer; ``groups``: {label: {layer: values}} drawn side by side."""
    labels = list(groups)
    layers = list(next(iter(groups.values())))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(layers) * len(labels)), 3.8))
    w = 0.8 / len(labels)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, lab in enumerate(labels):
        data = [_np(groups[lab][l])[np.isfinite(_np(groups[lab][l]))] for l in layers]
        pos = np.arange(len(layers)) + (j - (len(labels) - 1) / 2) * w
        bp = ax.boxplot(data, positions=pos, widths=w * 0.9, patch_artist=True, showfliers=False)
        for b in bp["boxes"]:
            b.set(facecolor=colors[j % len(colors)], alpha=0.55)
        ax.plot([], [], color=colors[j % len(colors)], lw=6, alpha=0.55, label=lab)
    ax.set_xticks(np.arange(len(layers)), layers, rotation=30, ha="right")
    ax.set(title=title, xlabel="layer", ylabel=ylabel)
    if len(labels) > 1:
        ax.legend()
    caption(fig, cap)
    return fig


def unit_scatter_grid(tables: dict, layers: list, title: str, cap: str):
    """ClassMem (y) against UnitMem (x) per unit: one row per encoder, one column per layer, diagonal."""
    rows = list(tables)
    fig, axes = plt.subplots(len(rows), len(layers), figsize=(1.9 * len(layers), 2.0 * len(rows) + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    for i, r in enumerate(rows):
        t = tables[r]
        for j, l in enumerate(layers):
            ax = axes[i, j]
            d = live_units(t[t["layer"] == l])
            ax.scatter(d["unitmem"], d["classmem"], s=5, alpha=0.6, color="#4c72b0" if i == 0 else "#dd8452")
            ax.plot([0, 1], [0, 1], "r-", lw=0.8)
            frac = float((d["unitmem"] > d["classmem"]).mean()) if len(d) else float("nan")
            ax.set_title(f"{l}\nUM>CM: {frac:.0%}", fontsize=7.5)
            if j == 0:
                ax.set_ylabel(f"{r}\nClassMem", fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel("UnitMem", fontsize=8)
            ax.set(xlim=(0, 1), ylim=(0, 1))
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def lines(x, series: dict, title: str, xlabel: str, ylabel: str, cap: str, vline=None):
    """Line plot of named series over a common x (or {name: (x, y)})."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for name, y in series.items():
        xs, ys = y if isinstance(y, tuple) else (x, y)
        ax.plot(_np(xs), _np(ys), marker="o", ms=3, label=name)
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
    ax.scatter(_np(x), _np(y), s=7, alpha=0.6)
    if note:
        ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top", fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    caption(fig, cap)
    return fig


# ----------------------------------------------------------------------------- memorization profiles (notebook 01)
PARADIGM_COLORS = {"supervised": "#d62728", "simclr": "#1f77b4", "random_labels": "#2ca02c",
                   "random_labels_aug": "#9467bd"}


def _rank(n):
    return np.arange(n) / max(1, n - 1)


def profiles_over_epochs(profiles: dict, title: str, cap: str):
    """Fig. 1 of Sadrtdinov et al.: one panel per paradigm, one sorted profile per recorded epoch (colour =
    epoch). ``profiles``: {paradigm: (epochs, sorted p of shape (E, |X|))}."""
    fig, axes = plt.subplots(1, len(profiles), figsize=(3.4 * len(profiles), 3.4), squeeze=False, sharey=True)
    for ax, (name, (epochs, prof)) in zip(axes[0], profiles.items()):
        prof = _np(prof)
        cmap = plt.get_cmap("viridis")
        for e, row in zip(epochs, prof):
            ax.plot(_rank(len(row)), row, color=cmap((e - min(epochs)) / max(1, max(epochs) - min(epochs))), lw=1)
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(epochs), max(epochs)))
        fig.colorbar(sm, ax=ax, label="epoch", fraction=0.05)
        ax.set(title=name, xlabel="images, sorted by p_t(x)", ylim=(-0.02, 1.02))
    axes[0, 0].set_ylabel("p_t(x)")
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def profiles_vs_binomial(panels: dict, title: str, cap: str):
    """Fig. 2: rows = paradigms, columns = kinds (averaged / fixed augmentation); in each panel the sorted
    profile (solid) and sorted binomial noise (dotted) at a few epochs. ``panels``:
    {paradigm: {kind: [(epoch, sorted profile, sorted noise), ...]}}."""
    names = list(panels)
    kinds = list(next(iter(panels.values())))
    fig, axes = plt.subplots(len(names), len(kinds), figsize=(4.4 * len(kinds), 2.5 * len(names) + 0.6),
                             squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            for k, (epoch, prof, noise) in enumerate(panels[name][kind]):
                c = colors[k % len(colors)]
                ax.plot(_rank(len(prof)), _np(prof), color=c, lw=1.4, label=f"t={epoch}, mean {np.mean(prof):.2f}")
                ax.plot(_rank(len(noise)), _np(noise), color=c, lw=1.2, ls=":")
            ax.plot([], [], color="k", ls=":", label="binomial noise")
            ax.set(title=f"{name}: {kind}", ylim=(-0.02, 1.02))
            ax.title.set_fontsize(9)
            if j == 0:
                ax.set_ylabel("p_t")
            if i == len(names) - 1:
                ax.set_xlabel("sorted images / image-augmentation pairs")
            ax.legend(loc="upper left", fontsize=6.5)
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def aligned_profiles(comp: dict, title: str, cap: str):
    """Fig. 3: rows = kinds (averaged / fixed), columns = target mean p; one sorted profile per paradigm.
    ``comp``: {kind: {target: {label: sorted profile}}} (labels start with the paradigm's name)."""
    kinds = list(comp)
    targets = list(next(iter(comp.values())))
    fig, axes = plt.subplots(len(kinds), len(targets), figsize=(3.8 * len(targets), 3.0 * len(kinds) + 0.5),
                             squeeze=False, sharey=True)
    for i, kind in enumerate(kinds):
        for j, tg in enumerate(targets):
            ax = axes[i, j]
            for label, prof in comp[kind][tg].items():
                ax.plot(_rank(len(prof)), _np(prof), lw=1.5, label=label,
                        color=PARADIGM_COLORS.get(label.split(" ")[0]))
            ax.set(title=f"{kind}, mean p ~ {tg}", xlabel="sorted images", ylim=(-0.02, 1.02))
            ax.title.set_fontsize(9)
            if j == 0:
                ax.set_ylabel("p_t")
            ax.legend(loc="upper left", fontsize=6.5)
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def augmentation_scatter(data: dict, title: str, cap: str):
    """Fig. 4: per paradigm, p_t of each augmentation (dots) against the image's p_t(x) (line), images
    sorted by p_t(x). ``data``: {paradigm: (p_x (K,), p_aug (K, M), epoch)}."""
    fig, axes = plt.subplots(1, len(data), figsize=(3.4 * len(data), 3.3), squeeze=False, sharey=True)
    for ax, (name, (px, paug, epoch)) in zip(axes[0], data.items()):
        px, paug = _np(px), _np(paug)
        k = np.arange(len(px))
        ax.scatter(np.repeat(k, paug.shape[1]), paug.ravel(), s=8, alpha=0.5,
                   color=PARADIGM_COLORS.get(name, "#4c72b0"), label="p_t(x~), one augmentation")
        ax.plot(k, px, "k-", lw=1.3, label="p_t(x)")
        ax.set(title=f"{name} (t={epoch})", xlabel="image (sorted by p_t(x))", ylim=(-0.03, 1.03))
        ax.legend(loc="upper left", fontsize=6.5)
    axes[0, 0].set_ylabel("p_t")
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def embedding_grid(emb: dict, class_names: list, title: str, cap: str):
    """2-D embeddings (e.g. t-SNE) per panel, coloured by class. ``emb``: {name: (xy (n, 2), labels (n,))}."""
    fig, axes = plt.subplots(1, len(emb), figsize=(3.3 * len(emb), 3.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (name, (xy, lab)) in zip(axes[0], emb.items()):
        xy, lab = _np(xy), _np(lab)
        for c in np.unique(lab):
            m = lab == c
            ax.scatter(xy[m, 0], xy[m, 1], s=5, color=cmap(int(c) % 10), label=str(class_names[int(c)]))
        ax.set(title=name, xlabel="t-SNE 1", ylabel="t-SNE 2", xticks=[], yticks=[])
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2)
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def image_grid(grid: dict, title: str, cap: str):
    """Rows = outer keys, columns = inner keys; each cell a strip of images (n, 3, H, W) in [0, 1]."""
    rows = list(grid)
    cols = list(next(iter(grid.values())))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols), 0.9 * len(rows) + 0.8), squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            imgs = _np(grid[r][c])
            strip = np.concatenate([np.pad(np.transpose(im, (1, 2, 0)), ((1, 1), (1, 1), (0, 0)), constant_values=1)
                                    for im in imgs], axis=1)
            ax.imshow(strip.clip(0, 1), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(c, fontsize=8)
            if j == 0:
                ax.set_ylabel(r, fontsize=7)
    fig.suptitle(title)
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
