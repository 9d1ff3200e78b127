"""Notebook 03's effect-versus-compute curves (issue 19; ``metrics.trend``): the statistics of the claims that fail
at laptop scale, measured at the snapshots of the encoders that decide them, against training epochs.

- ``LAMBDA`` (Eq. 3, Fig. 4; SSLMem paper §4.5), per dataset of the sweep: ``SSLMem(lambda_min) -
  SSLMem(lambda_max)``, the mean normalised SSLMem over both halves of each pair (``removal_results.both_halves``).
  The claim "the larger lambda gives the lower SSLMem" needs it > 0.
- ``LAMBDA_ACCURACY``, per dataset of the sweep: f's probe accuracy at lambda_min minus at lambda_max on that
  dataset's task (mean over ``lambda_seeds``); "limiting alignment costs probe accuracy" needs it > 0.
- ``DP_SSLMEM`` (Table 5, §4.6): ``SSLMem(epsilon = inf) - SSLMem(smallest epsilon)``, the same measure on the DP
  pairs; the claim "DP-SGD lowers SSLMem as epsilon falls" needs it > 0 (the ends of its chain).
- ``DP_ACCURACY``: the probe accuracy of f at epsilon = inf minus at the smallest epsilon on the first downstream
  task; "DP-SGD lowers probe accuracy as epsilon falls" needs it > 0.

Each is measured at every snapshot epoch and at the last epoch (``compute_points``) on ``trend_points`` class-
balanced points of each half with ``trend_pairs`` view pairs (the same design at every epoch, so the points compare;
the claim itself keeps the full design), with its standard error from the per-point scores (``mean_difference``,
paired: both encoders score the same points with the same view pairs; over points for fixed encoders, so
seed-to-seed spread is not in it) or, for accuracy, from the binomial (``accuracy_difference``: the two probes
are tested on the same images, which it treats as independent samples, so for positively correlated errors that
se is conservative; with several lambda seeds, the accuracies are pooled over seeds' probes of the same images,
``n`` = test images x seeds). A DP snapshot has spent less privacy than its target epsilon (the table's ``epsilon
spent (f)``): the curve follows the DP run as it trains. The fit and the verdict are ``metrics.trend``'s, with the
claim's own test at the last epoch (``RemovalRun.passed``) as ``passed_at_max``.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import torch

from memlab.data.splits import balanced_subset
from memlab.io import plots
from memlab.metrics.stats import agresti_caffo_se
from memlab.metrics.trend import AGREES, FAILS, HOLDS, effect_trend
from memlab.streams import SplitSeed

LAMBDA, LAMBDA_ACCURACY = "lambda: SSLMem", "lambda: probe accuracy"
DP_SSLMEM, DP_ACCURACY = "DP: SSLMem", "DP: probe accuracy"
COLUMNS = ["claim", "dataset", "epoch", "statistic", "se", "reference", "compared", "n", "epsilon spent (f)"]


def mean_difference(a, b, paired: bool = False) -> tuple[float, float]:
    """``(mean(a) - mean(b), se)`` for two samples of per-point scores (1-D, any length >= 2 each), in the scores'
    units. Independent samples: ``se = sqrt(var(a) / n_a + var(b) / n_b)`` with unbiased variances (Welch's
    standard error). ``paired``: a[i] and b[i] score the same point (the curves' case: the same points and view
    pairs under two encoders), ``se = sd(a - b) / sqrt(n)``, which removes the points' shared part of the
    variance. Raises ValueError for a sample with fewer than 2 values or a non-finite value, and for paired samples
    of different lengths."""
    a, b = (np.asarray(torch.as_tensor(v, dtype=torch.float64).flatten()) for v in (a, b))
    if min(len(a), len(b)) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"need >= 2 finite scores in each sample, got {len(a)} and {len(b)}")
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired samples need one score of each point in both, got {len(a)} and {len(b)}")
        return float(a.mean() - b.mean()), float((a - b).std(ddof=1) / math.sqrt(len(a)))
    return float(a.mean() - b.mean()), float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def accuracy_difference(acc_a: float, acc_b: float, n: int) -> tuple[float, float]:
    """``(acc_a - acc_b, se)`` for two accuracies (fractions in [0, 1]), each measured on ``n`` test images. The
    standard error is Agresti and Caffo's (2000): one success and one failure added to each, ``p~ = (n acc + 1) /
    (n + 2)``, ``se = sqrt(sum p~ (1 - p~) / (n + 2))``, so it stays > 0 at 0% or 100%. Raises ValueError for n < 1
    or an accuracy outside [0, 1]."""
    if n < 1 or not (0 <= acc_a <= 1 and 0 <= acc_b <= 1):
        raise ValueError(f"need accuracies in [0, 1] on n >= 1 images, got {acc_a}, {acc_b} on {n}")
    return float(acc_a - acc_b), agresti_caffo_se(n * acc_a, n, n * acc_b, n)


def compute_points(snapshots, epochs: int) -> list[int]:
    """The epochs of a curve: the snapshot epochs, then the last epoch (``common.check_snapshots`` checked them)."""
    return sorted(set(snapshots)) + [epochs]


def overall_verdict(verdicts) -> str:
    """One verdict for a claim made on several curves (every dataset of the sweep): ``holds`` when every curve
    holds, ``fails`` when some curve fails, else ``trend agrees, not yet significant``."""
    verdicts = list(verdicts)
    return HOLDS if all(v == HOLDS for v in verdicts) else FAILS if FAILS in verdicts else AGREES


def trend_detail(trends: dict) -> str:
    """The text appended to a claim's detail for its curves ({name: ``Trend``}): "" without curves; the verdict
    and ``Trend.describe`` of one curve; the ``overall_verdict`` and each named curve's for several."""
    if not trends:
        return ""
    if len(trends) == 1:
        t = next(iter(trends.values()))
        return f"; effect vs compute: {t.verdict}: {t.describe()}"
    return (f"; effect vs compute: {overall_verdict(t.verdict for t in trends.values())} ("
            + "; ".join(f"{k}: {t.verdict}: {t.describe()}" for k, t in trends.items()) + ")")


