"""Notebook 03's effect-versus-compute curves (memlab.experiments.removal_trends), the snapshot parameters that
feed them (common.check_snapshots) and the DP encoders' snapshots (engine.dp.train_dp)."""
import math

import pandas as pd
import pytest
import torch

from memlab.data.datasets import load_dataset
from memlab.experiments.common import check_snapshots
from memlab.experiments.removal import RemovalParams
from memlab.experiments.removal_trends import (DP_ACCURACY, LAMBDA, LAMBDA_ACCURACY, accuracy_difference, compute_points, fit_trends,
                                               mean_difference, overall_verdict, trend_detail)
from memlab.io.params import ParameterError
from memlab.metrics.trend import AGREES, FAILS, HOLDS

from test_experiments_removal import values   # notebook 03's smoke values


def test_mean_difference_is_the_welch_standard_error_of_two_samples():
    d, se = mean_difference(torch.tensor([1.0, 2.0, 3.0]), [0.0, 0.0, 1.0])
    # means 2 and 1/3; variances 1 and 1/3, each over 3 points: se = sqrt(1/3 + 1/9) = 2/3
    assert d == pytest.approx(5 / 3) and se == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=">= 2 finite"):
        mean_difference([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=">= 2 finite"):
        mean_difference([1.0, math.nan], [0.0, 1.0])
    # paired (the same points under two encoders): differences 1, 1, 0.5 -> sd sqrt(1/12), se sqrt(1/12) / sqrt(3)
    d, se = mean_difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.5], paired=True)
    assert d == pytest.approx(5 / 6) and se == pytest.approx(1 / 6)
    assert se < mean_difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.5])[1]    # the points' shared spread leaves it
    with pytest.raises(ValueError, match="one score of each point"):
        mean_difference([1.0, 2.0, 3.0], [0.0, 1.0], paired=True)


def test_accuracy_difference_uses_the_agresti_caffo_standard_error():
    d, se = accuracy_difference(0.5, 0.4, 100)
    p1, p2 = 51 / 102, 41 / 102                   # one success and one failure added to each
    assert d == pytest.approx(0.1) and se == pytest.approx(math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 102))
    assert accuracy_difference(1.0, 1.0, 10)[1] > 0   # never 0, so the trend's weights stay finite
    with pytest.raises(ValueError):
        accuracy_difference(1.2, 0.4, 100)


def test_compute_points_end_at_the_last_epoch_and_snapshots_are_checked_before_compute():
    assert compute_points((15, 8), 30) == [8, 15, 30]
    assert check_snapshots("lambda_snapshots", [15, 8], 30) == (8, 15) and check_snapshots("x", [], 30) == ()
    for bad in ([8], [8, 8], [8, 30], [0, 8], [8.0, 15]):
        with pytest.raises(ParameterError, match="at least 2 distinct"):
            check_snapshots("lambda_snapshots", bad, 30)
    with pytest.raises(ParameterError, match="lambda_snapshots"):
        RemovalParams(**values(lambda_snapshots=[1, 3]))            # smoke: lambda_epochs 3
    with pytest.raises(ParameterError, match="dp_snapshots"):
        RemovalParams(**values(dp_snapshots=[2]))
    RemovalParams(**values(dp_snapshots=[2], dp_epochs=0))           # DP off: its snapshots are not used
    with pytest.raises(ParameterError, match="trend_pairs"):
        RemovalParams(**values(trend_pairs=3))                       # smoke: view_pairs 2
    with pytest.raises(ParameterError, match="trend_pairs"):
        RemovalParams(**values(trend_pairs=0))                       # 0 would silently mean "all pairs"


