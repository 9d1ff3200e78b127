"""Table 2 on other datasets (notebook 06, ``table2_datasets``; Anagnostidis et al. 2023, Table 2's CIFAR-100 and
Tiny-ImageNet columns, appendix F): the parameters are checked before any compute, a missing dataset stops the
notebook at load_data, the plan trains the three runs per encoder on each dataset over its own classes, 64-px
images get a stride-2 stem, a dry run covers those jobs, and each dataset gets its own claims."""
import numpy as np
import pandas as pd
import pytest
import torch

from memlab.data import fakes
from memlab.data.archives import DatasetNotFound
from memlab.engine import dryrun
from memlab.engine.jobs import Plan
from memlab.experiments import benign_tables as T
from memlab.experiments.benign_datasets import dataset_run
from memlab.experiments.benign_memorization import BenignParams, BenignStudy
from memlab.experiments.benign_runs import MAIN_RUNS, declare_runs
from memlab.experiments.common import parameters
from memlab.io.params import ParameterError, notebook_defaults
from memlab.models.networks import build_model, stem_kw

from conftest import ROOT
from test_experiments_benign_memorization import _study, _tables

NB = ROOT / "notebooks" / "06_benign_memorization.py"
SMALL = dict(device="cpu", dataset="synthetic", synthetic_n_train=120, synthetic_n_test=40, n_train=60, n_test=40,
             width=0.125, hidden=16, batch_size=16, epochs_noaug=1, epochs_aug=1, epochs_clean=1, eval_every=1,
             probe_every=1, layer_probe_train=20, layer_probe_test=20, inv_images=6, inv_pairs=1, cap_n=8,
             cap_B=[1], cap_steps=1, iid_s=6, iid_B=2, iid_steps=1, sweep_n=20, sweep_epochs=1, sweep_widths=[16],
             sweep_classes=[10], sweep_noise=[1.0], sweep_magnitudes=[1], transfer_datasets=["synthetic"])


def _params(**over):
    return parameters(BenignParams, {**notebook_defaults(NB), **SMALL, **over})


@pytest.mark.parametrize("over, match", [
    ({"table2_datasets": ["cifar100", "cifar100"]}, "table2_datasets"),     # repeated
    ({"table2_datasets": ["synthetic"]}, "table2_datasets"),                # the main dataset is Table 2's first column
    ({"table2_datasets": ["tiny-imagenet"]}, "table2_datasets"),            # not a memlab dataset
    ({"table2_n_train": -1}, "table2_n_train"),
])
def test_a_bad_table2_datasets_value_is_refused_naming_the_parameter(over, match):
    with pytest.raises(ParameterError, match=match):
        _params(**over)


def test_a_missing_tiny_imagenet_stops_load_data_before_any_compute_saying_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MEMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fakes.FAKE_DATA_ENV, raising=False)   # a real run: no fakes
    study = BenignStudy(_params(table2_datasets=["tiny_imagenet"], output_dir=str(tmp_path / "out")))
    with pytest.raises(DatasetNotFound, match="cs231n.stanford.edu/tiny-imagenet-200.zip"):
        study.load_data()
    assert not study.jobs and not list((tmp_path / "cache").rglob("*.pt"))   # nothing planned, nothing trained


def test_a_size_above_the_split_is_refused_naming_the_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(fakes.FAKE_DATA_ENV, str(tmp_path / "fakes"))
    study = BenignStudy(_params(table2_datasets=["tiny_imagenet"], table2_n_test=10001,
                                output_dir=str(tmp_path / "out")))
    with pytest.raises(ParameterError, match="table2_n_test"):   # Tiny-ImageNet's val split: 10,000 images
        study.load_data()


@pytest.mark.parametrize("arch, stride, size, maps", [
    ("resnet18", 1, 32, {"stem": 32, "layer4.1": 4}),
    ("resnet18", 1, 64, {"stem": 64, "layer4.1": 8}),    # the 32-px stem on 64 px: maps twice as large
    ("resnet18", 2, 64, {"stem": 32, "layer4.1": 4}),    # appendix F: the stride-2 stem brings them back
    ("resnet9", 2, 64, {"prep": 32, "layer3.res2": 4}),
    ("vgg16", 2, 64, {"block1": 16, "block5": 1}),       # first conv /2, then a 2x2 max-pool per block
])
def test_the_stem_stride_sets_the_feature_map_sizes(arch, stride, size, maps):
    enc = build_model(arch, width=0.125, stem_stride=stride).eval()
    feats = enc.forward_features(torch.zeros(2, 3, size, size), list(maps))
    assert {k: v.shape[-1] for k, v in feats.items()} == maps


