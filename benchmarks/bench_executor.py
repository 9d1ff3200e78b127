"""Jobs per hour: notebook 02's laptop f/g pairs (2 seeds -> 4 encoders, fewer epochs), trained inline and with
the ``local`` executor (one single-threaded worker per CPU core), in one run, side by side.

    python benchmarks/bench_executor.py [--epochs 3] [--profile laptop] [--workers 0]

The jobs are built by the notebook's own code (``recipes.f_and_g_jobs`` from ``params/<profile>/02_sslmem.yaml``,
only ``epochs`` changed). Each executor trains them into a fresh temporary cache:
- ``inline``: the inline executor (jobs train single-threaded, so every executor gives the same bits);
- ``inline, N threads``: the pre-executor behaviour -- one job after another with all of torch's threads
  (``train.train`` called directly; not bit-identical to the others);
- ``local``: the local executor.
It checks that inline and local produced identical weights, and prints local / (best inline) -- the issue's
target on the 2-core machine is >= 1.7.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--profile", default="laptop")
    ap.add_argument("--workers", type=int, default=0, help="local workers (0 = one per core)")
    a = ap.parse_args(argv)

    from memlab.io.cache import Cache
    from memlab.engine.executors import Inline, cpu_cores, make
    from memlab.engine.jobs import job_args
    from memlab.experiments.recipes import encoder_config, f_and_g_jobs, load_splits
    from memlab.engine.train import load_encoder, train
    p = yaml.safe_load((ROOT / "params" / a.profile / "02_sslmem.yaml").read_text())
    train_data, _, splits = load_splits(p["dataset"], split_shared=p["split_shared"],
                                        split_candidates=p["split_candidates"],
                                        split_independent=p["split_independent"], split_extra=p["split_extra"],
                                        split_seed=p["split_seed"], synthetic_n_train=p["synthetic_n_train"],
                                        synthetic_n_test=p["synthetic_n_test"], atypical_frac=p["atypical_frac"])
    mean, std = train_data.subset(splits.f_train).stats()
    cfg = encoder_config(arch=p["arch"], width=p["width"], method=p["method"], temperature=p["temperature"],
                         epochs=a.epochs, batch_size=p["batch_size"], optimizer=p["optimizer"], lr=p["lr"],
                         weight_decay=p["weight_decay"], mean=mean, std=std)
    threads = torch.get_num_threads()
    print(f"{cpu_cores()} CPU cores, torch threads {threads} | {p['dataset']} {p['method']}/{p['arch']} "
          f"width {p['width']} | f/g of seeds {p['seeds']}, {len(splits.f_train)} images each, {a.epochs} epochs",
          flush=True)
    rows, weights = [], {}
    for name in ("inline", f"inline, {threads} threads", "local"):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Cache(tmp)
            fj, gj = f_and_g_jobs(cfg, train_data, splits, seeds=p["seeds"], pair_seeds=p["pair_seeds"], cache=cache)
            jobs = fj + gj
            t0 = time.time()
            if name == "local":
                make("local", device="cpu", workers=a.workers or None).run(jobs, cache, progress=False)
            elif name == "inline":
                Inline(torch.device("cpu")).run(jobs, cache, progress=False)
            else:
                for j in jobs:
                    a_ = job_args(j.args)
                    train(a_["cfg"], a_["images"], None, a_["index"], device="cpu", progress=False)
            dt = time.time() - t0
            if name != f"inline, {threads} threads":
                weights[name] = [load_encoder(j, cache, "cpu").encoder.state_dict() for j in jobs]
            rows.append((name, len(jobs), dt, len(jobs) / dt * 3600))
            print(f"  {name:22s} {len(jobs)} jobs in {dt:7.1f} s = {rows[-1][3]:7.1f} jobs/hour", flush=True)
    same = all(torch.equal(x[k], y[k]) for x, y in zip(weights["inline"], weights["local"]) for k in x)
    best_inline = max(r[3] for r in rows[:2])
    print(f"\nlocal / best inline = {rows[2][3] / best_inline:.2f}x (target >= 1.7 on 2 cores); "
          f"inline and local weights bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
