"""Notebook 04's sample-size ablation of LayerMem (Wang et al., NeurIPS 2024, "Localizing Memorization in SSL
Vision Encoders", appendix table "sensitivity of LayerMem to the number of samples"; methods.md §3).

The paper computes LayerMem on batches of 100, 500, 1,000 and 5,000 candidates, three random batches each, and
reports that LayerMem "is not significantly affected by the size or composition of the batch". Here a batch of n
is n of the candidates the main table scored (no new forward pass: their raw per-layer SSLMem is cached), the
batches of one size disjoint (independent compositions; so draws x n <= the candidates), and its LayerMem is
normalised by that batch's own range, as a run that scored only those n points would be
(``metrics.layermem.layermem``). Per size and layer: the mean LayerMem of each draw, and over the draws their mean
with a 95% t-interval. The claim is tested per layer with a one-way ANOVA of the draws' means across sizes
(``scipy.stats.f_oneway``): "not significantly affected" reads as p > alpha in every layer. The detail also gives,
per size, the mean Kendall tau between each draw's layer ordering (by mean LayerMem) and the ordering of all
candidates: whether the layers keep their ranks.

One caveat the paper does not discuss: the range of a batch (max - min) widens as the batch grows, so LayerMem's
scale can shrink with n for a reason that has nothing to do with memorisation. The ANOVA sees exactly that.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import stats

from memlab.io import plots
from memlab.metrics import layermem as LM


def check_sizes(sizes, draws: int, n_candidates: int) -> None:
    """Raise ValueError unless ``draws`` >= 2 (a band and an ANOVA need spread within a size) and ``sizes`` are at
    least 2 distinct batch sizes n >= 2 whose ``draws`` disjoint batches fit in the candidates (draws x n <=
    n_candidates)."""
    if draws < 2:
        raise ValueError(f"sample_draws must be >= 2 random batches per size (the band and the ANOVA need them), "
                         f"got {draws}")
    sizes = list(sizes)
    if len(sizes) < 2 or len(set(sizes)) != len(sizes) or not all(
            isinstance(n, int) and 2 <= n and draws * n <= n_candidates for n in sizes):
        raise ValueError(f"sample_sizes must be at least 2 distinct whole batch sizes n >= 2 with sample_draws x n <= "
                         f"layer_candidates = {n_candidates} (disjoint batches), got {sizes} with {draws} draws: "
                         f"lower them or raise layer_candidates")


def draws_table(raw: dict, layers, sizes, draws: int, seed: int, mode: str = "layer") -> pd.DataFrame:
    """LayerMem of random batches: one row per (size, draw, layer) with "points", "draw", "layer", "layer index"
    (from 1) and "LayerMem" (the batch's mean, dimensionless).

    ``raw``: {layer: (N,) float tensor of raw per-point SSLMem at that layer} for the N scored candidates (the
    main result's ``raw[layer]["raw"]``, candidates first). The batches of size n are consecutive blocks of one
    permutation of the N (seeded ``(seed, n)``), so they are disjoint, each normalised over itself
    (``metrics.layermem.layermem``, ``mode``). Raises ValueError from ``check_sizes``."""
    n_all = len(next(iter(raw.values())))
    check_sizes(sizes, draws, n_all)
    rows = []
    for n in sizes:
        perm = np.random.default_rng([seed, n]).permutation(n_all)   # the draws of one size are disjoint blocks
        for d in range(draws):
            pos = torch.from_numpy(np.sort(perm[d * n:(d + 1) * n]))
            lm = LM.layermem({l: raw[l][pos] for l in layers}, mode=mode)
            rows += [{"points": n, "draw": d, "layer index": i + 1, "layer": l, "LayerMem": float(lm[l].mean())}
                     for i, l in enumerate(layers)]
    return pd.DataFrame(rows)


def all_means(raw: dict, layers, mode: str = "layer") -> dict:
    """{layer: mean LayerMem of all N candidates, normalised over them alone}: the reference order of ``summary``
    (the main table normalises over the candidates and the S_S controls)."""
    lm = LM.layermem({l: raw[l] for l in layers}, mode=mode)
    return {l: float(lm[l].mean()) for l in layers}


def summary(draws: pd.DataFrame, full_means: dict) -> pd.DataFrame:
    """Per size and layer: "mean" and "sd" of the draws' LayerMem, "ci95" (the half-width of the 95% t-interval
    of the mean over draws), and "kendall tau vs all" (per size: the mean over draws of Kendall's tau between the
    draw's layer ordering and ``full_means``, {layer: mean LayerMem of all candidates})."""
    g = draws.groupby(["points", "layer index", "layer"], sort=True)["LayerMem"]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    out["ci95"] = stats.t.ppf(0.975, out["n"] - 1) * out["sd"] / np.sqrt(out["n"])
    taus = {}
    for (n, d), b in draws.groupby(["points", "draw"]):
        taus.setdefault(n, []).append(stats.kendalltau(b["LayerMem"], [full_means[l] for l in b["layer"]]).statistic
                                      if len(b) >= 2 else np.nan)   # one layer has no order
    out["kendall tau vs all"] = out["points"].map(
        {n: float(np.nanmean(t)) if np.isfinite(t).any() else np.nan for n, t in taus.items()})
    return out.drop(columns="n")


def anova(draws: pd.DataFrame) -> pd.DataFrame:
    """Per layer, one-way ANOVA of the draws' mean LayerMem across sizes: "layer", "F", "p". A layer whose draws
    are all equal has no spread to test (F and p NaN)."""
    rows = []
    for l, b in draws.groupby("layer", sort=False):
        groups = [v["LayerMem"].to_numpy() for _, v in b.groupby("points")]
        if all(np.ptp(v) == 0 for v in groups):
            rows.append({"layer": l, "F": np.nan, "p": np.nan})
            continue
        r = stats.f_oneway(*groups)
        rows.append({"layer": l, "F": float(r.statistic), "p": float(r.pvalue)})
    return pd.DataFrame(rows)


def claim(report, summ: pd.DataFrame, tests: pd.DataFrame, alpha: float) -> None:
    """The paper's claim, from the run: no layer's LayerMem differs significantly across the sample sizes
    (one-way ANOVA p > ``alpha`` in every testable layer)."""
    testable = tests.dropna(subset=["p"])
    sig = testable[testable["p"] <= alpha]
    sizes = sorted(summ["points"].unique())
    tau = summ.groupby("points")["kendall tau vs all"].first()
    report.claim(f"LayerMem is not significantly affected by the number of scored points ({', '.join(map(str, sizes))};"
                 f" one-way ANOVA per layer, p > {alpha})", bool(len(testable)) and sig.empty,
                 f"{len(sig)}/{len(testable)} layers differ (smallest p {testable['p'].min():.2g}"
                 + (f", at {sig.sort_values('p').layer.iloc[0]}" if len(sig) else "") + "); layer order vs all "
                 "candidates, mean Kendall tau: " + ", ".join(f"{n} points {tau[n]:.2f}" for n in sizes))


def figure(R, summ: pd.DataFrame, draws: int):
    """Mean LayerMem per layer with its 95% band over random batches, one line per sample size."""
    P, pair = R.P, R.P.pair
    df = summ.assign(encoder=f"{pair.method}, {pair.arch} x{pair.width}", points=summ["points"].astype(str))
    fig = plots.errorbar_panels(df, "layer index", "mean", "ci95", "points", "encoder",
                                "LayerMem against the number of scored points", "layer", "mean LayerMem (batch range)",
                                R.S.report.caption(f"{draws} random batches per size, 95% t-interval; "
                                                   f"K={P.layer_view_pairs}, range: {P.layer_range}"))
    layers = list(dict.fromkeys(summ.sort_values("layer index")["layer"]))
    fig.axes[0].set_xticks(np.arange(1, len(layers) + 1), layers, rotation=30, ha="right", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))   # room for the rotated labels and the caption
    return fig
