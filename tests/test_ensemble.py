"""Training N networks with recognition records: the SimCLR indicator inside fixed evaluation batches,
resume after a kill, loop vs vmap, bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.experiments.ensemble import ensemble_backend, load_network, stack_records, train_ensemble
from memlab.experiments.recognition import record
from memlab.metrics.profiles import eval_chunks
from memlab.data.splits import random_labels
from memlab.engine.train import TrainConfig, build

CH = {"channels": (4, 8, 8, 8)}


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def _cfg(objective="supervised", epochs=2, **kw):
    okw = {"temperature": 0.07, "hidden": 16, "proj_dim": 8} if objective == "simclr" else {}
    aug = "weak" if objective == "supervised" else "simclr"
    return TrainConfig(model="cnn", model_kw=CH, objective=objective, objective_kw=okw, aug=aug, epochs=epochs,
                       batch_size=16, optimizer="adam", lr=3e-3, weight_decay=1e-4, warmup_epochs=0, **kw)


def test_simclr_record_matches_the_definition_on_fixed_batches():
    """I(x, pair m) = [view 2m+1 of x is the most similar of the other 2B-1 views of x's evaluation batch
    to view 2m], with the batches = eval_chunks(|X|, B), computed here by brute force."""
    cfg = _cfg("simclr")
    enc, obj = build(cfg)
    enc.eval(), obj.eval()
    imgs, idx = _data(20), torch.arange(100, 120)
    bank = ViewBank(Augmentation("simclr"), 4, seed=5)
    got = record(enc, obj, cfg, imgs, None, idx, bank, 2, eval_batch=8, device="cpu")
    assert got.shape == (2, 20)
    want = np.zeros((2, 20), dtype=bool)
    with torch.no_grad():
        for chunk in eval_chunks(20, 8):  # 7, 7, 6 images
            for m in range(2):
                v1 = bank.view(imgs[chunk], idx[chunk].numpy(), 2 * m)
                v2 = bank.view(imgs[chunk], idx[chunk].numpy(), 2 * m + 1)
                z = F.normalize(obj.projector(enc.embed(torch.cat([v1, v2]))), dim=1)
                b = len(chunk)
                for i in range(b):
                    s = z[i] @ z.t()
                    s[i] = -float("inf")
                    want[m, chunk[i]] = int(s.argmax()) == i + b
    np.testing.assert_array_equal(got, want)


def test_classification_record_is_argmax_equals_training_label():
    cfg = _cfg()
    enc, obj = build(cfg, 10)
    enc.eval(), obj.eval()
    imgs, lab = _data(10), torch.arange(10) % 10
    bank = ViewBank(Augmentation("weak"), 3, seed=1)
    got = record(enc, obj, cfg, imgs, lab, torch.arange(10), bank, 3, device="cpu")
    with torch.no_grad():
        for m in range(3):
            pred = obj.logits(enc, bank.view(imgs, np.arange(10), m)).argmax(1)
            np.testing.assert_array_equal(got[m], (pred == lab).numpy())


def _run(cache, seeds=(0, 1), backend="jobs", callback=None, objective="supervised", epochs=2, executor="inline"):
    imgs = _data()
    labels = random_labels(len(imgs), 10, 3) if objective == "supervised" else None
    cfg = _cfg(objective, epochs)
    n_views = 2 if objective == "supervised" else 4
    bank = ViewBank(Augmentation(cfg.aug), n_views, seed=2)
    return train_ensemble(cfg, list(seeds), imgs, labels, None, np.arange(0, 32, 2), bank, 2, range(1, epochs + 1),
                          eval_batch=16, cache=cache, device="cpu", backend=backend, executor=executor,
                          progress=False, epoch_callback=callback)


def test_resume_after_kill_continues_at_last_network_and_epoch_with_identical_numbers(tmp_path):
    from memlab.io.cache import Cache
    ref = _run(Cache(tmp_path / "ref"))

    class Killed(Exception):
        pass

    def kill(seed, epoch):
        if seed == 1 and epoch == 1:
            raise Killed

    cache = Cache(tmp_path / "c")
    with pytest.raises(Killed):
        _run(cache, callback=kill)
    seen = []
    out = _run(cache, callback=lambda s, e: seen.append((s, e)))
    assert seen == [(1, 2)]  # network 0 from the cache; network 1 resumes after its epoch 1
    assert [o["from_cache"] for o in out] == [True, False]
    for a, b in zip(ref, out):
        np.testing.assert_array_equal(a["records"], b["records"])
        assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
        for k in a["encoder"]:
            assert torch.equal(a["encoder"][k], b["encoder"][k])
    rec = stack_records(out)
    assert rec.shape == (2, 2, 2, 16) and rec.dtype == bool
    again = _run(cache, callback=lambda s, e: seen.append((s, e)))  # all served from the cache
    assert seen == [(1, 2)] and all(o["from_cache"] for o in again)
    enc, obj = load_network(_cfg(), out[1], num_classes=10)
    assert not enc.training


def test_vmap_backend_equals_the_loop(tmp_path):
    from memlab.io.cache import Cache
    for objective in ("supervised", "simclr"):
        loop = _run(Cache(tmp_path / f"l{objective}"), objective=objective, epochs=1)
        vm = _run(Cache(tmp_path / f"v{objective}"), backend="vmap", objective=objective, epochs=1)
        for a, b in zip(loop, vm):
            np.testing.assert_allclose([h["loss"] for h in a["history"]], [h["loss"] for h in b["history"]],
                                       rtol=1e-4, atol=1e-5)
            for k in a["encoder"]:
                torch.testing.assert_close(a["encoder"][k].float(), b["encoder"][k].float(), rtol=1e-3, atol=1e-4)
            assert (a["records"] != b["records"]).mean() < 0.05


def test_local_executor_equals_inline_and_resumes(tmp_path):
    """Worker processes give bit-identical networks to the inline executor, and a network whose checkpoint a
    killed run left behind resumes from it."""
    from memlab.io.cache import Cache
    inline = _run(Cache(tmp_path / "l"), seeds=(0, 1, 2))
    cache = Cache(tmp_path / "p")

    class Killed(Exception):
        pass

    def kill(seed, epoch):
        if seed == 1 and epoch == 1:
            raise Killed

    with pytest.raises(Killed):      # a callback runs inline: seed 0 done, seed 1 stopped after epoch 1
        _run(cache, seeds=(0, 1, 2), callback=kill)
    (part,) = (tmp_path / "p" / "profile_net").glob("*.partial/last.pt")
    first_epoch = torch.load(part, weights_only=True)["history"][0]
    local = _run(cache, seeds=(0, 1, 2), executor="local")
    assert [o["from_cache"] for o in local] == [True, False, False]
    for a, b in zip(inline, local):
        np.testing.assert_array_equal(a["records"], b["records"])
        assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
        assert all(torch.equal(a["encoder"][k], b["encoder"][k]) for k in a["encoder"])
    assert local[1]["history"][0] == first_epoch   # resumed: epoch 1 (with its wall time) came from the checkpoint
    assert all(o["from_cache"] for o in _run(cache, seeds=(0, 1, 2)))


def test_backend_choice():
    cfg = _cfg()
    assert ensemble_backend("cpu", cfg, "jobs") == "jobs"
    assert ensemble_backend("cpu", cfg, "auto", n_networks=4) == "jobs"  # vmap only pays off on a GPU
    assert ensemble_backend("cpu", cfg, "vmap") == "vmap"
    from dataclasses import replace
    micro = replace(cfg, objective="supervised", micro_batch=cfg.batch_size // 2)
    with pytest.raises(ValueError, match="micro_batch"):  # vmap would step on the whole batch: refused, not ignored
        ensemble_backend("cpu", micro, "vmap")
    assert ensemble_backend("cpu", micro, "jobs") == "jobs"


def test_bad_input_fails_before_compute(tmp_path):
    from memlab.io.cache import Cache
    cfg, imgs = _cfg(), _data()
    bank = ViewBank(Augmentation("weak"), 2)
    kw = dict(cache=Cache(tmp_path), device="cpu", progress=False)
    lab = torch.zeros(32, dtype=torch.long)
    with pytest.raises(ValueError, match="record_epochs"):
        train_ensemble(cfg, [0], imgs, lab, None, np.arange(8), bank, 2, [0, 4], **kw)
    with pytest.raises(ValueError, match="view bank"):
        train_ensemble(cfg, [0], imgs, lab, None, np.arange(8), bank, 3, [1], **kw)
    with pytest.raises(ValueError, match="needs labels"):
        train_ensemble(cfg, [0], imgs, None, None, np.arange(8), bank, 2, [1], **kw)
    with pytest.raises(ValueError, match="distinct"):
        train_ensemble(cfg, [0, 0], imgs, lab, None, np.arange(8), bank, 2, [1], **kw)
    with pytest.raises(ValueError, match="positions"):
        train_ensemble(cfg, [0], imgs, lab, None, np.array([3, 3]), bank, 2, [1], **kw)
    with pytest.raises(ValueError, match="backend"):
        ensemble_backend("cpu", cfg, "threads")
    with pytest.raises(ValueError, match="local executor"):
        ensemble_backend("cpu", cfg, "procs")


def test_vmap_groups_of_two_paradigms_with_one_objective_share_a_plan(tmp_path):
    """Supervised and random-label networks use the same objective; their vmap groups must still be distinct
    jobs, and the plan reports their networks as trained."""
    from memlab.io.cache import Cache
    from memlab.experiments.ensemble import load_networks, network_jobs
    from memlab.experiments.ensemble_vmap import vmap_job
    from memlab.engine.jobs import Plan
    cache, imgs, cfg = Cache(tmp_path), _data(), _cfg(epochs=1)
    bank = ViewBank(Augmentation(cfg.aug), 2, seed=2)
    groups = {}
    for name, labels in (("supervised", torch.arange(32) % 10), ("random_labels", random_labels(32, 10, 3))):
        groups[name] = network_jobs(cfg, [0, 1], imgs, labels, None, np.arange(8), bank, 2, [1], eval_batch=16,
                                    cache=cache, name=name)
    plan = Plan("01", cache=cache)
    for name, jobs in groups.items():
        plan.add(vmap_job(jobs, cache))
    status = plan.run("inline", progress=False)
    assert {n: status[n] for n in ("supervised seed 0", "random_labels seed 1")} == {
        "supervised seed 0": "trained", "random_labels seed 1": "trained"}
    nets = load_networks(groups["random_labels"], cache, [n for n, s in status.items() if s == "trained"])
    assert [n["from_cache"] for n in nets] == [False, False] and nets[0]["records"].shape == (1, 2, 8)


def _hold_and_train(root, job, ready, go):
    """Another run (one job per network) holding network 0's lock: it trains that network itself."""
    from memlab.io.cache import Cache
    from memlab.engine.jobs import run_job
    with Cache(root).lock(job.kind, job.key):
        ready.set()
        go.wait(30)
        run_job(job, root)


