"""The figures of notebook 06, benign memorization (Anagnostidis et al., ICLR 2023; methods.md section 5), drawn
from the tables of ``benign_tables`` and saved (PNG and PDF) and shown by the study's report. ``study`` is the
notebook's ``benign_memorization.BenignStudy``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from memlab.io import plots

LAYER_COLORS = {"at initialisation": "#7f7f7f", "random labels, no DA": "#d62728", "random labels, DA": "#1f77b4"}


def table2_knn(study, table2) -> None:
    """Table 2 as grouped bars, one panel per dataset (``dataset``, then ``table2_datasets``): the K-NN accuracy of
    each setting (initialisation and the three runs), one bar per encoder."""
    P, report = study.P, study.S.report
    others = "".join(f", {a}" for a in P.table2_archs)
    sizes = "".join(f", {d}: {len(study.table2_data[d].Ytr)}" for d in P.table2_datasets)
    fig = plots.grouped_bars(table2, "setting", "encoder", "K-NN", f"Table 2: K-NN probe (K={P.knn_k})",
                             "K-NN test accuracy", report.caption(f"{P.arch}{others} x{P.width}, training images "
                                                                  f"{P.dataset}: {P.n_train}{sizes}; {P.loss}"),
                             panels="dataset")
    for ax in fig.axes:   # long setting names
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))   # room for the rotated names and the caption
    report.figure(fig, "table2_knn")


def knn_over_epochs(study) -> None:
    """The K-NN accuracy of the DA run over training (recorded by its monitor), against the initialisation's."""
    ep, ks = study.runs["random labels, DA"].series("knn")
    fig = plots.lines(ep, {"random labels + DA": ks, "at initialisation": [study.knn_init] * len(ep)},
                      "K-NN probe during training on random labels with DA", "epoch", "K-NN test accuracy",
                      study.S.report.caption(f"{study.P.arch} x{study.P.width}"))
    study.S.report.figure(fig, "knn_over_epochs")


def fit_trend(study, t) -> None:
    """Effect versus compute for Definition 4.1: the DA run's fit of its random labels over epochs, its fitted
    trend and where it would reach ``fit_target`` (``benign_tables.fit_trend``; ``t`` its ``Trend``)."""
    fig = plots.trend(t, "Does the DA run memorise its random labels?", "fit of the random labels (train)",
                      study.S.report.caption(f"{study.P.arch} x{study.P.width}, {len(study.Ytr)} images, "
                                             f"checked every {study.P.eval_every} epochs"))
    study.S.report.figure(fig, "fit_trend")


def fig3_per_layer_knn(study, fig3) -> None:
    """Fig. 3: per layer, the clean K-NN (solid) and the random-label leave-one-out K-NN (dashed) of each network;
    the dotted line ends the encoder."""
    names = study.net0.layer_names
    fig, ax = plt.subplots(figsize=(11, 4))
    for name, d in fig3.groupby("network", sort=False):
        d = d.set_index("layer").loc[names]
        ax.plot(d.index, d["clean K-NN"], "-o", ms=3, color=LAYER_COLORS[name], label=f"{name}: clean labels (test)")
        ax.plot(d.index, d["random-label K-NN (train, LOO)"], "--s", ms=3, color=LAYER_COLORS[name],
                label=f"{name}: random labels (train)")
    ax.axvline(len(study.net0.encoder.layer_names) - 0.5, color="k", lw=0.8, ls=":")
    ax.set(title="Fig. 3: K-NN accuracy per layer (flattened outputs)", xlabel="layer (stem → embedding → P → O)",
           ylabel="K-NN accuracy")
    ax.tick_params(axis="x", rotation=35)
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plots.caption(fig, study.S.report.caption(f"{study.P.arch} x{study.P.width}; dotted line: end of the encoder"))
    study.S.report.figure(fig, "fig3_per_layer_knn")


