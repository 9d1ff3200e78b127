"""experiments.layermem_trend (notebook 04): the ViT claim's statistic per point, its curve over snapshots, and the
verdict on the claim line (issue 19: effect versus compute)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from memlab.experiments import layermem as X, layermem_findings as find, layermem_trend as trend
from memlab.experiments.common import parameters
from memlab.io.params import ParameterError, notebook_defaults
from memlab.io.report import Report
from memlab.metrics import layermem as LM
from memlab.metrics.trend import AGREES, FAILS, HOLDS

ROOT = Path(__file__).resolve().parents[1]
VIT = ["block0.attn", "block0.mlp", "block1.attn", "block1.mlp"]
# LayerMem of 3 points at the 4 sub-layers; Delta: b0.attn [.1 .2 .3], b0.mlp [.2 0 .3], b1.attn [-.1 .3 0],
# b1.mlp [.4 -.1 .4]
LAYERMEM = {"block0.attn": [0.1, 0.2, 0.3], "block0.mlp": [0.3, 0.2, 0.6], "block1.attn": [0.2, 0.5, 0.6],
            "block1.mlp": [0.6, 0.4, 1.0]}


def _result(lm=LAYERMEM):
    cand = {l: torch.tensor(v) for l, v in lm.items()}
    grp = {"random": torch.tensor([0, 2])}
    return X.LayerResult(VIT, VIT[-1], cand, grp, LM.layer_table(cand, VIT, grp), {})


def test_mlp_minus_attention_is_the_claims_statistic_with_its_error_over_points():
    s = trend.mlp_minus_attention(_result())
    # point 0: mlp (0.2 + 0.4) / 2 - attn (0.1 - 0.1) / 2 = 0.3; point 2: (0.3 + 0.4) / 2 - (0.3 + 0) / 2 = 0.2
    assert s[trend.STAT] == pytest.approx(0.25) and s["se"] == pytest.approx(0.05)
    assert (s["MLP"], s["attention"], s["n"], s["blocks"]) == (pytest.approx(0.325), pytest.approx(0.075), 2, 2)
    v = LM.vit_sublayers(_result().table)   # the claim's own numbers: means over blocks of the table's Deltas
    assert v["Delta random (mlp)"].mean() - v["Delta random (attn)"].mean() == pytest.approx(s[trend.STAT])
    with pytest.raises(ValueError, match="2 random candidates"):
        trend.mlp_minus_attention(X.LayerResult(VIT, VIT[-1], _result().cand, {"random": torch.tensor([1])}, None, {}))
    with pytest.raises(ValueError, match="ViT"):
        trend.mlp_minus_attention(X.LayerResult(["prep", "layer1"], "layer1", {}, {"random": [0, 1]}, None, {}))


class _Trained(SimpleNamespace):
    def at_epoch(self, e):
        if e not in self.snaps:
            raise KeyError(e)
        return _Trained(name=f"{self.name}@{e}", snaps=())


def test_vit_over_training_scores_each_snapshot_and_the_trained_cell_alike(monkeypatch):
    seen = []

    def fake_layer_result(R, fs, gs, n_cand, n_pairs, measure):
        seen.append(([t.name for t in fs], [t.name for t in gs], n_cand, n_pairs, measure))
        return _result()

    monkeypatch.setattr(trend, "layer_result", fake_layer_result)
    cells = [{"label": "mae/vit", "epochs": 30, "snapshot_epochs": [15, 8], "measure_aug": "crop"},
             {"label": "dino/vit", "epochs": 30, "snapshot_epochs": [8], "measure_aug": ""},       # one: no curve
             {"label": "simclr/r", "epochs": 30, "snapshot_epochs": [8, 15], "measure_aug": ""}]   # not a ViT
    jobs = {c["label"]: ([f"{c['label']} f"], [f"{c['label']} g"]) for c in cells}
    R = SimpleNamespace(P=SimpleNamespace(cells=cells, trend_candidates=200, trend_view_pairs=3),
                        jobs={"cells": jobs}, load=lambda j: _Trained(name=j, snaps=(8, 15)))
    cell_res = {"mae/vit": _result(), "dino/vit": _result(),
                "simclr/r": X.LayerResult(["prep", "layer1"], "layer1", {}, {}, None, {})}
    dyn = trend.vit_over_training(R, cell_res)
    assert list(dyn.cell) == ["mae/vit"] * 3 and list(dyn.epoch) == [8, 15, 30]
    assert seen == [([f"mae/vit f{e}"], [f"mae/vit g{e}"], 200, 3, "crop") for e in ("@8", "@15", "")]
    assert np.allclose(dyn[trend.STAT], 0.25) and np.allclose(dyn["se"], 0.05)
    assert trend.vit_over_training(R, {}).empty


def _dyn(y, se=0.002, cell="mae/vit"):
    return pd.DataFrame({"cell": cell, "epoch": [8, 15, 30][:len(y)], trend.STAT: y, "se": se})


def _vit(mlp, attn, cell="mae/vit"):
    return pd.DataFrame({"cell": cell, "block": [0, 1], "Delta random (attn)": attn, "Delta random (mlp)": mlp})


def test_vit_trends_read_the_verdict_from_the_points_and_the_claims_outcome():
    rising = _dyn([-0.03, -0.02, -0.01])
    t = trend.vit_trends(_vit(0.0, 0.01), rising)["mae/vit"]
    assert t.verdict == AGREES and t.threshold == 0 and t.slope > 0 and t.crossing > 30
    assert trend.vit_trends(_vit(0.02, 0.01), rising)["mae/vit"].verdict == HOLDS   # the claim passes at 30 epochs
    assert trend.vit_trends(_vit(0.0, 0.01), _dyn([-0.01, -0.02, -0.03]))["mae/vit"].verdict == FAILS
    assert trend.vit_trends(_vit(0.0, 0.01), _dyn([-0.03, -0.02])) == {}            # 2 points: no curve


def test_the_vit_claim_appends_its_verdict_and_keeps_its_outcome(tmp_path):
    layers = ["l1", "l2", "l3"]
    tab = pd.DataFrame({"layer": layers, "LayerMem random": [0.1, 0.3, 0.6], "Delta random": [0.1, -0.1, 0.3]})
    tvl = pd.DataFrame({"layer": layers, "top": 0.5, "least": 0.1, "p (top > least)": 1e-4})
    adj = pd.DataFrame({"pairs": ["adjacent", "distant"], "n pairs": 1, "mean kendall tau": [0.8, 0.2],
                        "mean top-100 overlap": [0.7, 0.3]})
    ft = pd.DataFrame({"group": ["LayerMem", "Delta", "last", "random"], "accuracy": [0.5, 0.45, 0.4, 0.35]})
    rep = pd.DataFrame({"group": ["most (LayerMem)", "most (Delta)", "least (LayerMem)", "least (Delta)", "random"],
                        "dataset": "cifar10", "accuracy": [0.3, 0.35, 0.7, 0.72, 0.5]})
    report = Report(tmp_path, "04_layermem", "laptop", "cifar10")
    R = SimpleNamespace(P=SimpleNamespace(random_points=100, top_k=50, alpha=0.01, overlap_k=100, k_layers=2,
                                          pair=SimpleNamespace(dataset="cifar10")),
                        S=SimpleNamespace(report=report), second_train=SimpleNamespace(name="stl10"))
    vit = _vit(0.0, 0.01)
    find.claims(R, X.LayerResult(layers, "l3", {}, {}, tab, {}), tvl, adj, vit, pd.DataFrame(), ft, rep,
                trend.vit_trends(vit, _dyn([-0.03, -0.02, -0.01])))
    c = next(c for c in report.claims if c["claim"].startswith("mae/vit"))
    assert c["outcome"] == "FAIL" and c["detail"].startswith("MLP 0.0000 vs attention 0.0100 over 2 blocks; ")
    assert f"; {AGREES}: -0.03 at 8, -0.02 at 15, -0.01 at 30 epochs" in c["detail"]
    depth = next(c for c in report.claims if c["claim"].startswith("memorisation grows with depth"))
    assert depth["outcome"] == "PASS" and depth["detail"] == ("layers with negative Delta: ['l2']; last layer above "
                                                              "the first: yes")


def _values(profile="laptop", **over):
    v = notebook_defaults(ROOT / "notebooks" / "04_layermem.py")
    v.update(yaml.safe_load((ROOT / "params" / profile / "04_layermem.yaml").read_text()) or {})
    return {**v, "profile": profile, **over}


def test_trend_parameters_are_checked_before_any_compute():
    P = parameters(X.LayerMemParams, _values())
    assert (P.trend_candidates, P.trend_view_pairs) == (P.cell_candidates, P.cell_view_pairs)   # laptop: the claim's
    for over, match in [({"trend_candidates": 99}, "trend_candidates"), ({"trend_candidates": 501}, "trend_candidates"),
                        ({"trend_view_pairs": 99}, "trend_view_pairs"), ({"trend_view_pairs": 0}, "trend_view_pairs")]:
        with pytest.raises(ParameterError, match=match):
            parameters(X.LayerMemParams, _values(**over))


RESNET = ["prep", "layer1", "layer2"]


def test_last_minus_first_is_the_depth_claims_statistic_with_its_paired_error():
    cand = {"prep": torch.tensor([0.5, 9.0, 0.1, 0.3]), "layer1": torch.zeros(4),
            "layer2": torch.tensor([0.2, -9.0, 0.6, 0.9])}
    grp = {"random": torch.tensor([0, 2, 3])}
    r = X.LayerResult(RESNET, "layer2", cand, grp, LM.layer_table(cand, RESNET, grp), {})
    s = trend.last_minus_first(r)
    # per point: -0.3, +0.5, +0.6 (point 1 is not in the random group): mean 0.2667, sd 0.4933, se 0.2848
    assert s[trend.DEPTH] == pytest.approx(0.8 / 3) and s["se"] == pytest.approx(np.std([-0.3, 0.5, 0.6], ddof=1) / 3 ** 0.5)
    row = r.table.set_index("layer")["LayerMem random"]   # the claim's own numbers
    assert (s["first"], s["last"], s["n"]) == (pytest.approx(row["prep"]), pytest.approx(row["layer2"]), 3)
    with pytest.raises(ValueError, match="2 random candidates"):
        trend.last_minus_first(X.LayerResult(RESNET, "layer2", cand, {"random": torch.tensor([0])}, None, {}))


def test_depth_over_training_scores_the_pairs_snapshots_with_the_main_design(monkeypatch):
    seen = []
    cand = {"prep": torch.zeros(2), "layer1": torch.zeros(2), "layer2": torch.tensor([0.1, 0.3])}
    res = X.LayerResult(RESNET, "layer2", cand, {"random": torch.tensor([0, 1])}, None, {})

    def fake_layer_result(R, fs, gs, n_cand, n_pairs, measure):
        seen.append(([t.name for t in fs], [t.name for t in gs], n_cand, n_pairs, measure))
        return res

    monkeypatch.setattr(trend, "layer_result", fake_layer_result)
    pair = SimpleNamespace(epochs=80, measure_aug="crop")
    R = SimpleNamespace(P=SimpleNamespace(depth_trend_epochs=[40, 10], layer_candidates=500, layer_view_pairs=5,
                                          pair=pair),
                        f=[_Trained(name="f0", snaps=(10, 40)), _Trained(name="f1", snaps=(10, 40))],
                        g=[_Trained(name="g0", snaps=(10, 40)), _Trained(name="g1", snaps=(10, 40))])
    dyn = trend.depth_over_training(R, res)
    assert list(dyn.epoch) == [10, 40, 80] and np.allclose(dyn[trend.DEPTH], 0.2)
    assert seen == [(["f0@10", "f1@10"], ["g0@10", "g1@10"], 500, 5, "crop"),
                    (["f0@40", "f1@40"], ["g0@40", "g1@40"], 500, 5, "crop")]   # the last point is the main result
    assert trend.depth_trend(res, dyn).verdict == HOLDS                           # 0.2 > 0 at 80 epochs
    assert trend.depth_trend(res, dyn.iloc[:2]) is None                           # 2 points: no curve
    R.P.depth_trend_epochs = []
    assert trend.depth_over_training(R, res).empty


def test_depth_trend_epochs_must_be_snapshots_of_the_pair():
    assert parameters(X.LayerMemParams, _values()).depth_trend_epochs == [10, 20, 40]
    assert parameters(X.LayerMemParams, _values(depth_trend_epochs=[])).depth_trend_epochs == []
    for bad in ([12, 20], [20], [10, 10, 20], [10, 80]):   # not a snapshot; one point; twice; the last epoch
        with pytest.raises(ParameterError, match="depth_trend_epochs"):
            parameters(X.LayerMemParams, _values(depth_trend_epochs=bad))
