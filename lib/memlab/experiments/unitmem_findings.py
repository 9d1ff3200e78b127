"""Notebook 05's comparisons, figures and claims (Wang et al., NeurIPS 2024, §4; methods.md §4): UnitMem across
datasets, the fraction of units above the ClassMem = UnitMem diagonal, UnitMem over training, and the link
between SSLMem (which points are memorised) and UnitMem (which units memorise them). The inputs are the unit
tables of ``experiments.unitmem_classmem``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats as sst

from memlab.augmentation.augment import ViewBank
from memlab.experiments.scoring import cached_sslmem
from memlab.experiments.unitmem_classmem import unit_stats_of
from memlab.experiments.unitmem_trends import classmem_trend, has_curve, link_trend
from memlab.io import plots
from memlab.io.params import choice
from memlab.metrics.sslmem import normalised_sslmem
from memlab.metrics.trend import effect_trend
from memlab.metrics.unitmem import layer_table, link_test, live_units, point_unit_link, unitmem


def per_layer_figure(R, ssl_table: pd.DataFrame, sup_table: pd.DataFrame):
    """Boxes of UnitMem over the units of each layer, SSL beside supervised."""
    pair = R.P.pair
    return plots.per_layer_box({"SSL (SimCLR)": {l: ssl_table[ssl_table.layer == l].unitmem for l in R.layers},
                                "supervised": {l: sup_table[sup_table.layer == l].unitmem for l in R.layers}},
                               "UnitMem per layer", "UnitMem",
                               R.S.report.caption(f"{pair.arch} x{pair.width}, K={R.P.unit_views} views"))


def across_datasets(R, ssl_table: pd.DataFrame) -> tuple:
    """``(values, tables)``: {dataset: UnitMem of the last layer's units (NaN for excluded units)} of f and of the
    same recipe trained on each of ``other_datasets`` (the paper's panel: SVHN,
    CIFAR-10, STL-10), measured on all of that encoder's training images; ``tables``: {dataset: its full unit
    table} of those other encoders."""
    last = R.layers[-1]
    values, tables = {R.P.pair.dataset: ssl_table[ssl_table.layer == last].unitmem.to_numpy()}, {}
    for shown, job in R.jobs["others"].items():
        data, enc = R.others[shown][0], R.load(job)
        print(f"{shown} encoder: {'cache' if enc.from_cache else 'trained'}, final loss {enc.history[-1]['loss']:.3f}")
        tables[shown] = layer_table(unit_stats_of(R, enc, data, torch.arange(len(data))), R.P.unit_rest)
        values[shown] = tables[shown][tables[shown].layer == last].unitmem.to_numpy()
    return values, tables


def across_table(values: dict) -> pd.DataFrame:
    """Per dataset: mean and median UnitMem of the live units and the fraction above 0.5."""
    return pd.DataFrame([{"dataset": k, "mean UnitMem (last layer)": np.nanmean(v), "median": np.nanmedian(v),
                          "frac > 0.5": float(np.mean(v[np.isfinite(v)] > 0.5))} for k, v in values.items()])


def across_figure(R, values: dict):
    """Distributions of the last layer's UnitMem, one per dataset."""
    return plots.subset_distributions({k: v[np.isfinite(v)] for k, v in values.items()},
                                      f"UnitMem of the last layer ({R.layers[-1]}) across datasets",
                                      R.S.report.caption("SimCLR encoders, same recipe"), xlabel="UnitMem")


def fraction_above_diagonal(layers: list, summ_ssl: pd.DataFrame, summ_sup: pd.DataFrame) -> pd.DataFrame:
    """Per layer, the fraction of live units with UnitMem > ClassMem, SSL and supervised
    (``metrics.unitmem.layer_summary`` of each)."""
    return pd.DataFrame({"layer": layers, "SSL: frac UnitMem > ClassMem":
                         summ_ssl.set_index("layer").loc[layers, "frac_unitmem_gt_classmem"].values,
                         "supervised: frac UnitMem > ClassMem":
                         summ_sup.set_index("layer").loc[layers, "frac_unitmem_gt_classmem"].values})


