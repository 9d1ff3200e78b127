"""Notebook 02's experiments layer (memlab.experiments.sslmem, sslmem_scores, sslmem_tables)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from memlab.experiments.recipes import sslmem_pair
from memlab.experiments.sslmem import SSLMemData, SSLMemParams
from memlab.experiments.sslmem_scores import fraction_above, planted_auc
from memlab.experiments.sslmem_tables import ranking_kind
from memlab.io.params import ParameterError, notebook_defaults

ROOT = Path(__file__).resolve().parents[1]


def values(profile: str = "laptop", **over) -> dict:
    """Notebook 02's parameter values in ``profile``, with ``over`` applied."""
    v = notebook_defaults(ROOT / "notebooks" / "02_sslmem.py")
    v.update(yaml.safe_load((ROOT / "params" / profile / "02_sslmem.yaml").read_text()) or {})
    return {**v, **over}


@pytest.mark.parametrize("profile", ["smoke", "laptop", "paper"])
def test_the_notebook_pair_is_the_recipe_notebooks_04_and_05_load(profile):
    p = SSLMemParams(**values(profile))
    assert p.pair == sslmem_pair(profile)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert p.pair.config(mean, std) == sslmem_pair(profile).config(mean, std)   # equal configs: equal cache keys


def test_bad_parameters_fail_before_compute_and_name_the_parameter():
    with pytest.raises(ParameterError, match=r"'grid'.*'epoch'.*did you mean 'epochs'"):
        SSLMemParams(**values(grid=[{"method": "dino", "epoch": 3}]))
    with pytest.raises(ParameterError, match="supervised_epochs"):
        SSLMemParams(**values(supervised_epochs=[]))
    with pytest.raises(ParameterError, match="normalize_over"):
        SSLMemParams(**values(normalize_over="S_X"))
    with pytest.raises(ParameterError, match="seeds"):
        SSLMemParams(**values(seeds=[]))
    SSLMemParams(**values(supervised_epochs=[], tables=["table1"]))   # Table 1 alone needs no supervised encoder
    with pytest.raises(ParameterError, match=r"'dejavu_k' = 3000.*probe_test"):
        SSLMemParams(**values(dejavu_k=3000))
    with pytest.raises(ParameterError, match=r"'train_aug' = 'colour'"):
        SSLMemParams(**values(train_aug="colour"))
    with pytest.raises(ParameterError, match=r"grid cell dino/resnet9: aug"):
        SSLMemParams(**values(grid=[{"method": "dino", "aug": "jitter"}]))


def test_train_aug_reaches_the_pair_and_the_ssl_cells_but_not_the_supervised_ones():
    from memlab.engine.config import config_key
    from memlab.experiments.grid import cell_config
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    crop, own = SSLMemParams(**values(train_aug="crop")), SSLMemParams(**values(train_aug=""))
    assert crop.pair.config(mean, std).aug == "crop" and own.pair.config(mean, std).aug is None
    assert config_key(crop.pair.config(mean, std)) != config_key(own.pair.config(mean, std))  # other encoders
    assert [c["aug"] for c in crop.cells] == ["crop"] * len(crop.cells)
    assert all(s["aug"] == "" for s in crop.supervised_specs)               # supervised keeps its weak views
    simclr = crop.cells[0]                                                   # the main recipe, served by the pair
    assert crop.snapshots(simclr) == tuple(crop.snapshot_epochs)
    assert cell_config(simclr, mean, std, crop.snapshots(simclr)) == crop.pair.config(mean, std)
    other = {**simclr, "aug": ""}                                            # the same cell with SimCLR's views
    assert crop.snapshots(other) == tuple(other["snapshot_epochs"])          # is not the main pair


def test_table_cells_follow_the_pair_and_the_selected_tables():
    p = SSLMemParams(**values(tables=["table7", "table9"], overlap_fracs=[0.8], simclr_augs=["crop"],
                              mae_mask_ratios=[0.9]))
    assert p.grid_specs == [] and p.supervised_specs == []                  # Table 1 and 11 not selected
    (fr, spec, key), = p.overlap_specs
    assert key == ("cifar10", 1200, 150, 150)                               # 80% of 1500 shared, the rest split
    assert spec["method"] == p.method and spec["epochs"] == p.epochs
    simclr, mae = p.table9_specs
    assert simclr["aug"] == "crop" and simclr["method"] == p.method
    assert mae["objective_kw"] == {"mask_ratio": 0.9} and mae["model_kw"] == p.grid[-1]["model_kw"]
    main = SSLMemParams(**values())
    assert main.snapshots(main.cells[0]) == tuple(main.snapshot_epochs)    # the main recipe keeps its snapshots
    assert main.snapshots(main.cells[1]) == tuple(main.cells[1]["snapshot_epochs"]) == (8, 15)  # its curve's own
    sup = [s["epochs"] for s in main.supervised_specs]
    assert sup == sorted(main.supervised_epochs) and all(s["method"] == "supervised" for s in main.supervised_specs)


def test_data_of_other_pool_sizes_is_loaded_once_with_its_own_splits():
    p = SSLMemParams(**values("smoke"))
    d = SSLMemData(p)
    assert d.get() is d.get(p.dataset)                                      # the pair's data: one entry
    train, _, splits, scored = d.get(p.dataset, 240, 40, 40)
    assert (len(splits.shared), len(splits.candidates), len(splits.independent)) == (240, 40, 40)
    assert d.get(p.dataset, 240, 40, 40)[2] is splits
    assert len(scored["S_S"]) == min(p.score_shared, 240) and torch.equal(scored["S_C"], splits.candidates)
    sizes = d.sizes().set_index("subset")
    assert sizes.loc["S_S", "size"] == p.split_shared and sizes.loc["S_S", "scored"] == p.score_shared


def test_fraction_above_counts_strictly_greater_scores():
    m = {"S_C": torch.tensor([0.1, 0.5, 0.9]), "S_S": torch.tensor([-0.2, 0.0, 0.0, 0.6])}
    t = fraction_above(m, np.array([0.0, 0.5]))
    assert t["S_C"].tolist() == pytest.approx([1.0, 1 / 3]) and t["S_S"].tolist() == pytest.approx([0.25, 0.25])


def test_planted_candidates_scored_highest_give_auc_one_per_kind():
    candidates = list(range(100, 110))
    planted = {102: "rare_variant", 105: "corruption", 999: "flipped_label"}   # 999 is not a candidate
    scores = np.array([0.1, 0.0, 0.9, 0.2, 0.1, 0.8, 0.3, 0.0, 0.1, 0.2])     # the two planted ones score highest
    rows, curves = planted_auc(candidates, planted, scores)
    table = {r["atypical kind"]: r for r in rows}
    assert set(table) == {"all", "rare_variant", "corruption"}                # no flipped-label candidate: skipped
    assert all(r["ROC AUC"] == 1.0 for r in rows) and set(curves) == set(table)
    assert (table["all"]["n atypical"], table["all"]["n typical"]) == (2, 8)
    assert (table["corruption"]["n atypical"], table["corruption"]["n typical"]) == (1, 8)   # the other kind left out
    rows, _ = planted_auc(candidates, planted, -scores)                        # reversed ranking: AUC 0
    assert rows[0]["ROC AUC"] == 0.0


def test_ranking_kinds_of_tables_12_and_13():
    assert [ranking_kind(n) for n in ("Feldman (supervised)", "supervised 50 ep.", "dino/resnet9")] == [
        "Feldman", "supervised", "SSL"]
