"""Notebook 05's effect-versus-compute curves (issue 19) for two claims of Wang et al., NeurIPS 2024, "Localizing
Memorization in SSL Vision Encoders", §4 (methods.md §4) that fail at laptop scale:

- "the supervised encoder has a larger fraction of units with ClassMem > UnitMem than the SSL encoder": the
  statistic is fraction(supervised) - fraction(SSL), each over the live units of all layers; threshold 0;
- "the units the top-k SSLMem points activate maximally have higher UnitMem than those of the least-k, in most
  layers (Welch p < alpha)": the statistic is the deciding layer's z (``deciding_z``); threshold z_(1 - alpha).

Compute points: f's snapshots at ``trend_epochs`` (no new training: notebook 02 snapshotted f), the supervised
encoder's snapshots at the same fractions of its training (its job keeps them), and last the trained encoders,
all measured in one design (below), so the slope compares like with like. The claims' own measurements (all
points, the claims' tables; ``claims`` tests those) are listed as a last row with design "claim" and not fitted.
At a compute point the
units are measured on the dynamics points (``UnitMemRun.snapshot_points``: the UnitMem-over-training curve
measures f there, and its cached unit statistics serve) with the claims' ``unit_rest``, and a point's
memorisation is SSLMem under the snapshots of f and g (every seed) on the first ``trend_points`` S_C and S_S
points among them, with ``trend_pairs`` view pairs of the pair's view bank (on the laptop: notebook 02's Fig. 2b
scores, served from its cache).

Standard errors:

- fraction difference: Agresti-Caffo: each fraction smoothed to (x + 1) / (n + 2), se = sqrt(sum p(1 - p) /
  (n + 2)). It stays positive where a fraction is 0 (the laptop's 0% against 0%); units count as independent trials.
- deciding z: "most layers" holds iff at least k = floor(L/2) + 1 of the L layers have p < alpha, i.e. iff the k-th
  largest of the layers' z = Phi^-1(1 - p) exceeds z_(1 - alpha) (2.326 at alpha 0.01): that z is the claim's
  statistic exactly. Each layer's z has standard error 1 under the normal approximation of its test, and the k-th
  largest is given se 1 as well (an approximation). A layer without a test (a group tops fewer than 2 units: NaN p)
  counts as z = 0, no evidence either way, as the claim counts it not significant.

The points of one curve come from one training run per encoder, so they are not independent and the band is
optimistic (``metrics.trend``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import stats as sst

from memlab.augmentation.augment import ViewBank
from memlab.experiments.scoring import cached_sslmem
from memlab.experiments.unitmem_classmem import unit_stats_of
from memlab.io import plots
from memlab.metrics.sslmem import normalised_sslmem
from memlab.metrics.stats import agresti_caffo_se
from memlab.metrics.trend import effect_trend
from memlab.metrics.unitmem import layer_table, link_test, live_units

Z_CAP = 8.0   # |z| of p-values that underflow (p = 0 or 1) is capped here, so the fit stays finite


def fraction_difference(sup_table: pd.DataFrame, ssl_table: pd.DataFrame) -> dict:
    """The first claim's statistic from two ``metrics.unitmem.layer_table``s: {"supervised", "SSL": the fractions
    of live units with ClassMem > UnitMem over all layers, "units supervised", "units SSL": live units,
    "difference": supervised - SSL, "se": ``agresti_caffo_se``}."""
    (x1, n1), (x2, n2) = ((int((t.classmem > t.unitmem).sum()), len(t))
                          for t in map(live_units, (sup_table, ssl_table)))
    f1, f2 = x1 / max(n1, 1), x2 / max(n2, 1)
    return {"supervised": f1, "SSL": f2, "units supervised": n1, "units SSL": n2, "difference": f1 - f2,
            "se": agresti_caffo_se(x1, n1, x2, n2)}


def deciding_z(p_values, alpha: float) -> tuple[float, int]:
    """``(z, n_significant)`` of the claim "p < alpha in most layers" (module docstring): z of the layer ranked
    floor(L/2) + 1 from the top by z = Phi^-1(1 - p) (NaN p: z = 0; |z| capped at ``Z_CAP``), and how many layers
    have p < alpha. The claim holds iff z > Phi^-1(1 - alpha). ``p_values``: one one-sided p per layer (L >= 1)."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"need one p-value per layer, got {p_values!r}")
    z = np.where(np.isnan(p), 0.0, np.clip(sst.norm.isf(np.nan_to_num(p, nan=0.5)), -Z_CAP, Z_CAP))
    k = len(p) // 2 + 1
    return float(np.sort(z)[::-1][k - 1]), int((p < alpha).sum())