def unitmem_over_training(R) -> tuple:
    """``(table, layer, n_points)``: mean UnitMem (live units) and the excluded units of ``dynamics_layer`` at
    every snapshot epoch of f, measured on ``dynamics_points`` class-balanced points of D. Raises
    ``ParameterError`` for a ``dynamics_layer`` the encoder does not have."""
    P, ssl = R.P, R.ssl
    layer = P.dynamics_layer or R.layers[-1]
    choice("dynamics_layer", layer, R.layers)
    Dd = R.snapshot_points
    rows = []
    for e in sorted(ssl.snapshots):
        st = unit_stats_of(R, ssl.at_epoch(e), R.train_data, Dd)[layer]
        um = unitmem(st, "mean")
        live = um[~st.excluded]
        rows.append({"epoch": e, "mean UnitMem": float(live.mean()), "excluded units": int(st.excluded.sum()),
                     # the standard error over live units: the band of the effect-versus-compute fit (issue 19)
                     "se UnitMem": float(live.std(unbiased=True) / np.sqrt(max(len(live), 1)))})
    return pd.DataFrame(rows), layer, len(Dd)


def dynamics_figure(R, dyn: pd.DataFrame, layer: str, n_points: int):
    pair = R.P.pair
    return plots.lines(dyn["epoch"], {layer: dyn["mean UnitMem"]}, f"Mean UnitMem of {layer} over training", "epoch",
                       "mean UnitMem",
                       R.S.report.caption(f"{pair.method}, {pair.arch} x{pair.width}, {n_points} points"),
                       vline=R.cfg.warmup_epochs)


def growth_trend(dyn: pd.DataFrame, grows: bool):
    """``metrics.trend.Trend`` of mean UnitMem over the snapshot epochs of ``dyn`` (``unitmem_over_training``):
    the paper's claim needs it above its value at the first snapshot, and holds when the last snapshot is."""
    return effect_trend(dyn["epoch"], dyn["mean UnitMem"], dyn["se UnitMem"].clip(lower=1e-9),
                        threshold=float(dyn["mean UnitMem"].iloc[0]), passed_at_max=grows, unit="epochs")


def growth_figure(R, dyn: pd.DataFrame, layer: str, n_points: int):
    """Effect versus compute for the claim "UnitMem grows during training": ``plots.trend`` of ``growth_trend``."""
    pair = R.P.pair
    t = growth_trend(dyn, bool(dyn["mean UnitMem"].iloc[-1] > dyn["mean UnitMem"].iloc[0]))
    return plots.trend(t, f"Does mean UnitMem of {layer} grow with training?", "mean UnitMem",
                       R.S.report.caption(f"{pair.method}, {pair.arch} x{pair.width}, {n_points} points, "
                                          f"snapshots of f"))


@dataclass
class Link:
    """The SSLMem-UnitMem link: ``table`` (per layer, ``metrics.unitmem.link_test`` of the top-k against the
    least-k points), ``hits`` (per group, how many points top some unit of the last layer and how many units),
    ``points`` (``point_unit_link`` of the last layer with each point's SSLMem), ``order`` (D's scored points by
    increasing SSLMem)."""
    table: pd.DataFrame
    hits: pd.DataFrame
    points: pd.DataFrame
    order: list


def sslmem_of_points(R) -> dict:
    """{global index: normalised SSLMem} of the S_C and S_S points notebook 02 scores, under the pair's f/g at
    the last layer (``experiments.scoring.cached_sslmem``: notebook 02's cache entry)."""
    pair = R.P.pair
    scored = pair.scored(R.splits, R.train_data.labels)
    bank = ViewBank(R.ssl.measuring(pair.measure_aug), 2 * pair.view_pairs, seed=pair.split_seed)
    results = cached_sslmem(R.S.cache, R.f, R.g, R.train_data, R.test_data, scored, bank, n_pairs=pair.view_pairs,
                            rep=pair.representation, device=R.S.device, force=R.P.force)
    m = normalised_sslmem(results, layer=R.layers[-1])
    return dict(zip(torch.cat([scored["S_C"], scored["S_S"]]).tolist(), torch.cat([m["S_C"], m["S_S"]]).tolist()))


