"""Notebook 04's effect-versus-compute curves (issue 19) for two claims of Wang et al., NeurIPS 2024, "Localizing
Memorization in SSL Vision Encoders", §3 (methods.md §3): "in a ViT the MLP sub-layers memorise more than the
attention sub-layers" (``vit_over_training``) and "LayerMem of the last layer exceeds that of the first"
(``depth_over_training``, below).

The claim's statistic is D = mean over blocks of Delta-LayerMem(MLP) minus mean over blocks of
Delta-LayerMem(attention), both over the ``random_points`` random candidates (``layermem_findings.claims``); the
claim needs D > 0. A ViT cell of notebook 02's grid that has "snapshot_epochs" (two or more; 02's cells share
their snapshots with this notebook through the cache) is scored again at each snapshot of its f and g and at the
trained cell, with ``trend_candidates`` candidates and ``trend_view_pairs`` view pairs of the cell's view bank and
measuring augmentation (``layermem.layer_result``), and D is fitted against log2(epochs) with threshold 0
(``metrics.trend``). Every point is measured alike: LayerMem divides by the range over the scored points, so a
point scored on other points or views would sit on another scale. When ``trend_candidates`` and
``trend_view_pairs`` equal ``cell_candidates`` and ``cell_view_pairs`` (the laptop profile), the last point is the
claim's own measurement, served from the cache, and only the snapshots cost forward passes.

Standard error: over points, not over blocks. D is the mean over the random candidates x of
d(x) = mean_b Delta_mlp,b(x) - mean_b Delta_attn,b(x), so se(D) = sd(d) / sqrt(n) (n = ``random_points``, 100 on
the laptop). Over blocks there would be only as many values as blocks (4 on the laptop, 2 in smoke), and the
blocks differ systematically with depth, so their spread is not a sampling error. The per-point error leaves out
the randomness of training (one f/g seed, snapshots of one run), so the band is optimistic (``metrics.trend``).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from memlab.experiments.layermem import layer_result
from memlab.io import plots
from memlab.metrics import layermem as LM
from memlab.metrics.trend import effect_trend

STAT = "MLP - attention"   # the statistic's column in ``vit_over_training``'s table
DEPTH = "last - first"     # the statistic's column in ``depth_over_training``'s table


def mlp_minus_attention(r) -> dict:
    """D and its standard error for one ``layermem.LayerResult`` of a ViT (layers blockN.attn, blockN.mlp), over
    its random group ``r.grp["random"]``: {"MLP - attention": D, "se": sd(d) / sqrt(n), "MLP" and "attention": the
    two means of Delta-LayerMem (the claim's numbers), "n": points, "blocks"}. Dimensionless (LayerMem units).
    Raises ValueError when the result has no matching attention and MLP sub-layers or fewer than 2 random points."""
    attn = [l for l in r.layers if re.fullmatch(r"block\d+\.attn", l)]
    mlp = [l for l in r.layers if re.fullmatch(r"block\d+\.mlp", l)]
    if not attn or len(attn) != len(mlp):
        raise ValueError(f"not a ViT's sub-layers (blockN.attn and blockN.mlp, one of each per block): {r.layers}")
    pos = torch.as_tensor(r.grp["random"])
    if len(pos) < 2:
        raise ValueError(f"a standard error over points needs at least 2 random candidates, got {len(pos)}")
    d = LM.delta(r.cand, r.layers)
    a = torch.stack([d[l][pos].double() for l in attn]).mean(0).numpy()
    m = torch.stack([d[l][pos].double() for l in mlp]).mean(0).numpy()
    diff = m - a
    return {STAT: float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff))), "MLP": float(m.mean()),
            "attention": float(a.mean()), "n": len(diff), "blocks": len(attn)}


def vit_over_training(R, cell_res: dict) -> pd.DataFrame:
    """One row per (ViT cell, epoch) for every ViT cell with two or more "snapshot_epochs": at each snapshot and at
    the trained cell (its "epochs"), the columns of ``mlp_minus_attention``, measured as the module docstring says.
    ``cell_res``: {label: LayerResult} (``layermem.cell_results``). An empty DataFrame when no ViT cell has
    snapshots (the notebook then draws no curve). Raises KeyError when an encoder lacks a listed snapshot."""
    P, rows = R.P, []
    for c in P.cells:
        label, epochs = c["label"], sorted(c.get("snapshot_epochs") or ())
        if label not in cell_res or len(epochs) < 2 or not any(l.endswith(".mlp") for l in cell_res[label].layers):
            continue
        f_c, g_c = ([R.load(j) for j in js] for js in R.jobs["cells"][label])
        for e in epochs + [c["epochs"]]:
            at = (lambda ts: ts) if e == c["epochs"] else (lambda ts, e=e: [t.at_epoch(e) for t in ts])
            r = layer_result(R, at(f_c), at(g_c), P.trend_candidates, P.trend_view_pairs, c["measure_aug"])
            rows.append({"cell": label, "epoch": e, **mlp_minus_attention(r)})
    return pd.DataFrame(rows)


def vit_trends(vit: pd.DataFrame, dyn: pd.DataFrame) -> dict:
    """{cell: ``metrics.trend.Trend``} of D against epochs for every cell of ``dyn`` (``vit_over_training``) with 3
    or more points; threshold 0 (the claim needs D > 0). Whether the claim holds at the largest point is the
    claim's own outcome, read from ``vit`` (``layermem_findings.vit_table``: mean Delta random (mlp) > (attn))."""
    out = {}
    for k, pts in (dyn.groupby("cell", sort=False) if len(dyn) else []):
        if len(pts) < 3:
            continue
        g = vit[vit.cell == k]
        passed = bool(g["Delta random (mlp)"].mean() > g["Delta random (attn)"].mean())
        out[k] = effect_trend(pts["epoch"], pts[STAT], pts["se"].clip(lower=1e-9), threshold=0.0,
                              passed_at_max=passed, unit="epochs")
    return out


def vit_trend_figure(R, t, label: str):
    """Effect versus compute for one ViT cell's claim (``plots.trend`` of a ``vit_trends`` entry)."""
    P = R.P
    return plots.trend(t, f"{label}: do the MLP sub-layers overtake attention with training?",
                       "mean Delta-LayerMem, MLP - attention",
                       R.S.report.caption(f"{P.random_points} random candidates of {P.trend_candidates}, "
                                          f"K={P.trend_view_pairs}; snapshots of f and g, seeds {list(P.grid_seeds)}"))


# -- "LayerMem of the last layer exceeds that of the first" on the pair f/g (notebook 02's SimCLR ResNet)
#
# The statistic is L = mean LayerMem(last layer) - mean LayerMem(first layer) over the ``random_points`` random
# candidates (their positions are fixed by the seed, so the same points at every epoch); the claim needs L > 0.
# The pair's f and g are scored again at each of ``depth_trend_epochs`` (snapshots of notebook 02's pair) with the
# main result's design (``layer_candidates``, ``layer_view_pairs``, the pair's measuring augmentation), so the
# last point is the claim's own measurement. se(L) = sd(l) / sqrt(n) over the per-point differences l(x) (paired:
# both layers score the same points); it leaves out the randomness of training, so the band is optimistic.


def last_minus_first(r) -> dict:
    """L and its standard error for one ``layermem.LayerResult``, over its random group ``r.grp["random"]``:
    {"last - first": L, "se": sd(l) / sqrt(n), "first" and "last": the two mean LayerMem (the claim's numbers, as
    ``layer_table``'s "LayerMem random"), "n": points}. Dimensionless (LayerMem units). Raises ValueError with
    fewer than 2 random points or fewer than 2 layers."""
    if len(r.layers) < 2:
        raise ValueError(f"need a first and a last layer, got {r.layers}")
    pos = torch.as_tensor(r.grp["random"])
    if len(pos) < 2:
        raise ValueError(f"a standard error over points needs at least 2 random candidates, got {len(pos)}")
    first, last = (r.cand[l][pos].double().numpy() for l in (r.layers[0], r.layers[-1]))
    diff = last - first
    return {DEPTH: float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff))), "first": float(first.mean()),
            "last": float(last.mean()), "n": len(diff)}