def fit_trends(table: pd.DataFrame, passed: dict) -> dict:
    """{(claim, dataset): ``metrics.trend.Trend``} of every curve of ``table`` (``effect_vs_compute``), fitted
    against log2(epochs) with threshold 0 (each statistic must be > 0) and ``passed[(claim, dataset)]``, the
    claim's own test at the last epoch, as ``passed_at_max``."""
    return {(c, ds): effect_trend(t.epoch, t.statistic, t.se.clip(lower=1e-9), threshold=0.0,
                                  passed_at_max=bool(passed[c, ds]), unit="epochs")
            for (c, ds), t in table.groupby(["claim", "dataset"], sort=False)}


def _points(labels, half, n: int, seed: int) -> torch.Tensor:
    """``n`` class-balanced points of ``half`` (all of it when n >= its size), sorted."""
    return half[balanced_subset(labels[half].numpy(), min(n, len(half)), seed)]


def effect_vs_compute(run) -> pd.DataFrame:
    """The curves' statistics (module docstring) of a ``removal_results.RemovalRun`` whose lambda sweep and DP
    table ran: one row per curve and epoch with ``COLUMNS`` (``reference`` / ``compared``: the value at lambda_min
    / lambda_max, or epsilon inf / the smallest epsilon; ``n``: points per half, or probe test images (x seeds)). No rows
    for a curve without snapshots, a sweep of one lambda, or no DP section."""
    p, d, rows = run.p, run.d, []
    seed = p.split_seed + SplitSeed.DYNAMICS_POINTS

    def sslmem(pairs, data, f_idx, g_idx, epoch) -> torch.Tensor:
        return torch.cat([run.pair_sslmem(f.after(epoch), g.after(epoch), data, f_idx, g_idx,
                                          n_pairs=p.trend_pairs)["m"] for f, g in pairs])

    lo, hi = min(p.lambdas), max(p.lambdas)
    sweep = d.lam_data if p.lambda_snapshots and lo != hi else {}
    for name, (tr, fp, gp, task) in sweep.items():
        pairs = {lam: [[run.loaded(j) for j in run.jobs["lambda"][name, lam, s]] for s in p.lambda_seeds]
                 for lam in (lo, hi)}
        f_idx, g_idx = _points(tr.labels, fp, p.trend_points, seed), _points(tr.labels, gp, p.trend_points, seed)
        n_acc = len(task[3]) * len(p.lambda_seeds)
        for e in compute_points(p.lambda_snapshots, p.lambda_epochs):
            m = {lam: sslmem(pairs[lam], tr, f_idx, g_idx, e) for lam in (lo, hi)}
            rows.append([LAMBDA, name, e, *mean_difference(m[lo], m[hi], paired=True), float(m[lo].mean()), float(m[hi].mean()),
                         len(f_idx), math.nan])
            acc = {lam: float(np.mean([run.probe(f.after(e), {name: task})[name] for f, _ in pairs[lam]]))
                   for lam in (lo, hi)}
            rows.append([LAMBDA_ACCURACY, name, e, *accuracy_difference(acc[lo], acc[hi], n_acc), acc[lo], acc[hi],
                         n_acc, math.nan])
    if p.dp_snapshots and d.dp_epsilons:
        small, first = min(p.dp_epsilons), next(iter(d.tasks))
        pairs = {eps: (run.loaded(run.jobs["dp"][eps, "f"]), run.loaded(run.jobs["dp"][eps, "g"]))
                 for eps in (math.inf, small)}
        f_idx, g_idx = (_points(d.train.labels, h, p.trend_points, seed) for h in (d.dp_f, d.dp_g))
        n_test = len(d.tasks[first][3])
        for e in compute_points(p.dp_snapshots, p.dp_epochs):
            spent = pairs[small][0].history[e - 1].get("epsilon", math.nan)
            m = {eps: sslmem([pairs[eps]], d.train, f_idx, g_idx, e) for eps in (math.inf, small)}
            rows.append([DP_SSLMEM, p.dataset, e, *mean_difference(m[math.inf], m[small], paired=True),
                         float(m[math.inf].mean()), float(m[small].mean()), len(f_idx), spent])
            acc = {eps: run.probe(pairs[eps][0].after(e), {first: d.tasks[first]})[first]
                   for eps in (math.inf, small)}
            rows.append([DP_ACCURACY, first, e, *accuracy_difference(acc[math.inf], acc[small], n_test),
                         acc[math.inf], acc[small], n_test, spent])
    return pd.DataFrame(rows, columns=COLUMNS)