def _keep(R) -> list:
    """The layers whose per-point means the unit statistics keep: all for the median (``unit_rest``), else none."""
    return R.layers if R.P.unit_rest == "median" else []


def _snapshot_table(R, trained) -> pd.DataFrame:
    """``layer_table`` of ``trained`` on the dynamics points (cached unit statistics)."""
    return layer_table(unit_stats_of(R, trained, R.train_data, R.snapshot_points, keep=_keep(R)), R.P.unit_rest)


def _fitted(dyn: pd.DataFrame) -> pd.DataFrame:
    """The rows a curve fits: one measuring design at every compute point (the claim's own row is left out)."""
    return dyn[dyn["design"] == "snapshots"] if "design" in dyn else dyn


def has_curve(dyn) -> bool:
    """Whether ``dyn`` (``classmem_over_training`` or ``link_over_training``) has the 3 fitted points a curve needs."""
    return dyn is not None and len(_fitted(dyn)) >= 3


def classmem_over_training(R, ssl_table: pd.DataFrame, sup_table: pd.DataFrame) -> pd.DataFrame:
    """One row per compute point of the first claim: "epoch" (f's), "supervised epoch", "design" and the columns
    of ``fraction_difference``. Rows with design "snapshots" are the curve: f's snapshots at ``trend_epochs`` with
    the supervised encoder's at the same fractions of training, and the trained encoders, all measured alike
    on the dynamics points. The last row ("claim") is the claim's own measurement, from ``ssl_table`` and
    ``sup_table`` (``unitmem_classmem.unit_tables``): it decides the claim and is not fitted, since its points
    differ from the curve's."""
    P, rows = R.P, []
    for e, es in [*zip(P.trend_epochs, P.supervised_trend_epochs), (P.pair.epochs, P.supervised_epochs)]:
        rows.append({"epoch": e, "supervised epoch": es, "design": "snapshots", **fraction_difference(
            _snapshot_table(R, R.supervised.after(es)), _snapshot_table(R, R.ssl.after(e)))})
    rows.append({"epoch": P.pair.epochs, "supervised epoch": P.supervised_epochs, "design": "claim",
                 **fraction_difference(sup_table, ssl_table)})
    return pd.DataFrame(rows)


def sslmem_at_epoch(R, epoch: int) -> dict:
    """{global index: normalised SSLMem} under the snapshots of f and g (every seed) after ``epoch``: the first
    ``trend_points`` S_C and S_S points among the dynamics points, ``trend_pairs`` view pairs of the pair's bank
    (``scoring.cached_sslmem``; the same entry as notebook 02's Fig. 2b where the settings agree)."""
    P, pair, D = R.P, R.P.pair, R.snapshot_points
    scored = pair.scored(R.splits, R.train_data.labels)
    sub = {s: scored[s][torch.isin(scored[s], D)][:P.trend_points] for s in ("S_C", "S_S")}
    bank = ViewBank(R.ssl.measuring(pair.measure_aug), 2 * pair.view_pairs, seed=pair.split_seed)
    res = cached_sslmem(R.S.cache, [t.after(epoch) for t in R.f], [t.after(epoch) for t in R.g],
                        R.train_data, R.test_data, sub, bank, n_pairs=P.trend_pairs, rep=pair.representation,
                        device=R.S.device, force=P.force)
    m = normalised_sslmem(res, layer=R.layers[-1])
    return dict(zip(torch.cat([sub["S_C"], sub["S_S"]]).tolist(), torch.cat([m["S_C"], m["S_S"]]).tolist()))