def depth_over_training(R, main) -> pd.DataFrame:
    """One row per epoch of ``depth_trend_epochs`` and the pair's last epoch (``main``, the claim's own result,
    ``layermem.main_result``): the columns of ``last_minus_first``, measured as the section comment above says.
    Empty when ``depth_trend_epochs`` is empty. Scores are cached (per snapshot key)."""
    P = R.P
    rows = []
    for e in sorted(P.depth_trend_epochs):
        r = layer_result(R, [t.at_epoch(e) for t in R.f], [t.at_epoch(e) for t in R.g], P.layer_candidates,
                         P.layer_view_pairs, P.pair.measure_aug)
        rows.append({"epoch": e, **last_minus_first(r)})
    if rows:
        rows.append({"epoch": P.pair.epochs, **last_minus_first(main)})
    return pd.DataFrame(rows)


def depth_trend(main, dyn: pd.DataFrame):
    """The ``metrics.trend.Trend`` of L against epochs (threshold 0) for a ``depth_over_training`` table of 3 or
    more points, else None; ``passed_at_max`` is the claim's own outcome on ``main`` (last > first)."""
    if len(dyn) < 3:
        return None
    return effect_trend(dyn["epoch"], dyn[DEPTH], dyn["se"].clip(lower=1e-9), threshold=0.0,
                        passed_at_max=bool(last_minus_first(main)[DEPTH] > 0), unit="epochs")


def depth_trend_figure(R, t):
    """Effect versus compute for the depth claim (``plots.trend`` of ``depth_trend``)."""
    P = R.P
    return plots.trend(t, "Does the last layer overtake the first with training? (LayerMem, f/g pair)",
                       "mean LayerMem, last layer - first layer",
                       R.S.report.caption(f"{P.pair.method}/{P.pair.arch}, {P.random_points} random candidates of "
                                          f"{P.layer_candidates}, K={P.layer_view_pairs}; snapshots of f and g, "
                                          f"seeds {list(P.pair.seeds)}"))