def test_verdicts_of_a_claim_on_several_curves_and_its_detail():
    assert overall_verdict([HOLDS, HOLDS]) == HOLDS
    assert overall_verdict([HOLDS, AGREES]) == AGREES
    assert overall_verdict([AGREES, FAILS, HOLDS]) == FAILS
    table = pd.DataFrame({"claim": [LAMBDA] * 6 + [DP_ACCURACY] * 3, "dataset": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                          "epoch": [4, 8, 16] * 3,
                          "statistic": [0.0, 0.1, 0.2, 0.0, -0.1, -0.2, 0.1, 0.1, 0.1],
                          "se": [0.01] * 6 + [0.0] * 3})      # se 0 is floored, not refused
    t = fit_trends(table, {(LAMBDA, "a"): False, (LAMBDA, "b"): False, (DP_ACCURACY, "c"): True})
    assert t[LAMBDA, "a"].verdict == AGREES and t[LAMBDA, "a"].slope == pytest.approx(0.1)
    assert t[LAMBDA, "b"].verdict == FAILS and t[LAMBDA, "b"].crossing is None
    assert t[DP_ACCURACY, "c"].verdict == HOLDS                # the claim's own test passed at the last epoch
    assert trend_detail({}) == ""
    one = trend_detail({"c": t[DP_ACCURACY, "c"]})
    assert one.startswith("; effect vs compute: holds: 0.1 at 4")
    both = trend_detail({"a": t[LAMBDA, "a"], "b": t[LAMBDA, "b"]})
    assert both.startswith("; effect vs compute: fails (a: trend agrees, not yet significant: ")
    assert "; b: fails: " in both and "points away" in both


