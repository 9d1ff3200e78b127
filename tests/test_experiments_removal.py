"""Notebook 03's experiments layer: its parameters, its data with synthetic stand-ins, and its summaries
(memlab.experiments.removal, removal_results)."""
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from memlab.data.datasets import DatasetNotFound
from memlab.experiments.removal import RemovalData, RemovalParams
from memlab.experiments.removal_results import falls, mean_sd
from memlab.io.params import ParameterError, notebook_defaults

ROOT = Path(__file__).resolve().parents[1]


def values(**over) -> dict:
    """Notebook 03's smoke values (synthetic data, tiny sizes), with ``over`` applied."""
    v = notebook_defaults(ROOT / "notebooks" / "03_removal.py")
    v.update(yaml.safe_load((ROOT / "params" / "smoke" / "03_removal.yaml").read_text()) or {})
    return {**v, **over}


def test_bad_parameters_fail_before_compute_and_name_the_parameter():
    with pytest.raises(ParameterError, match=r"'removal_ks'.*\[48\] invalid.*0 < k < 48"):
        RemovalParams(**values(removal_ks=[12, 48]))
    with pytest.raises(ParameterError, match=r"'keep_ns'.*0 < n < 48"):
        RemovalParams(**values(keep_ns=[48]))
    with pytest.raises(ParameterError, match="unlabeled"):
        RemovalParams(**values(dataset="cifar10", pretrain_split="unlabeled"))
    with pytest.raises(ParameterError, match="dp_points"):
        RemovalParams(**values(dp_points=49))
    with pytest.raises(ParameterError, match="lambdas"):
        RemovalParams(**values(lambdas=[0.0, 0.0]))
    assert RemovalParams(**values(removal_ks=[24, 12])).ks == [12, 24]


def test_unavailable_downstream_data_is_named_as_its_synthetic_stand_in(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_DATA", str(tmp_path))           # no archive there, and no download
    d = RemovalData(RemovalParams(**values(downstream=["synthetic", "cifar100"], lambda_datasets=["cifar100"],
                                           dp_epochs=0)))
    assert list(d.tasks) == ["synthetic", "synthetic (for cifar100)"]
    assert list(d.lam_data) == ["synthetic (for cifar100)"]
    own, stand_in = d.tasks["synthetic"][0], d.tasks["synthetic (for cifar100)"][0]
    assert not torch.equal(own, stand_in)                        # the stand-in is another draw, not the same images
    f, g = d.f_pool, d.g_pool
    assert len(f) == len(g) == 48 and not set(f.tolist()) & set(g.tolist())
    assert d.dp_epsilons == [] and "dp_epochs = 0" in d.describe()
    with pytest.raises(DatasetNotFound, match="synthetic_fallback"):       # not allowed: the error says how
        RemovalData(RemovalParams(**values(downstream=["cifar100"], synthetic_fallback=False, dp_epochs=0)))
    with pytest.raises(DatasetNotFound) as e:                   # the pre-training data never has a stand-in
        RemovalData(RemovalParams(**values(dataset="cifar100", dp_epochs=0)))
    assert "synthetic_fallback" not in str(e.value)


def test_train_aug_sets_the_views_of_every_ssl_encoder_and_is_checked_first(monkeypatch):
    pytest.importorskip("opacus")
    with pytest.raises(ParameterError, match="train_aug"):
        RemovalParams(**values(train_aug="sepia"))
    crop = RemovalData(RemovalParams(**values(train_aug="crop")))
    assert crop.cfg.aug == "crop" and crop.dp_cfg.aug == "crop"          # f, g, the retrained, lambda and DP encoders
    own = RemovalData(RemovalParams(**values(train_aug="")))
    assert own.cfg.aug is None and own.dp_cfg.aug is None                # each objective's own views: keys as before
    assert own.cfg.objective == crop.cfg.objective == "simclr"


def test_summaries_of_seeds_and_the_monotone_claims():
    df = pd.DataFrame({"g": ["a", "a", "b"], "v": [1.0, 3.0, 5.0]})
    t = mean_sd(df, ["g"], "v").set_index("g")
    assert t.loc["a"].tolist() == [2.0, pytest.approx(2 ** 0.5), 2]
    assert t.loc["b"].tolist() == [5.0, 0.0, 1]                 # one seed: sd 0, not NaN
    assert falls([0.3, 0.2, 0.1]) and not falls([0.3, 0.3, 0.1]) and not falls([0.1, 0.2])


def _claims_of(tmp_path, acc_hi: float) -> dict:
    """RemovalRun.claims on constructed tables: removal costs more for memorised points (gap > 0), lambda 0.5
    lowers SSLMem, and lambda 0.5 has probe accuracy ``acc_hi`` against 0.40 at lambda 0."""
    from types import SimpleNamespace
    from memlab.experiments.removal_results import RemovalRun
    from memlab.io.report import Report
    run = RemovalRun.__new__(RemovalRun)
    run.p = SimpleNamespace(lambdas=[0.0, 0.5], dp_epsilons=[], dataset="cifar10", ks=[300], seeds=[0])
    run.report = Report(tmp_path, "03_removal", "laptop", "cifar10")
    run.d = SimpleNamespace(lam_data={"cifar10": None}, tasks={"cifar10": (None, None, None, torch.zeros(1000))})
    run.trends = {}
    run.tables = {"removal": pd.DataFrame({"downstream": "cifar10", "k": [300, 300], "strategy": ["memorised", "random"],
                                           "accuracy": [0.35, 0.37]}),
                  "lambda": pd.DataFrame({"dataset": "cifar10", "lambda": [0.0, 0.5], "mean SSLMem": [0.02, 0.003],
                                          "mean raw SSLMem": [0.007, 0.001], "accuracy": [0.40, acc_hi]}),
                  "dp": pd.DataFrame()}
    return {c["claim"]: (c["outcome"], c["detail"]) for _, c in run.claims().iterrows()}


def test_memorisation_helps_needs_removal_and_both_lambda_claims(tmp_path):
    both = "removal and limiting alignment both support 'memorisation helps' (the three claims above)"
    out = _claims_of(tmp_path / "a", acc_hi=0.36)     # lambda costs accuracy: all three hold
    assert out[both] == ("PASS", "removal holds; lambda lowers SSLMem: holds; lambda costs accuracy: holds")
    out = _claims_of(tmp_path / "b", acc_hi=0.41)     # lambda lowers SSLMem but costs no accuracy
    assert out[both][0] == "FAIL" and "lambda costs accuracy: fails" in out[both][1]
    assert [o for o, _ in out.values()].count("PASS") == 2   # removal and lower SSLMem still hold on their own


def test_the_removal_line_gives_the_gaps_p_value_beside_the_papers_sign_test(tmp_path):
    removal = next(v for k, v in _claims_of(tmp_path, acc_hi=0.36).items() if k.startswith("averaged over k"))
    # gap 0.02 on 1000 images: Agresti-Caffo p~ 371/1002 and 351/1002, se 0.02144, z 0.933, one-sided p 0.1755
    assert removal == ("PASS", "cifar10: memorised 0.3500 vs random 0.3700 (gap +0.0200, one-sided p 0.18, not part "
                               "of the verdict)")