def figures(run, trends: dict) -> None:
    """One figure per claim (``plots.trend``; the lambda sweep's datasets as panels, ``plots.trend_panels``),
    written to ``run.report``."""
    p, report = run.p, run.report
    lo, hi, small = min(p.lambdas), max(p.lambdas), min(p.dp_epsilons, default=math.nan)
    sweep = f"{p.method}/{p.arch}, halves of {p.lambda_n_half}"
    for claim, name, question, axis, cap in [
            (LAMBDA, "trend_lambda_sslmem", "Does the larger lambda lower SSLMem", "SSLMem",
             f"{sweep}, {min(p.trend_points, p.lambda_n_half)} points per half, K={p.trend_pairs}, snapshots of each pair"),
            (LAMBDA_ACCURACY, "trend_lambda_accuracy", "Does limiting alignment cost accuracy", "accuracy",
             f"{sweep}, f's linear probe on each dataset, snapshots, mean over {len(p.lambda_seeds)} seed(s)")]:
        panels = {ds: t for (c, ds), t in trends.items() if c == claim}   # one panel per dataset of the sweep
        if panels:
            report.figure(plots.trend_panels(panels, f"{question}, with training? (Eq. 3)",
                                             f"{axis}: lambda={lo:g} - lambda={hi:g}", report.caption(cap)), name)
    for (c, ds), t in trends.items():
        if c in (LAMBDA, LAMBDA_ACCURACY):
            continue
        what, on = ("SSLMem", "") if c == DP_SSLMEM else ("accuracy", f" on {ds}")
        scored = "" if c == DP_ACCURACY else f", {min(p.trend_points, p.dp_points)} scored, K={p.trend_pairs}"
        cap = f"SimSiam, GroupNorm {p.dp_arch} x{p.dp_width}, {p.dp_points} points per half{scored}, snapshots"
        report.figure(plots.trend(t, f"Does DP-SGD lower {what}{on}, with training? (Table 5)",
                                  f"{what}: eps=inf - eps={small:g}", report.caption(cap + " of each DP run")),
                      "trend_" + re.sub(r"\W+", "_", c.lower()).strip("_"))
