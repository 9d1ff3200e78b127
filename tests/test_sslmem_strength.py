"""Notebook 02's evidence strength: per-seed SSLMem at no extra pass, the offset-free own-point test, the d that
a claim needs, and a Table 1 cell's snapshots."""
import numpy as np
import pandas as pd
import pytest
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.experiments.grid import cell_spec, main_recipe_snapshots
from memlab.experiments.sslmem_strength import d_point, d_trend, raw_per_seed, seed_table, seeds_needed
from memlab.metrics.sslmem import own_point_margins, sslmem_scores
from memlab.metrics.stats import cohens_d_se, one_sample, welch, welch_d_threshold
from memlab.metrics.trend import AGREES, HOLDS
from test_grid import BASE
from test_metrics import Fn


def mixing(noise: float):
    """An encoder that mixes each pixel with its neighbour: different seeds, different alignment losses."""
    return Fn(lambda x: x.flatten(1) + noise * x.flatten(1).roll(1, 1))


def test_per_encoder_alignment_rows_average_to_the_seed_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    assert not torch.equal(x, x.flip(3))
    bank = ViewBank(Augmentation("none", flip=True), n_views=4, seed=0)
    fs, gs = [mixing(0.0), mixing(0.5)], [mixing(1.0), mixing(2.0)]
    r = sslmem_scores(fs, gs, x, np.arange(6), bank, rep="flat")["out"]
    assert r["align_f_each"].shape == (2, 6) and r["align_g_each"].shape == (2, 6)
    assert torch.allclose(r["align_f_each"].mean(0), r["align_f"])
    assert torch.allclose(r["align_g"] - r["align_f"], r["raw"])
    alone = sslmem_scores([fs[1]], [gs[1]], x, np.arange(6), bank, rep="flat")["out"]   # seed 1 scored alone
    assert torch.allclose(r["align_f_each"][1], alone["align_f"]) and torch.allclose(r["align_g_each"][1], alone["align_g"])


def test_own_point_margins_cancel_a_common_offset():
    rng = np.random.default_rng(0)
    mem = np.abs(rng.normal(0.02, 0.01, 400))       # each encoder aligns its own points 0.02 better
    offset = -0.05                                   # and g aligns every point 0.05 better than f
    raw_c, raw_i = mem[:200] + offset, -mem[200:] + offset
    assert welch(raw_c, np.full(200, offset) + rng.normal(0, 0.01, 200))["p"] < 1e-6
    assert one_sample(raw_c)["p"] > 0.99                                  # Table 16's m(S_C) > 0 is swamped
    m = own_point_margins(raw_c, raw_i).numpy()
    assert m.shape == (400,) and m.mean() == pytest.approx(mem.mean(), abs=1e-6)   # the offset cancels
    assert one_sample(m)["p"] < 1e-6
    with pytest.raises(ValueError, match="as many scored points"):
        own_point_margins(raw_c, raw_i[:10])


def test_d_standard_error_and_threshold_values():
    assert cohens_d_se(0.5, 100, 100) == pytest.approx(np.sqrt(0.02 + 0.25 / 400))
    assert cohens_d_se(0.0, 50, 50) == pytest.approx(0.2)
    assert welch_d_threshold(500, 500, 0.01) == pytest.approx(0.14737, abs=1e-4)
    # at the threshold the one-sided pooled t-test has p = alpha exactly
    from scipy import stats
    d = welch_d_threshold(40, 60, 0.05)
    t = d / np.sqrt(1 / 40 + 1 / 60)
    assert stats.t.sf(t, 98) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        welch_d_threshold(1, 10, 0.01)


def _results(seed_effects, n=300, seed=0):
    """Constructed per-seed alignments: seed s shifts S_C's raw score by seed_effects[s], plus per-seed noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in ("S_C", "S_S", "S_I"):
        af = rng.normal(0.5, 0.05, (len(seed_effects), n))
        noise = rng.normal(0, 0.05, (len(seed_effects), n))
        shift = np.array(seed_effects)[:, None] * {"S_C": 1, "S_S": 0, "S_I": -1}[k]
        ag = af + noise + shift
        out[k] = {"L": {"align_f_each": torch.tensor(af), "align_g_each": torch.tensor(ag)}}
    return out


def test_seed_table_tests_each_seed_alone_and_averaged():
    res = _results([0.0, 0.03])                     # seed 0 memorises nothing, seed 1 clearly
    t = seed_table(res, "L", [7, 9])
    assert list(t["f/g seeds"]) == ["seed 7 alone", "seed 9 alone", "seeds 7, 9 averaged"]
    raw1 = raw_per_seed(res, "S_C", "L")[1]
    assert t["p C>S"].iloc[1] == pytest.approx(welch(raw1, raw_per_seed(res, "S_S", "L")[1])["p"])
    assert t["p C>S"].iloc[0] > 0.01 and t["p C>S"].iloc[1] < 1e-6
    assert t["p own"].iloc[1] < t["p own"].iloc[0]
    assert seeds_needed(t, 0.01) == 2               # seed 0 fails alone, the average passes
    assert seeds_needed(seed_table(_results([0.03, 0.03]), "L", [0, 1]), 0.01) == 1
    assert seeds_needed(seed_table(_results([0.0, 0.0], seed=3), "L", [0, 1]), 1e-9) is None
    with pytest.raises(ValueError, match="pairs f and g seeds"):
        raw_per_seed({"S_C": {"L": {"align_f_each": torch.zeros(2, 3), "align_g_each": torch.zeros(1, 3)}}}, "S_C", "L")


def test_d_trend_uses_the_claims_bar_at_the_last_point():
    rng = np.random.default_rng(1)
    rows = []
    for e, d in ((8, 0.02), (15, 0.08), (30, 0.14)):
        c, s = rng.normal(d, 1, 500), rng.normal(0, 1, 500)
        rows.append({"epoch": e, **d_point(c, s)})
    pts = pd.DataFrame(rows)
    tr = d_trend(pts, 0.01, passed=False)
    assert tr.threshold == pytest.approx(welch_d_threshold(500, 500, 0.01))
    assert tr.verdict in (AGREES, "fails") and tr.slope > 0
    assert d_trend(pts, 0.01, passed=True).verdict == HOLDS


def test_cell_snapshot_epochs_are_checked_and_follow_the_main_recipe():
    other = cell_spec({"method": "dino", "snapshot_epochs": [1]}, BASE)
    assert main_recipe_snapshots(other, BASE, (1, 2)) == (1,)          # its own snapshots
    assert main_recipe_snapshots(cell_spec({"method": "dino"}, BASE), BASE, (1, 2)) == ()
    same = cell_spec({"method": "simclr", "snapshot_epochs": [1]}, BASE)
    assert main_recipe_snapshots(same, BASE, (1, 2)) == (1, 2)         # shares the main pair's encoders
    with pytest.raises(ValueError, match="keeps no snapshot"):
        main_recipe_snapshots(same, BASE, (2,))
    for bad in ([2], [0], [1, 1], [1.5]):                              # BASE trains 2 epochs
        with pytest.raises(ValueError, match="snapshot_epochs"):
            cell_spec({"method": "dino", "snapshot_epochs": bad}, BASE)
