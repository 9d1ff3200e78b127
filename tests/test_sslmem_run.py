"""A tiny controlled SSL run: f trains on S_S u S_C, g on S_S u S_I (SimCLR, synthetic images).
SSLMem must then be positive for the points only f trained on and negative for those only g trained on."""
import pytest

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.data.datasets import load_dataset
from memlab.data.splits import make_splits
from memlab.engine.train import TrainConfig
from memlab.experiments.recipes import train_f_and_g
from memlab.experiments.scoring import cached_sslmem
from memlab.metrics.sslmem import normalised_sslmem
from memlab.metrics.stats import welch


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from memlab.io.cache import Cache
    tr = load_dataset("synthetic", "train", n=24, seed=0)
    te = load_dataset("synthetic", "test", n=10, seed=0)
    sp = make_splits(tr.labels.numpy(), te.labels.numpy(), shared=8, candidates=8, independent=8, extra=8, seed=0)
    mean, std = tr.stats()
    # 8 + 8 images, one full batch per step: the encoder can only get better at aligning these images'
    # views by memorising them
    cfg = TrainConfig(model="cnn", model_kw={"channels": [16, 32, 64]}, objective="simclr", aug="crop",
                      epochs=300, batch_size=16, optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_epochs=10,
                      mean=mean, std=std)
    cache = Cache(tmp_path_factory.mktemp("cache"))
    fs, gs = train_f_and_g(cfg, tr, sp, cache=cache, device="cpu", progress=False)
    bank = ViewBank(Augmentation("crop", mean=mean, std=std), 80, seed=0)
    subsets = {k: sp[k] for k in ("S_C", "S_S", "S_I", "S_E")}
    res = cached_sslmem(cache, fs, gs, tr, te, subsets, bank, n_pairs=40, rep="flat", progress=False)
    return res, fs, gs


def test_sslmem_positive_for_f_only_points_negative_for_g_only_points(tiny_run):
    res, *_ = tiny_run
    raw = {k: v["block3"]["raw"] for k, v in res.items()}
    assert raw["S_C"].mean() > 0 > raw["S_I"].mean()
    assert (raw["S_C"] > 0).float().mean() >= 0.75 and (raw["S_I"] < 0).float().mean() >= 0.75
    assert raw["S_C"].mean() > raw["S_S"].mean() > raw["S_I"].mean()
    m = normalised_sslmem(res, layer="block3")
    assert welch(m["S_C"], m["S_I"])["p"] < 0.01


def test_f_aligns_its_own_points_better(tiny_run):
    res, *_ = tiny_run
    c, i = res["S_C"]["block3"], res["S_I"]["block3"]
    assert c["align_f"].mean() < c["align_g"].mean()
    assert i["align_g"].mean() < i["align_f"].mean()
