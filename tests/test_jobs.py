"""Jobs, plans and executors: every key trains once, whatever runs it, and gives the same bits."""
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from memlab.io.cache import Cache
from memlab.engine.executors import make
from memlab.engine.costs import Cost
from memlab.engine.jobs import JobsFailed, Plan, Stored, run_job
from memlab.engine.train import TrainConfig, encoder_job, load_encoder

CFG = dict(model="cnn", model_kw={"channels": [4, 8]}, objective="simclr", epochs=3, batch_size=16, lr=0.05,
           warmup_epochs=1)


def tiny_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)


def jobs_for(cache, seeds=(0, 1), **kw):
    x = tiny_data()
    return [encoder_job(TrainConfig(**{**CFG, **kw, "seed": s}), x, None, torch.arange(len(x)), cache=cache,
                        name=f"enc seed {s}") for s in seeds]


def weights(cache, job):
    return load_encoder(job, cache, device="cpu").encoder.state_dict()


def test_cost_counts_image_steps_and_flops(cache):
    j = jobs_for(cache, seeds=(0,))[0]
    # 48 images, batch 16 -> 3 steps per epoch; 3 epochs; SimCLR: 2 views per image
    assert (j.cost.epochs, j.cost.image_steps) == (3, 3 * 3 * 16 * 2)
    one = Cost.of("cnn", {"channels": [4, 8]}, epochs=1, steps_per_epoch=1, batch=1, views=1, size=16)
    assert one.flops > 0 and j.cost.flops == pytest.approx(one.flops * j.cost.image_steps)


def test_stored_tensor_pickles_small_and_round_trips(tmp_path):
    x = tiny_data(200)
    blob = pickle.dumps(Stored(x, tmp_path))
    assert len(blob) < 2000 < x.numel()
    assert torch.equal(pickle.loads(blob), x)


def test_plan_table_and_statuses(cache):
    plan = Plan("t", cache=cache)
    a, b = jobs_for(cache)
    plan.add(a), plan.add(b), plan.add(a)  # a job with the same key is declared once
    plan.defer("later", "encoder", a.cost)
    t = plan.table()
    assert list(t.status) == ["pending", "pending", "deferred"]
    run_job(a, cache.root)
    assert list(plan.table().status) == ["cached", "pending", "deferred"]
    later = jobs_for(cache, seeds=(2,))[0]
    later.name = "later"
    plan.add(later)
    assert "deferred" not in set(plan.table().status) and len(plan.jobs) == 3


def test_inline_local_and_submitit_give_identical_bits(tmp_path):
    results = {}
    for name, slurm in (("inline", None), ("local", None), ("slurm", {"cluster": "local", "time_min": 5})):
        cache = Cache(tmp_path / name)
        js = jobs_for(cache)
        status = make(name, device="cpu", workers=2 if name == "local" else None, slurm=slurm).run(js, cache, progress=False)
        assert set(status.values()) == {"trained"}
        results[name] = [weights(cache, j) for j in js]
        if name == "slurm":  # finished tasks leave no submitit pickles or logs behind
            assert not [p for p in (cache.root / "submitit").iterdir() if p.is_dir()]
    for name in ("local", "slurm"):
        for a, b in zip(results["inline"], results[name]):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    s0, s1 = results["inline"]
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if s0[k].is_floating_point())  # seeds differ


SCRIPT = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_jobs import jobs_for
    from memlab.io.cache import Cache
    from memlab.engine.executors import make
    cache = Cache({root!r})
    print(json.dumps(make({executor!r}, device="cpu").run(jobs_for(cache, seeds=(0, 1, 2, 3)), cache, progress=False)))
""")


def test_two_concurrent_runs_train_each_job_once(tmp_path):
    root = tmp_path / "cache"
    code = SCRIPT.format(tests=os.path.dirname(__file__), root=str(root), executor="inline")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    statuses = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    trained = [n for s in statuses for n, v in s.items() if v == "trained"]
    assert sorted(trained) == [f"enc seed {s}" for s in range(4)]  # each job trained exactly once, in one process
    assert all(len(s) == 4 for s in statuses)  # and both runs got every job (trained or from the cache)


KILL = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_jobs import jobs_for
    from memlab.io.cache import Cache
    from memlab.engine.jobs import run_job
    cache = Cache({root!r})
    job = jobs_for(cache, seeds=(0,), epochs=5)[0]
    def die(*a):
        if a[-1] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    run_job(job, cache.root, epoch_callback=die)
""")


