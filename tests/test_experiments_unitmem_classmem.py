"""experiments.unitmem_classmem, unitmem_findings and unitmem_interventions (notebook 05): its parameters, the
SSLMem-UnitMem link, pruning by UnitMem, and the claims built from the unit tables."""
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from memlab.data.datasets import load_dataset
from memlab.experiments import unitmem_classmem as X, unitmem_findings as find, unitmem_interventions as act
from memlab.experiments.common import parameters
from memlab.io.params import ParameterError, notebook_defaults
from memlab.io.report import Report
from memlab.metrics.unitmem import layer_summary
from memlab.models.networks import build_model

NB = Path(__file__).resolve().parents[1] / "notebooks" / "05_unitmem_classmem.py"


def test_the_dataclass_holds_exactly_the_notebooks_parameters():
    assert [f.name for f in fields(X.UnitMemParams)] == list(notebook_defaults(NB))


def test_parameters_refuse_bad_values_before_any_compute():
    values = notebook_defaults(NB)
    assert parameters(X.UnitMemParams, values).pair.arch == "resnet9"   # notebook 02's laptop pair
    for over, match in [({"prune_fracs": [0.1, 1.0]}, "prune_fracs"), ({"unit_rest": "max"}, "unit_rest"),
                        ({"other_datasets": ["no_such_data"]}, "other_datasets"),
                        ({"other_datasets": ["svhn", "svhn"]}, "other_datasets lists a dataset twice"),
                        ({"classmem_dataset": "no_such_data"}, "classmem_dataset"),
                        ({"classmem_dataset": "cifar10"}, "is the pair's dataset"),
                        ({"other_datasets": ["cifar10"]}, "the pair's own dataset")]:
        with pytest.raises(ParameterError, match=match):
            parameters(X.UnitMemParams, {**values, **over})


def test_prune_masks_pick_by_unitmem_and_pruning_restores():
    import pandas as pd
    t = pd.DataFrame({"layer": "l", "unit": range(10), "unitmem": np.linspace(0, 0.9, 10), "classmem": 0.1,
                      "dead": [False] * 9 + [True], "argmax_point": 0})
    hi = act.prune_masks(t, 0.2, "highest")["l"]
    lo = act.prune_masks(t, 0.2, "lowest")["l"]
    rnd = act.prune_masks(t, 0.2, "random", seed=1)["l"]
    assert torch.nonzero(hi == 0).flatten().tolist() == [7, 8]  # highest live units (unit 9 is dead)
    assert torch.nonzero(lo == 0).flatten().tolist() == [0, 1]
    assert int((rnd == 0).sum()) == 2 and rnd[9] == 1
    torch.manual_seed(0)
    enc = build_model("cnn", channels=(4, 6)).eval()
    x = torch.randn(2, 3, 16, 16)
    ref = enc(x)
    with act.pruned(enc, {"block1": torch.tensor([1.0, 0, 1, 1])}):
        assert enc.forward_features(x, ["block1"])["block1"][:, 1].abs().max() == 0
    assert torch.equal(enc(x), ref)


def _units(layer, unitmem, argmax, classmem=0.1, dead=None):
    n = len(unitmem)
    return pd.DataFrame({"layer": layer, "unit": range(n), "unitmem": unitmem, "classmem": classmem,
                         "dead": [False] * n if dead is None else dead, "negative": False, "argmax_point": argmax})


