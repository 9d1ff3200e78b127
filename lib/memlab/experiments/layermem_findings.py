"""Notebook 04's figures, its comparisons across encoders and its claims (Wang et al., NeurIPS 2024, §3-§5;
methods.md §3).

``vit_table``: a ViT's attention against MLP sub-layers; ``methods_by_arch`` and ``method_agreement``: whether
SSL methods trained on one architecture memorise in the same layers; ``claims``: the paper's findings, checked
on this run's tables and written to the report. The ``*_figure`` functions draw the notebook's figures (captions
from the run's report). The inputs are ``experiments.layermem``'s results.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from memlab.experiments.layermem_downstream import pick_layers, replaced
from memlab.io import plots
from memlab.metrics import layermem as LM
from memlab.metrics.rankings import square


def _layer_ticks(fig, xs, layers, fontsize: int):
    fig.axes[0].set_xticks(xs, layers, rotation=30, ha="right", fontsize=fontsize)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption


def per_layer_figure(R, main):
    """LayerMem per layer of the random, top and least candidates and of the S_S control (lines)."""
    P, pair, tab = R.P, R.P.pair, main.table
    xs = np.arange(1, len(main.layers) + 1)
    fig = plots.lines(xs, {f"{P.random_points} random candidates": tab["LayerMem random"],
                           f"top-{P.top_k}": tab["LayerMem top"], f"least-{P.top_k}": tab["LayerMem least"],
                           "S_S control": tab["LayerMem S_S control"]},
                      f"LayerMem per layer ({pair.method}, {pair.arch} x{pair.width})", "layer",
                      "LayerMem (in [-1, 1]; 0: none)",
                      R.S.report.caption(f"K={P.layer_view_pairs} view pairs, {len(R.f)} f/g seeds, "
                                         f"range: {P.layer_range}"))
    _layer_ticks(fig, xs, main.layers, 8)
    return fig


def delta_figure(R, main):
    """Delta-LayerMem per layer of the random, top and least candidates (grouped bars)."""
    pair = R.P.pair
    long = main.table.melt(id_vars=["layer"], value_vars=["Delta random", "Delta top", "Delta least"],
                           var_name="group", value_name="Delta-LayerMem")
    fig = plots.grouped_bars(long, "layer", "group", "Delta-LayerMem", "Delta-LayerMem per layer",
                             "Delta-LayerMem (in [-2, 2])",
                             R.S.report.caption(f"{pair.method}, {pair.arch} x{pair.width}"))
    fig.axes[0].set_ylim(min(0, long["Delta-LayerMem"].min() * 1.1), None)
    fig.axes[0].tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption
    return fig


def consistency_figures(R, main, cons: pd.DataFrame) -> dict:
    """{name: figure}: the top-k overlap and the Kendall tau between every two layers (heatmaps), and tau
    against the distance between the layers (scatter). ``cons``: ``metrics.layermem.consistency``."""
    k, n, cap = R.P.overlap_k, len(main.cand[main.layers[0]]), R.S.report.caption
    return {"layer_topk_overlap": plots.heatmap(
                square(cons, f"top{k}", main.layers),
                f"Top-{k} overlap of the most memorised candidates between layers",
                cap(f"{n} candidates, chance {k / n:.2f}"), cbar="overlap fraction"),
            "layer_kendall_tau": plots.heatmap(square(cons, "kendall_tau", main.layers),
                                               "Kendall tau between the layers' LayerMem rankings",
                                               cap(f"{n} candidates"), cbar="Kendall tau"),
            "tau_vs_distance": plots.scatter(cons.gap, cons.kendall_tau, "Agreement against distance between layers",
                                             "distance (layers apart)", "Kendall tau", cap(f"{len(cons)} layer pairs"))}


def architectures_figure(R, arch_res: dict):
    """LayerMem of the random candidates against relative depth, one line per architecture cell."""
    return plots.lines(None, {k: ((np.arange(len(r.layers)) + 1) / len(r.layers), r.table["LayerMem random"])
                              for k, r in arch_res.items()}, "LayerMem over depth, per architecture",
                       "relative depth (layer / number of layers)", "LayerMem (random candidates)",
                       R.S.report.caption(f"K={R.P.cell_view_pairs}, {R.P.cell_candidates} candidates"))


def cells_table(results: dict) -> pd.DataFrame:
    """The ``layer_table`` rows of several cells, one after the other (each table starts with its "cell")."""
    return pd.concat([r.table for r in results.values()])


def delta_profiles(same: dict) -> pd.DataFrame:
    """Delta-LayerMem of the random candidates per layer (rows), one column per method of ``same``."""
    return pd.DataFrame({k: r.table.set_index("layer")["Delta random"] for k, r in same.items()})


def vit_table(cell_res: dict) -> pd.DataFrame:
    """One row per (ViT cell, block): ``metrics.layermem.vit_sublayers`` of every cell whose layers are ViT
    sub-layers, with a "cell" column; an empty DataFrame when no cell is a ViT. ``cell_res``: {label:
    ``LayerResult``} (``experiments.layermem.cell_results``)."""
    rows = []
    for k, r in cell_res.items():
        if any(l.endswith(".mlp") for l in r.layers):
            sub = LM.vit_sublayers(r.table.drop(columns=["cell"]))
            sub.insert(0, "cell", k)
            rows.append(sub)
    return pd.concat(rows) if rows else pd.DataFrame()


def vit_figure(R, sub: pd.DataFrame, label: str):
    """Bars of Delta-LayerMem (random candidates) of the attention and MLP sub-layer of every block of one cell."""
    long = pd.concat([pd.DataFrame({"block": sub.block, "sub-layer": s, "Delta-LayerMem": sub[f"Delta random ({s})"]})
                      for s in ("attn", "mlp")])
    fig = plots.grouped_bars(long, "block", "sub-layer", "Delta-LayerMem", f"ViT sub-layers ({label})",
                             "Delta-LayerMem (random candidates)", R.S.report.caption(f"K={R.P.cell_view_pairs}"))
    fig.axes[0].set_ylim(min(0, long["Delta-LayerMem"].min() * 1.1), None)
    return fig


def methods_by_arch(R, cell_res: dict) -> dict:
    """{arch: {method cell label: LayerResult}} for every architecture that two or more of ``method_cells``
    share (in the order of ``method_cells``)."""
    by_arch = {}
    for c in R.P.method_specs:
        by_arch.setdefault(c["arch"], {})[c["label"]] = cell_res[c["label"]]
    return {a: same for a, same in by_arch.items() if len(same) >= 2}


def methods_figure(R, arch: str, same: dict):
    """LayerMem per layer of the random candidates, one line per SSL method trained on ``arch``."""
    layers = next(iter(same.values())).layers
    xs = np.arange(1, len(layers) + 1)
    fig = plots.lines(xs, {k: r.table["LayerMem random"] for k, r in same.items()},
                      f"LayerMem per layer across SSL methods ({arch})", "layer", "LayerMem (random candidates)",
                      R.S.report.caption(f"K={R.P.cell_view_pairs}, {R.P.cell_candidates} candidates, "
                                         f"seeds {list(R.P.grid_seeds)}"))
    _layer_ticks(fig, xs, layers, 7)
    return fig


def method_agreement(R, by_arch: dict) -> pd.DataFrame:
    """One row per pair of methods on one architecture: Kendall tau (and its p) between their per-layer LayerMem
    profiles (means over the random candidates), tau between their Delta-LayerMem profiles, and the fraction of
    their top-``k_layers`` Delta-LayerMem layers they share. Empty when no architecture has two methods."""
    k, rows = R.P.k_layers, []
    for arch, same in by_arch.items():
        names = list(same)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ta, tb = same[a].table, same[b].table
                tau = kendalltau(ta["LayerMem random"], tb["LayerMem random"])
                tau_d = kendalltau(ta["Delta random"], tb["Delta random"])
                ka, kb = set(pick_layers(ta, k, "Delta")), set(pick_layers(tb, k, "Delta"))
                rows.append({"arch": arch, "a": a, "b": b, "tau LayerMem profile": tau.statistic, "p": tau.pvalue,
                             "tau Delta profile": tau_d.statistic, f"shared top-{k} Delta layers": len(ka & kb) / k})
    return pd.DataFrame(rows)


def claims(R, main, tvl: pd.DataFrame, adj: pd.DataFrame, vit: pd.DataFrame, methods: pd.DataFrame,
           ft: pd.DataFrame, rep: pd.DataFrame, trends: dict | None = None, depth=None) -> None:
    """The paper's claims, checked on this run and written to ``R.S.report``: LayerMem grows with depth, but not
    monotonically; top points beat least points in most layers (Welch, ``alpha``); adjacent layers agree more
    than distant ones; a ViT's MLP sub-layers memorise more than its attention sub-layers; methods agree;
    fine-tuning the most memorising layers beats the last ones; replacing them costs the most accuracy.
    ``trends``: {ViT cell: Trend} (``layermem_trend.vit_trends``); a cell's ViT claim appends its verdict.
    ``depth``: the Trend of "last > first" (``layermem_trend.depth_trend``) or None; that claim appends its verdict."""
    P, pair, report = R.P, R.P.pair, R.S.report
    tab, layers, second = main.table, main.layers, R.second_train.name
    first, last = layers[0], layers[-1]
    r_first, r_last = tab.set_index("layer").loc[first], tab.set_index("layer").loc[last]
    grows = bool(r_last["LayerMem random"] > r_first["LayerMem random"])
    report.claim(f"LayerMem of the last layer exceeds that of the first ({P.random_points} random candidates)", grows,
                 f"{first}: {r_first['LayerMem random']:.4f}, {last}: {r_last['LayerMem random']:.4f}"
                 + (f"; {depth.verdict}: {depth.describe()}" if depth else ""))
    others = tvl[tvl.layer != main.final]
    n_sig = int((others["p (top > least)"] < P.alpha).sum())
    report.claim(f"the top-{P.top_k} points have higher LayerMem than the least-{P.top_k} in most layers (Welch p < "
                 f"{P.alpha}; the ranking layer {main.final} excluded)", n_sig > len(others) / 2,
                 f"{n_sig}/{len(others)} layers; per layer mean top vs least: " +
                 ", ".join(f"{r.layer} {r.top:.3f}/{r.least:.3f}" for r in others.itertuples()))
    neg = tab[tab["Delta random"] < 0].layer.tolist()
    report.claim("memorisation grows with depth, but not monotonically (some layer has Delta-LayerMem < 0)",
                 bool(grows and neg), f"layers with negative Delta: {neg or 'none'}; last layer above the first: "
                 + ("yes" if grows else "no (its curve: the line above)" if depth else "no"))
    a = adj.set_index("pairs")["mean kendall tau"]
    report.claim("adjacent layers agree more than distant layers (mean Kendall tau)", a.iloc[0] > a.iloc[1],
                 f"adjacent {a.iloc[0]:.3f} vs distant {a.iloc[1]:.3f}; top-{P.overlap_k} overlap "
                 f"{adj.iloc[0, 3]:.2f} vs {adj.iloc[1, 3]:.2f}")
    for k, g in (vit.groupby("cell") if len(vit) else []):
        da, dm = g["Delta random (attn)"].mean(), g["Delta random (mlp)"].mean()
        tr = (trends or {}).get(k)   # effect versus compute (issue 19): where does the trend over epochs point?
        report.claim(f"{k}: the MLP sub-layers memorise more than the attention sub-layers (mean Delta-LayerMem)",
                     dm > da, f"MLP {dm:.4f} vs attention {da:.4f} over {len(g)} blocks"
                     + (f"; {tr.verdict}: {tr.describe()}" if tr else ""))
    if len(methods):
        report.claim("SSL methods on one architecture memorise in similar layers (mean Kendall tau of the per-layer "
                     "LayerMem profiles > 0)", methods["tau LayerMem profile"].mean() > 0,
                     f"mean tau {methods['tau LayerMem profile'].mean():.3f} over {len(methods)} method pairs")
    fa = ft.groupby("group", sort=False).accuracy.mean()
    report.claim(f"fine-tuning the {P.k_layers} most memorising layers beats fine-tuning the last {P.k_layers} (probe "
                 f"accuracy on {second})", max(fa["LayerMem"], fa["Delta"]) > fa["last"],
                 f"LayerMem {fa['LayerMem']:.4f}, Delta {fa['Delta']:.4f}, last {fa['last']:.4f}, "
                 f"random {fa['random']:.4f}")
    ra, holds = replacement_costs(rep, P.k_layers, pair.dataset)
    others = [k for k in getattr(P, "replace_counts", [P.k_layers]) if k != P.k_layers]
    more = "; ".join(f"{k} layer{'s' if k > 1 else ''}: {'holds' if replacement_costs(rep, k, pair.dataset)[1] else 'not'}"
                     for k in others)
    report.claim(f"replacing the {P.k_layers} most memorising layers costs the most {pair.dataset} accuracy (vs least "
                 f"and random)", holds, ", ".join(f"{k} {v:.4f}" for k, v in ra.items())
                 + (f" (other counts, {more})" if more else ""))


def replacement_costs(rep: pd.DataFrame, k: int, dataset: str) -> tuple[pd.Series, bool]:
    """``(mean accuracy on dataset per group, holds)`` for k replaced layers (``layermem_downstream.replaced``):
    holds when replacing the most memorising layers (by LayerMem or Delta) costs more than the least and random."""
    part = replaced(rep, k) if "k layers" in rep else rep
    ra = part[part.dataset == dataset].groupby("group", sort=False).accuracy.mean()
    return ra, bool(min(ra["most (LayerMem)"], ra["most (Delta)"]) < min(ra["least (LayerMem)"], ra["least (Delta)"],
                                                                          ra["random"]))