def test_the_stem_follows_the_image_size_and_keeps_32_px_models_as_they_were():
    assert stem_kw("resnet18", 64) == stem_kw("vgg16", 64) == {"stem_stride": 2}
    assert stem_kw("resnet18", 32) == stem_kw("vgg16", 32) == {}           # no new key: cached runs stay valid
    assert stem_kw("cnn", 64) == {}                                        # no such option
    a, b = build_model("resnet18", width=0.125), build_model("resnet18", width=0.125, stem_stride=2)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_the_plan_trains_the_three_runs_per_encoder_on_each_dataset_over_its_classes_and_a_dry_run_covers_them(
        tmp_path, monkeypatch):
    """Tiny-ImageNet from the dry run's fakes: 200 classes, 64 px."""
    monkeypatch.setenv("MEMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(fakes.FAKE_DATA_ENV, str(tmp_path / "fakes"))
    study = BenignStudy(_params(table2_datasets=["tiny_imagenet"], table2_archs=["vgg11"], table2_n_train=400,
                                table2_n_test=200, output_dir=str(tmp_path / "out")))
    study.load_data()
    d = study.table2_data["tiny_imagenet"]
    assert d.Xtr.shape == (400, 3, 64, 64) and d.C == 200 and np.bincount(d.Ytr.numpy()).tolist() == [2] * 200
    assert len(d.Yte) == 200 and int(d.rand_labels.max()) < 200
    plan = Plan("06_benign_memorization", cache=study.S.cache, device=study.S.device)
    declare_runs(study, plan)
    names = [dataset_run(r, "tiny_imagenet", a) for a in (None, "vgg11") for r in MAIN_RUNS]
    assert sorted(n for n in study.jobs if n.endswith("on tiny_imagenet")) == sorted(names)
    for name in names:
        job = study.jobs[name]
        assert job.args["items"]["num_classes"] == 200                     # random and clean labels alike
        assert job.args["cfg"].model_kw["stem_stride"] == 2
        assert job.args["cfg"].mean == d.mean                              # its own normalisation
    assert "stem_stride" not in study.jobs[MAIN_RUNS[1]].args["cfg"].model_kw   # 32 px: the main runs' keys
    assert (study.jobs[dataset_run(MAIN_RUNS[0], "tiny_imagenet")].args["items"]["labels"] == d.rand_labels).all()
    only = Plan("tiny", cache=study.S.cache, device=study.S.device)
    for name in names:
        only.add(study.jobs[name])
    with dryrun.limits(dryrun.DryRun()):
        t = dryrun.dry_run(only)
    assert list(t["dry run"]) == ["pass"] * 6


def _with_dataset(tmp_path, k_init, k_noda, k_da, n_test, vgg_da=0.50):
    """The constructed tables of the claims test plus Table 2's rows on fashion_mnist (ResNet and VGG)."""
    study = _study(tmp_path, table2_archs=["vgg11"], table2_datasets=["fashion_mnist"])
    study.tables = _tables(k_da=0.45, k_noda=0.28, emb=0.45, out=0.20, toy_small_b=0.4, toy_large_b=0.8)
    vgg = [{"run": "at initialisation (vgg11)", "K-NN": 0.20}, {"run": "random labels, DA (vgg11)", "K-NN": 0.25}]
    rows = [{"run": dataset_run("at initialisation", "fashion_mnist"), "K-NN": k_init},
            {"run": dataset_run(MAIN_RUNS[0], "fashion_mnist"), "K-NN": k_noda},
            {"run": dataset_run(MAIN_RUNS[1], "fashion_mnist"), "K-NN": k_da},
            {"run": dataset_run("at initialisation", "fashion_mnist", "vgg11"), "K-NN": 0.40},
            {"run": dataset_run(MAIN_RUNS[1], "fashion_mnist", "vgg11"), "K-NN": vgg_da}]
    extra = pd.DataFrame([{"fit": 1.0, "epochs": 10, "test images": n_test, **r} for r in vgg + rows])
    study.tables["table2_knn_linear"] = pd.concat([study.tables["table2_knn_linear"], extra])
    return T.claims(study).set_index("claim")["outcome"]


def test_each_dataset_gets_both_table2_claims_against_its_own_initialisation_and_noise(tmp_path):
    ok = _with_dataset(tmp_path / "a", k_init=0.30, k_noda=0.28, k_da=0.45, n_test=10000)
    assert ok["fashion_mnist: K-NN with random labels and DA exceeds K-NN at initialisation"] == "PASS"
    assert ok["fashion_mnist: K-NN at initialisation exceeds random labels without DA, or is within noise"] == "PASS"
    assert ok["vgg11 on fashion_mnist: K-NN with random labels and DA exceeds K-NN at initialisation"] == "PASS"
    # no DA 0.10 above init: beyond the noise of 10,000 test images (0.013), within that of 100 (2 sqrt(2 .3 .7 /
    # 100) = 0.130); the DA run and VGG below their initialisations (not the main dataset's 0.30 and 0.20)
    bad = _with_dataset(tmp_path / "b", k_init=0.30, k_noda=0.40, k_da=0.29, n_test=10000, vgg_da=0.35)
    assert bad["fashion_mnist: K-NN with random labels and DA exceeds K-NN at initialisation"] == "FAIL"
    assert bad["fashion_mnist: K-NN at initialisation exceeds random labels without DA, or is within noise"] == "FAIL"
    assert bad["vgg11 on fashion_mnist: K-NN with random labels and DA exceeds K-NN at initialisation"] == "FAIL"
    small = _with_dataset(tmp_path / "c", k_init=0.30, k_noda=0.40, k_da=0.45, n_test=100)
    assert small["fashion_mnist: K-NN at initialisation exceeds random labels without DA, or is within noise"] == "PASS"
