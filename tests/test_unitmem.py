"""UnitMem / ClassMem on hand-made activations, streaming equivalence, dead units, unit masking."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.models.networks import Encoder, build_model
from memlab.metrics.unitmem import classmem, layer_summary, layer_table, point_selectivity, unit_stats, unitmem

IDENTITY = Augmentation("none", mean=(0, 0, 0), std=(1, 1, 1))


class Table(Encoder):
    """Layer "act" outputs a fixed activation row per point; the point id is read from pixel (0, 0, 0)."""

    def __init__(self, acts, spatial=2):
        super().__init__()
        self.acts, self.spatial = torch.as_tensor(acts, dtype=torch.float32), spatial
        self.layer_names, self.out_dim = ["act"], self.acts.shape[1]
        self.dummy = nn.Parameter(torch.zeros(1))

    def _layers(self, x):
        ids = (x[:, 0, 0, 0] * 255).round().long()
        a = self.acts[ids][:, :, None, None].expand(-1, -1, self.spatial, self.spatial)
        yield "act", a


def id_images(n):
    x = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return x


def stats_for(acts, labels, **kw):
    enc = Table(acts)
    n = len(acts)
    return unit_stats(enc, id_images(n), torch.arange(n), torch.as_tensor(labels), ViewBank(IDENTITY, 3), **kw)["act"]


def test_unitmem_and_classmem_equal_the_formula_on_hand_made_activations():
    acts = np.array([[4.0, 1.0, 2.0],
                     [1.0, 1.0, 2.0],
                     [1.0, 3.0, 0.0],
                     [2.0, 3.0, 0.0]])
    labels = [0, 0, 1, 1]
    s = stats_for(acts, labels)
    for u in range(3):
        col = acts[:, u]
        mx, rest = col.max(), (col.sum() - col.max()) / 3
        assert float(unitmem(s)[u]) == pytest.approx((mx - rest) / (mx + rest))
        cmeans = [col[:2].mean(), col[2:].mean()]
        top, other = max(cmeans), min(cmeans)
        assert float(classmem(s)[u]) == pytest.approx((top - other) / (top + other))
    assert s.argmax.tolist() == [0, 2, 0]
    med = unitmem(stats_for(acts, labels, keep=["act"]), rest="median")
    assert float(med[0]) == pytest.approx((4 - 1) / (4 + 1))  # median of the others (1, 1, 2) is 1


def test_unit_firing_for_one_point_only_has_unitmem_one():
    acts = np.zeros((6, 2))
    acts[3, 0] = 5.0
    acts[:, 1] = 1.0
    s = stats_for(acts, [0, 0, 0, 1, 1, 1])
    um = unitmem(s)
    assert float(um[0]) == 1.0 and float(um[1]) == 0.0


def test_dead_units_are_flagged_and_excluded():
    acts = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    s = stats_for(acts, [0, 1, 1])
    assert s.dead.tolist() == [False, True]
    assert torch.isnan(unitmem(s)[1]) and torch.isnan(classmem(s)[1])
    summ = layer_summary(layer_table({"act": s}))
    assert summ.loc[0, "units_dead"] == 1 and summ.loc[0, "units_live"] == 1
    assert np.isfinite(summ.loc[0, "mean_unitmem"])


def test_streaming_over_batches_equals_one_batch_and_views_are_averaged():
    torch.manual_seed(0)
    enc = build_model("cnn", channels=(4, 6)).eval()
    x = torch.randint(0, 256, (37, 3, 16, 16), dtype=torch.uint8)
    y = torch.arange(37) % 3
    bank = ViewBank(Augmentation("simclr"), 4, seed=0)
    a = unit_stats(enc, x, torch.arange(37), y, bank, batch_size=5, keep=["block2"])
    b = unit_stats(enc, x, torch.arange(37), y, bank, batch_size=64, keep=["block2"])
    for l in ("block1", "block2"):
        assert torch.allclose(a[l].max, b[l].max, atol=1e-5) and torch.equal(a[l].argmax, b[l].argmax)
        assert torch.allclose(unitmem(a[l]), unitmem(b[l]), atol=1e-5, equal_nan=True)
        assert torch.allclose(classmem(a[l]), classmem(b[l]), atol=1e-5, equal_nan=True)
    # mu_u(x) is the mean over views of the spatial mean of the unit
    with torch.no_grad():
        v = torch.stack([enc.forward_features(bank.view(x, np.arange(37), k), ["block2"], pool=True)["block2"]
                         for k in range(4)]).mean(0)
    assert torch.allclose(a["block2"].values, v, atol=1e-5)
    assert a["block1"].values is None  # only kept layers store per-point values


def test_unit_mask_zeroes_exactly_the_masked_units_everywhere():
    torch.manual_seed(0)
    enc = build_model("resnet9", width=0.125).eval()
    x = torch.randn(2, 3, 32, 32)
    keep = torch.ones(16)
    keep[[1, 5]] = 0
    enc.set_unit_mask("layer1.res2", keep)
    f = enc.forward_features(x, ["layer1.res2"])["layer1.res2"]
    assert f[:, [1, 5]].abs().max() == 0 and f[:, 0].abs().max() > 0
    masked_out = enc(x)
    enc.set_unit_mask("layer1.res2", None)
    assert not torch.allclose(enc(x), masked_out)  # the mask propagates to later layers
    with pytest.raises(ValueError):
        enc.set_unit_mask("nope", keep)


def test_point_selectivity_equals_unitmem_for_the_argmax_point():
    acts = np.array([[4.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 3.0, 0.0], [2.0, 3.0, 0.0]])
    s = stats_for(acts, [0, 0, 1, 1], keep=["act"])
    sel, unit = point_selectivity(s)
    um = unitmem(s)
    assert float(sel[0]) == pytest.approx(float(um[0])) and int(unit[0]) == 0
    assert int(unit[2]) == 1 and float(sel[2]) == pytest.approx((3 - 5 / 3) / (3 + 5 / 3))
    assert (unit != 2).all()  # the dead unit is never chosen


def test_cached_unit_stats_roundtrip(cache):
    from types import SimpleNamespace

    from memlab.data.datasets import load_dataset
    from memlab.metrics.unitmem import cached_unit_stats
    data = load_dataset("synthetic", "train", n=30, seed=0)
    torch.manual_seed(0)
    trained = SimpleNamespace(key="enc-1", encoder=build_model("cnn", channels=(4, 6)).eval())
    bank = ViewBank(Augmentation("weak"), 2)
    a = cached_unit_stats(cache, trained, data, torch.arange(30), bank, keep=["block2"], progress=False)
    b = cached_unit_stats(cache, SimpleNamespace(key="enc-1", encoder=None), data, torch.arange(30), bank,
                          keep=["block2"], progress=False)  # no encoder needed: served from the cache
    assert torch.equal(a["block2"].values, b["block2"].values) and a["block1"].n == b["block1"].n == 30
    assert torch.allclose(unitmem(a["block1"]), unitmem(b["block1"]), equal_nan=True)


def _stats(mu, labels=None, layer="l"):
    """UnitStats of hand-made per-point means mu (points x units), as unit_stats would accumulate them."""
    from memlab.metrics.unitmem import UnitStats
    mu = torch.tensor(mu, dtype=torch.float32)
    y = torch.zeros(len(mu), dtype=torch.long) if labels is None else torch.tensor(labels)
    onehot = torch.nn.functional.one_hot(y, int(y.max()) + 1).float()
    mx, arg = mu.max(0)
    return UnitStats(layer, mx, arg, mu.sum(0), len(mu), onehot.t() @ mu, onehot.sum(0), mu,
                     torch.arange(len(mu)), mu.min(0).values)


def test_unitmem_median_is_the_true_median():
    # the other points' values {1, 2, 3, 0}: median 1.5 (torch.median's lower middle value, 1, gave 0.600)
    s = _stats([[4.0], [1.0], [2.0], [3.0], [0.0]])
    assert float(unitmem(s, "median")[0]) == pytest.approx((4 - 1.5) / (4 + 1.5))   # 0.4545
    assert float(unitmem(s, "mean")[0]) == pytest.approx((4 - 1.5) / (4 + 1.5))     # mean of the others: 1.5 too


def test_signed_activations_are_excluded_and_counted_not_nan_without_a_flag():
    # unit 0 has a negative value, unit 1 is dead, unit 2 is an ordinary non-negative unit
    s = _stats([[1.0, 0.0, 1.0], [-0.5, 0.0, 2.0], [2.0, 0.0, 3.0]], labels=[0, 1, 1])
    assert s.negative.tolist() == [True, False, False] and s.dead.tolist() == [False, True, False]
    um, cm = unitmem(s), classmem(s)
    assert torch.isnan(um[:2]).all() and torch.isnan(cm[:2]).all()
    assert float(um[2]) == pytest.approx((3 - 1.5) / (3 + 1.5))
    t = layer_table({"l": s})
    assert t[t.unitmem.isna()][["dead", "negative"]].any(axis=1).all()     # every NaN unit carries a flag
    row = layer_summary(t).iloc[0]
    assert (row.units_live, row.units_dead, row.units_negative) == (1, 1, 1)


def test_point_unit_link_is_the_papers_mu_max_link():
    from memlab.metrics.unitmem import link_test, point_unit_link
    # points x units: unit 0 is topped by point 0 (UnitMem (4-1)/(4+1) = 0.6), unit 1 by point 2
    # ((3-0.5)/(3+0.5) = 0.714); point 1 tops no unit, so it has no linked unit (not a score of -0.2)
    t = layer_table({"l": _stats([[4.0, 0.0], [1.0, 1.0], [1.0, 3.0]], labels=[0, 1, 0])})
    link = point_unit_link(t, [0, 1, 2]).set_index("point")
    assert link.n_units.tolist() == [1, 0, 1]
    assert link.mean_unitmem[0] == pytest.approx(0.6) and np.isnan(link.mean_unitmem[1])
    assert link.mean_unitmem[2] == pytest.approx(2.5 / 3.5)
    r = link_test(t, top=[0, 2], least=[1], layer="l")
    assert (r["units_top"], r["units_least"]) == (2, 0) and np.isnan(r["p"]) and "fewer than 2" in r["note"]
