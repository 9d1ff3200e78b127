"""The figures of UnitMem and LayerMem (notebooks 04 and 05): a per-unit quantity per layer, and ClassMem against
UnitMem per unit."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from memlab.io.plots.style import as_numpy, caption
from memlab.metrics.unitmem import live_units


def per_layer_box(groups: dict, title: str, ylabel: str, cap: str):
    """Box plots of a per-unit quantity per layer; ``groups``: {label: {layer: values}} drawn side by side."""
    labels = list(groups)
    layers = list(next(iter(groups.values())))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(layers) * len(labels)), 3.8))
    w = 0.8 / len(labels)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, lab in enumerate(labels):
        data = [as_numpy(groups[lab][l])[np.isfinite(as_numpy(groups[lab][l]))] for l in layers]
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
