"""Déjà Vu memorisation (memlab.metrics.dejavu): constructed cases with known values."""
import numpy as np
import pytest
import torch

from memlab.metrics.dejavu import corner_crop, dejavu, knn_label_counts


def test_the_corner_crop_is_the_lower_left_fraction_resized_back():
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 23:, :9] = 200                                   # the lower-left 9 x 9 pixels (0.3 of 32 is 9)
    c = corner_crop(x, 0.3)
    assert c.shape == x.shape and c.dtype == torch.uint8 and bool((c == 200).all())
    x[:, :, 22, :9] = 50                                     # a row just above the corner stays out of the crop
    assert bool((corner_crop(x, 0.3) == 200).all())
    with pytest.raises(ValueError, match="crop_frac"):
        corner_crop(x, 0.05)                                 # a 1-pixel crop


def test_knn_counts_vote_over_the_nearest_public_points():
    public = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    counts = knn_label_counts(torch.tensor([[0.05], [10.0]]), public, labels, k=3, num_classes=3)
    assert counts.tolist() == [[2, 1, 0], [0, 1, 2]]         # the second query's third neighbour: 0.2, label 1
    with pytest.raises(ValueError, match="k = 6"):
        knn_label_counts(torch.zeros(1, 1), public, labels, k=6, num_classes=3)


def test_dejavu_rates_count_target_right_and_reference_wrong():
    # 4 points of labels 0, 1, 0, 1; A (the target) is right on 0, 1, 2, B (the reference) on 0 and 3
    a = np.array([[5, 0], [1, 4], [3, 2], [3, 2]])
    b = np.array([[4, 1], [3, 2], [1, 4], [0, 5]])
    r = dejavu(a, b, [0, 1, 0, 1], conf_frac=0.5)
    assert (r["acc A"], r["acc B"]) == (0.75, 0.5)
    assert r["deja vu rate"] == 0.5                          # points 1 and 2: A right, B wrong
    # each model on its own 2 most confident points (lowest label entropy): A's are 0 (5, 0) and 1 (1, 4), both
    # right; B's are 3 (0, 5) and 0 (4, 1), both right
    assert (r["n confident"], r["acc A (confident)"], r["acc B (confident)"]) == (2, 1.0, 1.0)
    assert r["deja vu rate (confident)"] == 0.5              # on A's confident points 0, 1: point 1 is A-right, B-wrong
    with pytest.raises(ValueError, match="align"):
        dejavu(a, b[:3], [0, 1, 0, 1], 0.5)
    with pytest.raises(ValueError, match="conf_frac"):
        dejavu(a, b, [0, 1, 0, 1], 0.0)