def test_link_puts_the_units_of_memorised_points_above_those_of_unmemorised_ones(monkeypatch):
    # points 0, 1 are the most memorised (SSLMem), 2, 3 the least; 0 and 1 top the high-UnitMem units
    mem = {0: 0.9, 1: 0.8, 2: 0.1, 3: 0.05, 4: 0.5, 5: 0.4, 99: 1.0}     # 99 is not in D
    table = _units("l", [0.8, 0.9, 0.85, 0.1, 0.2, 0.15, np.nan], [0, 1, 0, 2, 3, 3, 4],
                   dead=[False] * 6 + [True])
    monkeypatch.setattr(find, "sslmem_of_points", lambda R: mem)
    R = SimpleNamespace(P=SimpleNamespace(top_k=2), layers=["l"], points=torch.arange(6))
    link = find.sslmem_unitmem_link(R, table)
    assert link.order == [3, 2, 5, 4, 1, 0]
    row = link.table.iloc[0]
    assert (row.units_top, row.units_least) == (3, 3)
    assert row.mean_top == pytest.approx(0.85) and row.mean_least == pytest.approx(0.15) and row.p < 0.01
    hits = link.hits.set_index("group")
    assert hits.loc["top-2 memorised", "units they top"] == 3 and hits.loc["least-2 memorised", "units they top"] == 3
    assert hits.loc["top-2 memorised", "points that top some unit"] == 2
    pts = link.points.set_index("point")
    assert pts.loc[5, "n_units"] == 0 and np.isnan(pts.loc[5, "mean_unitmem"])   # 5 tops no unit: no linked unit
    assert pts.loc[4, "n_units"] == 0                                            # 4 tops only a dead unit
    assert pts.loc[0, "SSLMem"] == 0.9


def test_across_table_ignores_excluded_units():
    t = find.across_table({"a": np.array([0.2, 0.6, np.nan, 0.9]), "b": np.array([0.1, 0.3])})
    assert t.loc[0, "mean UnitMem (last layer)"] == pytest.approx(1.7 / 3)
    assert t.loc[0, "frac > 0.5"] == pytest.approx(2 / 3)
    assert t.loc[1, "median"] == pytest.approx(0.2) and t.loc[1, "frac > 0.5"] == 0


def _claims(tmp_path, dp_eps8=0.2, details=False):
    layers = ["a", "b"]
    ssl = pd.concat([_units(l, [0.6, 0.7, 0.5], [0, 1, 2], classmem=[0.1, 0.2, 0.6]) for l in layers])
    sup = pd.concat([_units(l, [0.2, 0.3, 0.25], [0, 1, 2], classmem=[0.5, 0.6, 0.7]) for l in layers])
    dyn = pd.DataFrame({"epoch": [5, 10], "mean UnitMem": [0.3, 0.5]})
    prune = pd.DataFrame({"fraction": [0.0] + [0.1] * 4, "strategy": ["none", "highest", "lowest", "random", "random"],
                          "draw": [0, 0, 0, 0, 1], "dataset": "cifar10", "accuracy": [0.6, 0.4, 0.58, 0.55, 0.53]})
    link = find.Link(pd.DataFrame({"layer": layers, "units_top": 5, "units_least": 4, "mean_top": 0.7,
                                   "mean_least": 0.3, "p": [1e-3, 1e-4]}), None, None, [])
    dp = pd.DataFrame({"epsilon": ["inf", "inf", "8"], "layer": ["a", "b", "b"], "mean UnitMem": [0.3, 0.4, dp_eps8]})
    report = Report(tmp_path, "05_unitmem_classmem", "laptop", "cifar10")
    R = SimpleNamespace(P=SimpleNamespace(deep_layers=2, top_k=50, alpha=0.01, dp_epsilons=[8.0]),
                        S=SimpleNamespace(report=report), layers=layers)
    find.claims(R, summ_ssl=layer_summary(ssl), summ_sup=layer_summary(sup), ssl_table=ssl, sup_table=sup, dyn=dyn,
                dyn_layer="b", prune=prune, link=link, dp=dp)
    return {c["claim"]: c["detail"] if details else c["outcome"] for c in report.claims}


def test_the_pruning_claim_averages_the_random_draws_and_gives_their_spread(tmp_path):
    detail = next(d for c, d in _claims(tmp_path, details=True).items() if c.startswith("pruning"))
    assert detail == "cifar10: highest 0.4000, lowest 0.5800, random 0.5400 (sd 0.0141 over 2 draws)"


