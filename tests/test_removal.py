"""Removal experiments, the alignment regulariser's effect, and the resumable plan of encoders
(memlab.experiments.removal, removal_sets, removal_results)."""
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache
from memlab.data.datasets import load_dataset
from memlab.engine.jobs import Plan
from memlab.experiments.removal import dp_unavailable, lambda_config, ssl_job
from memlab.experiments.removal_results import both_halves, removal_gap
from memlab.experiments.removal_sets import check_ks, disjoint_halves, removal_set, retained
from memlab.metrics.sslmem import alignment_losses
from memlab.engine.dp import train_dp
from memlab.engine.train import TrainConfig, load_encoder, train, training_cost


def single_threaded(fn):
    """Run ``fn`` with one torch thread: CPU jobs train single-threaded, so a reference must too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(n)

DATA = load_dataset("synthetic", "train", n=96, seed=0)
MEAN, STD = DATA.stats()
TINY = dict(model="resnet9", model_kw={"width": 0.125}, objective="simclr", objective_kw={"temperature": 0.5},
            batch_size=32, lr=0.05, warmup_epochs=0, mean=MEAN, std=STD)


def test_disjoint_halves_are_disjoint_balanced_and_seeded():
    f, g = disjoint_halves(DATA.labels, 40, seed=3)
    assert len(f) == len(g) == 40 and not set(f.tolist()) & set(g.tolist())
    counts = np.bincount(DATA.labels[f].numpy(), minlength=10)
    assert counts.max() - counts.min() <= 1
    f2, g2 = disjoint_halves(DATA.labels, 40, seed=3)
    assert torch.equal(f, f2) and torch.equal(g, g2)
    assert not torch.equal(f, disjoint_halves(DATA.labels, 40, seed=4)[0])
    with pytest.raises(ValueError, match="need 98 points"):
        disjoint_halves(DATA.labels, 49, seed=0)


def test_memorised_removal_removes_exactly_the_top_k():
    pool = torch.tensor([10, 3, 7, 42, 5, 8, 99, 1])
    scores = torch.tensor([0.1, 0.9, -0.2, 0.5, 0.95, 0.0, 0.3, 0.7])
    assert removal_set(pool, scores, 3, "memorised").tolist() == [1, 3, 5]     # scores 0.95, 0.9, 0.7
    assert removal_set(pool, scores, 0, "memorised").tolist() == []
    # nested in k, and the retraining set is the rest
    top4 = set(removal_set(pool, scores, 4, "memorised").tolist())
    assert {1, 3, 5} < top4 and top4 - {1, 3, 5} == {42}
    keep = retained(pool, removal_set(pool, scores, 3, "memorised"))
    assert keep.tolist() == sorted({10, 3, 7, 42, 5, 8, 99, 1} - {1, 3, 5})


def test_random_removal_is_seeded_sized_and_disjoint_from_the_retained_set():
    pool = torch.arange(100, 300)
    a, b = removal_set(pool, None, 50, "random", seed=1), removal_set(pool, None, 50, "random", seed=1)
    assert torch.equal(a, b) and len(set(a.tolist())) == 50 and set(a.tolist()) <= set(pool.tolist())
    assert not torch.equal(a, removal_set(pool, None, 50, "random", seed=2))
    assert set(removal_set(pool, None, 20, "random", seed=1).tolist()) < set(a.tolist())  # nested in k
    keep = retained(pool, a)
    assert len(keep) == 150 and not set(keep.tolist()) & set(a.tolist())
    assert sorted(keep.tolist() + a.tolist()) == pool.tolist()


def test_bad_removal_requests_fail_before_compute():
    pool = torch.arange(10)
    with pytest.raises(ValueError, match="scored pool of 10"):
        removal_set(pool, torch.zeros(10), 11, "memorised")
    with pytest.raises(ValueError, match="one score per pool point"):
        removal_set(pool, torch.zeros(9), 2, "memorised")
    with pytest.raises(ValueError, match="strategy"):
        removal_set(pool, torch.zeros(10), 2, "typical")
    with pytest.raises(ValueError, match=r"\[1000\] invalid.*0 < k < 500"):
        check_ks([100, 1000], 500)
    with pytest.raises(ValueError, match="distinct"):
        check_ks([10, 10], 500)
    assert check_ks([40, 10, 20], 500) == [10, 20, 40]


def test_lambda_config_wraps_the_objective_and_lambda_zero_is_the_base():
    cfg = TrainConfig(**TINY)
    assert lambda_config(cfg, 0.0) is cfg
    c = lambda_config(cfg, 0.3)
    assert c.objective == "aligned" and c.objective_kw == {"base": "simclr", "lam": 0.3,
                                                            "base_kw": {"temperature": 0.5}}
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        lambda_config(cfg, 1.0)


def test_larger_lambda_gives_larger_view_distance():
    """Eq. 3 on a constructed case: one encoder (GroupNorm, so train and eval mode agree) trained with
    lambda = 0, 0.3, 0.8; the regulariser pushes two views' representations apart, so the SSLMem alignment
    distance grows with lambda."""
    imgs = DATA.images[:64]
    bank = ViewBank(Augmentation("simclr", mean=MEAN, std=STD), 4, seed=0)
    dist = []
    for lam in (0.0, 0.3, 0.8):
        cfg = lambda_config(TrainConfig(epochs=2, **{**TINY, "model_kw": {"width": 0.125, "norm": "group"}}), lam)
        enc = train(cfg, imgs, None, device="cpu", progress=False)["encoder"]
        dist.append(float(alignment_losses(enc, imgs, np.arange(64), bank)[enc.layer_names[-1]].mean()))
    assert dist[0] + 0.05 < dist[1] < dist[2] - 0.05, dist


def _killer(at_epoch):
    def cb(epoch):
        if epoch == at_epoch:
            raise KeyboardInterrupt("killed")
    return cb


def test_two_stage_plan_declares_retrains_then_trains_them_once(tmp_path):
    cache = Cache(tmp_path / "cache")
    cfg = TrainConfig(epochs=2, **{**TINY, "batch_size": 16})
    pool = torch.arange(0, 48)
    plan = Plan("removal", cache=cache, device="cpu")
    f = plan.add(ssl_job("f", cfg, DATA, pool, cache=cache))
    plan.defer("remove 16", "encoder", training_cost(cfg, 32))
    t = plan.table()
    assert t.status.tolist() == ["pending", "deferred"]
    assert t["image-steps"].tolist() == [2 * 3 * 16 * 2, 2 * 2 * 16 * 2]  # epochs x steps x batch x views
    assert plan.run("inline", progress=False) == {"f": "trained"}
    r = plan.add(ssl_job("remove 16", cfg, DATA, pool[16:], cache=cache))   # the second stage fills the declaration
    assert plan.table().status.tolist() == ["cached", "pending"]
    assert plan.run("inline", progress=False) == {"f": "cached", "remove 16": "trained"}
    assert plan.run("inline", progress=False) == {"f": "cached", "remove 16": "cached"}
    ref = single_threaded(lambda: train(cfg, DATA.images[pool[16:]], None, pool[16:], device="cpu",
                                        progress=False))["encoder"].state_dict()
    got = load_encoder(r, cache, "cpu").encoder.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)  # the job trained exactly the retained points
    assert load_encoder(f, cache, "cpu").key == f.cache_key(cache)


def test_removal_gap_is_random_minus_memorised_over_k():
    df = pd.DataFrame([{"downstream": d, "strategy": s, "k": k, "seed": 0, "accuracy": a}
                       for d, base in (("x", 0.5), ("y", 0.8))
                       for k in (0, 10, 20)
                       for s, a in (("memorised", base - 0.01 * k), ("random", base - 0.005 * k))])
    g = removal_gap(df).set_index("downstream")
    assert g.loc["x", "gap"] == pytest.approx(0.075) and g.loc["y", "gap"] == pytest.approx(0.075)
    assert g.loc["x", "memorised"] == pytest.approx(0.35)   # k = 0 excluded from the average


def test_missing_opacus_gives_install_instructions(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)    # import opacus -> ImportError
    msg = dp_unavailable()
    assert msg is not None and 'pip install -e ".[dp]"' in msg and "skipped" in msg


def test_dp_encoders_are_plan_entries_served_from_the_cache(tmp_path):
    pytest.importorskip("opacus")
    from memlab.engine.dp import dp_job, load_dp
    assert dp_unavailable() is None
    cfg = TrainConfig(epochs=1, **{**TINY, "objective": "simsiam", "objective_kw": {"norm": "layer"},
                                   "model_kw": {"width": 0.125, "norm": "group"}})
    cache = Cache(tmp_path / "cache")
    job = dp_job(cfg, DATA.images[:32], torch.arange(32), epsilon=8.0, cache=cache, name="dp")
    assert Plan("dp", cache=cache).add(job) is job
    p1, p2 = Plan("dp", cache=cache), Plan("dp", cache=cache)
    assert p1.add(job) and p1.run("inline", progress=False) == {"dp": "trained"}
    assert p2.add(job) and p2.run("inline", progress=False) == {"dp": "cached"}
    a, b = load_dp(job, cache, "cpu"), load_dp(job, cache, "cpu")
    assert a.dp["epsilon"] == pytest.approx(8.0, rel=0.05) and a.key == job.cache_key(cache)
    ref = single_threaded(lambda: train_dp(cfg, DATA.images[:32], torch.arange(32), target_epsilon=8.0, device="cpu",
                                           progress=False))
    sa, sb, sr = a.encoder.state_dict(), b.encoder.state_dict(), ref["encoder"].state_dict()
    assert all(torch.equal(sa[k], sr[k]) and torch.equal(sa[k], sb[k]) for k in sa)


def test_probe_accuracy_is_cached_per_encoder_and_task(tmp_path, monkeypatch):
    import memlab.experiments.scoring
    from memlab.experiments.scoring import probe_accuracy
    from memlab.engine.train import Trained, build
    cfg = TrainConfig(epochs=1, **TINY)
    enc, obj = build(cfg)
    tr = Trained(enc.eval(), obj, [], {}, cfg, key="enc-a")
    test = load_dataset("synthetic", "test", n=40, seed=0)
    task = (DATA.images[:60], DATA.labels[:60], test.images, test.labels)
    cache = Cache(tmp_path / "cache")
    a = probe_accuracy(tr, task, device="cpu", max_iter=20, cache=cache, name="syn")
    assert 0 <= a <= 1 and a * 40 == pytest.approx(round(a * 40))
    assert probe_accuracy(tr, task, device="cpu", max_iter=20) == a                   # uncached: the same probe

    def boom(*args, **kw):
        raise AssertionError("probe recomputed")
    monkeypatch.setattr(memlab.experiments.scoring, "linear_probe", boom)
    assert probe_accuracy(tr, task, device="cpu", max_iter=20, cache=cache, name="syn") == a  # served from the cache
    with pytest.raises(AssertionError, match="recomputed"):                                 # another setting: recomputed
        probe_accuracy(tr, task, device="cpu", max_iter=21, cache=cache, name="syn")
    with pytest.raises(AssertionError, match="recomputed"):                                 # another task name too
        probe_accuracy(tr, task, device="cpu", max_iter=20, cache=cache, name="other")


def test_both_halves_cancel_a_constant_gap_between_the_encoders():
    # alignment loss of encoder e on point i: its own level plus -0.1 on the points it trained on
    level, seen = {"f": 0.9, "g": 0.4}, {"f": set(range(0, 6)), "g": set(range(6, 10))}
    align = lambda e, i: level[e] - 0.1 * (i in seen[e])  # noqa: E731
    raw_f = torch.tensor([align("g", i) - align("f", i) for i in range(0, 6)])    # f's half against g
    raw_g = torch.tensor([align("f", i) - align("g", i) for i in range(6, 10)])   # g's half against f
    out = both_halves(raw_f, raw_g)
    # f's half alone reports the gap as memorisation (0.4 - 0.9 + 0.1 < 0); both halves recover it exactly
    assert out["raw_f"].mean() == pytest.approx(-0.4) and out["raw_g"].mean() == pytest.approx(0.6)
    assert out["offset"] == pytest.approx(-0.5)
    assert (out["raw_f"].mean() + out["raw_g"].mean()) / 2 == pytest.approx(0.1)
    assert out["raw"].shape == (10,) and out["m"].abs().max() <= 1
    assert torch.allclose(out["m"], out["raw"] / (0.6 + 0.4))   # normalised by the range over both halves


def test_kept_sets_are_the_top_n_or_the_complement_of_a_random_removal():
    from memlab.experiments.removal_sets import check_ns, kept_set
    pool = torch.arange(100, 110)
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.0, 0.6, 0.5, 0.4])
    assert kept_set(pool, scores, 3, "memorised").tolist() == [101, 103, 105]          # the 3 highest scores
    rnd = kept_set(pool, scores, 7, "random", seed=4)
    # the same points a random removal of 10 - 7 = 3 retains, so both experiments share that encoder
    assert torch.equal(rnd, retained(pool, removal_set(pool, scores, 3, "random", seed=4))) and len(rnd) == 7
    assert check_ns([5, 8], 10) == [8, 5] and check_ns([], 10) == []
    for bad in ([10], [0], [5, 5], [2.5]):
        with pytest.raises(ValueError, match="0 < n < 10"):
            check_ns(bad, 10)


def test_the_keep_claim_tests_the_largest_kept_set_against_f():
    from memlab.experiments.removal_results import KEEP_ALPHA, keep_claim
    def table(mem: float):
        rows = [("all", 100, "memorised", 0.60), ("all", 100, "random", 0.60), ("t", 80, "memorised", mem),
                ("t", 80, "random", 0.50), ("t", 50, "memorised", 0.10), ("t", 50, "random", 0.10)]
        return pd.DataFrame([{"downstream": "cifar10", "n": n, "strategy": st, "seed": 0, "accuracy": a}
                             for _, n, st, a in rows])

    class R:
        claims = []

        def claim(self, text, ok, detail=""):
            self.claims.append((text, ok, detail))

    r = R()
    assert keep_claim(r, table(0.59), 100, {"cifar10": 1000})   # 1 point below f on 1,000 images: within the noise
    assert "80 most memorised of 100" in r.claims[-1][0] and "random 0.5000" in r.claims[-1][2]
    assert not keep_claim(r, table(0.50), 100, {"cifar10": 1000})   # 10 points below: z about 4.5
    p1, p2 = (600 + 1) / 1002, (500 + 1) / 1002
    z = 0.10 / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 1002)
    from scipy.stats import norm
    assert f"p of lying below all: {norm.sf(z):.2g}" in r.claims[-1][2] and norm.sf(z) < KEEP_ALPHA
    assert keep_claim(r, table(0.50), 100, {"cifar10": 40})  # the same gap on 40 test images is within the noise
