"""Grid cells of the cross-method tables: validation before compute, caching, and the overlap sizes."""
import pytest
import torch

from memlab.experiments.grid import cell_spec, overlap_sizes, run_cell
from memlab.experiments.recipes import load_splits, scored_subsets

BASE = dict(method="simclr", arch="resnet9", width=0.125, dataset="synthetic", epochs=2, batch_size=32,
            optimizer="sgd", lr=0.05, weight_decay=5e-4, temperature=0.5, seeds=[0])


def test_cell_spec_fills_defaults_and_rejects_unknown_keys():
    s = cell_spec({"method": "dino", "lr": 0.001}, BASE)
    assert s["method"] == "dino" and s["lr"] == 0.001 and s["arch"] == "resnet9" and s["label"] == "dino/resnet9"
    assert (s["warmup_epochs"], s["blur"]) == (1.0, 0.0)          # encoder_config's defaults
    from memlab.experiments.grid import cell_config
    sup = cell_spec({"method": "supervised", "micro_batch": 8}, BASE)
    assert cell_config(sup, (0.5,) * 3, (0.25,) * 3).micro_batch == 8
    assert cell_config(s, (0.5,) * 3, (0.25,) * 3).micro_batch == 0
    with pytest.raises(ValueError, match=r"no value for \['epochs'\]"):
        cell_spec({"method": "dino"}, {k: v for k, v in BASE.items() if k != "epochs"})
    assert cell_spec({"method": "mae", "arch": "vit_tiny", "dataset": "cifar10"}, BASE)["label"] == "mae/vit_tiny/cifar10"
    with pytest.raises(ValueError, match="unknown grid-cell key"):
        cell_spec({"method": "dino", "learning_rate": 0.1}, BASE)
    with pytest.raises(TypeError):
        cell_spec("dino", BASE)
    with pytest.raises(ValueError, match="seeds"):
        cell_spec({"seeds": []}, BASE)


def test_overlap_sizes():
    assert overlap_sizes(3000, 0.8) == (2400, 300)
    assert overlap_sizes(3000, 0.7) == (2100, 450)
    with pytest.raises(ValueError):
        overlap_sizes(3000, 1.0)
    with pytest.raises(ValueError, match="no candidates"):
        overlap_sizes(10, 0.95)


@pytest.mark.parametrize("method", ["dino", "mae"])
def test_run_cell_trains_scores_and_is_served_from_the_cache(method, cache):
    tr, te, sp = load_splits("synthetic", split_shared=96, split_candidates=32, split_independent=32, split_extra=32,
                             split_seed=0, synthetic_n_train=200, synthetic_n_test=64)
    sc = scored_subsets(sp, tr.labels, 32, 0)
    sub = {k: sc[k] for k in ("S_C", "S_S")}
    cell = {"method": method, "optimizer": "adamw", "lr": 1e-3}
    if method == "mae":
        cell.update(arch="vit_tiny", model_kw={"depth": 1, "embed_dim": 48, "num_heads": 3})
    spec = cell_spec(cell, BASE)
    kw = dict(cache=cache, device="cpu", view_pairs=2, rep="flat", probe_idx=torch.arange(32), progress=False)
    a = run_cell(spec, tr, te, sp, sub, **kw)
    assert not a.fs[0].from_cache and set(a.m) == {"S_C", "S_S"} and len(a.m["S_C"]) == 32
    assert a.measure_aug == ("crop" if method == "mae" else "simclr")
    width = float(torch.cat(list(a.m.values())).max() - torch.cat(list(a.m.values())).min())
    assert width == pytest.approx(1.0, abs=1e-5)  # normalised over all scored points of the cell
    b = run_cell(spec, tr, te, sp, sub, **kw)
    assert b.fs[0].from_cache and b.gs[0].from_cache
    assert torch.equal(a.m["S_C"], b.m["S_C"]) and a.probe_acc == b.probe_acc
    row = a.summary()
    assert row["cell"] == spec["label"] and 0 <= row["linear probe acc"] <= 1
