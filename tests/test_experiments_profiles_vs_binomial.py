"""Notebook 01's experiments layer: its parameters are checked before any compute, and its tables and claims
(Sadrtdinov et al. 2021, Figs. 2-4) come out right on hand-built recognition records."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from memlab.experiments import profiles_tables as T
from memlab.experiments.common import parameters
from memlab.experiments.profiles_vs_binomial import ProfilesParams, recorded_epochs
from memlab.io.params import ParameterError, notebook_defaults
from memlab.io.report import Report

from conftest import ROOT

NB = ROOT / "notebooks" / "01_profiles_vs_binomial.py"


def _params(**over):
    return parameters(ProfilesParams, {**notebook_defaults(NB), **over})


def test_the_notebook_defaults_are_valid_parameters():
    P = _params()
    assert P.paradigms[0] == "supervised" and P.n_points <= P.n_train


@pytest.mark.parametrize("over, match", [
    ({"epochs": {"supervisd": 80, "simclr": 500, "random_labels": 40, "random_labels_aug": 100}},
     "did you mean 'supervised'"),
    ({"lr": {"supervised": 0.005}}, "'lr' has no value for"),
    ({"paradigms": ["simclr"]}, "must include 'supervised'"),
    ({"paradigms": ["supervised", "byol"]}, "paradigms"),
    ({"n_points": 600}, "n_points"),
    ({"simclr_crop_scale": [0.5, 0.2]}, "simclr_crop_scale"),
    ({"optimizer": {"supervised": "lbfgs", "simclr": "adam", "random_labels": "sgd", "random_labels_aug": "sgd"}},
     r"optimizer\[supervised\]"),
    ({"alpha": 1.5}, "alpha"),
])
def test_bad_parameters_are_refused_naming_the_parameter(over, match):
    with pytest.raises(ParameterError, match=match):
        _params(**over)


def test_recorded_epochs_always_hold_the_first_and_the_last():
    assert recorded_epochs(3, 10) == [1, 3, 6, 9, 10]
    assert recorded_epochs(1, 3) == [1, 2, 3]
    assert recorded_epochs(20, 10) == [1, 10]


def _study(tmp_path, records: dict, epochs: list, targets=(0.25, 0.5, 0.75)):
    """A trained study stand-in: ``records`` {paradigm: bool (N, E, M, |X|)} recorded at ``epochs``."""
    n, _, m, x = next(iter(records.values())).shape
    P = SimpleNamespace(paradigms=list(records), targets=list(targets), n_draws=4, data_seed=0, n_networks=n, n_aug=m,
                        arch="cnn", scatter_every=1, claim_ratio=1.5, alpha=0.01)
    S = SimpleNamespace(report=Report(tmp_path, "01_profiles_vs_binomial", "laptop", "synthetic"),
                        device=torch.device("cpu"))
    return SimpleNamespace(P=P, S=S, records=records, rec_epochs={p: list(epochs) for p in records},
                           X=np.arange(x), tables={})


def _rising(rng, n, x, m, ps, structured: bool):
    """Records whose mean p is ``ps[e]`` at epoch e: every image equally hard (binomial), or, ``structured``, the
    same images recognised by every network and augmentation (easy and hard images)."""
    out = np.zeros((n, len(ps), m, x), dtype=bool)
    for e, p in enumerate(ps):
        if structured:
            out[:, e, :, :int(round(p * x))] = True
        else:
            out[:, e] = rng.random((n, m, x)) < p
    return out


def test_aligned_epochs_and_the_ratio_claim_on_planted_easy_and_hard_images(tmp_path):
    rng = np.random.default_rng(0)
    ps = [0.1, 0.26, 0.49, 0.6, 0.8]
    study = _study(tmp_path, {"supervised": _rising(rng, 10, 200, 2, ps, True),
                          "random_labels": _rising(rng, 10, 200, 2, ps, False)}, [1, 2, 3, 4, 5])
    aligned = T.binomial_comparison(study)
    assert study.aligned["supervised"] == {0.25: 2, 0.5: 3, 0.75: 5}   # the epochs whose mean p is closest
    row = aligned.set_index(["paradigm", "target p"]).loc[("supervised", 0.5)]
    assert row["paper epoch"] == 4 and row["mean p"] == pytest.approx(0.49)
    ratios = T.claims(study)
    # easy/hard images sit far from binomial noise, i.i.d. recognitions on it: the supervised MAE is many times larger
    assert (ratios["supervised MAE / random_labels MAE"] > 5).all()
    assert list(study.claims["outcome"]) == ["PASS", "PASS"]   # p passes 0.75; the ratio exceeds 1.5
    assert (tmp_path / "tables" / "01_profiles_vs_binomial" / "mae_ratios.csv").exists()


def test_a_paradigm_short_of_p_075_fails_the_alignment_claim(tmp_path):
    rng = np.random.default_rng(1)
    study = _study(tmp_path, {"supervised": _rising(rng, 6, 100, 2, [0.2, 0.5, 0.8], True),
                          "random_labels": _rising(rng, 6, 100, 2, [0.1, 0.3, 0.5], True)}, [1, 2, 3])
    T.binomial_comparison(study)
    T.claims(study)
    assert study.claims["outcome"].iloc[0] == "FAIL" and "random_labels: max 0.500" in study.claims["detail"].iloc[0]


def test_augmentation_spread_is_zero_when_augmentations_agree_and_grows_with_a_planted_disagreement(tmp_path):
    agree = np.zeros((4, 1, 3, 20), dtype=bool)
    agree[:, :, :, :10] = True                      # every augmentation of an image recognised alike
    split = agree.copy()
    split[:, :, 0, 10:] = True                       # view 0 easy, views 1 and 2 hard, on the last 10 images
    study = _study(tmp_path, {"supervised": agree, "simclr": split}, [1], targets=(0.5,))
    T.binomial_comparison(study)
    spread = T.augmentation_spread(study).set_index("paradigm")["mean |p_t(x~) - p_t(x)|"]
    assert spread["supervised"] == 0.0
    # on the last 10 of 20 images: |1 - 1/3| once and |0 - 1/3| twice, over 3 views -> 4/9, half of the images
    assert spread["simclr"] == pytest.approx(0.5 * 4 / 9)
