"""Notebook 02's Table 4 (SSLMem paper §4.5): SSLMem beside Déjà Vu memorisation (``metrics.dejavu``) for each
Table 1 cell on the pair's dataset.

Per cell and f/g seed: set A is the cell's scored candidates S_C (f trains on them, g does not), the target is f,
the reference g, and the public set is the probe's labelled test images (``probe_test``), which neither trained
on. The figures are averaged over the seeds and cached per cell. The paper's observation, checked as a claim when
an MAE cell is present: Déjà Vu rates MAE above the other methods, SSLMem below them (MAE's masking ties
background fragments to the object, which Déjà Vu exploits; the paper's hypothesis).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from memlab.augmentation.augment import Augmentation
from memlab.engine.train import fingerprint
from memlab.io import plots
from memlab.metrics.dejavu import corner_crop, dejavu, knn_label_counts
from memlab.metrics.probes import extract

FIGURES = ("acc A", "acc B", "acc A (confident)", "acc B (confident)", "deja vu rate", "deja vu rate (confident)")


def cell_dejavu(cell, train, test, c_idx, public_idx, *, k: int, crop_frac: float, conf_frac: float, device, cache,
                force: bool = False) -> dict:
    """Déjà Vu's ``FIGURES`` of a ``grid.CellResult`` (mean over its f/g seeds), from the corner crops of training
    images ``c_idx`` (its S_C) and the public test images ``public_idx``; cached per cell and settings."""
    crops = corner_crop(train.images[c_idx], crop_frac)
    pub_x, pub_y, y = test.images[public_idx], test.labels[public_idx], train.labels[c_idx].numpy()
    n_cls = int(max(train.labels.max(), test.labels.max())) + 1

    def counts(t):
        norm = Augmentation("none", mean=t.config.mean, std=t.config.std).normalize
        emb = lambda x: extract(t.encoder, x, norm, device=device).float().cpu()  # noqa: E731
        return knn_label_counts(emb(crops), emb(pub_x), pub_y, k, n_cls)

    def run() -> dict:
        per_seed = [dejavu(counts(f), counts(g), y, conf_frac) for f, g in zip(cell.fs, cell.gs)]
        return {name: float(np.mean([r[name] for r in per_seed])) for name in FIGURES}

    key = {"f": [t.key for t in cell.fs], "g": [t.key for t in cell.gs], "crops": fingerprint(crops),
           "public": fingerprint(pub_x, pub_y), "k": k, "crop_frac": crop_frac, "conf_frac": conf_frac, "rep": "pooled",
           "definition": 2}   # 2: each model's confident accuracy on its own most confident points
    return cache.get_or_compute("dejavu", key, run, force=force)


def table4(T) -> pd.DataFrame:
    """Table 4 over ``T.grid`` (``sslmem_tables.CrossMethod``): one row per cell on the pair's dataset with its mean
    normalised SSLMem(S_C), Déjà Vu's figures and f's probe accuracy. Writes ``table4_sslmem_vs_dejavu`` and its
    figure; empty when no cell is on the pair's dataset."""
    p = T.p
    rows = []
    for label, r in T.grid.items():
        if r.spec["dataset"] != p.dataset:
            continue
        train, test, _, scored = T.data.get(r.spec["dataset"])
        c_idx = scored["S_C"][:p.grid_points]
        dv = cell_dejavu(r, train, test, c_idx, T.probe_idx(test), k=p.dejavu_k, crop_frac=p.dejavu_crop,
                         conf_frac=p.dejavu_conf, device=T.S.device, cache=T.S.cache, force=p.force)
        rows.append({"cell": label, "method": r.spec["method"], "arch": r.spec["arch"],
                     "mean SSLMem(S_C)": float(r.m["S_C"].mean()), **dv, "linear probe acc": r.probe_acc})
    t = pd.DataFrame(rows)
    if len(t):
        T.report.table(t, "table4_sslmem_vs_dejavu")
        fig = plots.scatter(t["mean SSLMem(S_C)"], t["deja vu rate"], "SSLMem and Déjà Vu memorisation per cell "
                            "(Table 4)", "mean SSLMem(S_C) (normalised)", "Déjà Vu rate (f right, g wrong)",
                            T.report.caption(f"{p.grid_points} candidates, corner crops of {p.dejavu_crop:.0%} a side, "
                                             f"{p.dejavu_k}-NN over {p.probe_test} test images"),
                            note=", ".join(t["cell"]))
        for _, r in t.iterrows():
            fig.axes[0].annotate(r["cell"], (r["mean SSLMem(S_C)"], r["deja vu rate"]), fontsize=7)
        T.report.figure(fig, "table4_sslmem_vs_dejavu")
    return t


def claim(report, t: pd.DataFrame) -> None:
    """The paper's observation (§4.5), when Table 4 has MAE cells and others: every MAE cell has a higher Déjà Vu
    rate and a lower mean SSLMem than every other cell (the paper compares MAE with DINO and VICReg; here every
    other cell of the table counts, which is stricter). The detail gives Kendall's tau between the two orders."""
    mae = t[t["method"] == "mae"]
    rest = t[t["method"] != "mae"]
    if mae.empty or rest.empty:
        print("Table 4: no MAE cell beside another method on the pair's dataset: the MAE claim is not tested")
        return
    tau = kendalltau(t["mean SSLMem(S_C)"], t["deja vu rate"]).statistic if len(t) > 2 else float("nan")
    report.claim("Table 4: Déjà Vu rates MAE above every other cell while SSLMem rates it below them",
                 bool(mae["deja vu rate"].min() > rest["deja vu rate"].max()
                      and mae["mean SSLMem(S_C)"].max() < rest["mean SSLMem(S_C)"].min()),
                 "; ".join(f"{c}: Déjà Vu {d:.3f}, SSLMem {m:.3f}" for c, d, m in
                           zip(t["cell"], t["deja vu rate"], t["mean SSLMem(S_C)"]))
                 + f"; Kendall tau between the two orders {tau:.2f}")
