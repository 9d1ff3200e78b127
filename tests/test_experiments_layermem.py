"""experiments.layermem, layermem_downstream and layermem_findings (notebook 04): its parameters, the tables
and claims built from LayerMem results, and the downstream fine-tuning and layer replacement."""
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from memlab.data.datasets import load_dataset
from memlab.experiments import layermem as X, layermem_downstream as down, layermem_findings as find
from memlab.experiments.common import parameters
from memlab.io.params import ParameterError, notebook_defaults
from memlab.io.report import Report
from memlab.models.networks import build_model

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks" / "04_layermem.py"


def _images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)


def _values(profile="smoke", **over):
    import yaml
    v = notebook_defaults(NB)
    v.update(yaml.safe_load((ROOT / "params" / profile / "04_layermem.yaml").read_text()) or {})
    return {**v, "profile": profile, **over}


def test_the_dataclass_holds_exactly_the_notebooks_parameters():
    assert [f.name for f in fields(X.LayerMemParams)] == list(notebook_defaults(NB))


def test_parameters_resolve_notebook_02s_cells_and_refuse_bad_relations():
    P = parameters(X.LayerMemParams, _values())
    labels = [c["label"] for c in P.cells]
    # the architecture cells come first, then notebook 02's method cells
    assert labels[:4] == ["simclr/resnet18", "simclr/resnet34", "simclr/resnet50", "simclr/vit_tiny"]
    assert labels[4:] == P.method_cells and P.cells[4]["dataset"] == P.pair.dataset
    for over, match in [({"distant_gap": 1}, "distant_gap"),
                        ({"method_cells": ["simclr/resnet99"]}, "not cells of notebook 02's grid"),
                        ({"grid_seeds": [7]}, "subset of notebook 02's grid_seeds"),
                        ({"layer_view_pairs": 99}, r"must lie in \[1, view_pairs"),
                        ({"layer_view_pairs": 0}, "layer_view_pairs"),
                        ({"top_k": 40}, "at least random_points, 2 \\* top_k"),
                        ({"arch_cells": [{"arch": "resnet18", "dataset": "cifar10"}]}, "must use the main dataset"),
                        ({"layer_range": "global"}, "layer_range")]:
        with pytest.raises(ParameterError, match=match):
            parameters(X.LayerMemParams, _values(**over))


def _result(table: pd.DataFrame, cell: str = "") -> X.LayerResult:
    if cell:
        table = table.assign(cell=cell)[["cell", *table.columns]]
    return X.LayerResult(list(table.layer), table.layer.iloc[-1], {}, {}, table, {})


def _layer_table(layers, lm, delta=None):
    lm = np.asarray(lm, dtype=float)
    d = np.diff(lm, prepend=0.0) if delta is None else np.asarray(delta, dtype=float)
    return pd.DataFrame({"layer index": np.arange(1, len(layers) + 1), "layer": layers, "LayerMem random": lm,
                         "Delta random": d, "LayerMem random sd": 0.1})


def test_vit_table_pairs_the_sublayers_of_vit_cells_only():
    vit = [f"block{i}.{s}" for i in range(2) for s in ("attn", "mlp")]
    res = {"mae/vit_tiny": _result(_layer_table(vit, [0.1, 0.3, 0.35, 0.6]), "mae/vit_tiny"),
           "simclr/resnet9": _result(_layer_table(["prep", "layer1"], [0.1, 0.2]), "simclr/resnet9")}
    t = find.vit_table(res)
    assert list(t.cell) == ["mae/vit_tiny"] * 2 and list(t.block) == [0, 1]
    assert np.allclose(t["Delta random (mlp)"], [0.2, 0.25]) and np.allclose(t["Delta random (attn)"], [0.1, 0.05])
    assert find.vit_table({"simclr/resnet9": res["simclr/resnet9"]}).empty


def test_method_agreement_measures_equal_and_opposite_layer_profiles():
    layers = list("abcde")
    up, down_ = [0.1, 0.2, 0.35, 0.5, 0.7], [0.7, 0.5, 0.35, 0.2, 0.1]
    cells = [{"label": "simclr/r", "arch": "r"}, {"label": "dino/r", "arch": "r"}, {"label": "byol/r", "arch": "r"},
             {"label": "mae/v", "arch": "v"}]
    res = {"simclr/r": _result(_layer_table(layers, up)), "dino/r": _result(_layer_table(layers, up)),
           "byol/r": _result(_layer_table(layers, down_)), "mae/v": _result(_layer_table(layers, up))}
    R = SimpleNamespace(P=SimpleNamespace(method_specs=cells, k_layers=2))
    by_arch = find.methods_by_arch(R, res)
    assert list(by_arch) == ["r"] and list(by_arch["r"]) == ["simclr/r", "dino/r", "byol/r"]  # v has one method only
    t = find.method_agreement(R, by_arch).set_index(["a", "b"])
    assert t.loc[("simclr/r", "dino/r"), "tau LayerMem profile"] == pytest.approx(1.0)
    assert t.loc[("simclr/r", "dino/r"), "shared top-2 Delta layers"] == 1.0
    assert t.loc[("simclr/r", "byol/r"), "tau LayerMem profile"] == pytest.approx(-1.0)
    assert find.method_agreement(R, {}).empty


