"""experiments.ssl_vs_supervised (notebook 05): the SSL-versus-supervised transfer table of the localisation paper
and its claims, and the ClassMem claims repeated on a second labelled dataset."""
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from memlab.data.datasets import load_dataset
from memlab.engine.train import TrainConfig
from memlab.experiments import ssl_vs_supervised as vs
from memlab.io.report import Report
from memlab.models.networks import build_model


def _table(pretrained, accs, n=1000):
    """A transfer table from {dataset: (SSL accuracy, supervised accuracy)}."""
    return pd.DataFrame([{"dataset": d, "encoder": e, "accuracy": a, "n_test": n, "pretrained on": pretrained}
                         for d, (s, u) in accs.items() for e, a in (("SSL", s), ("supervised", u))])


def _claims(tmp_path, table):
    report = Report(tmp_path, "05_unitmem_classmem", "paper", "cifar10")
    vs.transfer_claims(SimpleNamespace(P=SimpleNamespace(alpha=0.01), S=SimpleNamespace(report=report)), table)
    return {c["claim"]: c["outcome"] for c in report.claims}


def test_better_is_the_one_sided_agresti_caffo_z_test():
    # 600 vs 500 of 1000: p1 = 601/1002, p2 = 501/1002, se = 0.022115, z = 4.522, p = 3.07e-6
    p, detail = vs.better(_table("cifar100", {"cifar100": (0.5, 0.6)}), "cifar100", "supervised")
    assert p == pytest.approx(3.07e-6, rel=0.01)
    assert "supervised 0.6000 vs SSL 0.5000 on 1000 test images" in detail
    p, _ = vs.better(_table("cifar100", {"cifar100": (0.5, 0.6)}), "cifar100", "SSL")   # the wrong way round
    assert p > 0.99


def test_pretrained_on_cifar100_the_paper_winner_is_checked_on_each_dataset_it_lists(tmp_path):
    table = _table("cifar100", {"cifar100": (0.40, 0.55), "cifar10": (0.70, 0.705), "stl10": (0.60, 0.50),
                                "svhn": (0.45, 0.60), "fashion_mnist": (0.8, 0.7)})
    out = _claims(tmp_path, table)
    assert len(out) == 4                     # no claim on fashion_mnist: not in the paper's table
    verdicts = {next(d for d in ("own dataset", "cifar10 ", "stl10", "svhn") if d in c): o for c, o in out.items()}
    assert verdicts == {"own dataset": "PASS", "cifar10 ": "FAIL", "stl10": "PASS", "svhn": "FAIL"}


def test_pretrained_elsewhere_only_the_own_dataset_claim_is_made(tmp_path):
    out = _claims(tmp_path, _table("fashion_mnist", {"fashion_mnist": (0.8, 0.9), "stl10": (0.6, 0.5)}))
    assert list(out.values()) == ["PASS"] and "fashion_mnist" in next(iter(out))


def test_transfer_table_probes_both_encoders_on_own_pair_and_other_datasets():
    torch.manual_seed(0)
    enc = lambda: SimpleNamespace(encoder=build_model("cnn", channels=(4, 6)).eval())  # noqa: E731
    own = load_dataset("synthetic", "train", n=30, seed=3), load_dataset("synthetic", "test", n=20, seed=3)
    other = load_dataset("synthetic", "train", n=30, seed=5), load_dataset("synthetic", "test", n=16, seed=5)
    train, test = load_dataset("synthetic", "train", n=40, seed=0), load_dataset("synthetic", "test", n=20, seed=0)
    R = SimpleNamespace(P=SimpleNamespace(probe_test=20, pair=SimpleNamespace(split_seed=0, dataset="cifar10")),
                        S=SimpleNamespace(device=torch.device("cpu")), cfg=TrainConfig(model="cnn"),
                        train_data=train, test_data=test, splits=SimpleNamespace(f_train=torch.arange(40)),
                        others={"stl10": other}, classmem=("cifar100", *own))
    E = vs.SecondEncoders("cifar100", enc(), enc(), None, None)
    t = vs.transfer_table(R, E)
    assert list(dict.fromkeys(t.dataset)) == ["cifar100", "cifar10", "stl10"]   # own data first
    assert sorted(t.encoder.unique()) == ["SSL", "supervised"] and len(t) == 6
    assert t.set_index(["dataset", "encoder"]).n_test.to_dict()[("stl10", "SSL")] == 16
    assert t.accuracy.between(0, 1).all() and (t["pretrained on"] == "cifar100").all()
