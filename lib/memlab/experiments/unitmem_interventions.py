"""Notebook 05's interventions (Wang et al., NeurIPS 2024, §4; methods.md §4): pruning units chosen by UnitMem,
and training with DP-SGD, each read out as UnitMem and linear-probe accuracy.

Pruning zeroes a unit's output for every later layer (``pruned``: a mask on the encoder, no weight is edited, so
no BatchNorm row is touched; the public code zeroed rows of every parameter, BatchNorm included). The DP
encoders are SimSiam with GroupNorm: contrastive losses couple the images of a batch and admit no per-example
clipping.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from memlab.augmentation.augment import Augmentation
from memlab.data.splits import balanced_subset
from memlab.experiments.unitmem_classmem import unit_stats_of
from memlab.io import plots
from memlab.metrics.probes import extract, linear_probe
from memlab.metrics.unitmem import layer_table, live_units
from memlab.streams import SplitSeed

STRATEGIES = ("highest", "lowest", "random")


def prune_masks(table, frac: float, strategy: str, seed: int = 0, layers=None) -> dict:
    """Keep-masks that remove ``frac`` of the live units of each layer, chosen by "highest" or "lowest"
    UnitMem, or at "random". ``table`` is ``layer_table``'s output."""
    if strategy not in ("highest", "lowest", "random"):
        raise ValueError(f"strategy must be highest, lowest or random, got {strategy!r}")
    if not 0 <= frac < 1:
        raise ValueError(f"frac must be in [0, 1), got {frac}")
    rng = np.random.default_rng(seed)
    masks = {}
    for layer, t in table.groupby("layer", sort=False):
        if layers is not None and layer not in layers:
            continue
        live = t[~t["dead"]]
        k = int(round(frac * len(live)))
        if strategy == "random":
            chosen = rng.choice(live["unit"].to_numpy(), size=k, replace=False)
        else:
            chosen = live.sort_values("unitmem", ascending=strategy == "lowest")["unit"].to_numpy()[:k]
        keep = torch.ones(len(t))
        keep[torch.tensor(np.asarray(chosen), dtype=torch.long)] = 0
        masks[layer] = keep
    return masks


class pruned:
    """Context manager: ``with pruned(encoder, masks): ...`` zeroes the masked units' outputs (the unit
    is removed for every later layer; no weights, BatchNorm rows included, are modified)."""

    def __init__(self, encoder, masks: dict):
        self.encoder, self.masks = encoder, masks

    def __enter__(self):
        for layer, keep in self.masks.items():
            self.encoder.set_unit_mask(layer, keep)
        return self.encoder

    def __exit__(self, *exc):
        for layer in self.masks:
            self.encoder.set_unit_mask(layer, None)



def probe_tasks(R) -> dict:
    """{dataset: (train images, train labels, test images, test labels, normalise)} of notebook 05's probes:
    the pair's dataset (f's training points; ``probe_test`` balanced test images; f's normalisation) and each
    other dataset (``R.others``: its subset, its own normalisation). An other dataset of the pair's name replaces
    the pair's task (the smoke profile's synthetic data)."""
    P, pair, test = R.P, R.P.pair, R.test_data
    probe_idx = balanced_subset(test.labels.numpy(), min(P.probe_test, len(test)),
                                pair.split_seed + SplitSeed.PROBE_TEST)
    F = R.splits.f_train
    tasks = {pair.dataset: (R.train_data.images[F], R.train_data.labels[F], test.images[probe_idx],
                            test.labels[probe_idx], Augmentation("none", mean=R.cfg.mean, std=R.cfg.std).normalize)}
    for shown, (tr, te) in R.others.items():
        tasks[shown] = data_task(tr, te)
    return tasks


def data_task(train, test) -> tuple:
    """A probe task of all of ``train`` and ``test`` (``ImageData``), normalised with ``train``'s statistics."""
    m, s = train.stats()
    return train.images, train.labels, test.images, test.labels, Augmentation("none", mean=m, std=s).normalize