def test_the_claims_hold_on_tables_built_to_satisfy_them_and_fail_where_they_do_not(tmp_path):
    out = _claims(tmp_path)
    assert len(out) == 8 and set(out.values()) == {"PASS"}, out
    out = _claims(tmp_path, dp_eps8=0.5)      # DP-SGD now raises UnitMem above the non-private encoder's
    assert [c for c, o in out.items() if o == "FAIL"] == [
        "DP-SGD (every epsilon tried) lowers the mean UnitMem of the last layer below the non-private encoder"]


def test_pruning_table_probes_f_then_each_pruned_copy_and_restores_f(tmp_path):
    from memlab.engine.train import TrainConfig
    torch.manual_seed(0)
    enc = build_model("cnn", channels=(4, 6)).eval()
    train, test = load_dataset("synthetic", "train", n=40, seed=0), load_dataset("synthetic", "test", n=20, seed=0)
    second = load_dataset("synthetic", "train", n=30, seed=5), load_dataset("synthetic", "test", n=20, seed=5)
    second[0].name = "second"
    cfg = TrainConfig(model="cnn", mean=(0.5,) * 3, std=(0.25,) * 3)
    P = SimpleNamespace(probe_test=20, prune_fracs=[0.25, 0.5], prune_seed=0, prune_draws=2,
                        pair=SimpleNamespace(split_seed=0, dataset="synthetic"))
    R = SimpleNamespace(P=P, S=SimpleNamespace(device=torch.device("cpu")), ssl=SimpleNamespace(encoder=enc), cfg=cfg,
                        train_data=train, test_data=test, splits=SimpleNamespace(f_train=torch.arange(40)),
                        others={"second": second})
    table = pd.concat([_units(l, np.linspace(0, 0.9, n), 0) for l, n in (("block1", 4), ("block2", 6))])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = enc(x)
    prune = act.pruning_table(R, table)
    assert len(prune) == 2 * (1 + 2 * (2 + 2)) and list(prune.dataset.unique()) == ["synthetic", "second"]
    rnd = prune[prune.strategy == "random"]
    assert sorted(rnd.draw.unique()) == [0, 1] and (prune[prune.strategy != "random"].draw == 0).all()
    none = prune[prune.strategy == "none"].set_index("dataset").accuracy
    assert none.to_dict() == act.probe_all(R, act.probe_tasks(R), enc)
    with torch.no_grad():
        assert torch.equal(enc(x), before)          # every mask removed again
    assert prune.accuracy.between(0, 1).all()


def test_growth_trend_reads_the_paper_direction_from_the_snapshots():
    import pandas as pd
    from memlab.experiments.unitmem_findings import growth_trend
    from memlab.metrics.trend import FAILS, HOLDS
    epochs = [5, 10, 20, 40, 80]
    rising = pd.DataFrame({"epoch": epochs, "mean UnitMem": [0.40, 0.42, 0.44, 0.46, 0.48], "se UnitMem": [0.005] * 5})
    t = growth_trend(rising, grows=True)
    assert t.verdict == HOLDS and t.slope == pytest.approx(0.02) and t.threshold == pytest.approx(0.40)
    falling = rising.assign(**{"mean UnitMem": [0.44, 0.43, 0.42, 0.42, 0.41]})   # the laptop's measured shape
    t = growth_trend(falling, grows=False)
    assert t.verdict == FAILS and t.crossing is None and t.slope < 0


def test_a_subset_larger_than_its_split_names_the_size_parameters():
    from memlab.experiments.pair_run import sized
    with pytest.raises(ParameterError, match=r"classmem_n_train / second_n_test: asked for 70000 .*only 60000 .*Fix"):
        sized(lambda: load_dataset("fashion_mnist", "train", n=70000, seed=0), "classmem_n_train / second_n_test",
              "fashion_mnist")
    assert len(sized(lambda: load_dataset("synthetic", "train", n=30, seed=0), "n", "synthetic")) == 30