def test_vmap_group_leaves_a_network_locked_elsewhere_to_that_process(tmp_path, monkeypatch):
    """A vmap group and a run that trains the same networks one job each, at once: every network trains once."""
    import multiprocessing as mp
    import threading
    import memlab.experiments.ensemble as ens
    import memlab.experiments.ensemble_vmap as ens_vmap
    from memlab.io.cache import Cache
    from memlab.engine.jobs import run_job
    cache, imgs, cfg = Cache(tmp_path), _data(), _cfg(epochs=1)
    bank = ViewBank(Augmentation(cfg.aug), 2, seed=2)
    jobs = ens.network_jobs(cfg, [0, 1, 2], imgs, torch.arange(32) % 10, None, np.arange(8), bank, 2, [1],
                            eval_batch=16, cache=cache, name="sup")
    trained_here = []
    real = ens_vmap.train_vmap
    monkeypatch.setattr(ens_vmap, "train_vmap", lambda cfgs, *a: trained_here.append([c.seed for c in cfgs]) or real(cfgs, *a))
    ctx = mp.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_and_train, args=(str(cache.root), jobs[0], ready, go))
    other.start()
    assert ready.wait(30)
    threading.Timer(2.0, go.set).start()   # the other run starts training once the group is under way
    assert run_job(ens_vmap.vmap_job(jobs, cache), cache.root) == "trained"
    other.join(60)
    assert other.exitcode == 0
    assert trained_here == [[1, 2]]                       # network 0 was left to the process holding it
    assert all(cache.exists(j.kind, j.key) for j in jobs)
