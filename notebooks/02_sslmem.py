# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SSLMem: which training points does a self-supervised encoder memorise?
#
# *Wang, Kaleem, Dziedzic, Backes, Papernot, Boenisch, "Memorization in Self-Supervised Learning Improves
# Downstream Generalization", ICLR 2024* (sections 3-4, appendix A; `shared/docs/methods.md` section 2).
#
# An SSL encoder is trained so that two augmentations ("views") of the same image get similar
# representations. **SSLMem** asks whether this *alignment* is better on a point because the encoder saw
# that very point:
#
# $$L_{align}(h, x) = \mathbb{E}_{x', x'' \sim Aug(x)}\, \lVert \bar h(x') - \bar h(x'') \rVert_2, \qquad
#   m(x) = \mathbb{E}_{g \sim A(S \setminus x)} L_{align}(g, x) - \mathbb{E}_{f \sim A(S)} L_{align}(f, x)$$
#
# where $\bar h$ is the L2-normalised representation. We train two encoders with the same recipe:
# **f** on $S_S \cup S_C$ and **g** on $S_S \cup S_I$. The four subsets then play different roles:
#
# | subset | trained by | expected m(x) |
# |---|---|---|
# | $S_C$ candidates | f only | > 0 (memorised by f) |
# | $S_S$ shared | f and g | about 0 |
# | $S_I$ independent | g only | < 0 (memorised by g) |
# | $S_E$ extra (test split) | neither | about 0 (slightly > 0) |
#
# Views come from a fixed *view bank*: pair k of point x is the same for f and g, so the difference in
# alignment is not blurred by different random augmentations.

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/02_sslmem.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto", "cpu", "cuda", "cuda:1", ...
executor: str = "auto"          # where the training jobs run: "auto", "inline", "local" (one worker per CPU core or
                                # GPU) or "slurm" (submitit); the environment variable MEMLAB_EXECUTOR overrides it
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, cpus_per_task, mem_gb,
                                # array_parallelism, sbatch (a dict of extra #SBATCH options)