def test_kill_9_mid_job_then_rerun_resumes_from_last_epoch(tmp_path):
    root = tmp_path / "cache"
    p = subprocess.run([sys.executable, "-c", KILL.format(tests=os.path.dirname(__file__), root=str(root))],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    cache = Cache(root)
    job = jobs_for(cache, seeds=(0,), epochs=5)[0]
    seen = []
    assert run_job(job, cache.root, epoch_callback=lambda *a: seen.append(a[-1])) == "trained"  # lock recovered
    assert seen == [4, 5]  # resumed after the killed process's last finished epoch
    ref = Cache(tmp_path / "ref")
    ref_job = jobs_for(ref, seeds=(0,), epochs=5)[0]
    run_job(ref_job, ref.root)
    a, b = weights(cache, job), weights(ref, ref_job)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_failed_job_is_named_with_its_log_and_the_others_finish(cache):
    good = jobs_for(cache, seeds=(0,))[0]
    bad = jobs_for(cache, seeds=(1,), lr=1e12)[0]
    with pytest.raises(JobsFailed) as e:
        make("local", device="cpu", workers=2).run([bad, good], cache, progress=False)
    assert "enc seed 1" in str(e.value) and str(bad.log_path(cache)) in str(e.value)
    assert "FloatingPointError" in bad.log_path(cache).read_text()
    assert cache.exists(good.kind, good.key) and not cache.exists(bad.kind, bad.key)


def test_failed_slurm_task_keeps_its_logs_and_finished_ones_are_cleaned(cache):
    good = jobs_for(cache, seeds=(0,))[0]
    bad = jobs_for(cache, seeds=(1,), lr=1e12)[0]
    with pytest.raises(JobsFailed) as e:
        make("slurm", device="cpu", slurm={"cluster": "local", "time_min": 5}).run([bad, good], cache, progress=False)
    (name, stderr, err), = e.value.failures
    assert name == bad.name and "FloatingPointError" in err and Path(stderr).is_file()
    assert [p for p in (cache.root / "submitit").iterdir() if p.is_dir()] == [Path(stderr).parent]
    assert sorted(p.name for p in Path(stderr).parent.glob("*_log.*")) == [Path(stderr).name, Path(stderr).stem + ".out"]
    assert cache.exists(good.kind, good.key)


def test_bad_executor_choices_fail_before_compute(monkeypatch):
    with pytest.raises(ValueError, match="executor 'gpu-farm' is unknown"):
        make("gpu-farm", device="cpu")
    with pytest.raises(ValueError, match="CPU core"):
        make("local", device="cpu", workers=os.cpu_count() * 4 + 1)
    with pytest.raises(ValueError, match="unknown slurm option"):
        make("slurm", device="cpu", slurm={"partiton": "gpu"})
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[cluster\]\""):
        make("slurm", device="cpu")
    monkeypatch.setenv("MEMLAB_EXECUTOR", "inline")
    assert type(make("local", device="cpu")).__name__ == "Inline"  # the environment variable wins


POOL = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_jobs import jobs_for
    from memlab.io.cache import Cache
    from memlab.engine.executors import make
    cache = Cache({root!r})
    print(json.dumps(make("local", device="cpu", workers={workers}).run(jobs_for(cache, seeds={seeds}, epochs=40),
                                                                        cache, progress=False)))