def sslmem_unitmem_link(R, ssl_table: pd.DataFrame) -> Link:
    """Links the ``top_k`` most and least memorised points of D (by SSLMem) to the units they activate
    maximally (the localisation paper's mu_max link, §4), per layer and in detail for the last layer."""
    k, last = R.P.top_k, R.layers[-1]
    mem = sslmem_of_points(R)
    order = sorted((i for i in R.points.tolist() if i in mem), key=lambda i: mem[i])
    top, least = order[-k:], order[:k]
    table = pd.DataFrame([{"layer": l, **link_test(ssl_table, top, least, l)} for l in R.layers])
    pts = point_unit_link(ssl_table[ssl_table.layer == last], order)
    pts["SSLMem"] = pts.point.map(mem)
    hits = pd.DataFrame([{"group": g, "points": len(p), "points that top some unit":
                          int((pts.point.isin(p) & (pts.n_units > 0)).sum()),
                          "units they top": int(pts[pts.point.isin(p)].n_units.sum())}
                         for g, p in ((f"top-{k} memorised", top), (f"least-{k} memorised", least))])
    return Link(table, hits, pts, order)


def link_figure(R, link: Link):
    """SSLMem of every point that tops some unit of the last layer against the mean UnitMem of those units."""
    tops = link.points[link.points.n_units > 0]
    rho = sst.spearmanr(tops.SSLMem, tops.mean_unitmem) if len(tops) > 2 else None
    return plots.scatter(tops.SSLMem, tops.mean_unitmem,
                         f"SSLMem vs the UnitMem of the units a point tops ({R.layers[-1]})",
                         "SSLMem (normalised, notebook 02)", "mean UnitMem of the units it activates maximally",
                         R.S.report.caption(f"{len(tops)} of {len(link.order)} training points of f top some unit"),
                         note="" if rho is None else f"Spearman rho = {rho.statistic:.3f} (p = {rho.pvalue:.2g})")


def _classmem_above(table: pd.DataFrame) -> float:
    """The fraction of live units with ClassMem > UnitMem."""
    t = live_units(table)
    return float((t.classmem > t.unitmem).mean())


def _verdict(t) -> str:
    return f"; {t.verdict}: {t.describe()}"


def classmem_claims(report, deep: list, summ_ssl, summ_sup, ssl_table, sup_table, *, where: str = "",
                    cm_dyn=None) -> None:
    """The ClassMem-versus-UnitMem claims of an SSL and a supervised encoder of one architecture and data (the
    paper's CIFAR-10 and CIFAR-100 figures): in each of the ``deep`` layers most SSL units have UnitMem > ClassMem;
    the supervised encoder has the larger fraction of units with ClassMem > UnitMem; and its deepest layers the
    higher mean ClassMem. ``summ_*``: ``metrics.unitmem.layer_summary`` of the unit tables ``*_table``. ``where``:
    appended to each claim (e.g. " (cifar100)"). ``cm_dyn``: ``unitmem_trends.classmem_over_training``, whose
    effect-versus-compute verdict joins the second claim's detail when it has a curve."""
    s_ssl, s_sup = summ_ssl.set_index("layer"), summ_sup.set_index("layer")
    for l in deep:
        f = s_ssl.loc[l, "frac_unitmem_gt_classmem"]
        report.claim(f"SSL, layer {l}: most units have UnitMem > ClassMem{where}", f > 0.5,
                     f"{f:.1%} of {int(s_ssl.loc[l, 'units_live'])} live units")
    sup_cm, ssl_cm = _classmem_above(sup_table), _classmem_above(ssl_table)
    cm_tr = classmem_trend(cm_dyn, sup_cm > ssl_cm) if has_curve(cm_dyn) else None
    report.claim(f"the supervised encoder has a larger fraction of units with ClassMem > UnitMem than the SSL "
                 f"encoder{where}", sup_cm > ssl_cm, f"supervised {sup_cm:.1%} vs SSL {ssl_cm:.1%} (all layers)"
                 + (_verdict(cm_tr) if cm_tr else ""))
    report.claim(f"class memorisation is higher in the supervised encoder's deepest layers (mean ClassMem){where}",
                 all(s_sup.loc[l, "mean_classmem"] > s_ssl.loc[l, "mean_classmem"] for l in deep),
                 "; ".join(f"{l}: supervised {s_sup.loc[l, 'mean_classmem']:.3f} vs SSL "
                           f"{s_ssl.loc[l, 'mean_classmem']:.3f}" for l in deep))