# -- the f/g pair, from dataset to snapshot_epochs: notebooks 04 and 05 read these values from this profile's
#    params/<profile>/02_sslmem.yaml (memlab.experiments.recipes), so they reuse this notebook's encoders
dataset: str = "cifar10"        # any memlab dataset; "synthetic" works offline and has planted atypical points
synthetic_n_train: int = 5000   # sizes of the generated splits when dataset is "synthetic"
synthetic_n_test: int = 1000    # test-split size of the generated data when dataset is "synthetic"
atypical_frac: float = 0.05     # synthetic: fraction of planted atypical points
method: str = "simclr"          # SSL objective (memlab.objectives.losses)
arch: str = "resnet9"           # encoder (memlab.models.networks)
width: float = 0.25             # width multiplier (resnet9 / resnets)
split_shared: int = 500         # |S_S|: a count, or a fraction of the training split
split_candidates: int = 500     # |S_C|
split_independent: int = 500    # |S_I|
split_extra: int = 500          # |S_E|: a count, or a fraction of the test split
split_seed: int = 0             # seed of the disjoint splits S_S, S_C, S_I, S_E
score_shared: int = 500         # how many S_S points to score (a random, class-balanced part of S_S)
epochs: int = 80                # training epochs of the main pair f and g
batch_size: int = 256           # training batch size
optimizer: str = "sgd"          # "sgd", "adam", "adamw" or "lars"
lr: float = 0.06                # base learning rate (cosine schedule)
weight_decay: float = 5e-4      # weight decay of the optimizer
temperature: float = 0.5        # NT-Xent temperature
seeds: list = [0, 1]            # one f and one g per seed; scores average over them (the expectations)
pair_seeds: bool = True         # g_s shares f_s's seed (common random numbers: less noise, same expectation)
view_pairs: int = 20            # K view pairs per point
measure_aug: str = ""           # augmentation used for measuring ("": the training augmentation)
representation: str = "flat"    # "flat": full output map flattened (as in the paper); "pooled": spatial mean
normalize_over: str = "S_C+S_S"  # reference set of the normalising range: "S_C+S_S" (every table), "all", or one subset
warmup_epochs: float = 1.0      # linear warm-up epochs before the cosine decay (paper, Table 6: 60 of 600)
blur: float = 0.0               # probability of a Gaussian blur in the training views (SimCLR's recipe: 0.5)
snapshot_epochs: list = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80]  # encoder weights kept
dynamics_epochs: list = [10, 20, 40, 80]  # snapshots scored for the training-dynamics figure (Fig. 2b)
dynamics_points: int = 500      # candidates (and as many shared points) scored per snapshot
dynamics_pairs: int = 5         # view pairs per point for the snapshots
probe_test: int = 2000          # test images for the linear probe
gallery_k: int = 10             # images per row of the most / least memorised galleries
alpha: float = 0.01             # significance level of the printed claims
force: bool = False             # recompute cached encoders and scores
# -- cross-method tables. `tables` selects what to build: "table1" (methods x architectures x datasets),
#    "rankings" (Tables 12-13 and Fig. 9), "table11" (supervised encoders), ablations "table7" (overlap
#    fraction), "table8" (measuring augmentation), "table9" (training augmentation, MAE mask ratio).
tables: list = ["table1", "rankings", "table11"]  # which cross-method tables to build (see above)
grid: list = [
    {"method": "simclr"},       # the main pair above (served from the cache)
    {"method": "dino", "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001, "epochs": 30},
    {"method": "vicreg", "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001, "epochs": 30},
    {"method": "simsiam", "epochs": 30},
    {"method": "mae", "arch": "vit_tiny", "model_kw": {"depth": 4, "embed_dim": 128, "num_heads": 4},
     "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.05, "epochs": 30},
]                               # Table 1 cells; missing keys take the encoder settings above (dataset, arch, ...)
grid_seeds: list = [0]          # f/g seeds per cell (one on the laptop, for time: a cell's p-value is weaker than the main pair's)
grid_view_pairs: int = 10       # K view pairs per point in the grid
grid_points: int = 500          # S_C and S_S points scored per cell
supervised_epochs: list = [20, 50]  # Table 11: two training lengths; the longest enters the rankings
supervised_lr: float = 0.05     # learning rate of the supervised encoders (Table 11)
supervised_arch: str = ""       # architecture of the supervised encoders ("": the pair's; Table 11: resnet50)
topk: list = [10, 20, 50, 100, 200]  # k of the top-k overlaps between rankings (Tables 12-13)
overlap_fracs: list = [0.7, 0.8, 0.85]  # Table 7: |S_S| as a fraction of the pool
measure_augs: list = ["noise", "rotate", "colordrop"]  # Table 8: measured with other augmentations
simclr_augs: list = ["croponly", "crop", "noise", "mask"]  # Table 9: SimCLR trained with one augmentation type
mae_mask_ratios: list = [0.5, 0.75, 0.8, 0.9]  # Table 9: MAE mask ratio

# %%
import time

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from sklearn.metrics import roc_auc_score, roc_curve

from memlab.engine import executors
from memlab.io import plots
from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache
from memlab.data.datasets import DATASETS
from memlab.models.networks import MODELS
from memlab.objectives.losses import OBJECTIVES
from memlab.io.params import check_injected, choice
from memlab.metrics.probes import extract, linear_probe
from memlab.io.report import Report
from memlab.data.splits import balanced_subset
from memlab.streams import SplitSeed
from memlab.augmentation.augment import PRESETS
from memlab.experiments.grid import cell_jobs, cell_spec, main_recipe_snapshots, overlap_sizes, run_cell
from memlab.engine.jobs import Plan
from memlab.metrics.rankings import agreement, feldman, square
from memlab.metrics.sslmem import (SUBSETS, cached_scores, encoder_config, f_and_g_jobs, load_splits, normalized, reference_label,
                           scored_subsets)
from memlab.metrics.stats import subset_table, summary, welch
from memlab.engine.train import load_encoder, resolve_device

# Reject bad parameters before any compute.
check_injected()
choice("dataset", dataset, DATASETS)
choice("method", method, OBJECTIVES)
choice("arch", arch, MODELS)
if supervised_arch:
    choice("supervised_arch", supervised_arch, MODELS)
choice("representation", representation, ["flat", "pooled"])
choice("normalize_over", normalize_over, ["S_C+S_S", "all", *SUBSETS])
if not seeds:
    raise ValueError("seeds must list at least one seed")
TABLES = ["table1", "rankings", "table11", "table7", "table8", "table9"]
for t_ in tables:
    choice("tables", t_, TABLES)
base_cell = dict(method=method, arch=arch, width=width, dataset=dataset, epochs=epochs, batch_size=batch_size,
                 optimizer=optimizer, lr=lr, weight_decay=weight_decay, temperature=temperature,
                 warmup_epochs=warmup_epochs, blur=blur, seeds=list(grid_seeds))
cells = [cell_spec(c, base_cell) for c in grid]  # unknown keys fail here, before any compute
for c in cells:
    choice("grid method", c["method"], OBJECTIVES), choice("grid arch", c["arch"], MODELS)
    choice("grid dataset", c["dataset"], DATASETS)
for a in [*measure_augs, *simclr_augs]:
    choice("augmentation", a, PRESETS)
for r in mae_mask_ratios:
    if not 0 < r < 1:
        raise ValueError(f"mae_mask_ratios must lie in (0, 1), got {r}")
for fr in overlap_fracs:
    overlap_sizes(split_shared + split_candidates + split_independent, fr)
if ("table11" in tables or "rankings" in tables) and not supervised_epochs:
    raise ValueError("table11 and rankings need at least one supervised_epochs value")
dev = resolve_device(device)
executors.make(executor, device=dev, workers=workers or None, slurm=slurm)
T0 = time.time()
report = Report(output_dir, "02_sslmem", profile, dataset)
cache = Cache()
print(f"device: {dev} | cache: {cache.root}")

# %% [markdown]
# ## Data and splits
# The splits are class-balanced and fixed by `split_seed`; they are written next to the results so every
# number below can be traced back to the exact points.

# %%
train_data, test_data, splits = load_splits(
    dataset, split_shared=split_shared, split_candidates=split_candidates, split_independent=split_independent,
    split_extra=split_extra, split_seed=split_seed, synthetic_n_train=synthetic_n_train,
    synthetic_n_test=synthetic_n_test, atypical_frac=atypical_frac)
splits.save(report.tables / "splits.json")
scored = scored_subsets(splits, train_data.labels, score_shared, split_seed)
mean, std = train_data.stats()
print(f"{dataset}: {len(train_data)} train / {len(test_data)} test images, {train_data.num_classes} classes")
display(pd.DataFrame([{"subset": k, "size": len(splits[k]), "scored": len(scored[k])} for k in SUBSETS]))

# Other datasets and split sizes of the cross-method tables: loaded (and their sizes checked) now, before
# any training, so a missing dataset or a split larger than the data fails here.
_data = {dataset: (train_data, test_data, splits, scored)}


def data_for(ds, shared=split_shared, cand=split_candidates, indep=split_independent):
    """Data, splits and scored subsets for a dataset (and pool sizes), loaded once."""
    key = (ds, shared, cand, indep)
    if key not in _data and (ds, shared, cand, indep) != (dataset, split_shared, split_candidates, split_independent):
        tr, te, sp = load_splits(ds, split_shared=shared, split_candidates=cand, split_independent=indep,
                                 split_extra=split_extra, split_seed=split_seed, synthetic_n_train=synthetic_n_train,
                                 synthetic_n_test=synthetic_n_test, atypical_frac=atypical_frac)
        _data[key] = (tr, te, sp, scored_subsets(sp, tr.labels, score_shared, split_seed))
    return _data[key if key in _data else ds]


if {"table1", "rankings", "table11", "table9"} & set(tables):
    for ds in sorted({c["dataset"] for c in cells} - {dataset}):
        data_for(ds)
if "table7" in tables:
    for fr in overlap_fracs:
        sh_, rest_ = overlap_sizes(split_shared + split_candidates + split_independent, fr)
        data_for(dataset, sh_, rest_, rest_)

# %% [markdown]
# ## The plan: f and g, and every cell of the tables
# Same method, architecture, hyper-parameters and seeds for f and g; only the training sets differ. Every
# encoder of this notebook -- the main pair and each table's f/g pairs -- is a job keyed by the cache (the
# full configuration and a fingerprint of the training images), listed with its cost before anything trains
# and then trained by the executor. A rerun, or another notebook that needs the same pair (LayerMem,
# UnitMem), finds them in the cache.

# %%
cfg = encoder_config(arch=arch, width=width, method=method, temperature=temperature, epochs=epochs,
                     batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                     snapshot_epochs=snapshot_epochs, mean=mean, std=std, warmup_epochs=warmup_epochs, blur=blur)


def snapshots_for(spec):
    """A cell that repeats the main pair's recipe keeps its snapshot list, so it shares the main pair's encoders."""
    return main_recipe_snapshots(spec, base_cell, snapshot_epochs)


sup_specs = [cell_spec({"method": "supervised", "epochs": e_, "lr": supervised_lr, "label": f"supervised {e_} ep.",
                        "optimizer": "sgd", "warmup_epochs": 1.0, "blur": 0.0,  # plain supervised training
                        **({"arch": supervised_arch} if supervised_arch else {})}, base_cell)
             for e_ in sorted(supervised_epochs)] if {"table11", "rankings"} & set(tables) else []
overlap_specs = []  # Table 7: (cell, key of its data in _data)
for fr in (overlap_fracs if "table7" in tables else []):
    sh_, rest_ = overlap_sizes(split_shared + split_candidates + split_independent, fr)
    overlap_specs.append((cell_spec({"label": f"overlap {fr:.0%}"}, base_cell), (dataset, sh_, rest_, rest_)))
mae_cell = next((c for c in grid if c.get("method") == "mae"), {"method": "mae", "arch": "vit_tiny"})
table9_specs = ([cell_spec({"label": f"simclr, {a} augmentation", "aug": a, "blur": 0.0}, base_cell) for a in simclr_augs]
                + [cell_spec({**mae_cell, "label": f"mae mask {r_:.0%}",
                              "objective_kw": {**mae_cell.get("objective_kw", {}), "mask_ratio": r_}}, base_cell)
                   for r_ in mae_mask_ratios]) if "table9" in tables else []
grid_specs = cells if {"table1", "rankings", "table11"} & set(tables) else []

plan = Plan("02_sslmem", cache=cache, device=dev)
f_jobs, g_jobs = f_and_g_jobs(cfg, train_data, splits, seeds=seeds, pair_seeds=pair_seeds, cache=cache, force=force)
plan.add_all(f_jobs + g_jobs)
for spec in grid_specs + sup_specs + table9_specs:
    tr_, _, sp_, _ = data_for(spec["dataset"])
    for js in cell_jobs(spec, tr_, sp_, cache=cache, snapshot_epochs=snapshots_for(spec), force=force):
        plan.add_all(js)
for spec, key_ in overlap_specs:
    tr_, _, sp_, _ = data_for(*key_)
    for js in cell_jobs(spec, tr_, sp_, cache=cache, force=force):
        plan.add_all(js)
status = plan.run(executor, workers=workers or None, slurm=slurm)
fs = [load_encoder(j, cache, dev, from_cache=status[j.name] == "cached") for j in f_jobs]
gs = [load_encoder(j, cache, dev, from_cache=status[j.name] == "cached") for j in g_jobs]
hist = pd.DataFrame([{"encoder": f"{w}{i}", **h} for w, tr in (("f", fs), ("g", gs)) for i, t in enumerate(tr)
                     for h in t.history])
report.table(hist, "training_history")
source = {f"{w}{i}": "cache" if t.from_cache else "trained" for w, tr in (("f", fs), ("g", gs)) for i, t in enumerate(tr)}
summary_train = hist.groupby("encoder").agg(final_loss=("loss", "last"), train_seconds=("time", "sum")).round(3)
summary_train["source"] = summary_train.index.map(source)
display(summary_train)

# %% [markdown]
# ## Score every point
# For each point we compute the alignment loss on f and on g over `view_pairs` fixed view pairs, and
# their difference. Scores are normalised by their range (appendix A), so they lie in an interval of
# width 1; the raw differences are kept in the CSV as well.

# %%
meas = fs[0].measuring(measure_aug)
bank = ViewBank(meas, 2 * view_pairs, seed=split_seed)


def score_pair(f_list, g_list, subsets, n_pairs):
    return cached_scores(cache, f_list, g_list, train_data, test_data, subsets, bank, n_pairs=n_pairs,
                         rep=representation, device=dev, force=force)


results = score_pair(fs, gs, scored, view_pairs)
layer = fs[0].encoder.layer_names[-1]
ref_set = ("S_C", "S_S") if normalize_over == "S_C+S_S" else normalize_over
m = normalized(results, layer, ref_set)
norm_note = f"SSLMem divided by its range over {reference_label(results, ref_set)}"
rows = []
for k in SUBSETS:
    for i, idx in enumerate(scored[k].tolist()):
        r = results[k][layer]
        rows.append({"subset": k, "index": idx, "label": int((test_data if k == "S_E" else train_data).labels[idx]),
                     "align_f": float(r["align_f"][i]), "align_g": float(r["align_g"][i]),
                     "sslmem_raw": float(r["raw"][i]), "sslmem": float(m[k][i])})
scores = pd.DataFrame(rows)
report.table(scores, "scores")
subset_stats = summary(m)
subset_stats["mean raw"] = [float(results[k][layer]["raw"].mean()) for k in subset_stats.subset]  # alignment-loss units
subset_stats["normalised over"] = reference_label(results, ref_set)
report.table(subset_stats, "subset_summary")
display(subset_stats.round(4))

# %% [markdown]
# ## Table 1 row: mean memorization and downstream accuracy
# The paper's headline number is the mean normalised SSLMem over $S_C$, reported next to the accuracy of
# a linear probe on f's frozen representations (trained on f's training images with their labels,
# tested on held-out test images).

# %%
probe_idx = balanced_subset(test_data.labels.numpy(), min(probe_test, len(test_data)), split_seed + SplitSeed.PROBE_TEST)
norm_fn = meas.normalize
accs = []
for t in fs:
    tr_x = extract(t.encoder, train_data.images[splits.f_train], norm_fn, device=dev)
    te_x = extract(t.encoder, test_data.images[probe_idx], norm_fn, device=dev)
    accs.append(linear_probe(tr_x, train_data.labels[splits.f_train], te_x, test_data.labels[probe_idx], device=dev))
table1 = pd.DataFrame([{"dataset": dataset, "method": method, "arch": f"{arch} x{width}", "epochs": epochs,
                        "mean SSLMem(S_C)": float(m["S_C"].mean()), "sd": float(m["S_C"].std()),
                        "mean raw SSLMem(S_C)": float(results["S_C"][layer]["raw"].mean()), "normalised over":
                        reference_label(results, ref_set),
                        "linear probe acc": float(np.mean(accs)), "f seeds": len(fs)}])
report.table(table1, "table1_row")
display(table1.round(4))

# %% [markdown]
# ## Fig. 2c and Tables 2/16: the four subsets
# If SSLMem measures memorisation, candidates score highest, independent points lowest, and shared and
# extra points sit near zero. One-sided Welch t-tests make this precise (the paper's "effect size" column
# is the t statistic; Cohen's d is the standardised difference of means).
#
# The comparisons *between* subsets are the robust test. The tests against zero (Table 16) also see any
# common offset between f and g: when, at small scale, g happens to align every point slightly worse than
# f (or better), all four distributions shift together; the mean over $S_S$ measures that offset.

# %%
tests = subset_table(m).assign(**{"normalised over": reference_label(results, ref_set)})
report.table(tests, "ttests")
display(tests.round(5))
fig = plots.subset_distributions(m, f"SSLMem per subset ({method}, {arch} x{width}, {epochs} ep.)",
                                 report.caption(f"{representation} representation, K={view_pairs} view pairs; {norm_note}"))
report.figure(fig, "fig2c_subsets")

# %% [markdown]
# ## Fig. 2a: alignment on f against alignment on g
# Each dot is a candidate. Points below the diagonal are aligned better by f, which trained on them: these
# are the memorised points. Low alignment loss alone is *not* memorisation: easy points sit near the
# origin on both axes.

# %%
rc = results["S_C"][layer]
fig = plots.alignment_scatter(rc["align_f"], rc["align_g"], m["S_C"], "Candidates: alignment on f vs g",
                              report.caption(f"{method}, {arch} x{width}"))
report.figure(fig, "fig2a_alignment")

# %% [markdown]
# ## Fig. 2b: memorisation over training
# The encoders were snapshotted during training; scoring each snapshot pair (on `dynamics_points`
# candidates and shared points, with `dynamics_pairs` view pairs, to keep it cheap) shows how the training
# loss, the probe accuracy and the mean memorisation of the candidates evolve. The paper observes that
# memorisation keeps growing after loss and accuracy plateau.

# %%
dyn = []
for e in [e for e in dynamics_epochs if e in cfg.snapshot_epochs]:
    fe, ge = [t.at_epoch(e) for t in fs], [t.at_epoch(e) for t in gs]
    sub = {k: scored[k][:dynamics_points] for k in ("S_C", "S_S")}
    res_e = score_pair(fe, ge, sub, min(dynamics_pairs, view_pairs))
    me = normalized(res_e, layer)
    tr_x = extract(fe[0].encoder, train_data.images[splits.f_train], norm_fn, device=dev)
    te_x = extract(fe[0].encoder, test_data.images[probe_idx], norm_fn, device=dev)
    acc = linear_probe(tr_x, train_data.labels[splits.f_train], te_x, test_data.labels[probe_idx], device=dev)
    dyn.append({"epoch": e, "loss": fs[0].history[e - 1]["loss"], "probe acc": acc,
                "mean SSLMem(S_C)": float(me["S_C"].mean()), "mean SSLMem(S_S)": float(me["S_S"].mean())})
dyn = pd.DataFrame(dyn)
report.table(dyn, "fig2b_dynamics")
display(dyn.round(4))
if len(dyn):
    fig = plots.training_curves(dyn["epoch"], {"training loss (f)": dyn["loss"], "linear probe accuracy": dyn["probe acc"],
                                               "mean SSLMem": {"S_C": dyn["mean SSLMem(S_C)"], "S_S": dyn["mean SSLMem(S_S)"]}},
                                f"Training dynamics ({method}, {arch} x{width})", report.caption())
    report.figure(fig, "fig2b_dynamics")

# %% [markdown]
# ## Fig. 1: the most and the least memorised candidates
# The most memorised candidates tend to be atypical (unusual pose, background or colour); the least
# memorised ones look like the prototypes of their class.

# %%
order = torch.argsort(m["S_C"], descending=True)
for name, sel in (("most", order[:gallery_k]), ("least", order.flip(0)[:gallery_k])):
    idx = scored["S_C"][sel]
    titles = [f"{train_data.class_names[int(train_data.labels[i])][:14]}\nm={float(m['S_C'][j]):+.2f}"
              for i, j in zip(idx.tolist(), sel.tolist())]
    fig = plots.gallery(train_data.images[idx], titles, f"The {gallery_k} {name} memorised candidates",
                        report.caption(f"{method}, {arch} x{width}"), ncols=min(gallery_k, 10))
    report.figure(fig, f"fig1_{name}_memorised")

# %% [markdown]
# ## Fig. 5: how many points are memorised, and how strongly?
# The fraction of points whose score exceeds a threshold. Candidates have a heavier right tail than the
# shared and extra points: a minority of candidates is memorised strongly.

# %%
thr = np.linspace(0, float(max(v.max() for v in m.values())), 40)
frac = pd.DataFrame({"threshold": thr, **{k: [(v > t).float().mean().item() for t in thr] for k, v in m.items()}})
report.table(frac, "fig5_fraction_above_threshold")
fig = plots.threshold_fraction(m, thr, "Fraction of points memorised above a threshold", report.caption())
report.figure(fig, "fig5_threshold")

# %% [markdown]
# ## Planted atypical points (synthetic data only)
# The synthetic dataset plants rare variants, corrupted images and flipped labels and returns their
# indices. If SSLMem singles out atypical points, it ranks the planted candidates above the typical ones:
# a ROC AUC above 0.5. (Flipped labels do not change the image, so an SSL encoder cannot see them.)

# %%
auc_rows = []
if train_data.atypical is not None:
    atyp = dict(zip(train_data.atypical.tolist(), train_data.atypical_kind))
    cand = scored["S_C"].tolist()
    curves = {}
    for kind in ("all", "rare_variant", "corruption", "flipped_label"):
        y = np.array([(i in atyp) and (kind == "all" or atyp[i] == kind) for i in cand])
        keep = np.array([(i not in atyp) or (kind == "all" or atyp[i] == kind) for i in cand])
        if y.sum() == 0 or y.sum() == keep.sum():
            continue
        s = m["S_C"].numpy()[keep]
        auc = roc_auc_score(y[keep], s)
        fpr, tpr, _ = roc_curve(y[keep], s)
        curves[kind] = (fpr, tpr, auc)
        auc_rows.append({"atypical kind": kind, "n atypical": int(y.sum()), "n typical": int((~y & keep).sum()), "ROC AUC": auc})
    if curves:
        fig = plots.roc(curves, "Does SSLMem rank planted atypical candidates first?", report.caption())
        report.figure(fig, "atypical_roc")
    auc_table = pd.DataFrame(auc_rows)
    report.table(auc_table, "atypical_auc")
    display(auc_table.round(3))
else:
    print("no planted atypical points in this dataset")

# %% [markdown]
# ## Table 1: memorisation and downstream accuracy across SSL methods
# Each cell of the grid is its own f/g pair, trained with the same splits and scored on the same
# candidates and shared points (measured with the cell's own training augmentation). The paper finds that
# every method memorises its candidates, and that methods that memorise more also probe better.
# MAE runs on a small ViT: its encoder keeps the patch order fixed, so SSLMem compares token i of one view
# with token i of the other (the public reference code shuffles them).

# %%
def run(spec, measure=""):
    tr, te, sp, sc = data_for(spec["dataset"])
    sub = {k: sc[k][:grid_points] for k in ("S_C", "S_S")}
    pidx = balanced_subset(te.labels.numpy(), min(probe_test, len(te)), split_seed + SplitSeed.PROBE_TEST)
    return run_cell(spec, tr, te, sp, sub, cache=cache, device=dev, view_pairs=grid_view_pairs,
                    rep=representation, probe_idx=pidx, bank_seed=split_seed, measure_aug=measure,
                    snapshot_epochs=snapshots_for(spec), force=force, progress=False)


def row(res, **extra):
    t_ = welch(res.m["S_C"], res.m["S_S"])
    return {**extra, **res.summary(), "p(S_C > S_S)": t_["p"], "d": t_["d"]}


grid_res = {}
for c in grid_specs:
    grid_res[c["label"]] = run(c)
if grid_res:
    table1_grid = pd.DataFrame([row(r) for r in grid_res.values()])
    report.table(table1_grid, "table1_methods")
    display(table1_grid.round(4))
    if len(table1_grid) > 1:
        fig = plots.scatter(table1_grid["mean SSLMem(S_C)"], table1_grid["linear probe acc"],
                            "Memorisation vs downstream accuracy across methods", "mean SSLMem(S_C)",
                            "linear probe accuracy", report.caption(f"{grid_view_pairs} view pairs, seeds {list(grid_seeds)}"),
                            note=", ".join(table1_grid["cell"]))
        for _, r_ in table1_grid.iterrows():
            fig.axes[0].annotate(r_["cell"], (r_["mean SSLMem(S_C)"], r_["linear probe acc"]), fontsize=7)
        report.figure(fig, "table1_memorisation_vs_accuracy")

# %% [markdown]
# ## Table 11: supervised encoders, scored with SSLMem
# A supervised network with its classification layer removed is an encoder too. We train it on the same
# f/g splits with the true labels (weak augmentation), at two training lengths, and score it exactly like the
# SSL encoders (measured with its own training augmentation).

# %%
sup_res = {spec["epochs"]: run(spec) for spec in sup_specs}
if sup_res:
    table11 = pd.DataFrame([row(r, kind="supervised") for r in sup_res.values()] +
                           [row(r, kind="SSL") for r in grid_res.values()])
    report.table(table11, "table11_supervised_vs_ssl")
    display(table11.round(4))

# %% [markdown]
# ## Tables 12-13 and Fig. 9: do the methods memorise the same points?
# Kendall's tau (with p-values) and the top-k overlap between the SSLMem rankings of the candidates under
# every method and under the supervised encoder, plus Feldman's label memorisation of the supervised f/g
# pair, $P_f(y|x) - P_g(y|x)$. The paper: SSL methods agree more with each other (tau about 0.2-0.26) than
# with the supervised encoder (about 0.07-0.11).

# %%
agree = None
if "rankings" in tables and grid_res:
    same = {k: r for k, r in grid_res.items() if r.spec["dataset"] == dataset}
    ranks = {k: r.m["S_C"] for k, r in same.items()}
    sup_long = sup_res[max(sup_res)]
    ranks[sup_long.spec["label"]] = sup_long.m["S_C"]
    c_idx = scored["S_C"][:grid_points]
    ranks["Feldman (supervised)"] = feldman(sup_long.fs, sup_long.gs, train_data.images[c_idx], train_data.labels[c_idx],
                                            Augmentation("none", mean=mean, std=std).normalize, device=dev)
    agree = agreement(ranks, [k for k in topk if k <= len(c_idx)])
    kind = lambda n: "Feldman" if n.startswith("Feldman") else ("supervised" if n.startswith("supervised") else "SSL")  # noqa: E731
    agree["pair"] = [" - ".join(sorted((kind(a), kind(b)))) for a, b in zip(agree["a"], agree["b"])]
    report.table(agree, "table12_13_agreement")
    display(agree.round(3))
    display(agree.groupby("pair")[["kendall_tau"] + [c for c in agree if c.startswith("top")]].mean().round(3))
    names = list(ranks)
    fig = plots.heatmap(square(agree, "kendall_tau", names), "Kendall tau between memorisation rankings (S_C)",
                        report.caption(f"{len(c_idx)} candidates"), cbar="Kendall tau")
    report.figure(fig, "table12_kendall_tau")
    kbig = max(k for k in topk if k <= len(c_idx))
    fig = plots.heatmap(square(agree, f"top{kbig}", names), f"Top-{kbig} overlap of the most memorised candidates",
                        report.caption(f"chance level {kbig / len(c_idx):.2f}"), cbar="overlap fraction")
    report.figure(fig, "table13_topk_overlap")
    # Fig. 9: the most memorised candidates of each ranking, side by side
    imgs, titles = [], []
    for n in names:
        top = torch.argsort(torch.as_tensor(ranks[n]).float(), descending=True)[:gallery_k]
        imgs.append(train_data.images[c_idx[top]])
        titles += [f"{n[:16]} #{i + 1}" for i in range(len(top))]
    fig = plots.gallery(torch.cat(imgs), titles, "Fig. 9: the most memorised candidates per method (one row each)",
                        report.caption(), ncols=gallery_k)
    report.figure(fig, "fig9_top_per_method")

# %% [markdown]
# ## Ablations (Tables 7, 8, 9)
# - **Table 7**: the share of points both encoders train on. With |S_S| at 70/80/85% of the pool (the rest
#   split evenly into S_C and S_I), does the signal persist?
# - **Table 8**: the main SimCLR pair measured with augmentations it was not trained with.
# - **Table 9**: SimCLR trained with a single augmentation type, and MAE with different mask ratios.

# %%
ablation_rows = []
ABLATION_COLUMNS = ("mean SSLMem(S_C)", "mean SSLMem(S_S)", "p(S_C > S_S)", "d", "mean raw SSLMem(S_C)",
                    "mean raw SSLMem(S_S)", "normalised over", "linear probe acc")


def ablation_row(table, variant, res_):
    return {"table": table, "variant": variant, **{k: v for k, v in row(res_).items() if k in ABLATION_COLUMNS}}


if "table8" in tables:
    main = {"label": f"{method}/{arch} (main pair)", "method": method, "arch": arch, "dataset": dataset,
            "epochs": epochs}
    for a in measure_augs:
        bank_a = ViewBank(Augmentation(a, mean=cfg.mean, std=cfg.std), 2 * grid_view_pairs, seed=split_seed)
        sub = {k: scored[k][:grid_points] for k in ("S_C", "S_S")}
        n_s = len(grid_seeds)  # the main pair's first seeds, as many as a grid cell has
        res_a = cached_scores(cache, fs[:n_s], gs[:n_s], train_data, test_data, sub, bank_a, n_pairs=grid_view_pairs,
                              rep=representation, device=dev, force=force)
        m_a = normalized(res_a, layer)
        t_ = welch(m_a["S_C"], m_a["S_S"])
        ablation_rows.append({"table": "8", "variant": f"measured with {a}", "mean SSLMem(S_C)": float(m_a["S_C"].mean()),
                              "mean SSLMem(S_S)": float(m_a["S_S"].mean()), "p(S_C > S_S)": t_["p"], "d": t_["d"],
                              **{f"mean raw SSLMem({k})": float(res_a[k][layer]["raw"].mean()) for k in ("S_C", "S_S")},
                              "normalised over": reference_label(res_a), "linear probe acc": float(np.mean(accs))})
for fr, (spec, key_) in zip(overlap_fracs, overlap_specs):  # Table 7
    tr, te, sp, sc = data_for(*key_)
    sub = {k: sc[k][:grid_points] for k in ("S_C", "S_S")}
    res_o = run_cell(spec, tr, te, sp, sub, cache=cache, device=dev, view_pairs=grid_view_pairs, rep=representation,
                     probe_idx=probe_idx, bank_seed=split_seed, force=force, progress=False)
    ablation_rows.append(ablation_row("7", f"|S_S| = {fr:.0%} ({key_[1]}/{key_[2]}/{key_[3]})", res_o))
for spec in table9_specs:  # Table 9
    res_t = run(spec)
    ablation_rows.append(ablation_row("9", res_t.spec["label"], res_t))
ablations = pd.DataFrame(ablation_rows)
if len(ablations):
    report.table(ablations, "tables7_8_9_ablations")
    display(ablations.round(4))
    long = ablations.melt(id_vars=["table", "variant"], value_vars=["mean SSLMem(S_C)", "mean SSLMem(S_S)"],
                          var_name="subset", value_name="mean SSLMem")
    long["table"] = "Table " + long["table"]
    fig = plots.grouped_bars(long, "variant", "subset", "mean SSLMem", "Ablation", "mean SSLMem (normalised)",
                             report.caption(f"K={grid_view_pairs} view pairs"), panels="table")
    for ax in fig.axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    report.figure(fig, "tables7_8_9_ablations")
else:
    print("no ablation selected (add table7, table8 or table9 to `tables`)")

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
t = tests.set_index("hypothesis (H1)")
for h in ("m(S_C) > m(S_S)", "m(S_E) > m(S_I)"):
    r = t.loc[h]
    report.claim(f"{h} (one-sided Welch, p < {alpha})", r["p"] < alpha,
                 f"means {r['mean_a']:+.4f} vs {r['mean_b']:+.4f}, t={r['t']:.2f}, p={r['p']:.2g}, d={r['d']:.3f}, "
                 f"n={int(r['n_a'])}/{int(r['n_b'])}")
order_ok = m["S_C"].mean() > max(m["S_S"].mean(), m["S_E"].mean()) and m["S_I"].mean() < min(m["S_S"].mean(), m["S_E"].mean())
report.claim("ordering of subset means: S_C > {S_S, S_E} > S_I", order_ok,
             ", ".join(f"{k} {float(v.mean()):+.4f}" for k, v in m.items()))
if auc_rows:
    a = auc_rows[0]
    report.claim("planted atypical candidates score higher than typical ones (ROC AUC > 0.5)", a["ROC AUC"] > 0.5,
                 f"AUC {a['ROC AUC']:.3f} over {a['n atypical']} atypical / {a['n typical']} typical candidates")
for k, r in grid_res.items():
    t_ = welch(r.m["S_C"], r.m["S_S"])
    report.claim(f"{k}: m(S_C) > m(S_S) (one-sided Welch, p < {alpha})", t_["p"] < alpha,
                 f"means {t_['mean_a']:+.4f} vs {t_['mean_b']:+.4f}, p={t_['p']:.2g}, d={t_['d']:.3f}, "
                 f"probe {r.probe_acc:.3f}")
if agree is not None:
    ssl_ssl = agree.loc[agree["pair"] == "SSL - SSL", "kendall_tau"]
    ssl_sup = agree.loc[agree["pair"] == "SSL - supervised", "kendall_tau"]
    if len(ssl_ssl) and len(ssl_sup):
        report.claim("Kendall tau between SSL methods exceeds tau between SSL and supervised", ssl_ssl.mean() > ssl_sup.mean(),
                     f"mean tau SSL-SSL {ssl_ssl.mean():.3f} (over {len(ssl_ssl)} pairs) vs SSL-supervised "
                     f"{ssl_sup.mean():.3f} (over {len(ssl_sup)})")
report.claims_table()

# %% [markdown]
# ## Closing note

# %%
print(f"profile {profile} | {dataset} | {method} / {arch} x{width} | {epochs} epochs | seeds {list(seeds)} | "
      f"K={view_pairs} pairs | {representation} | device {dev}")
print(f"mean SSLMem(S_C) = {float(m['S_C'].mean()):+.4f}, linear probe accuracy = {np.mean(accs):.3f}")
report.print_claims(f"; wall time {time.time() - T0:.0f}s")
