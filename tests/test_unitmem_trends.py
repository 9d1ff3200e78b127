"""experiments.unitmem_trends (notebook 05): the statistics of the ClassMem and SSLMem-UnitMem claims at snapshots,
their standard errors, and the verdicts on the claim lines (issue 19: effect versus compute)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from memlab.metrics.stats import accuracy_greater_p, agresti_caffo_se
from scipy import stats as sst

from memlab.experiments import unitmem_classmem as X, unitmem_findings as find, unitmem_trends as trends
from memlab.experiments.common import parameters
from memlab.io.params import ParameterError, notebook_defaults
from memlab.io.report import Report
from memlab.metrics.trend import AGREES, FAILS, HOLDS
from memlab.metrics.unitmem import layer_summary

NB = Path(__file__).resolve().parents[1] / "notebooks" / "05_unitmem_classmem.py"


def _units(layer, unitmem, classmem, argmax=0, dead=None):
    n = len(unitmem)
    return pd.DataFrame({"layer": layer, "unit": range(n), "unitmem": unitmem, "classmem": classmem,
                         "dead": [False] * n if dead is None else dead, "negative": False, "argmax_point": argmax})


def test_agresti_caffo_se_stays_positive_at_zero_and_matches_hand_values():
    assert agresti_caffo_se(0, 10, 0, 10) == pytest.approx(np.sqrt(2 * (1 / 12) * (11 / 12) / 12))
    hand = np.sqrt((1 / 3) * (2 / 3) / 12 + (2 / 7) * (5 / 7) / 7)     # p = 4/12 and 2/7
    assert agresti_caffo_se(3, 10, 1, 5) == pytest.approx(hand)
    with pytest.raises(ValueError, match="0 <= x <= n"):
        agresti_caffo_se(4, 3, 0, 1)


def test_accuracy_greater_p_is_the_one_sided_agresti_caffo_z_test():
    # 0.37 vs 0.35 on 1000 images: p~ 371/1002 and 351/1002, se 0.021444, z 0.93267, P(Z > z) 0.17550
    assert accuracy_greater_p(0.37, 0.35, 1000) == pytest.approx(0.175495, abs=1e-6)
    assert accuracy_greater_p(0.35, 0.37, 1000) == pytest.approx(1 - 0.175495, abs=1e-6)   # the other direction
    assert accuracy_greater_p(0.5, 0.5, 10) == 0.5
    with pytest.raises(ValueError, match="0 <= x <= n"):
        accuracy_greater_p(1.2, 0.5, 10)


def test_fraction_difference_counts_live_units_above_the_diagonal():
    sup = _units("a", [0.2, 0.3, 0.4, 0.5, 0.1], [0.6, 0.1, 0.1, 0.1, 0.9], dead=[False] * 4 + [True])
    ssl = _units("a", [0.5, 0.6, 0.7], [0.1, 0.1, 0.1])
    d = trends.fraction_difference(sup, ssl)
    assert (d["supervised"], d["SSL"], d["units supervised"], d["units SSL"]) == (0.25, 0.0, 4, 3)
    assert d["difference"] == 0.25 and d["se"] == pytest.approx(agresti_caffo_se(1, 4, 0, 3))


def test_deciding_z_is_exactly_the_most_layers_test():
    z, n = trends.deciding_z([0.001, 0.005, 0.2, np.nan, 0.5], 0.01)   # k = 3rd largest z: that of p = 0.2
    assert z == pytest.approx(sst.norm.isf(0.2)) and n == 2
    bar = sst.norm.isf(0.01)
    rng = np.random.default_rng(0)
    for L in (1, 2, 7, 8):
        for _ in range(200):
            p = rng.choice([1e-4, 0.005, 0.009, 0.011, 0.3, 0.9, np.nan], L)
            z, n = trends.deciding_z(p, 0.01)
            assert (z > bar) == (n > L / 2), (p, z, n)
    assert trends.deciding_z([0.0, 1.0, 0.0], 0.01) == (trends.Z_CAP, 2)
    with pytest.raises(ValueError, match="one p-value per layer"):
        trends.deciding_z([], 0.01)


def test_link_point_tests_every_layer_and_needs_2k_points():
    # points 0, 1 (most memorised, last in the order) top the high-UnitMem units in both layers; 2, 3 the low ones
    table = pd.concat([_units(l, [0.9, 0.85, 0.8, 0.1, 0.15, 0.2], 0.0, argmax=[0, 1, 0, 2, 3, 3]) for l in "ab"])
    r = trends.link_point(table, [3, 2, 1, 0], ["a", "b"], 2, 0.01)
    assert (r["layers significant"], r["layers"], r["points"], r["se"]) == (2, 2, 4, 1.0)
    assert r["deciding z"] > sst.norm.isf(0.01)
    with pytest.raises(ValueError, match="need 6"):
        trends.link_point(table, [3, 2, 1, 0], ["a", "b"], 3, 0.01)


class _Trained(SimpleNamespace):
    from memlab.engine.train import Trained
    after = Trained.after   # the real rule: the trained encoder itself at its last epoch

    def at_epoch(self, e):
        return _Trained(name=f"{self.name}@{e}", config=self.config)


def test_classmem_over_training_fits_one_design_and_lists_the_claims_tables_apart(monkeypatch):
    # fraction of units above the diagonal at each compute point, on the dynamics points
    frac = {"ssl@10": 0.0, "ssl@20": 0.0, "ssl": 0.25, "sup@15": 0.25, "sup@30": 0.5, "sup": 1.0}
    monkeypatch.setattr(trends, "_snapshot_table", lambda R, t: _units("a", [0.5] * 4, [0.9] * int(4 * frac[t.name])
                                                                       + [0.1] * (4 - int(4 * frac[t.name]))))
    P = SimpleNamespace(trend_epochs=[10, 20], supervised_trend_epochs=[15, 30], supervised_epochs=60,
                        pair=SimpleNamespace(epochs=40))
    R = SimpleNamespace(P=P, ssl=_Trained(name="ssl", config=SimpleNamespace(epochs=40)),
                        supervised=_Trained(name="sup", config=SimpleNamespace(epochs=60)))
    sup, ssl = _units("a", [0.5] * 4, [0.1, 0.1, 0.1, 0.1]), _units("a", [0.5] * 4, [0.1] * 4)   # the claim: 0 vs 0
    dyn = trends.classmem_over_training(R, ssl, sup)
    assert list(dyn.epoch) == [10, 20, 40, 40] and list(dyn["supervised epoch"]) == [15, 30, 60, 60]
    assert list(dyn.design) == ["snapshots"] * 3 + ["claim"]
    assert list(dyn.difference) == [0.25, 0.5, 0.75, 0.0]       # the trained encoders on the dynamics points: 1 - 0.25
    assert trends.has_curve(dyn) and not trends.has_curve(dyn.iloc[[0, 1, 3]])
    t = trends.classmem_trend(dyn, passed=False)                 # the claim's row (0) is not fitted: slope stays 0.25
    assert t.verdict != HOLDS and t.slope == pytest.approx(0.25) and len(t.x) == 3


def test_link_trend_uses_the_alpha_bar_and_the_claims_outcome():
    dyn = pd.DataFrame({"epoch": [10, 20, 40, 80], "deciding z": [0.0, 0.8, 1.6, 2.0], "se": 1.0})
    t = trends.link_trend(dyn, False, 0.01)
    # slope 3.4 / 5 = 0.68 per doubling with se 1 / sqrt(5): z 1.52, one-sided p 0.064, not below 0.05
    assert t.threshold == pytest.approx(2.3263, abs=1e-4) and t.slope == pytest.approx(0.68)
    assert t.verdict == FAILS and t.slope_p == pytest.approx(sst.norm.sf(0.68 * np.sqrt(5)))
    steeper = dyn.assign(**{"deciding z": [0.0, 1.0, 2.0, 3.0]})          # z 2.24, p 0.013
    assert trends.link_trend(steeper, False, 0.01).verdict == AGREES
    assert trends.link_trend(steeper, True, 0.01).verdict == HOLDS


def test_the_claims_append_their_verdicts_and_keep_their_outcomes(tmp_path):
    layers = ["a", "b"]
    ssl = pd.concat([_units(l, [0.6, 0.7, 0.5], [0.1, 0.2, 0.3]) for l in layers])
    sup = pd.concat([_units(l, [0.6, 0.7, 0.5], [0.1, 0.2, 0.3]) for l in layers])       # 0% vs 0%: FAIL
    prune = pd.DataFrame({"fraction": [0.0] + [0.1] * 3, "strategy": ["none", "highest", "lowest", "random"],
                          "draw": 0, "dataset": "cifar10", "accuracy": [0.6, 0.4, 0.58, 0.55]})
    link = find.Link(pd.DataFrame({"layer": layers, "units_top": 5, "units_least": 4, "mean_top": 0.7,
                                   "mean_least": 0.3, "p": [0.5, 1e-4]}), None, None, [])  # 1 of 2 layers: FAIL
    cm_dyn = pd.DataFrame({"epoch": [10, 20, 40], "difference": [-0.02, -0.01, 0.0], "se": 0.001})
    link_dyn = pd.DataFrame({"epoch": [10, 20, 40], "deciding z": [0.0, -1.0, -2.0], "se": 1.0})
    report = Report(tmp_path, "05_unitmem_classmem", "laptop", "cifar10")
    R = SimpleNamespace(P=SimpleNamespace(deep_layers=2, top_k=50, alpha=0.01, dp_epsilons=[]),
                        S=SimpleNamespace(report=report), layers=layers)
    find.claims(R, summ_ssl=layer_summary(ssl), summ_sup=layer_summary(sup), ssl_table=ssl, sup_table=sup,
                dyn=pd.DataFrame(), dyn_layer="b", prune=prune, link=link, dp=None, cm_dyn=cm_dyn, link_dyn=link_dyn)
    c = {c["claim"][:30]: c for c in report.claims}
    cm, lk = c["the supervised encoder has a l"], c["the units the top-50 SSLMem po"]
    assert cm["outcome"] == "FAIL" and cm["detail"].startswith("supervised 0.0% vs SSL 0.0% (all layers); ")
    assert f"; {AGREES}: -0.02 at 10, -0.01 at 20, 0 at 40 epochs of f" in cm["detail"]
    assert lk["outcome"] == "FAIL" and lk["detail"].startswith("1/2 layers significant; b: 5 vs 4 units")
    assert f"; {FAILS}: 0 at 10, -1 at 20, -2 at 40 epochs" in lk["detail"] and "points away" in lk["detail"]


def test_trend_parameters_are_checked_before_any_compute():
    values = notebook_defaults(NB)                 # the laptop profile: f 80 epochs, snapshots every 5; supervised 120
    P = parameters(X.UnitMemParams, values)
    assert P.supervised_trend_epochs == [15, 30, 60]
    for over, match in [({"trend_epochs": [12]}, "trend_epochs"),        # not a snapshot of f
                        ({"trend_epochs": [5]}, "whole epoch"),          # 5 * 120 / 80 = 7.5
                        ({"trend_epochs": [80]}, "before its last"),     # the trained f is the last point already
                        ({"trend_epochs": [10, 10]}, "repeated"),
                        ({"trend_pairs": 99}, "trend_pairs"), ({"trend_pairs": 0}, "trend_pairs"),
                        ({"trend_epochs": [10]}, "at least 2 epochs"),   # 2 points: no fitted trend
                        ({"trend_points": 49}, "top_k")]:                # fewer than the top-50 it ranks
        with pytest.raises(ParameterError, match=match):
            parameters(X.UnitMemParams, {**values, **over})
