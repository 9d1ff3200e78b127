"""Agreement between memorisation rankings (Tables 12-13) and Feldman's label memorisation."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from memlab.metrics.rankings import agreement, feldman, square, topk_overlap


def test_topk_overlap_on_known_rankings():
    a = np.arange(10.0)
    assert topk_overlap(a, a, 3) == 1.0
    assert topk_overlap(a, -a, 5) == 0.0
    b = a.copy()
    b[[9, 0]] = b[[0, 9]]  # the top point of a falls to the bottom of b
    assert topk_overlap(a, b, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k must"):
        topk_overlap(a, a, 11)
    with pytest.raises(ValueError, match="length"):
        topk_overlap(a, a[:5], 2)


def test_agreement_kendall_tau_and_square_matrix():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    scores = {"x": x, "same": 2 * x + 1, "reversed": -x, "noise": rng.normal(size=300)}
    t = agreement(scores, ks=(10, 50, 1000))
    r = t.set_index(["a", "b"])
    assert r.loc[("x", "same"), "kendall_tau"] == pytest.approx(1.0) and r.loc[("x", "same"), "p"] < 1e-10
    assert r.loc[("x", "reversed"), "kendall_tau"] == pytest.approx(-1.0)
    assert abs(r.loc[("x", "noise"), "kendall_tau"]) < 0.15 and r.loc[("x", "noise"), "p"] > 0.001
    assert r.loc[("x", "same"), "top10"] == 1.0 and r.loc[("x", "reversed"), "top50"] == 0.0
    assert "top1000" not in t  # k larger than the points is skipped
    m = square(t, "kendall_tau", list(scores))
    assert np.allclose(m.values, m.values.T) and np.allclose(np.diag(m.values), 1)
    assert m.loc["reversed", "x"] == pytest.approx(-1.0)


class FixedHead:
    """A stand-in supervised objective whose logits are given per image (looked up by its first pixel)."""

    def __init__(self, logits):
        self.table = logits

    def logits(self, encoder, x):
        return self.table[x[:, 0, 0, 0].long()]

    def eval(self):
        return self


def fake(logits):
    enc = torch.nn.Linear(1, 1)
    return SimpleNamespace(encoder=enc, objective=FixedHead(torch.as_tensor(logits, dtype=torch.float32)))


def test_feldman_is_the_true_label_probability_under_f_minus_g():
    n = 4
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    labels = torch.tensor([0, 1, 0, 1])
    f_logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 0.0]])  # f learned points 0 and 1
    g_logits = torch.zeros(n, 2)                                                # g is at chance everywhere
    mem = feldman([fake(f_logits)], [fake(g_logits)], images, labels, lambda x: x.float(), device="cpu")
    p = torch.sigmoid(torch.tensor(4.0))
    assert torch.allclose(mem, torch.stack([p - 0.5, p - 0.5, torch.tensor(0.0), torch.tensor(0.0)]), atol=1e-6)
    # averaging over several f seeds: the expectation over the training algorithm
    mem2 = feldman([fake(f_logits), fake(g_logits)], [fake(g_logits)], images, labels, lambda x: x.float(), device="cpu")
    assert torch.allclose(mem2, mem / 2, atol=1e-6)
    with pytest.raises(ValueError, match="supervised"):
        feldman([SimpleNamespace(encoder=torch.nn.Linear(1, 1), objective=object())], [fake(g_logits)], images, labels,
                lambda x: x.float(), device="cpu")


def test_topk_overlap_breaks_ties_at_random_in_expectation():
    assert topk_overlap([1.0] * 10, [1.0] * 10, 3) == pytest.approx(0.3)   # chance (k / n), not 1
    # a: 0 and 1 are in, 2 and 3 share the last place (1/2 each); b's top 3 is {0, 1, 2}
    assert topk_overlap([5, 4, 3, 3, 1], [5, 4, 3, 2, 1], 3) == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError, match="non-finite"):
        topk_overlap([1, float("nan")], [1, 2], 1)


def test_a_constant_ranking_has_no_kendall_tau_and_says_why():
    t = agreement({"sslmem": [0.1, 0.5, 0.3, 0.2], "flat": [0.2] * 4}, ks=(2,))
    row = t.iloc[0]
    assert np.isnan(row.kendall_tau) and np.isnan(row.p) and row.note == "constant scores (flat): no ranking"
    assert row.top2 == pytest.approx(0.5)    # flat ties: each point is in its top 2 with probability 1/2