def fig6_invariance(study, hist, inv_cols) -> None:
    """Fig. 6: the normalised invariance of every layer over training (left axis) and the K-NN error of the
    embedding (dashed, right axis)."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    cmap = plt.get_cmap("viridis")
    for i, c in enumerate(inv_cols):
        ax.plot(hist["epoch"], hist[c], "-o", ms=2.5, color=cmap(i / max(1, len(inv_cols) - 1)), label=c[4:])
    ax.set(title="Fig. 6: normalised invariance per layer (random labels + DA)", xlabel="epoch",
           ylabel="I(x; q, T) (lower = more invariant)")
    ax2 = ax.twinx()
    ax2.plot(hist["epoch"], 1 - hist["knn"], "k--", lw=1.5, label="K-NN error (embedding)")
    ax2.set_ylabel("K-NN error")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, ncol=2, loc="upper right")
    P = study.P
    plots.caption(fig, study.S.report.caption(f"{P.arch} x{P.width}, {P.inv_images} images x {P.inv_pairs} pairs"))
    study.S.report.figure(fig, "fig6_invariance")


def fig5_capacity(study, cap) -> None:
    """Fig. 5: the K-NN accuracy against B with labels preserved (left), the fit after ``cap_steps`` steps with a
    label per view (right)."""
    P = study.P
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    d = cap[cap["labels"] == "preserved"]
    axes[0].plot(d["B"], d["K-NN"], "-o", label="labels preserved")
    axes[0].axhline(study.knn_init, color="k", ls=":", label="at initialisation")
    axes[0].set(xscale="log", title="Probe accuracy vs B (labels preserved)", xlabel="B (fixed augmentations)",
                ylabel="K-NN test accuracy")
    axes[0].legend()
    d = cap[cap["labels"] == "not preserved"]
    axes[1].plot(d["B"], d["train acc (random labels)"], "-o", color="#d62728", label="labels not preserved")
    axes[1].set(xscale="log", title=f"Fit after {P.cap_steps} steps", xlabel="B (fixed augmentations)",
                ylabel="training accuracy (random labels)")
    axes[1].legend()
    for ax in axes:
        ax.set_xticks(list(P.cap_B), [str(b) for b in P.cap_B])
        ax.minorticks_off()
    fig.suptitle("Fig. 5: fixed augmentations and capacity")
    plots.caption(fig, study.S.report.caption(f"{P.cap_n} images, {P.arch} x{P.width}"))
    study.S.report.figure(fig, "fig5_capacity")


def sweeps(study, fig7: dict, fig8: dict, fig12: dict, fig11: dict) -> None:
    """Figs. 7, 8, 12 and 11: the K-NN accuracy of each sweep ({x: K-NN}; Fig. 12 per DA setting) against the
    initialisation's."""
    P, report = study.P, study.S.report
    cap_s = report.caption(f"{P.sweep_n} images, {P.sweep_epochs} epochs, random labels unless stated")
    init = study.knn_init
    fig = plots.lines(list(P.sweep_widths), {"random labels + DA": list(fig7.values()),
                                             "at initialisation": [init] * len(P.sweep_widths)},
                      "Fig. 7: projector width", "hidden width of the projector", "K-NN test accuracy", cap_s)
    fig.axes[0].set_xscale("log")
    fig.axes[0].set_xticks(list(P.sweep_widths), [str(w) for w in P.sweep_widths])
    fig.axes[0].minorticks_off()
    report.figure(fig, "fig7_projector_width")
    fig = plots.lines(list(fig8), {"random labels + DA": list(fig8.values()), "at initialisation": [init] * len(fig8)},
                      "Fig. 8: number of random classes", "random classes", "K-NN test accuracy", cap_s)
    report.figure(fig, "fig8_classes")
    fig = plots.lines(list(P.sweep_noise), {"with DA": list(fig12["simclr"].values()),
                                            "without DA": list(fig12["none"].values()),
                                            "at initialisation": [init] * len(P.sweep_noise)},
                      "Fig. 12: label noise with and without DA", "label-noise fraction", "K-NN test accuracy", cap_s)
    report.figure(fig, "fig12_label_noise")
    fig = plots.lines(list(P.sweep_magnitudes), {"random labels + RandAugment": list(fig11.values()),
                                                 "at initialisation": [init] * len(P.sweep_magnitudes)},
                      "Fig. 11: augmentation strength", "RandAugment magnitude M (2 ops)", "K-NN test accuracy", cap_s)
    report.figure(fig, "fig11_strength")


def fig9_transfer(study, transfer) -> None:
    """Fig. 9: the K-NN accuracy of each frozen encoder on each transfer dataset (grouped bars)."""
    fig = plots.grouped_bars(transfer, "encoder", "dataset", "K-NN", "Fig. 9: transfer of the frozen encoders",
                             "K-NN test accuracy", study.S.report.caption(f"encoders trained on {study.P.dataset}"))
    fig.axes[0].tick_params(axis="x", labelrotation=20, labelsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))   # room for the rotated labels and the caption
    study.S.report.figure(fig, "fig9_transfer")


def fig13_toy(study, heat) -> None:
    """Fig. 13: the toy model's K-NN accuracy over n (rows) and B (columns), each cell labelled."""
    P = study.P
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    im = ax.imshow(heat.values, cmap="viridis", aspect="auto", origin="lower")
    for i in range(heat.shape[0]):
        for j in range(heat.shape[1]):
            ax.text(j, i, f"{heat.values[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(heat.shape[1]), heat.columns)
    ax.set_yticks(range(heat.shape[0]), heat.index)
    ax.set(title="Fig. 13: toy model, K-NN test accuracy", xlabel="B (augmentations per sample)", ylabel="n (samples)")
    fig.colorbar(im, ax=ax, label="K-NN accuracy (true classes)")
    plots.caption(fig, study.S.report.caption(f"toy d={P.toy_d}, d1={P.toy_d1}, C={P.toy_classes}, K={P.toy_K}, "
                                          f"sigma={P.toy_sigma}"))
    study.S.report.figure(fig, "fig13_toy_heatmap")