""")


def _epochs(root):
    out = {}
    for ckpt in root.glob("encoder/*.partial/last.pt"):
        try:
            out[ckpt] = torch.load(ckpt, weights_only=True)["epoch"]
        except Exception:
            pass
    return out


def _live_workers(p, exclude=()):
    """Worker processes of the pool run by ``p``: its children, without zombies and without ``exclude``."""
    pids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    live = []
    for pid in map(int, pids):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and pid not in exclude:
            live.append(pid)
    return live


def _kill_a_worker(p, root, after_epoch, exclude=()):
    """SIGKILL one live worker (not in ``exclude``) of the pool run by process ``p`` once a job has passed
    ``after_epoch``; returns (that job's epoch when it was killed, the worker's pid)."""
    import time
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        reached = max(_epochs(root).values(), default=0)
        workers = _live_workers(p, exclude)
        if reached > after_epoch and workers:
            os.kill(workers[0], signal.SIGKILL)
            return reached, workers[0]
        time.sleep(0.01)
    raise AssertionError("no worker passed the epoch in time")


def test_a_killed_local_worker_restarts_the_pool_and_every_job_resumes(tmp_path):
    root = tmp_path / "cache"
    p = subprocess.Popen([sys.executable, "-c", POOL.format(tests=os.path.dirname(__file__), root=str(root),
                                                          workers=2, seeds=(0, 1))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_a_worker(p, root, 3)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"enc seed 0": "trained", "enc seed 1": "trained"}
    ref = Cache(tmp_path / "ref")
    cache = Cache(root)
    for job, ref_job in zip(jobs_for(cache, seeds=(0, 1), epochs=40), jobs_for(ref, seeds=(0, 1), epochs=40)):
        run_job(ref_job, ref.root)
        a, b = weights(cache, job), weights(ref, ref_job)
        assert all(torch.equal(a[k], b[k]) for k in a)  # resumed after the kill == uninterrupted


def test_a_job_whose_worker_dies_twice_fails_by_name_and_a_rerun_resumes(tmp_path):
    root = tmp_path / "cache"
    p = subprocess.Popen([sys.executable, "-c", POOL.format(tests=os.path.dirname(__file__), root=str(root),
                                                          workers=1, seeds=(0,))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time
    first, pid = _kill_a_worker(p, root, 2)
    deadline = time.time() + 120
    while not _live_workers(p, exclude=(pid,)) and time.time() < deadline:  # the pool restarts the job...
        time.sleep(0.01)
    resumed_from = max(_epochs(root).values())
    second, _ = _kill_a_worker(p, root, resumed_from, exclude=(pid,))  # ...which trains on, then dies again
    _, err = p.communicate(timeout=120)
    cache = Cache(root)
    job = jobs_for(cache, seeds=(0,), epochs=40)[0]
    assert p.returncode != 0 and "enc seed 0" in err and "worker process died" in err
    assert "died 2 times" in job.log_path(cache).read_text()
    killed_at = max(_epochs(root).values())
    assert 2 < first < second <= killed_at < 40
    seen = []
    assert run_job(job, cache.root, epoch_callback=lambda *a: seen.append(a[-1])) == "trained"
    assert seen[0] == killed_at + 1  # resumed after the last finished epoch
    ref = Cache(tmp_path / "ref")
    ref_job = jobs_for(ref, seeds=(0,), epochs=40)[0]
    run_job(ref_job, ref.root)
    a, b = weights(cache, job), weights(ref, ref_job)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cached_jobs_need_no_lock_so_a_read_only_cache_serves_them(cache, monkeypatch):
    job = jobs_for(cache, seeds=(0,))[0]
    assert run_job(job, cache.root) == "trained"

    def no_lock(*a, **k):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(Cache, "lock", no_lock)
    assert run_job(job, cache.root) == "cached"
    assert Plan("ro", cache=cache).add(job) and Plan("ro", cache=cache).pending() == []


def test_a_forced_job_trains_once_per_plan_even_over_two_stages(cache):
    a, b = jobs_for(cache)
    run_job(a, cache.root)
    a.force = True
    plan = Plan("forced", cache=cache)
    plan.add(a)
    plan.defer("stage 2", "encoder", b.cost)
    assert plan.run("inline", progress=False) == {"enc seed 0": "trained"}  # forced: retrained though cached
    b.name = "stage 2"
    plan.add(b)
    assert plan.run("inline", progress=False) == {"enc seed 0": "cached", "stage 2": "trained"}


def test_encoder_job_keys_match_the_fingerprint_of_the_bytes(cache):
    """Cache keys must not change, or users' cached encoders are lost: the data fingerprint is the sha256 of
    each tensor's (dtype, shape) and bytes, with index left out when not given (as train_encoder always did)."""
    import hashlib
    x = tiny_data()
    h = hashlib.sha256()
    h.update(str((x.dtype, tuple(x.shape))).encode())
    h.update(x.numpy().tobytes())
    job = encoder_job(TrainConfig(**CFG), x, cache=cache)
    assert job.key["data"] == h.hexdigest()[:20]
    with_index = encoder_job(TrainConfig(**CFG), x, None, torch.arange(len(x)), cache=cache)
    assert with_index.key["data"] != job.key["data"]


def test_peak_memory_is_estimated_per_job_and_a_job_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch):
    """The estimate grows with the batch and with per-image gradients; a plan whose pending job exceeds the
    device's memory stops before any training, naming the job and the knobs."""
    from memlab.engine import memory
    from memlab.io.cache import Cache
    from memlab.engine.jobs import Plan
    small = memory.peak_bytes("resnet9", {"width": 0.125}, batch=32, views=2)
    big = memory.peak_bytes("resnet9", {"width": 0.125}, batch=128, views=2)
    params, act = memory._model_bytes("resnet9", '{"width": 0.125}', 32)
    assert act > 0 and params > 0
    assert big - small == pytest.approx(memory.OVERHEAD * 96 * 2 * act, abs=2)   # linear in batch x views
    dp = memory.peak_bytes("resnet9", {"width": 0.125}, batch=32, views=2, per_sample_grads=32)
    assert dp - small == pytest.approx(memory.OVERHEAD * 32 * params, abs=2)
    cost = Cost.of("resnet9", {"width": 0.125}, epochs=1, steps_per_epoch=1, batch=128, views=2)
    assert cost.peak_bytes == big
    trained = []
    import memlab.engine.jobs as J
    job = J.Job("huge encoder", "encoder", {"k": 1}, lambda **kw: trained.append(1) or {}, {}, cost)
    plan = Plan("p", cache=Cache(tmp_path / "c"))
    plan.add(job)
    monkeypatch.setattr(memory, "device_memory", lambda device: big // 2)
    with pytest.raises(memory.JobTooLarge, match=r"huge encoder: about .* GiB(.|\n)*Fix: lower batch_size"):
        plan.run("inline", progress=False)
    assert not trained
