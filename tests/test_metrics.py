"""SSLMem, statistics and probes on constructed cases."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.models.networks import Encoder
from memlab.metrics.probes import knn_accuracy, linear_probe
from memlab.metrics.sslmem import alignment_losses, normalised_sslmem, sslmem_raw, sslmem_scores
from memlab.metrics.stats import cohens_d, subset_table, welch


class Fn(Encoder):
    """An encoder given by a function of the input; one layer ("out")."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.layer_names, self.out_dim = fn, ["out"], 3
        self.dummy = nn.Parameter(torch.zeros(1))

    def _layers(self, x):
        yield "out", self.fn(x)


def imgs(n=12):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


FLIP_ONLY = Augmentation("none", flip=True)


def test_view_invariant_encoder_has_zero_alignment_loss():
    bank = ViewBank(FLIP_ONLY, n_views=8)
    channel_means = Fn(lambda x: x.mean((2, 3)))            # exactly invariant to flips
    d = alignment_losses(channel_means, imgs(), np.arange(12), bank, rep="flat")["out"]
    assert d.shape == (12, 4) and d.abs().max() < 1e-5
    pixels = Fn(lambda x: x)                                 # not invariant: positive loss for flipped pairs
    d2 = alignment_losses(pixels, imgs(), np.arange(12), bank, rep="flat")["out"]
    assert (d2 > 0.1).any() and (d2 >= 0).all()


def test_alignment_is_distance_of_l2_normalised_views():
    bank = ViewBank(Augmentation("simclr"), n_views=4, seed=1)
    enc = Fn(lambda x: x[:, :, :4, :4])
    x, idx = imgs(5), np.arange(5)
    d = alignment_losses(enc, x, idx, bank, rep="flat")["out"]
    for k in range(2):
        a = bank.view(x, idx, 2 * k)[:, :, :4, :4].flatten(1)
        b = bank.view(x, idx, 2 * k + 1)[:, :, :4, :4].flatten(1)
        ref = (a / a.norm(dim=1, keepdim=True) - b / b.norm(dim=1, keepdim=True)).norm(dim=1)
        assert torch.allclose(d[:, k], ref, atol=1e-5)
    assert float(d.max()) <= 2 + 1e-6


def test_sslmem_sign_on_constructed_encoders():
    # f is invariant on the first half of the points (as if it had trained on them), g on the second half
    x, idx = imgs(12), np.arange(12)
    bank = ViewBank(FLIP_ONLY, n_views=10, seed=2)

    def selective(invariant_ids):
        mask = torch.zeros(12, dtype=torch.bool)
        mask[invariant_ids] = True
        lookup = {}  # identify points by their (flip-invariant) channel means
        for i in range(12):
            lookup[tuple(FLIP_ONLY.normalize(x[i:i + 1]).mean((2, 3)).round(decimals=4).flatten().tolist())] = i

        def fn(v):
            keys = v.mean((2, 3)).round(decimals=4)
            ids = torch.tensor([lookup[tuple(k.tolist())] for k in keys])
            inv = torch.cat([v.mean((2, 3)), torch.zeros(len(v), 3 * 32 * 32 - 3)], 1)
            return torch.where(mask[ids][:, None], inv, v.flatten(1))
        return Fn(fn)

    res = sslmem_scores(selective(range(6)), selective(range(6, 12)), x, idx, bank, rep="flat")["out"]
    m = res["raw"]
    assert (m[:6] > 0).all() and (m[6:] < 0).all()
    mn = normalised_sslmem(m)
    assert mn.max() - mn.min() == pytest.approx(1.0)
    assert torch.equal(sslmem_raw(res["align_f"], res["align_g"]), m)


def test_normalisation_uses_reference_range():
    raw = torch.tensor([-1.0, 0.0, 3.0])
    assert torch.allclose(normalised_sslmem(raw), raw / 4)
    assert torch.allclose(normalised_sslmem(raw, torch.tensor([0.0, 2.0])), raw / 2)
    assert torch.allclose(normalised_sslmem(raw, span=8.0), raw / 8)                # LayerMem's shared range
    # all-zero reference scores: no point-specific difference at all, so no memorisation (0), not 0 / 0
    assert torch.equal(normalised_sslmem(raw, torch.zeros(3)), torch.zeros(3))
    with pytest.raises(ValueError, match="zero range"):                             # equal non-zero: no range
        normalised_sslmem(raw, torch.full((3,), 0.2))


def test_welch_and_effect_size():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 1, 400), rng.normal(0, 1, 400)
    r = welch(a, b)
    assert r["p"] < 1e-6 and 0.3 < r["d"] < 0.7 and r["t"] > 5
    assert welch(b, a)["p"] > 0.99
    assert cohens_d([1, 2, 3], [1, 2, 3]) == 0
    table = subset_table({"S_C": a, "S_S": b, "S_I": -a, "S_E": b})
    row = table.set_index("hypothesis (H1)").loc["m(S_C) > m(S_S)"]
    assert row["p"] == pytest.approx(r["p"])
    assert table.set_index("hypothesis (H1)").loc["m(S_I) < 0", "p"] < 1e-6


