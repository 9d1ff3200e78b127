"""Notebook 06's experiments layer (Anagnostidis et al. 2023): its parameters are checked before any compute, the
step budgets convert to epochs, the monitor records what it claims to, and Table 4 and the claims follow
Definition 4.1 on constructed runs."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from memlab.augmentation.augment import Augmentation
from memlab.experiments import benign_tables as T
from memlab.experiments.benign_memorization import BenignParams, BenignStudy
from memlab.experiments.benign_runs import Monitor, iid_name
from memlab.experiments.common import parameters
from memlab.io.params import ParameterError, notebook_defaults
from memlab.io.report import Report
from memlab.metrics.probes import knn_accuracy
from memlab.models.benign_net import BenignNet, extract_layers

from conftest import ROOT

NB = ROOT / "notebooks" / "06_benign_memorization.py"


def _params(**over):
    return parameters(BenignParams, {**notebook_defaults(NB), **over})


def test_the_notebook_defaults_are_valid_parameters():
    P = _params()
    assert P.threads == 0 and max(P.sweep_n, P.cap_n, P.iid_s) <= P.n_train


@pytest.mark.parametrize("over, match", [
    ({"sweep_classes": [10, 1]}, "sweep_classes"),
    ({"sweep_classes": [10, "per_image"]}, "sweep_classes"),
    ({"cap_B": []}, "cap_B"),
    ({"toy_B": [1, 2.5]}, "toy_B"),
    ({"iid_B": 1}, "iid_B"),
    ({"sweep_n": 2000}, "sweep_n"),
    ({"loss": "hinge"}, "loss"),
    ({"transfer_datasets": ["imagenet-22k"]}, "transfer_datasets"),
    ({"transfer_datasets": []}, "transfer_datasets"),
    ({"threads": -1}, "threads"),
    ({"table2_archs": ["vgg12"]}, "table2_archs"),
    ({"table2_archs": ["resnet9"]}, "table2_archs"),          # the main encoder is not a second one
])
def test_bad_parameters_are_refused_naming_the_parameter(over, match):
    with pytest.raises(ParameterError, match=match):
        _params(**over)


@pytest.mark.parametrize("steps, n_items, epochs", [(100, 100, 100), (100, 1600, 9), (12, 1536, 1), (13, 1536, 2)])
def test_a_step_budget_becomes_the_epochs_that_hold_it(steps, n_items, epochs):
    """batch 128: 100 items give one step per epoch, 1,536 give 12 (the last partial batch is dropped)."""
    study = SimpleNamespace(P=SimpleNamespace(batch_size=128))
    assert BenignStudy.epochs_for(study, steps, n_items) == epochs


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_the_monitor_records_the_knn_probe_and_an_invariance_per_layer():
    torch.manual_seed(0)
    net = BenignNet("resnet9", {"width": 0.125}, 16, 5)
    aug = Augmentation("simclr")
    tr, te = _images(24), _images(12, seed=1)
    ytr, yte = torch.arange(24) % 3, torch.arange(12) % 3
    mon = Monitor(tr, ytr, te, yte, aug.normalize, every=2, inv_images=_images(6, seed=2), inv_aug=aug, inv_pairs=1,
                  k=5)
    net.train()
    out = mon(net, 0)
    assert net.training                                                 # the monitor leaves the mode as it was
    emb = lambda x: extract_layers(net, x, aug.normalize, ["embedding"])["embedding"]  # noqa: E731
    assert out["knn"] == knn_accuracy(emb(tr), ytr, emb(te), yte, k=5)
    assert sorted(out) == sorted(["knn", *[f"inv/{l}" for l in net.layer_names]])
    assert all(v > 0 for k, v in out.items() if k.startswith("inv/"))   # random crops move every layer
    other = Monitor(tr, ytr, te, yte, aug.normalize, every=2, inv_images=_images(6, seed=3), inv_aug=aug, inv_pairs=1)
    assert other.describe() != mon.describe()                           # other images: another cache key


def _da_run(fits, epochs=(10, 20, 40)):
    """A stand-in for the random-label DA run: its fit checked at ``epochs``."""
    return SimpleNamespace(fit=fits[-1], series=lambda name: (list(epochs), list(fits)) if name == "fit" else ([], []))


def _study(tmp_path, knn_init=0.30, n_test=1000, fits=(0.5, 0.8, 1.0), **params):
    P = SimpleNamespace(toy_n=[25, 100], fit_target=1.0, iid_s=4, iid_B=3,
                        **{"table2_archs": [], "table2_datasets": [], **params})
    S = SimpleNamespace(report=Report(tmp_path, "06_benign_memorization", "laptop", "synthetic"),
                        device=torch.device("cpu"))
    return SimpleNamespace(P=P, S=S, knn_init=knn_init, tol=0.04, tables={}, Yte=torch.zeros(n_test),
                           Ytr=torch.zeros(1000), runs={"random labels, DA": _da_run(fits)})


def test_table4_gives_the_verdict_of_definition_4_1_to_the_random_label_runs_only(tmp_path):
    study = _study(tmp_path)
    runs = {iid_name(1, "clean"): (1.0, 0.50), iid_name(3, "clean"): (1.0, 0.55),
            iid_name(1, "random"): (1.0, 0.20), iid_name(3, "random"): (0.8, 0.40)}
    study.run = lambda name: SimpleNamespace(fit=runs[name][0], net=name)
    study.knn = lambda net: runs[net][1]
    t4 = T.table4_iid(study)
    assert list(t4["verdict"]) == ["-", "-", "malign", "not a memorisation (fit 80.0% < 100%)", "initialisation"]
    assert t4["K-NN"].iloc[-1] == 0.30 and list(t4["B"]) == [1, 3, 1, 3, 0]


def _tables(k_da, k_noda, emb, out, toy_small_b, toy_large_b, mse_gap=0.0, fit_da=1.0):
    table2 = pd.DataFrame([
        {"run": "at initialisation", "fit": np.nan, "epochs": 0, "K-NN": 0.30, "K-NN peak": np.nan},
        {"run": "random labels, no DA", "fit": 1.0, "epochs": 20, "K-NN": k_noda, "K-NN peak": np.nan},
        {"run": "random labels, DA", "fit": fit_da, "epochs": 90, "K-NN": k_da, "K-NN peak": k_da}])
    fig3 = pd.DataFrame([{"network": "random labels, DA", "layer": l, "clean K-NN": v}
                         for l, v in (("embedding", emb), ("P", (emb + out) / 2), ("O", out))])
    toy = pd.DataFrame([{"n": n, "B": b, "knn": v} for n in (25, 100)
                        for b, v in ((1, toy_small_b), (20, toy_large_b))])
    mse = pd.DataFrame([{"mse": 1.0, "inv": 0.25, "bias": 0.75 - mse_gap, "|mse - (inv + bias)|": mse_gap}])
    return {"table2_knn_linear": table2, "fig3_per_layer_knn": fig3, "fig13_toy": toy,
            "appendixB_mse_decomposition": mse}


def test_the_claims_pass_on_the_papers_findings_and_fail_on_their_opposites(tmp_path, capsys):
    study = _study(tmp_path)
    study.tables = _tables(k_da=0.45, k_noda=0.28, emb=0.45, out=0.20, toy_small_b=0.4, toy_large_b=0.8)
    assert list(T.claims(study)["outcome"]) == ["PASS"] * 6
    study = _study(tmp_path / "opposite", fits=(0.3, 0.5, 0.7))
    # DA below init; no DA above init by more than the noise; the DA run short of fitting its labels; the
    # projector output beats the embedding; the toy probe falls with B; the identity broken
    study.tables = _tables(k_da=0.25, k_noda=0.40, emb=0.20, out=0.45, toy_small_b=0.8, toy_large_b=0.4, mse_gap=1e-3,
                           fit_da=0.7)
    assert list(T.claims(study)["outcome"]) == ["FAIL"] * 6
    study = _study(tmp_path / "noise")
    study.tables = _tables(k_da=0.45, k_noda=0.33, emb=0.45, out=0.20, toy_small_b=0.4, toy_large_b=0.8)
    assert T.claims(study)["outcome"].iloc[1] == "PASS"        # no DA 0.03 above init: within the noise of 0.04


def test_a_second_encoder_gets_its_own_table2_claim_against_its_own_initialisation(tmp_path):
    study = _study(tmp_path, table2_archs=["vgg11"])
    study.tables = _tables(k_da=0.45, k_noda=0.28, emb=0.45, out=0.20, toy_small_b=0.4, toy_large_b=0.8)
    vgg = pd.DataFrame([{"run": "at initialisation (vgg11)", "fit": np.nan, "epochs": 0, "K-NN": 0.20},
                        {"run": "random labels, DA (vgg11)", "fit": 0.9, "epochs": 30, "K-NN": 0.25}])
    study.tables["table2_knn_linear"] = pd.concat([study.tables["table2_knn_linear"], vgg])
    c = T.claims(study).set_index("claim")
    row = c.loc["vgg11: K-NN with random labels and DA exceeds K-NN at initialisation"]
    assert row["outcome"] == "PASS" and "0.250 vs 0.200" in row["detail"]     # its own init (0.20), not ResNet's 0.30


def test_the_fit_trend_of_definition_4_1_crosses_the_target_where_the_line_does(tmp_path):
    import math
    from memlab.metrics import trend
    # over the last doubling (epochs 20, 30, 40) fit = 0.25 log2(epochs / 5), which reaches 1.0 at exactly 80
    # epochs; the earlier checks (a plateau at 0.4) are left out of the fit
    study = _study(tmp_path)
    study.runs["random labels, DA"] = _da_run((0.4, 0.4, 0.5, 0.25 * math.log2(6), 0.75), epochs=(5, 10, 20, 30, 40))
    t = T.fit_trend(study)
    assert list(t.x) == [20, 30, 40] and t.crossing == pytest.approx(80.0) and t.slope == pytest.approx(0.25)
    assert t.verdict == trend.AGREES
    study.tables = _tables(k_da=0.45, k_noda=0.28, emb=0.45, out=0.20, toy_small_b=0.4, toy_large_b=0.8, fit_da=0.75)
    c = T.claims(study).set_index("claim").loc["the DA run memorises its random labels (Definition 4.1: training "
                                               "fit >= 1)"]
    assert c["outcome"] == "FAIL" and c["detail"].startswith("fit 0.750 after 90 epochs; " + trend.AGREES)
    study.runs["random labels, DA"] = _da_run((0.2, 0.5, 1.0), epochs=(5, 15, 20))
    assert T.fit_trend(study) is None        # 2 checks in the last doubling (15, 20): no curve (a trend needs 3)
    study.runs["random labels, DA"] = _da_run([i / 100 for i in range(1, 41)], epochs=range(5, 205, 5))
    assert len(T.fit_trend(study).x) == 8     # 21 checks in the last doubling, 8 of them evenly spread


def test_the_fit_trend_errors_grow_to_the_observed_scatter(tmp_path):
    import math
    study = _study(tmp_path)
    # checks that scatter about their line far more than a binomial error over 1000 images (about 0.015) allows
    study.runs["random labels, DA"] = _da_run((0.5, 0.7, 0.55, 0.9), epochs=(20, 25, 30, 40))
    t = T.fit_trend(study)
    resid = (t.y - (t.intercept + t.slope * np.log2(t.x))) / t.se
    assert float((resid ** 2).sum()) / (len(t.x) - 2) == pytest.approx(1.0)   # scaled: reduced chi-square 1
    assert t.se.min() > 3 * math.sqrt(0.5 * 0.5 / 1002)
