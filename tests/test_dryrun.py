"""The dry run (dryrun.py, `python -m memlab plan NOTEBOOK --dry-run`): every job for a few steps, nothing cached."""
import numpy as np
import pytest
import torch

from memlab.engine import dryrun
from memlab.data import fakes
from memlab.data.datasets import load_dataset
from memlab.engine.loop import fit
from memlab.engine.costs import Cost
from memlab.engine.jobs import Job, Plan
from memlab.engine.train import TrainConfig, encoder_job

CFG = dict(model="cnn", model_kw={"channels": [4, 8]}, objective="simclr", epochs=3, batch_size=16, lr=0.05,
           warmup_epochs=1)


def _images(n=48):
    return torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _broken(*, ckpt_dir, device, progress, epoch_callback, why):
    raise ValueError(why)


def test_fit_under_limits_runs_its_steps_on_cut_batches_then_the_callbacks_of_the_last_epoch():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    sizes, seen = [], []

    def step(b, epoch, i):
        sizes.append(len(b))
        loss = (w - 1).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    batches = lambda epoch: [torch.arange(10) for _ in range(7)]  # noqa: E731
    cb = lambda epoch, rec, n: seen.append((epoch, n))  # noqa: E731
    with dryrun.limits(dryrun.DryRun(steps=2, batch=3)):
        res = fit(step, batches, epochs=5, optimizer=opt, state={}, callbacks=(cb,), progress=False)
    assert sizes == [3, 3] and seen == [(5, 2)] and res.steps == 2
    sizes.clear(), seen.clear()
    fit(step, batches, epochs=2, optimizer=opt, state={}, callbacks=(cb,), progress=False)  # a real run again
    assert sizes == [10] * 14 and seen == [(1, 7), (2, 14)]
    assert dryrun.active() is None and dryrun.cap(1000) == 1000


def test_dry_run_limits_refuse_a_batch_a_contrastive_loss_cannot_use():
    with pytest.raises(ValueError, match="batch >= 2"):
        dryrun.DryRun(batch=1)


def test_fake_archive_has_the_real_layout_and_balanced_labels(tmp_path, monkeypatch):
    monkeypatch.setitem(fakes.REAL_SIZES, "stl10", (20, 10, 30, 10))
    fakes.write_fake_archive(tmp_path / "stl10.npz", "stl10")
    tr = load_dataset("stl10", "train", root=tmp_path, download=False)
    un = load_dataset("stl10", "unlabeled", root=tmp_path, download=False)
    assert tr.images.shape == (20, 3, 32, 32) and tr.images.dtype == torch.uint8
    assert np.bincount(tr.labels.numpy()).tolist() == [2] * 10
    assert len(un) == 30 and (un.labels == -1).all()
    assert len(load_dataset("stl10", "test", root=tmp_path, download=False)) == 10


def test_a_dry_run_loads_what_is_present_and_a_fake_of_the_real_size_for_what_is_missing(tmp_path, monkeypatch):
    from memlab.data.datasets import DatasetNotFound
    monkeypatch.setitem(fakes.REAL_SIZES, "svhn", (20, 10, 0, 10))
    real = tmp_path / "real"
    real.mkdir()
    np.savez(real / "cifar10.npz", x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.arange(4),
             x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.arange(2))
    with pytest.raises(DatasetNotFound):  # a real run: missing is missing
        load_dataset("svhn", root=real, download=False)
    monkeypatch.setenv(fakes.FAKE_DATA_ENV, str(tmp_path / "fakes"))
    assert len(load_dataset("cifar10", root=real, download=False)) == 4          # the real one, not a fake
    assert len(load_dataset("svhn", root=real, download=False)) == 20
    assert len(load_dataset("svhn", "test", root=real, download=False)) == 10
    fake = next((tmp_path / "fakes").glob("svhn*.npz"))
    mtime = fake.stat().st_mtime_ns
    assert fakes.fake_archive(tmp_path / "fakes", "svhn") == fake and fake.stat().st_mtime_ns == mtime  # kept
    assert list((tmp_path / "fakes").glob("cifar10*")) == []


def test_plan_dry_run_runs_every_job_and_stand_in_reports_failures_and_writes_nothing(cache):
    x = _images()
    plan = Plan("t", cache=cache)
    plan.add(encoder_job(TrainConfig(**CFG), x, None, torch.arange(48), cache=cache, name="simclr"))
    plan.add(encoder_job(TrainConfig(**{**CFG, "objective": "supervised"}), x, torch.arange(48) % 4, torch.arange(48),
                         cache=cache, name="supervised"))
    plan.add(Job("broken", "encoder", {"k": 1}, _broken, {"why": "a shape error"}, Cost(1, 1, 1.0)))
    plan.defer("retrain", "encoder", Cost(1, 1, 1.0),
               stand_in=lambda: encoder_job(TrainConfig(**CFG), x[8:], None, torch.arange(8, 48), cache=cache))
    plan.defer("no stand-in", "encoder", Cost(1, 1, 1.0))
    with dryrun.limits(dryrun.DryRun()):
        t = dryrun.dry_run(plan)
    result = dict(zip(t.job, t["dry run"]))
    assert result["simclr"] == result["supervised"] == result["retrain"] == "pass"
    assert result["broken"] == "FAIL ValueError: a shape error"
    assert result["no stand-in"].startswith("FAIL RuntimeError: deferred without a stand-in")
    assert t["peak GiB"].notna().sum() >= 3 and (t["GPU-h"] >= 0).all()
    assert not any(cache.root.rglob("*.pt"))  # nothing reached the cache, not even a checkpoint
    assert all(plan.status(j) == "pending" for j in plan.jobs)


def test_the_cli_sets_fake_data_only_for_the_dry_run(tmp_path, monkeypatch):
    """After a dry run (or its failure) the process loads real data again: missing stays missing."""
    import os
    from memlab import cli
    monkeypatch.delenv(fakes.FAKE_DATA_ENV, raising=False)
    monkeypatch.setenv("MEMLAB_CACHE", str(tmp_path / "cache"))
    seen = []
    monkeypatch.setattr(cli, "_run", lambda *a: seen.append(os.environ.get(fakes.FAKE_DATA_ENV)) or 1 / 0)
    assert cli.main(["plan", "05", "--profile", "smoke", "--dry-run"]) == 2     # the error, reported
    assert seen == [str(tmp_path / "cache" / "dryrun-data")]
    assert fakes.FAKE_DATA_ENV not in os.environ
