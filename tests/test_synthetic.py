import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from memlab.data.synthetic import CLASS_NAMES, KINDS, make_synthetic


@pytest.fixture(scope="module")
def big():
    return make_synthetic(3600, seed=0, atypical_frac=0.15)


def test_shapes_dtypes():
    d = make_synthetic(37, seed=3, image_size=24, num_classes=7)
    assert d["images"].shape == (37, 3, 24, 24) and d["images"].dtype == torch.uint8
    assert d["labels"].shape == (37,) and d["labels"].dtype == torch.int64
    assert d["true_labels"].shape == (37,) and d["true_labels"].dtype == torch.int64
    assert d["atypical"].dtype == torch.int64
    assert len(d["atypical_kind"]) == len(d["atypical"])
    assert d["class_names"] == CLASS_NAMES[:7]
    assert int(d["labels"].max()) < 7 and int(d["labels"].min()) >= 0
    assert len(CLASS_NAMES) == 10 and len(set(CLASS_NAMES)) == 10


def test_deterministic_and_seed_dependent():
    a, b = make_synthetic(300, seed=5), make_synthetic(300, seed=5)
    for k in ("images", "labels", "true_labels", "atypical"):
        assert torch.equal(a[k], b[k])
    assert a["atypical_kind"] == b["atypical_kind"]
    c = make_synthetic(300, seed=6)
    assert not torch.equal(a["images"], c["images"])
    assert not torch.equal(a["atypical"], c["atypical"])


def test_prefix_property():
    small, large = make_synthetic(100, seed=2, atypical_frac=0.2), make_synthetic(700, seed=2, atypical_frac=0.2)
    assert torch.equal(small["images"], large["images"][:100])
    assert torch.equal(small["labels"], large["labels"][:100])
    m = large["atypical"] < 100
    assert torch.equal(small["atypical"], large["atypical"][m])
    assert small["atypical_kind"] == [k for k, keep in zip(large["atypical_kind"], m.tolist()) if keep]


def test_atypical_sets_nested_in_frac_and_typical_images_unchanged():
    lo, hi = make_synthetic(500, seed=1, atypical_frac=0.05), make_synthetic(500, seed=1, atypical_frac=0.2)
    assert set(lo["atypical"].tolist()) <= set(hi["atypical"].tolist())
    typ = torch.ones(500, dtype=torch.bool)
    typ[hi["atypical"]] = False
    assert torch.equal(lo["images"][typ], hi["images"][typ])
    assert len(make_synthetic(200, atypical_frac=0.0)["atypical"]) == 0


def test_balance_fraction_kinds(big):
    n = 3600
    counts = torch.bincount(big["true_labels"], minlength=10)
    assert torch.all(counts == n // 10)  # true_labels = i % num_classes
    assert torch.equal(big["true_labels"], torch.arange(n) % 10)
    at = big["atypical"]
    assert torch.all(at[1:] > at[:-1])  # sorted, unique
    sd = (n * 0.15 * 0.85) ** 0.5
    assert abs(len(at) - 0.15 * n) < 4 * sd
    kinds = big["atypical_kind"]
    assert set(kinds) == set(KINDS)
    for k in KINDS:  # roughly even split
        assert abs(kinds.count(k) - len(kinds) / 3) < 4 * (len(kinds) * 2 / 9) ** 0.5
    # labels differ from the underlying class exactly at flipped points
    flipped = at[[i for i, k in enumerate(kinds) if k == "flipped_label"]]
    differ = torch.nonzero(big["labels"] != big["true_labels"]).flatten()
    assert torch.equal(differ, flipped)
    # larger n: fraction close to the target
    d = make_synthetic(10000, seed=4, atypical_frac=0.05)
    assert abs(len(d["atypical"]) / 10000 - 0.05) < 0.01


def test_linear_probe_learnable_but_not_trivial(big):
    typ = torch.ones(len(big["labels"]), dtype=torch.bool)
    typ[big["atypical"]] = False
    X = big["images"].flatten(1).float().numpy() / 255
    y = big["labels"].numpy()
    Xt, yt = X[typ.numpy()], y[typ.numpy()]
    assert len(yt) >= 3000
    mu, sd = Xt[:2000].mean(0), Xt[:2000].std(0) + 1e-6
    # single BLAS thread: multi-threaded BLAS is erratic on small, shared CI machines
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=0.01, max_iter=60).fit((Xt[:2000] - mu) / sd, yt[:2000])
    acc = clf.score((Xt[2000:3000] - mu) / sd, yt[2000:3000])
    assert 0.3 < acc < 0.98, acc
    # flipped points: the probe sees the image's true class, not the (flipped) label
    fl = big["atypical"][[i for i, k in enumerate(big["atypical_kind"]) if k == "flipped_label"]].numpy()
    pred = clf.predict((X[fl] - mu) / sd)
    assert (pred == big["true_labels"].numpy()[fl]).mean() > 0.3
    assert (pred == y[fl]).mean() < 0.15
    # mean colour alone is a weak cue
    m = big["images"].float().mean((2, 3)).numpy()[typ.numpy()]
    acc_col = LogisticRegression(max_iter=500).fit(m[:2000], yt[:2000]).score(m[2000:3000], yt[2000:3000])
    assert acc_col < acc - 0.15, (acc_col, acc)


def test_atypical_points_far_from_class_centroid(big):
    f = big["images"].flatten(1).float() / 255
    y = big["labels"]
    typ = torch.ones(len(y), dtype=torch.bool)
    typ[big["atypical"]] = False
    cent = torch.stack([f[typ & (y == k)].mean(0) for k in range(10)])
    dist = (f - cent[y]).norm(dim=1)
    for kind in ("rare_variant", "corruption"):
        idx = big["atypical"][[i for i, k in enumerate(big["atypical_kind"]) if k == kind]]
        assert dist[idx].mean() > 1.05 * dist[typ].mean(), kind
        # also per labelled class (ratio to that class's typical points), averaged over classes
        per_class = [dist[idx][y[idx] == k].mean() / dist[typ & (y == k)].mean() for k in range(10)]
        assert np.nanmean([float(r) for r in per_class]) > 1.05, kind


@pytest.mark.parametrize("kwargs", [
    dict(n=0), dict(n=-3), dict(n=10, atypical_frac=1.0), dict(n=10, atypical_frac=-0.1),
    dict(n=10, num_classes=1), dict(n=10, num_classes=11), dict(n=10, image_size=15),
    dict(n=10, seed=-1),
])
def test_argument_validation(kwargs):
    with pytest.raises(ValueError):
        make_synthetic(**kwargs)