def _claims(tmp_path, ft_last=0.4):
    layers = ["l1", "l2", "l3", "l4"]
    tab = _layer_table(layers, [0.1, 0.3, 0.25, 0.6])                      # grows, with one negative Delta
    main = X.LayerResult(layers, "l4", {}, {}, tab, {})
    tvl = pd.DataFrame({"layer": layers, "top": 0.5, "least": 0.1, "p (top > least)": [1e-4, 1e-3, 0.5, 1e-6]})
    adj = pd.DataFrame({"pairs": ["adjacent (gap 1)", "distant (gap >= 2)"], "n pairs": [3, 3],
                        "mean kendall tau": [0.8, 0.2], "mean top-100 overlap": [0.7, 0.3]})
    vit = pd.DataFrame({"cell": "mae/vit", "block": [0, 1], "Delta random (attn)": 0.1, "Delta random (mlp)": 0.2})
    methods = pd.DataFrame({"tau LayerMem profile": [0.6, 0.2]})
    ft = pd.DataFrame({"group": ["none (frozen f)", "LayerMem", "Delta", "last", "random", "random"],
                       "accuracy": [0.3, 0.5, 0.45, ft_last, 0.35, 0.37]})
    rep = pd.DataFrame({"group": ["none (f)", "most (LayerMem)", "most (Delta)", "least (LayerMem)", "least (Delta)",
                                  "random"], "dataset": "cifar10", "accuracy": [0.8, 0.3, 0.35, 0.7, 0.72, 0.5]})
    report = Report(tmp_path, "04_layermem", "laptop", "cifar10")
    P = SimpleNamespace(random_points=100, top_k=50, alpha=0.01, overlap_k=100, k_layers=2,
                        pair=SimpleNamespace(dataset="cifar10"))
    R = SimpleNamespace(P=P, S=SimpleNamespace(report=report), second_train=SimpleNamespace(name="stl10"))
    find.claims(R, main, tvl, adj, vit, methods, ft, rep)
    return {c["claim"]: c["outcome"] for c in report.claims}


def test_the_claims_hold_on_a_run_built_to_satisfy_them_and_fail_where_it_does_not(tmp_path):
    out = _claims(tmp_path)
    assert len(out) == 8 and set(out.values()) == {"PASS"}, out
    vit = "mae/vit: the MLP sub-layers memorise more than the attention sub-layers (mean Delta-LayerMem)"
    assert out[vit] == "PASS"
    out = _claims(tmp_path, ft_last=0.6)        # fine-tuning the last layers now wins
    failed = [c for c, o in out.items() if o == "FAIL"]
    assert failed == ["fine-tuning the 2 most memorising layers beats fine-tuning the last 2 (probe accuracy on stl10)"]


@pytest.mark.parametrize("name,kw", [("resnet9", {"width": 0.125}), ("resnet18", {"width": 0.0625}),
                                     ("resnet50", {"width": 0.0625}), ("cnn", {"channels": (4, 8)}),
                                     ("vit_tiny", {"depth": 2, "embed_dim": 24, "num_heads": 2})])
def test_layer_keys_partition_the_state_dict(name, kw):
    enc = build_model(name, **kw)
    seen = {}
    for l in enc.layer_names:
        for k in down.layer_keys(enc, [l]):
            assert k not in seen, f"{k} in {seen.get(k)} and {l}"
            seen[k] = l
    assert set(seen) == set(enc.state_dict())  # every parameter and buffer belongs to exactly one layer
    assert all(down.layer_keys(enc, [l]) for l in enc.layer_names)




def test_pick_layers_strategies():
    t = pd.DataFrame({"layer": list("abcde"), "LayerMem random": [0.1, 0.5, 0.2, 0.6, 0.4],
                      "Delta random": [0.1, 0.4, -0.3, 0.4, -0.2]})
    assert down.pick_layers(t, 2, "LayerMem") == ["b", "d"]
    assert down.pick_layers(t, 2, "least Delta") == ["c", "e"]
    assert down.pick_layers(t, 2, "last") == ["d", "e"]
    r = down.pick_layers(t, 3, "random", seed=4)
    assert len(set(r)) == 3 and r == down.pick_layers(t, 3, "random", seed=4)
    with pytest.raises(ValueError, match="strategy"):
        down.pick_layers(t, 2, "most")




def _trained(seed=0):
    from memlab.engine.train import TrainConfig, Trained, build
    cfg = TrainConfig(model="resnet9", model_kw={"width": 0.125}, epochs=1, batch_size=16, seed=seed,
                      mean=(0.5,) * 3, std=(0.25,) * 3)
    torch.manual_seed(seed)
    enc, obj = build(cfg)
    return Trained(enc.eval(), obj.eval(), [{"loss": 1.0}], {}, cfg, f"test{seed}")


