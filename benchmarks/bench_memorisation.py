"""How strongly do SSL encoders memorise per CPU-minute? The memorisation-strength study (issue 19).

Notebook 02's claim m(S_C) > m(S_S) is tested with Welch's t on per-point SSLMem. Its effect size d decides how
many points and seeds a laptop needs. This script trains f/g pairs of ResNet-9 SimCLR on CIFAR-10 under
several recipes (one knob changed at a time from the laptop recipe) and prints, per recipe and scoring design:

- train CPU-min: the single-threaded training time of all the recipe's f and g encoders, as recorded in their
  training history (scoring, about a tenth of that for K = 20, is left out: it is the same for most recipes);
- d and p of m(S_C) - m(S_S): raw alignment-loss differences, Welch one-sided. S_S is trained by both f and
  g, so the common f-versus-g alignment offset cancels in this difference;
- d and p of the symmetric design: S_C scored L(g) - L(f) and S_I scored L(f) - L(g), pooled and tested
  against 0 (one-sample t). The offset enters the two halves with opposite signs and cancels in the mean;
  this doubles the scored points without training more;
- t per sqrt(train CPU-minute): the t-statistic a run of this recipe buys per unit of compute (t grows with the
  square root of the points scored, so this compares recipes at equal compute).

Recipes (the knobs of issue 19): epochs per point at equal compute (splits of 500 / 250 / 125 at 80 / 160 /
320 epochs), width, training augmentation, measuring augmentation, representation (flat, pooled, an earlier
layer), f/g seeds. Scoring-only variants reuse the trained pair.

    MEMLAB_DATA=... python benchmarks/bench_memorisation.py [--recipes base,epp250,...] [--cache DIR]

Run it on an idle machine; the cache makes a rerun only re-score. The README's study table comes from it.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache, default_root
from memlab.engine.jobs import Plan
from memlab.experiments.recipes import encoder_config, f_and_g_jobs, load_splits, scored_subsets
from memlab.experiments.scoring import cached_sslmem
from memlab.metrics.stats import cohens_d, one_sample, welch
from memlab.engine.train import load_encoder, resolve_device

# the laptop recipe of notebook 02's main pair (params/laptop/02_sslmem.yaml)
BASE = dict(split=500, epochs=80, width=0.25, aug=None, seeds=(0, 1), view_pairs=20, measure="", rep="flat",
            layer=-1)
RECIPES = {  # name: (what changes, overrides)
    "base": ("laptop recipe: splits of 500, 80 epochs, 2 seeds", {}),
    "1seed": ("one f/g seed", {"seeds": (0,)}),
    "pooled": ("pooled representation", {"rep": "pooled"}),
    "layer-2": ("the layer before the last", {"layer": -2}),
    "measure-crop": ("measured with crop+flip only", {"measure": "crop"}),
    "K5": ("5 view pairs", {"view_pairs": 5}),
    "epp250": ("splits of 250 at 160 epochs (equal compute)", {"split": 250, "epochs": 160}),
    "epp125": ("splits of 125 at 320 epochs (equal compute)", {"split": 125, "epochs": 320}),
    "aug-crop": ("trained with crop+flip only (no colour)", {"aug": "crop"}),
    "aug-crop-1seed": ("trained with crop+flip only, one f/g seed (compare with 1seed)", {"aug": "crop", "seeds": (0,)}),
    "width0.5": ("width 0.5 (about 4x compute)", {"width": 0.5}),
    "width0.5-crop-1seed": ("width 0.5, trained with crop+flip only, one f/g seed (compare with aug-crop-1seed)",
                            {"width": 0.5, "aug": "crop", "seeds": (0,)}),
}


def run(name: str, over: dict, cache: Cache, dev, executor: str) -> dict:
    r = {**BASE, **over}
    n = r["split"]
    train, test, splits = load_splits("cifar10", split_shared=n, split_candidates=n, split_independent=n,
                                      split_extra=n, split_seed=0)
    mean, std = train.stats()
    cfg = encoder_config(arch="resnet9", width=r["width"], method="simclr", temperature=0.5, epochs=r["epochs"],
                         batch_size=256, optimizer="sgd", lr=0.06, weight_decay=5e-4, mean=mean, std=std,
                         # the laptop pair keeps a snapshot every 5 epochs (part of its cache key)
                         snapshot_epochs=range(5, r["epochs"] + 1, 5))
    if r["aug"]:
        cfg = replace(cfg, aug=r["aug"])
    plan = Plan(f"study {name}", cache=cache, device=dev)
    f_jobs, g_jobs = f_and_g_jobs(cfg, train, splits, seeds=r["seeds"], cache=cache)
    plan.add_all(f_jobs + g_jobs)
    status = plan.run(executor)
    fs = [load_encoder(j, cache, dev) for j in f_jobs]
    gs = [load_encoder(j, cache, dev) for j in g_jobs]
    train_s = sum(h["time"] for t in fs + gs for h in t.history)
    subsets = scored_subsets(splits, train.labels, n, 0)
    meas = Augmentation(r["measure"] or cfg.aug or fs[0].objective.aug, mean=cfg.mean, std=cfg.std)
    bank = ViewBank(meas, 2 * r["view_pairs"], seed=0)
    layer = fs[0].encoder.layer_names[r["layer"]]
    res = cached_sslmem(cache, fs, gs, train, test, subsets, bank, n_pairs=r["view_pairs"], rep=r["rep"], device=dev,
                        ) if r["layer"] == -1 else _layer_scores(fs, gs, train, test, subsets, bank, r, layer, dev)
    raw = {k: res[k][layer]["raw"].numpy() for k in ("S_C", "S_S", "S_I")}
    w = welch(raw["S_C"], raw["S_S"], "greater")
    sym = np.concatenate([raw["S_C"], -raw["S_I"]])
    o = one_sample(sym, "greater")
    minutes = train_s / 60
    return {"recipe": name, "change": RECIPES[name][0], "n per split": n, "epochs": r["epochs"],
            "trained here": sum(v == "trained" for v in status.values()), "train CPU-min": round(minutes, 1),
            "d C-S": round(cohens_d(raw["S_C"], raw["S_S"]), 3), "p C-S": w["p"], "t C-S": round(w["t"], 2),
            "d sym": round(float(sym.mean() / sym.std(ddof=1)), 3), "p sym": o["p"], "t sym": round(o["t"], 2),
            "offset": round(float((raw["S_S"]).mean()), 5),
            "t/sqrt(min) C-S": round(w["t"] / np.sqrt(minutes), 2), "t/sqrt(min) sym": round(o["t"] / np.sqrt(minutes), 2)}


def _layer_scores(fs, gs, train, test, subsets, bank, r, layer, dev):
    from memlab.metrics.sslmem import sslmem_scores
    out = {}
    for k, idx in subsets.items():
        if k == "S_E":
            continue
        idx = torch.as_tensor(idx)
        out[k] = sslmem_scores([t.encoder for t in fs], [t.encoder for t in gs], train.images[idx], idx, bank,
                       n_pairs=r["view_pairs"], rep=r["rep"], layers=[layer], device=dev)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", default="base,1seed,pooled,layer-2,measure-crop,K5,epp250,epp125,aug-crop",
                    help=f"comma-separated, from: {', '.join(RECIPES)}")
    ap.add_argument("--cache", default=None, help="cache folder (default: MEMLAB_CACHE or outputs/cache)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--executor", default="auto")
    a = ap.parse_args(argv)
    names = [s for s in a.recipes.split(",") if s]
    unknown = [s for s in names if s not in RECIPES]
    if unknown:
        ap.error(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    cache = Cache(a.cache or default_root())
    dev = resolve_device(a.device)
    rows = []
    for name in names:
        rows.append(run(name, RECIPES[name][1], cache, dev, a.executor))
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print("\nmemorisation strength per recipe (CIFAR-10, ResNet-9 SimCLR, raw SSLMem):")
    print(table.drop(columns=["change"]).to_string(index=False))
    print("\n" + table[["recipe", "change"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
