import numpy as np
import pytest
import torch

from memlab.data.splits import Splits, balanced_order, balanced_subset, make_splits, random_labels

LABELS = np.arange(1000) % 10
TEST = np.arange(300) % 10


def test_disjoint_balanced_and_sized():
    s = make_splits(LABELS, TEST, shared=600, candidates=100, independent=100, extra=100, seed=0)
    assert s.sizes() == {"S_S": 600, "S_C": 100, "S_I": 100, "S_E": 100}
    sets = [set(s[k].tolist()) for k in ("S_S", "S_C", "S_I")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    for k in ("S_C", "S_I", "S_S"):
        assert np.all(np.bincount(LABELS[s[k].numpy()], minlength=10) == len(s[k]) // 10)
    assert np.all(np.bincount(TEST[s["S_E"].numpy()], minlength=10) == 10)
    assert set(s.f_train.tolist()) == sets[0] | sets[1] and set(s.g_train.tolist()) == sets[0] | sets[2]


def test_reproducible_and_seed_dependent():
    a = make_splits(LABELS, TEST, shared=0.6, candidates=0.1, independent=0.1, extra=0.2, seed=5)
    b = make_splits(LABELS, TEST, shared=0.6, candidates=0.1, independent=0.1, extra=0.2, seed=5)
    c = make_splits(LABELS, TEST, shared=0.6, candidates=0.1, independent=0.1, extra=0.2, seed=6)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    assert a.sizes() == {"S_S": 600, "S_C": 100, "S_I": 100, "S_E": 60}


def test_save_load_roundtrip(tmp_path):
    s = make_splits(LABELS, TEST, shared=50, candidates=20, independent=20, extra=10, seed=1)
    s.save(tmp_path / "splits.json")
    assert Splits.load(tmp_path / "splits.json").to_dict() == s.to_dict()


def test_too_large_splits_rejected():
    with pytest.raises(ValueError, match="exceed the 1000 training images"):
        make_splits(LABELS, TEST, shared=900, candidates=100, independent=100, extra=10)
    with pytest.raises(ValueError, match="S_E=400 exceeds"):
        make_splits(LABELS, TEST, shared=10, candidates=10, independent=10, extra=400)
    with pytest.raises(ValueError, match="fraction"):
        make_splits(LABELS, TEST, shared=1.5, candidates=10, independent=10, extra=10)
    with pytest.raises(TypeError):
        make_splits(LABELS, TEST, shared="all", candidates=10, independent=10, extra=10)


def test_prefix_balance_and_subsets():
    order = balanced_order(LABELS, 0)
    assert sorted(order.tolist()) == list(range(1000))
    for k in (10, 50, 370):
        counts = np.bincount(LABELS[order[:k]], minlength=10)
        assert counts.max() - counts.min() <= 1
    sub = balanced_subset(LABELS, 200, 3)
    assert len(set(sub.tolist())) == 200 and np.all(np.bincount(LABELS[sub.numpy()]) == 20)


def test_random_labels_drawn_once_per_sample():
    a, b = random_labels(5000, 10, 0), random_labels(5000, 10, 0)
    assert torch.equal(a, b) and a.min() == 0 and a.max() == 9
    assert abs(np.bincount(a.numpy()).std() / 500) < 0.1
    assert (a == torch.from_numpy(LABELS.repeat(5))).float().mean() < 0.2