def test_finetune_changes_only_the_chosen_layers():
    t = _trained()
    before = {k: v.clone() for k, v in t.encoder.state_dict().items()}
    enc, hist = down.finetune(t, ["layer1.res1", "layer2"], _images(32, 2).repeat(1, 1, 4, 4), epochs=1, lr=0.05,
                             batch_size=16, device="cpu", progress=False)
    chosen = set(down.layer_keys(t.encoder, ["layer1.res1", "layer2"]))
    after = enc.state_dict()
    for k, v in before.items():
        same = torch.equal(after[k], v)
        if k in chosen and after[k].is_floating_point() and "num_batches" not in k:
            assert not same, f"{k} was not trained"
        elif k not in chosen:
            assert same, f"{k} changed although frozen"
    assert all(torch.equal(v, before[k]) for k, v in t.encoder.state_dict().items())  # original untouched
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"])


def test_replace_layers_swaps_exactly_those_layers():
    a, b = _trained(0).encoder, _trained(1).encoder
    out = down.replace_layers(a, b, ["prep", "layer3.res2"])
    keys = set(down.layer_keys(a, ["prep", "layer3.res2"]))
    for k, v in out.state_dict().items():
        assert torch.equal(v, (b if k in keys else a).state_dict()[k])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(down.replace_layers(a, b, a.layer_names)(x), b(x))
    with pytest.raises(ValueError, match="architecture"):
        down.replace_layers(a, build_model("resnet9", width=0.25), ["prep"])


def _downstream_run(tmp_path, cache):
    f, m2 = _trained(0), _trained(1)
    train = load_dataset("synthetic", "train", n=40, seed=0)
    test = load_dataset("synthetic", "test", n=20, seed=0)
    second_train = load_dataset("synthetic", "train", n=30, seed=5)
    second_test = load_dataset("synthetic", "test", n=20, seed=5)
    P = SimpleNamespace(probe_test=20, second_n_train=30, second_n_test=20, probe_kind="knn", k_layers=2,
                        replace_counts=[1, 2], random_draws=1, force=False, finetune_epochs=1, finetune_lr=0.05,
                        pair=SimpleNamespace(split_seed=0, dataset="synthetic", batch_size=16))
    S = SimpleNamespace(cache=cache, device=torch.device("cpu"),
                        report=Report(tmp_path, "04_layermem", "smoke", "synthetic"))
    return SimpleNamespace(P=P, S=S, f=[f], load=lambda job: m2, jobs={"second": None}, cfg=f.config,
                           train_data=train, test_data=test, splits=SimpleNamespace(f_train=torch.arange(40)),
                           second_train=second_train, second_test=second_test)


def _table(layers):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"layer": layers, "LayerMem random": rng.random(len(layers)),
                         "Delta random": rng.standard_normal(len(layers))})


def test_replacement_brackets_f_and_the_second_encoder_and_is_cached(tmp_path, cache, monkeypatch):
    R = _downstream_run(tmp_path, cache)
    f, m2 = R.f[0], R.load(None)
    table = _table(f.encoder.layer_names)
    rep = down.replacement_table(R, table)
    assert list(rep.group.unique()) == ["none (f)", "most (LayerMem)", "most (Delta)", "least (LayerMem)",
                                        "least (Delta)", "random", "all (second-dataset encoder)"]
    tasks = down.probe_tasks(R)
    assert list(tasks) == ["synthetic", "synthetic (2nd)"]
    acc = rep.set_index(["strategy", "dataset"]).accuracy
    for k in tasks:   # no layer replaced is f; every layer replaced is the second dataset's encoder
        assert acc[("none (f)", k)] == down.probe(R, tasks, f.encoder, k)
        assert acc[("all (second-dataset encoder)", k)] == down.probe(R, tasks, m2.encoder, k)
    for k in (1, 2):   # each count of replaced layers picks its own layers
        row = rep[(rep.strategy == "most (LayerMem)") & (rep["k layers"] == k)]
        assert row.layers.iloc[0] == ", ".join(down.pick_layers(table, k, "LayerMem"))
    assert len(down.replaced(rep, 1).group.unique()) == 7 and set(rep["k layers"]) == {0, 1, 2, len(table)}
    monkeypatch.setattr(down, "replace_layers", lambda *a: pytest.fail("recomputed a cached replacement"))
    pd.testing.assert_frame_equal(down.replacement_table(R, table), rep)


def test_finetune_table_fine_tunes_each_choice_once_and_caches_it(tmp_path, cache, monkeypatch):
    R = _downstream_run(tmp_path, cache)
    table = _table(R.f[0].encoder.layer_names)
    ft = down.finetune_table(R, table)
    assert list(ft.strategy) == ["none (frozen f)", "LayerMem", "Delta", "last", "random #1"]
    assert list(ft.group) == ["none (frozen f)", "LayerMem", "Delta", "last", "random"]
    assert ft.layers.iloc[3] == ", ".join(R.f[0].encoder.layer_names[-2:])
    assert ft["final loss"].iloc[1:].notna().all() and ft.accuracy.between(0, 1).all()
    monkeypatch.setattr(down, "finetune", lambda *a, **k: pytest.fail("fine-tuned a cached choice again"))
    pd.testing.assert_frame_equal(down.finetune_table(R, table), ft)
