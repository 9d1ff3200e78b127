"""python -m memlab plan|train: the notebook's own plan, shown or trained, without rendering the notebook."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def memlab(*args, cache):
    env = {**os.environ, "MEMLAB_CACHE": str(cache), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "memlab", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def entries(cache, kind):
    return sorted(p.name for p in (cache / kind).glob("*") if p.is_dir() and not p.name.endswith(".partial")) \
        if (cache / kind).is_dir() else []


def test_plan_prints_the_jobs_and_trains_nothing(tmp_path):
    r = memlab("plan", "04", "--profile", "smoke", cache=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "plan 04_layermem: 21 jobs (0 cached, 21 pending, 0 deferred)" in r.stdout
    assert "image-steps" in r.stdout and "TFLOPs" in r.stdout
    assert entries(tmp_path, "encoder") == []


def test_train_runs_every_stage_then_the_plan_shows_everything_cached(tmp_path):
    from memlab.engine.executors import cpu_cores
    out = ROOT / "outputs" / "smoke"
    rendered = lambda: {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file()} if out.is_dir() else {}  # noqa: E731
    before = rendered()
    r = memlab("train", "03", "--profile", "smoke", "--executor", "local", "--workers", str(min(2, cpu_cores())),
               cache=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "plan 03_removal: 5 job(s) trained, nothing left to train" in r.stdout
    assert rendered() == before  # the first stage's figures went to a scratch folder, not to run_all.sh's
    # the 4 removal retrainings and Table 17's 1 memorised kept set (its random one is a removal's) were deferred
    # until f was scored, and trained too
    assert "5 deferred" in r.stdout and len(entries(tmp_path, "encoder")) + len(entries(tmp_path, "dp_encoder")) == 13
    again = memlab("plan", "03", "--profile", "smoke", cache=tmp_path)
    assert "plan 03_removal: 13 jobs (8 cached, 0 pending, 5 deferred)" in again.stdout  # stage 2 needs the scores


def test_bad_notebook_or_executor_fails_before_any_compute(tmp_path, monkeypatch, capsys):
    r = memlab("plan", "07", cache=tmp_path)     # through the real entry point, as a user types it
    assert r.returncode == 2 and "matches 0 notebooks" in r.stderr and "02_sslmem" in r.stderr
    from memlab.cli import main                    # the same main() in this process: no second torch import
    monkeypatch.setenv("MEMLAB_CACHE", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert main(["plan", "02", "--profile", "smoke", "-p", "executor", "gpu-farm"]) == 2
    assert "executor 'gpu-farm' is unknown" in capsys.readouterr().err
    assert main(["plan", "02", "--profile", "smoke", "-p", "workers", "64", "-p", "executor", "local"]) == 2
    assert "CPU core" in capsys.readouterr().err
    assert not (tmp_path / "encoder").exists()


def test_dry_run_runs_every_job_of_the_plan_with_a_stand_in_for_each_deferred_one_and_caches_nothing(tmp_path):
    r = memlab("plan", "03", "--profile", "smoke", "--dry-run", cache=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # 8 jobs, and 5 retrainings deferred until f is scored, which run as their stand-ins (same code and sizes)
    assert "dry run 03_removal: 13/13 jobs pass" in r.stdout
    assert "remove 12 memorised seed 0    encoder    pass" in r.stdout and "peak GiB" in r.stdout and "GPU-h" in r.stdout
    assert entries(tmp_path, "encoder") == [] and entries(tmp_path, "dp_encoder") == []