def link_point(table: pd.DataFrame, order: list, layers: list, k: int, alpha: float) -> dict:
    """The second claim at one compute point: ``order`` (points by increasing SSLMem) gives the top-k and least-k,
    ``metrics.unitmem.link_test`` each layer of ``table``, and ``deciding_z`` reads the claim's statistic:
    {"points", "layers significant", "layers", "deciding z", "se": 1}. Raises ValueError for fewer than 2k points."""
    if len(order) < 2 * k:
        raise ValueError(f"{len(order)} scored points among the dynamics points: top-{k} and least-{k} need "
                         f"{2 * k}; raise dynamics_points or trend_points")
    p = [link_test(table, order[-k:], order[:k], l)["p"] for l in layers]
    z, n_sig = deciding_z(p, alpha)
    return {"points": len(order), "layers significant": n_sig, "layers": len(layers), "deciding z": z, "se": 1.0}


def link_over_training(R, link) -> pd.DataFrame:
    """One row per compute point of the second claim: "epoch", "design" and ``link_point``'s columns. Rows with
    design "snapshots" are the curve: SSLMem and UnitMem of f's snapshots at ``trend_epochs`` and of the trained
    f and g, all measured alike. The last row ("claim") is the claim's own test ``link.table``
    (``unitmem_findings.sslmem_unitmem_link``), which decides the claim and is not fitted."""
    P, rows = R.P, []
    for e in [*P.trend_epochs, P.pair.epochs]:
        mem = sslmem_at_epoch(R, e)
        order = sorted((i for i in R.snapshot_points.tolist() if i in mem), key=mem.get)
        rows.append({"epoch": e, "design": "snapshots", **link_point(_snapshot_table(R, R.ssl.after(e)), order,
                                                                     R.layers, P.top_k, P.alpha)})
    z, n_sig = deciding_z(link.table["p"], P.alpha)
    rows.append({"epoch": P.pair.epochs, "design": "claim", "points": len(link.order), "layers significant": n_sig,
                 "layers": len(link.table), "deciding z": z, "se": 1.0})
    return pd.DataFrame(rows)


def classmem_trend(dyn: pd.DataFrame, passed: bool):
    """``metrics.trend.Trend`` of fraction(supervised) - fraction(SSL) over f's epochs (``classmem_over_training``);
    the claim needs it above 0; ``passed``: the claim's own outcome (the last row's difference > 0). Fits the
    "snapshots" rows only (one measuring design)."""
    dyn = _fitted(dyn)
    return effect_trend(dyn["epoch"], dyn["difference"], dyn["se"], threshold=0.0, passed_at_max=passed,
                        unit="epochs of f")


def link_trend(dyn: pd.DataFrame, passed: bool, alpha: float):
    """``metrics.trend.Trend`` of the deciding layer's z over f's epochs (``link_over_training``); the claim needs
    it above Phi^-1(1 - alpha); ``passed``: the claim's own outcome. Fits the "snapshots" rows only."""
    dyn = _fitted(dyn)
    return effect_trend(dyn["epoch"], dyn["deciding z"], dyn["se"], threshold=float(sst.norm.isf(alpha)),
                        passed_at_max=passed, unit="epochs")


def classmem_figure(R, dyn: pd.DataFrame):
    """Effect versus compute for the ClassMem claim (``plots.trend`` of ``classmem_trend``)."""
    P = R.P
    t = classmem_trend(dyn, bool(dyn["difference"].iloc[-1] > 0))
    return plots.trend(t, "Does the supervised encoder pull ahead in ClassMem > UnitMem?",
                       "ClassMem > UnitMem: supervised - SSL",
                       R.S.report.caption(f"fraction of live units; supervised at epochs "
                                          f"{list(_fitted(dyn)['supervised epoch'])}; {len(R.snapshot_points)} "
                                          f"points at every epoch (the claim: {len(R.points)}); K={P.unit_views}"))


def link_figure(R, dyn: pd.DataFrame):
    """Effect versus compute for the SSLMem-UnitMem link claim (``plots.trend`` of ``link_trend``)."""
    P, last = R.P, dyn.iloc[-1]
    t = link_trend(dyn, bool(last["layers significant"] > last["layers"] / 2), P.alpha)
    return plots.trend(t, f"Do the top-{P.top_k} points' units pull ahead in most layers?",
                       "z of the deciding layer",
                       R.S.report.caption(f"layer ranked {int(last['layers']) // 2 + 1} of {int(last['layers'])} by "
                                          f"Welch z; at snapshots SSLMem of up to {P.trend_points} points per "
                                          f"subset, K={P.trend_pairs}, at every epoch"))