def test_knn_and_linear_probe_on_separable_and_random_features():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    centres = torch.randn(4, 16, generator=g) * 3
    x = centres[y] + torch.randn(400, 16, generator=g)
    assert knn_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.95
    assert linear_probe(x[:300], y[:300], x[300:], y[300:]) > 0.95
    noise = torch.randn(400, 16, generator=g)
    assert knn_accuracy(noise[:300], y[:300], noise[300:], y[300:]) < 0.45
    assert linear_probe(noise[:300], y[:300], noise[300:], y[300:]) < 0.45


def test_degenerate_samples_never_come_out_significant():
    from memlab.metrics.stats import one_sample
    same = welch([0.1] * 139, [0.1] * 693)   # scipy: t = 8.76, p = 2.9e-17 from rounding in the means
    assert (same["t"], same["p"], same["mean_a"], same["note"]) == (0.0, 0.5, 0.1, "identical constant samples: no difference")
    assert np.isnan(same["d"]) and np.isnan(cohens_d([0.3] * 10, [0.3] * 20))   # scipy's d: 2.44
    assert welch([0.3] * 10, [0.3] * 5, "two-sided")["p"] == 1.0
    apart = welch([1.0] * 5, [0.0] * 5)                 # no spread at all: undefined, and it cannot pass p < alpha
    assert np.isnan(apart["p"]) and "constant" in apart["note"]
    tiny = welch([1.0], [0.0, 1.0, 2.0])
    assert np.isnan(tiny["p"]) and "fewer than 2" in tiny["note"]
    assert one_sample([0.0] * 8)["p"] == 0.5 and np.isnan(one_sample([0.1] * 50)["p"])
    assert one_sample([0.0] * 8, "two-sided")["p"] == 1.0
    with pytest.raises(ValueError, match=r"a hold 1 non-finite"):
        welch([0.1, float("nan"), 0.2], [0.1, 0.2])
    ok = welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.5])        # ordinary samples are untouched: scipy's numbers
    assert ok["note"] == "" and ok["t"] == pytest.approx(-0.1796053, abs=1e-6)


def test_probes_refuse_non_finite_features():
    from memlab.metrics.probes import knn_loo_accuracy
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite features: train_x \(1 of 80 values\)"):
        knn_accuracy(bad, y, x, y)
    with pytest.raises(ValueError, match=r"test_x \(1 of 80"):
        linear_probe(x, y, bad, y)
    with pytest.raises(ValueError, match="non-finite features: x"):
        knn_loo_accuracy(bad, y)


def test_metrics_refuse_non_finite_scores():
    from memlab.metrics.layermem import layermem
    with pytest.raises(ValueError, match=r"raw scores hold 1 non-finite"):
        normalised_sslmem(torch.tensor([0.1, float("nan"), 0.3]))
    with pytest.raises(ValueError, match=r"reference scores hold 1 non-finite"):
        normalised_sslmem(torch.tensor([0.1, 0.3]), torch.tensor([0.1, float("inf")]))
    with pytest.raises(ValueError, match=r"layer\(s\) \['conv2'\] hold non-finite"):
        layermem({"conv1": torch.tensor([0.1, 0.2]), "conv2": torch.tensor([float("inf"), 0.2])})


def test_one_reference_set_gives_one_normalised_score_in_every_table():
    from memlab.metrics.sslmem import reference_label

    def res(**raw):
        return {k: {"last": {"raw": torch.tensor(v)}} for k, v in raw.items()}
    main = res(S_C=[0.2, 0.4], S_S=[-0.1, 0.1], S_I=[-0.6], S_E=[0.0])   # notebook 02's main table
    cell = res(S_C=[0.2, 0.4], S_S=[-0.1, 0.1])                          # a grid cell, Table 8, ...
    # the range over S_C u S_S is 0.4 - (-0.1) = 0.5 in both: S_C = [0.4, 0.8] (over all points: [0.2, 0.4])
    for r in (main, cell):
        assert torch.allclose(normalised_sslmem(r, layer="last")["S_C"], torch.tensor([0.4, 0.8]))
        assert reference_label(r) == "S_C u S_S"
    assert torch.allclose(normalised_sslmem(main, layer="last")["S_I"], torch.tensor([-1.2]))  # outside R: may leave [-1, 1]
    assert torch.allclose(normalised_sslmem(main, "all", layer="last")["S_C"], torch.tensor([0.2, 0.4]))
    with pytest.raises(ValueError, match="layer"):
        normalised_sslmem(main)
    assert reference_label(res(S_C=[0.1, 0.3])) == "S_C"                          # removal: f's half only