def claims(R, *, summ_ssl, summ_sup, ssl_table, sup_table, dyn, dyn_layer, prune, link: Link, dp, cm_dyn=None,
           link_dyn=None) -> None:
    """The paper's claims, checked on this run and written to ``R.S.report``: SSL units memorise points more than
    classes in the deepest layers, supervised units classes; UnitMem grows in training; pruning the
    highest-UnitMem units costs the most; memorised points top memorising units; DP-SGD lowers UnitMem.
    ``dp``: the DP table, or None when the DP section did not run. ``cm_dyn``, ``link_dyn``: the claims measured
    over training (``unitmem_trends.classmem_over_training``, ``link_over_training``); with 3 or more fitted points the
    claim's detail appends the verdict of its effect-versus-compute trend (issue 19)."""
    P, report, layers = R.P, R.S.report, R.layers
    classmem_claims(report, layers[-P.deep_layers:], summ_ssl, summ_sup, ssl_table, sup_table, cm_dyn=cm_dyn)
    if len(dyn) > 1:
        u = dyn["mean UnitMem"]
        grows = bool(u.iloc[-1] > u.iloc[0])
        verdict = ""
        if len(dyn) >= 3:   # effect versus compute (issue 19): where does the trend over epochs point?
            tr = growth_trend(dyn, grows)
            verdict = f"; {tr.verdict}: {tr.describe()}"
        report.claim(f"mean UnitMem of {dyn_layer} grows during training (last snapshot > first)", grows,
                     f"epoch {dyn.epoch.iloc[0]}: {u.iloc[0]:.4f} -> epoch {dyn.epoch.iloc[-1]}: {u.iloc[-1]:.4f}"
                     + verdict)
    pruned_ = prune[prune.fraction > 0]
    pr = pruned_.groupby(["dataset", "strategy"]).accuracy.mean().unstack()   # random: over fractions and draws
    rnd = pruned_[pruned_.strategy == "random"].groupby(["dataset", "draw"]).accuracy.mean().groupby("dataset")
    sd, draws = rnd.std(ddof=1), rnd.size()
    report.claim("pruning the highest-UnitMem units costs more probe accuracy than pruning random units (mean over "
                 "fractions), on every dataset", bool((pr["highest"] < pr["random"]).all()),
                 "; ".join(f"{k}: highest {r['highest']:.4f}, lowest {r['lowest']:.4f}, random {r['random']:.4f}"
                           + (f" (sd {sd[k]:.4f} over {draws[k]} draws)" if draws[k] > 1 else "")
                           for k, r in pr.iterrows()))
    lt = link.table.set_index("layer")
    n_sig = int((lt["p"] < P.alpha).sum())
    linked = bool((lt["p"] < P.alpha).sum() > len(layers) / 2)
    link_tr = link_trend(link_dyn, linked, P.alpha) if has_curve(link_dyn) else None
    report.claim(f"the units the top-{P.top_k} SSLMem points activate maximally have higher UnitMem than those of the "
                 f"least-{P.top_k}, in most layers (Welch p < {P.alpha})", linked,
                 f"{n_sig}/{len(layers)} layers significant; {layers[-1]}: {lt['units_top'].iloc[-1]} vs "
                 f"{lt['units_least'].iloc[-1]} units, mean UnitMem {lt['mean_top'].iloc[-1]:.4f} vs "
                 f"{lt['mean_least'].iloc[-1]:.4f}" + (_verdict(link_tr) if link_tr else ""))
    if dp is not None:
        last_dp = dp[dp.layer == layers[-1]].set_index("epsilon")["mean UnitMem"]
        report.claim("DP-SGD (every epsilon tried) lowers the mean UnitMem of the last layer below the non-private "
                     "encoder", all(last_dp[f"{e:g}"] < last_dp["inf"] for e in P.dp_epsilons),
                     ", ".join(f"eps={k}: {v:.4f}" for k, v in last_dp.items()))