def probe_all(R, tasks: dict, encoder) -> dict:
    """{dataset: linear-probe test accuracy in [0, 1]} of ``encoder``'s pooled features on every task."""
    out = {}
    for name, (xtr, ytr, xte, yte, norm) in tasks.items():
        a = extract(encoder, xtr, norm, device=R.S.device)
        out[name] = linear_probe(a, ytr, extract(encoder, xte, norm, device=R.S.device), yte, device=R.S.device)
    return out


def pruning_table(R, ssl_table: pd.DataFrame) -> pd.DataFrame:
    """Probe accuracy of f with ``prune_fracs`` of every layer's live units pruned -- the highest-UnitMem
    units, the lowest, or random ones (``prune_draws`` draws, seeds ``prune_seed`` + d: one random pruning is a
    noisy baseline) -- on every probe task (``probe_tasks``); fraction 0 ("none") is f itself.
    Columns: fraction, strategy, draw (0 but for random), dataset, accuracy in [0, 1]."""
    enc, tasks, P = R.ssl.encoder, probe_tasks(R), R.P
    rows = [{"fraction": 0.0, "strategy": "none", "draw": 0, "dataset": k, "accuracy": v}
            for k, v in probe_all(R, tasks, enc).items()]
    for frac in P.prune_fracs:
        for strategy in STRATEGIES:
            for d in range(P.prune_draws if strategy == "random" else 1):
                with pruned(enc, prune_masks(ssl_table, frac, strategy, seed=P.prune_seed + d)):
                    rows += [{"fraction": frac, "strategy": strategy, "draw": d, "dataset": k, "accuracy": v}
                             for k, v in probe_all(R, tasks, enc).items()]
    return pd.DataFrame(rows)


def pruning_figure(R, prune: pd.DataFrame):
    """Probe accuracy per pruned fraction and strategy (random: the mean of its draws), one panel per dataset, the
    unpruned accuracy dashed."""
    fig = plots.grouped_bars(prune[prune.fraction > 0], "fraction", "strategy", "accuracy",
                             "Probe accuracy after pruning", "linear probe accuracy",
                             R.S.report.caption(f"units chosen by UnitMem, per layer; random: mean of "
                                                f"{R.P.prune_draws} draws"), panels="dataset")
    for ax, k in zip(fig.axes, prune.dataset.unique()):
        ax.axhline(prune[(prune.strategy == "none") & (prune.dataset == k)].accuracy.iloc[0], color="k", ls="--", lw=1,
                   label="unpruned")
    return fig


def dp_table(R) -> pd.DataFrame | None:
    """Per DP encoder (epsilon; "inf": the non-private reference) and layer: mean UnitMem of the live units on the
    DP encoders' training points, and the encoder's probe accuracy on the pair's dataset. None when the DP
    section does not run (``dp_epochs`` = 0 or no opacus)."""
    if not R.dp:
        return None
    from memlab.engine.dp import load_dp
    S = R.S
    runs = {k: R.load(j) if k == "inf" else load_dp(j, S.cache, S.device, from_cache=R.status[j.name] == "cached")
            for k, j in R.jobs["dp"].items()}
    print("DP encoders:", ", ".join(f"eps={k} {'cache' if t.from_cache else 'trained'}" for k, t in runs.items()))
    tasks, rows = probe_tasks(R), []
    for name, tr in runs.items():
        t = layer_table(unit_stats_of(R, tr, R.train_data, R.dp_points), R.P.unit_rest)
        acc = probe_all(R, tasks, tr.encoder)[R.P.pair.dataset]
        rows += [{"epsilon": name, "layer": l, "mean UnitMem": live_units(t[t.layer == l]).unitmem.mean(),
                  "probe acc": acc} for l in R.layers]
    return pd.DataFrame(rows)


def dp_figure(R, dp: pd.DataFrame):
    """Mean UnitMem per layer, one line per epsilon."""
    pair = R.P.pair
    return plots.lines(range(len(R.layers)), {f"epsilon={k}": dp[dp.epsilon == k]["mean UnitMem"].to_numpy()
                                              for k in dp.epsilon.unique()}, "Mean UnitMem per layer under DP-SGD",
                       "layer index", "mean UnitMem",
                       R.S.report.caption(f"SimSiam, GroupNorm {pair.arch} x{pair.width}, {R.P.dp_epochs} epochs"))
