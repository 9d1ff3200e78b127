"""The figures of memorization profiles (Sadrtdinov et al. 2021; notebook 01): sorted profiles over epochs
(Fig. 1), against binomial noise (Fig. 2), aligned by mean (Fig. 3), per augmentation (Fig. 4), and the embedding and
image grids."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from memlab.io.plots.style import PARADIGM_COLORS, as_numpy, caption


def _sorted_curve(ax, prof, **style) -> None:
    """A sorted profile (n,) against its rank in [0, 1]."""
    ax.plot(np.arange(len(prof)) / max(1, len(prof) - 1), as_numpy(prof), **style)


def _profile_panel(ax, title: str, first_column: bool, xlabel: str = "") -> None:
    """Title, p in [0, 1] (``p_t`` on the first column's axis), x label and legend of one grid panel."""
    ax.set(title=title, ylim=(-0.02, 1.02))
    ax.title.set_fontsize(9)
    if first_column:
        ax.set_ylabel("p_t")
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.legend(loc="upper left", fontsize=6.5)


def profiles_over_epochs(profiles: dict, title: str, cap: str):
    """Fig. 1 of Sadrtdinov et al.: one panel per paradigm, one sorted profile per recorded epoch (colour =
    epoch). ``profiles``: {paradigm: (epochs, sorted p of shape (E, |X|))}."""
    fig, axes = plt.subplots(1, len(profiles), figsize=(3.4 * len(profiles), 3.4), squeeze=False, sharey=True)
    for ax, (name, (epochs, prof)) in zip(axes[0], profiles.items()):
        prof = as_numpy(prof)
        cmap = plt.get_cmap("viridis")
        for e, row in zip(epochs, prof):
            _sorted_curve(ax, row, color=cmap((e - min(epochs)) / max(1, max(epochs) - min(epochs))), lw=1)
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
                _sorted_curve(ax, prof, color=c, lw=1.4, label=f"t={epoch}, mean {np.mean(prof):.2f}")
                _sorted_curve(ax, noise, color=c, lw=1.2, ls=":")
            ax.plot([], [], color="k", ls=":", label="binomial noise")
            _profile_panel(ax, f"{name}: {kind}", j == 0,
                           "sorted images / image-augmentation pairs" if i == len(names) - 1 else "")
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
                _sorted_curve(ax, prof, lw=1.5, label=label, color=PARADIGM_COLORS.get(label.split(" ")[0]))
            _profile_panel(ax, f"{kind}, mean p ~ {tg}", j == 0, "sorted images")
    fig.suptitle(title)
    caption(fig, cap)
    return fig


def augmentation_scatter(data: dict, title: str, cap: str):
    """Fig. 4: per paradigm, p_t of each augmentation (dots) against the image's p_t(x) (line), images
    sorted by p_t(x). ``data``: {paradigm: (p_x (K,), p_aug (K, M), epoch)}."""
    fig, axes = plt.subplots(1, len(data), figsize=(3.4 * len(data), 3.3), squeeze=False, sharey=True)
    for ax, (name, (px, paug, epoch)) in zip(axes[0], data.items()):
        px, paug = as_numpy(px), as_numpy(paug)
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
        xy, lab = as_numpy(xy), as_numpy(lab)
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
            imgs = as_numpy(grid[r][c])
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
