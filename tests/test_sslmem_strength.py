"""Notebook 02's evidence strength: per-seed SSLMem at no extra pass, the offset-free own-point test, the d that
a claim needs, and a Table 1 cell's snapshots."""
import numpy as np
import pandas as pd
import pytest
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.experiments.grid import cell_spec, main_recipe_snapshots
from memlab.experiments.sslmem_strength import d_point, d_trend, raw_per_seed, seed_table, seeds_needed
from memlab.metrics.sslmem import sslmem_scores
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
    assert torch.allclose(r["align_f_each"][1], alone["align_f"])
    assert torch.allclose(r["align_g_each"][1], alone["align_g"])


def test_own_point_test_is_blind_to_a_common_offset():
    rng = np.random.default_rng(0)
    mem, noise = 0.004, 0.02                         # each encoder aligns its own points 0.004 better
    for offset in (0.0, -0.05):                      # and g may align every point 0.05 better than f
        raw = {"S_C": mem + offset + rng.normal(0, noise, 500), "S_S": offset + rng.normal(0, noise, 500),
               "S_I": -mem + offset + rng.normal(0, noise, 500)}
        res = {k: {"L": {"align_f_each": torch.zeros(1, 500, dtype=torch.float64),
                         "align_g_each": torch.tensor(v)[None]}} for k, v in raw.items()}
        row = seed_table(res, "L", [0]).iloc[0]
        assert row["p own"] < 1e-6 and row["t own"] == pytest.approx(welch(raw["S_C"], raw["S_I"])["t"])
        if offset:
            assert one_sample(raw["S_C"])["p"] > 0.99       # Table 16's m(S_C) > 0 is swamped by the offset
    # the own-point t is the same with and without the offset (same noise draws): the offset drops out
    rng = np.random.default_rng(1)
    e_c, e_i = rng.normal(0, noise, 500), rng.normal(0, noise, 500)
    t0 = welch(mem + e_c, -mem + e_i)["t"]
    assert welch(mem + e_c - 0.05, -mem + e_i - 0.05)["t"] == pytest.approx(t0)


def test_d_standard_error_and_threshold_values():
    assert cohens_d_se(0.5, 100, 100) == pytest.approx(np.sqrt(0.02 + 0.25 / 400))
    assert cohens_d_se(0.0, 50, 50) == pytest.approx(0.2)
    assert welch_d_threshold(500, 500, 0.01) == pytest.approx(0.14737, abs=1e-4)
    # at the threshold, Welch's test of two samples with equal variances has p = alpha exactly (unequal sizes)
    rng = np.random.default_rng(0)
    a0, b0 = rng.normal(size=40), rng.normal(size=60)
    a0, b0 = ((v - v.mean()) / v.std(ddof=1) for v in (a0, b0))        # mean 0, variance 1 each
    d = welch_d_threshold(40, 60, 0.05)
    assert welch(a0 + d, b0)["p"] == pytest.approx(0.05, abs=1e-9)
    assert welch(a0 + 1.01 * d, b0)["p"] < 0.05 < welch(a0 + 0.99 * d, b0)["p"]
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
    # not monotone: 2 seeds pass, all 3 fail -> the profile's own design fails, so no k is enough
    t3 = pd.DataFrame({"n seeds": [1, 1, 1, 2, 3], "p C>S": [0.5, 0.5, 0.5, 0.001, 0.2]})
    assert seeds_needed(t3, 0.01) is None
    t3["p C>S"] = [0.5, 0.001, 0.5, 0.001, 0.001]
    assert seeds_needed(t3, 0.01) == 2
    with pytest.raises(ValueError, match="pairs f and g seeds"):
        raw_per_seed({"S_C": {"L": {"align_f_each": torch.zeros(2, 3), "align_g_each": torch.zeros(1, 3)}}}, "S_C", "L")


def test_d_trend_uses_the_claims_bar_at_the_last_point():
    z = np.random.default_rng(1).normal(0, 1, 2000)
    z = (z - z.mean()) / z.std(ddof=1)               # exactly mean 0, sd 1: each point's d is exactly its shift
    pts = pd.DataFrame([{"epoch": e, **d_point(z + d, z)} for e, d in ((8, 0.02), (15, 0.08), (30, 0.14))])
    assert list(pts["d"].round(10)) == [0.02, 0.08, 0.14]
    tr = d_trend(pts, 0.01, passed=False)
    assert tr.threshold == pytest.approx(welch_d_threshold(2000, 2000, 0.01))
    assert tr.verdict == AGREES and tr.slope > 0 and tr.slope_p < 0.05   # d grows 0.02 -> 0.14, se about 0.032
    assert d_trend(pts, 0.01, passed=True).verdict == HOLDS
    flat = pts.assign(d=[0.08, 0.08, 0.08])
    assert d_trend(flat, 0.01, passed=False).verdict == "fails"


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