def test_dp_training_keeps_snapshots_that_load_as_encoders(tmp_path):
    pytest.importorskip("opacus")
    from memlab.engine.dp import dp_job, load_dp, train_dp
    from memlab.engine.jobs import run_job
    from memlab.engine.train import TrainConfig
    from memlab.io.cache import Cache
    data = load_dataset("synthetic", "train", n=32, seed=0)
    mean, std = data.stats()
    cfg = TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="simsiam",
                      objective_kw={"norm": "layer"}, epochs=2, batch_size=16, lr=0.05, warmup_epochs=0, mean=mean,
                      std=std, snapshot_epochs=(1,))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # CPU jobs train single-threaded, so the reference must too
    try:
        out = train_dp(cfg, data.images, torch.arange(32), target_epsilon=8.0, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert sorted(out["snapshots"]) == [1]
    final, first = out["encoder"].state_dict(), out["snapshots"][1]
    assert any(not torch.equal(first[k], final[k].cpu()) for k in final)   # epoch 1 is not the end of training
    cache = Cache(tmp_path / "cache")
    job = dp_job(cfg, data.images, torch.arange(32), epsilon=8.0, cache=cache, name="dp")
    run_job(job, cache.root, device="cpu", progress=False)
    tr = load_dp(job, cache, "cpu")
    e1 = tr.at_epoch(1)
    assert e1.key == f"{tr.key}@1" and e1.history[-1]["epsilon"] < tr.dp["epsilon"]   # less privacy spent by then
    assert all(torch.equal(e1.encoder.state_dict()[k], first[k]) for k in first)     # the same DP run, reproduced


class FakeEncoder:
    """A trained encoder as ``removal_trends`` sees it: its recipe's epochs, snapshots and DP history."""

    def __init__(self, name: str, epochs: int = 4, epoch: int | None = None):
        self.name, self.epoch = name, epoch or epochs
        self.config = type("Cfg", (), {"epochs": epochs})()
        self.history = [{"epsilon": 2.0 * (e + 1)} for e in range(epochs)]

    from memlab.engine.train import Trained
    after = Trained.after   # the real rule: the last epoch is the encoder itself

    def at_epoch(self, e: int):
        assert e < self.config.epochs, "the last epoch is the encoder itself (its cached scores are reused)"
        return FakeEncoder(self.name, self.config.epochs, e)


def fake_run():
    """Scores built so that each statistic is known: SSLMem(lambda 0) = 0.1 x epoch + (-1, +1, ...) around it,
    SSLMem(lambda 0.5) = (-0.5, +0.5, ...) around 0 on the same points; DP likewise with 0.05 x epoch; accuracy gap 0.01 x epoch
    under DP, 0.02 x epoch between the lambdas."""
    from types import SimpleNamespace as NS
    labels = torch.arange(40) % 4
    level = {"f0": 0.1, "f5": 0.0, "finf": 0.05, "f8": 0.0}
    spread = {"f0": 1.0, "f5": 0.5, "finf": 1.0, "f8": 0.5}   # the same points score in step under both encoders

    def pair_sslmem(f, g, data, f_idx, g_idx, n_pairs):
        assert n_pairs == 1 and len(f_idx) == len(g_idx) == 4
        return {"m": level[f.name] * f.epoch + spread[f.name] * torch.tensor([-1.0, 1.0] * 4)}

    def probe(f, task):
        return {k: 0.5 - {"f8": 0.01, "f5": 0.02}.get(f.name, 0.0) * f.epoch for k in task}

    p = NS(lambdas=[0.5, 0.0], lambda_snapshots=[2, 1], lambda_epochs=4, lambda_seeds=[0], trend_points=4,
           trend_pairs=1, split_seed=0, dp_snapshots=[1, 2], dp_epochs=4, dp_epsilons=[20.0, 8.0], dataset="syn")
    train = NS(labels=labels)
    d = NS(lam_data={"syn": (train, torch.arange(0, 20), torch.arange(20, 40), (None, None, None, torch.zeros(50)))},
           train=train,
           dp_epsilons=[math.inf, 20.0, 8.0], dp_f=torch.arange(0, 20), dp_g=torch.arange(20, 40),
           tasks={"t": (None, None, None, torch.zeros(100)), "u": None})   # (x_train, y_train, x_test, y_test)
    jobs = {"lambda": {("syn", 0.0, 0): ["f0", "g0"], ("syn", 0.5, 0): ["f5", "g5"]},
            "dp": {(math.inf, "f"): "finf", (math.inf, "g"): "ginf", (8.0, "f"): "f8", (8.0, "g"): "g8"}}
    return NS(p=p, d=d, jobs=jobs, loaded=FakeEncoder, pair_sslmem=pair_sslmem, probe=probe)


def test_effect_vs_compute_measures_each_statistic_at_every_snapshot_and_the_last_epoch():
    from memlab.experiments.removal_trends import DP_SSLMEM, effect_vs_compute
    t = effect_vs_compute(fake_run()).set_index(["claim", "epoch"])
    se = math.sqrt((8 / 7) * 0.25 / 8)   # paired: the 8 differences are +-0.5 around their mean (not +-1 and +-0.5)
    for e in (1, 2, 4):
        assert t.loc[(LAMBDA, e), "statistic"] == pytest.approx(0.1 * e)
        assert t.loc[(LAMBDA, e), "se"] == pytest.approx(se) and t.loc[(LAMBDA, e), "n"] == 4
        assert t.loc[(DP_SSLMEM, e), "statistic"] == pytest.approx(0.05 * e)
        assert t.loc[(DP_SSLMEM, e), "epsilon spent (f)"] == 2.0 * e     # the DP run's history at that epoch
        assert t.loc[(DP_ACCURACY, e), "statistic"] == pytest.approx(0.01 * e)
        assert t.loc[(DP_ACCURACY, e), "dataset"] == "t" and t.loc[(DP_ACCURACY, e), "n"] == 100
        assert t.loc[(LAMBDA_ACCURACY, e), "statistic"] == pytest.approx(0.02 * e)
        assert t.loc[(LAMBDA_ACCURACY, e), "compared"] == pytest.approx(0.5 - 0.02 * e)   # lambda 0.5's accuracy
        assert t.loc[(LAMBDA_ACCURACY, e), "dataset"] == "syn" and t.loc[(LAMBDA_ACCURACY, e), "n"] == 50
        assert t.loc[(LAMBDA_ACCURACY, e), "se"] == pytest.approx(accuracy_difference(0.5, 0.5 - 0.02 * e, 50)[1])
    assert math.isnan(t.loc[(LAMBDA, 4), "epsilon spent (f)"]) and len(t) == 12
    assert t.loc[(LAMBDA, 4), "reference"] == pytest.approx(0.4) and t.loc[(LAMBDA, 4), "compared"] == 0.0
