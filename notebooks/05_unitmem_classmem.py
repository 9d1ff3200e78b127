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
# # UnitMem and ClassMem: which units memorise single data points?
#
# *Wang et al., "Localizing Memorization in SSL Vision Encoders", NeurIPS 2024* (`shared/docs/methods.md`
# section 4). SSLMem (notebook 02) says *which points* an encoder memorises. UnitMem asks *where*: a unit
# (a conv channel, averaged over space) memorises a data point when it fires for that one point far more
# than for all others. With $\mu_u(x)$ the unit's mean activation over K augmentations of $x$:
#
# $$\mathrm{UnitMem}(u) = \frac{\mu_{max,u} - \mu_{-max,u}}{\mu_{max,u} + \mu_{-max,u}}, \qquad
#   \mu_{max,u} = \max_{x \in D} \mu_u(x),\ \ \mu_{-max,u} = \text{mean of } \mu_u \text{ over the other points}$$
#
# ClassMem is the same with class means instead of points (class selectivity). Activations are taken after
# the ReLU and after residual additions, so both scores lie in [0, 1]: 0 means the unit responds equally to
# everything, 1 means it responds to a single point (or class) only.
#
# The paper's findings: in SSL encoders most units memorise individual points more than classes, most
# strongly in the deepest layers; in supervised encoders class memorisation grows in later layers.

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/05_unitmem_classmem.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"
executor: str = "auto"          # where the training jobs run: "auto", "inline", "local" (one worker per CPU core or
                                # GPU) or "slurm" (submitit); the environment variable MEMLAB_EXECUTOR overrides it
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, cpus_per_task, mem_gb,
                                # array_parallelism, sbatch (a dict of extra #SBATCH options)
# -- the SSL encoder pair f/g is notebook 02's, read from params/<profile>/02_sslmem.yaml (memlab.experiments.recipes):
#    it and its SSLMem scores come from 02's cache by construction
# -- UnitMem
unit_views: int = 10            # K augmentations per point (paper: 10)
unit_points: int = 1000         # |D|: a class-balanced part of f's training set (all of it when larger)
unit_rest: str = "mean"         # mu_-max: "mean" of the other points (paper) or "median" (reference code)
deep_layers: int = 2            # how many of the last layers count as "the deepest" for the claim
dynamics_layer: str = ""        # layer followed over training ("": the last layer)
dynamics_points: int = 1000     # points of D used per snapshot
top_k: int = 50                 # top-k vs least-k memorised points (by SSLMem)
# -- supervised encoder (same architecture and training points, true labels, weak augmentation)
supervised_epochs: int = 120    # long enough to fit the training set (cross-entropy about 0.01)
supervised_lr: float = 0.05     # learning rate of the supervised encoders
# -- second dataset: UnitMem across datasets, and the downstream probe after pruning
second_dataset: str = "fashion_mnist"  # second dataset (downstream / transfer)
synthetic_fallback: bool = False  # True: synthetic data stands in for an unavailable second_dataset
second_n_train: int = 2000      # training images taken from the second dataset
second_n_test: int = 1000       # test images taken from the second dataset
second_epochs: int = 40         # SimCLR epochs of the encoder trained on the second dataset (0: skip)
# -- pruning
prune_fracs: list = [0.1, 0.2]  # fractions of units pruned (highest UnitMem, lowest, random)
prune_seed: int = 0             # seed of the random pruning
probe_test: int = 2000          # test images of the probe after pruning
# -- differential privacy (DP-SGD, GroupNorm ResNet-9, SimSiam; needs opacus)
dp_epsilons: list = [20.0, 8.0]  # privacy budgets epsilon of the DP encoders; the non-private reference runs as well
dp_epochs: int = 10             # 0: skip the DP section
dp_points: int = 1000           # training points of the DP encoders (per-example gradients are slow on a CPU)
dp_lr: float = 0.05             # learning rate of DP-SGD
dp_batch_size: int = 256        # DP-SGD's logical (expected Poisson) batch; notebook 02's pair keeps its batch_size
dp_physical_batch: int = 0      # images per per-image-gradient pass (opacus BatchMemoryManager); 0: the whole batch
alpha: float = 0.01             # significance level of the printed claims
force: bool = False             # recompute cached results instead of reusing them

# %%
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from scipy import stats as sst

from memlab.engine import executors
from memlab.io import plots
from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache
from memlab.data.datasets import DATASETS, DatasetNotFound, load_dataset, stand_in
from memlab.engine.jobs import Plan
from memlab.models.networks import MODELS
from memlab.io.params import check_injected, choice
from memlab.metrics.probes import extract, linear_probe
from memlab.io.report import Report
from memlab.data.splits import balanced_subset
from memlab.streams import SplitSeed
from memlab.experiments.recipes import sslmem_pair
from memlab.metrics.sslmem import cached_scores, normalized
from memlab.engine.train import TrainConfig, encoder_job, load_encoder, resolve_device
from memlab.metrics.unitmem import (cached_unit_stats, layer_summary, layer_table, link_test, live_units, point_unit_link, prune_masks, pruned,
                            unitmem)

check_injected()
pair = sslmem_pair(profile)  # notebook 02's f/g recipe of this profile (params/<profile>/02_sslmem.yaml)
choice("dataset", pair.dataset, DATASETS)
choice("second_dataset", second_dataset, DATASETS)
choice("arch", pair.arch, MODELS)
choice("unit_rest", unit_rest, ["mean", "median"])
if any(not 0 < f < 1 for f in prune_fracs):
    raise ValueError(f"prune_fracs must lie in (0, 1), got {prune_fracs}")
dev = resolve_device(device)
executors.make(executor, device=dev, workers=workers or None, slurm=slurm)  # a bad executor fails here
T0 = time.time()
report = Report(output_dir, "05_unitmem_classmem", profile, pair.dataset)
cache = Cache()

# Data first: a missing dataset fails here, before any training.
train_data, test_data, splits = pair.load()
try:
    second_train = load_dataset(second_dataset, "train", n=second_n_train, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
    second_test = load_dataset(second_dataset, "test", n=second_n_test, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
except DatasetNotFound as e:
    stand_in(e, second_dataset, synthetic_fallback)
    second_dataset = "synthetic"
    second_train = load_dataset("synthetic", "train", n=second_n_train, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
    second_test = load_dataset("synthetic", "test", n=second_n_test, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
if dp_epochs > 0:
    from memlab.engine.dp import dp_job, load_dp, require_opacus
    try:
        require_opacus()
    except ImportError as e:
        print(f"{e}\nThe DP section is skipped; everything else runs.")
        dp_epochs = 0
print(f"device {dev} | {pair.dataset}: {len(train_data)} train images | second dataset: {second_dataset}")

# %% [markdown]
# ## The plan
# Every training of this notebook is a job keyed by the cache -- notebook 02's f/g pair, the supervised
# encoder, the encoder of the second dataset and the DP encoders -- listed below with its cost and trained by
# the executor; a rerun finds them cached.

# %%
mean, std = train_data.stats()
cfg = pair.config(mean, std)
sup_cfg = replace(cfg, objective="supervised", objective_kw={}, aug="weak", aug_kw={}, optimizer="sgd",
                  warmup_epochs=1.0, epochs=supervised_epochs, lr=supervised_lr, snapshot_epochs=())
F = splits.f_train
plan = Plan("05_unitmem_classmem", cache=cache, device=dev)
f_jobs, g_jobs = (plan.add_all(js) for js in pair.jobs(cfg, train_data, splits, cache=cache, force=force))
sup_job = plan.add(encoder_job(sup_cfg, train_data.images[F], train_data.labels[F], F, cache=cache,
                               data_id=f"{pair.dataset}/train", name=f"supervised/{pair.arch}", force=force))
if second_epochs > 0:
    m2, s2 = second_train.stats()
    cfg2 = replace(cfg, epochs=second_epochs, snapshot_epochs=(), mean=m2, std=s2)
    ssl2_job = plan.add(encoder_job(cfg2, second_train.images, None, torch.arange(len(second_train)), cache=cache,
                                    data_id=f"{second_dataset}/train", name=f"{pair.method}/{pair.arch} on {second_dataset}",
                                    force=force))
if dp_epochs > 0:
    Ddp = F[balanced_subset(train_data.labels[F].numpy(), min(dp_points, len(F)), pair.split_seed + SplitSeed.DP_POINTS)]
    dp_cfg = TrainConfig(model=pair.arch, model_kw={"width": pair.width, "norm": "group"}, objective="simsiam",
                         objective_kw={"norm": "layer"}, epochs=dp_epochs, batch_size=dp_batch_size, lr=dp_lr,
                         weight_decay=0.0, mean=cfg.mean, std=cfg.std)
    dp_jobs = {"inf": plan.add(encoder_job(dp_cfg, train_data.images[Ddp], None, Ddp, cache=cache,
                                           name="DP reference (eps=inf: no clipping, no noise)", force=force))}
    for eps in dp_epsilons:
        dp_jobs[f"{eps:g}"] = plan.add(dp_job(dp_cfg, train_data.images[Ddp], Ddp, epsilon=eps, cache=cache,
                                              physical_batch=dp_physical_batch or None,
                                              data_id=f"{pair.dataset}/train", force=force))
status = plan.run(executor, workers=workers or None, slurm=slurm)


def load(job):
    """A trained encoder of the plan, read from the cache."""
    return load_encoder(job, cache, dev, from_cache=status[job.name] == "cached")

# %% [markdown]
# ## The encoders
# * **SSL:** f of notebook 02 (SimCLR on $S_S \cup S_C$), loaded from the cache when 02 has run.
# * **Supervised:** the same architecture trained with cross-entropy on the same images and their labels.
#
# D, the point set of UnitMem, is a class-balanced set of `unit_points` of f's training images (all of
# them by default); each point is seen through `unit_views` fixed views of the encoder's own training
# augmentation.

# %%
fs, gs = [load(j) for j in f_jobs], [load(j) for j in g_jobs]
ssl = fs[0]
sup = load(sup_job)
D = F[balanced_subset(train_data.labels[F].numpy(), min(unit_points, len(F)), pair.split_seed + SplitSeed.UNIT_POINTS)] if unit_points < len(F) else F
print(f"SSL encoder: {'cache' if ssl.from_cache else 'trained'}, final loss {ssl.history[-1]['loss']:.3f}")
print(f"supervised encoder: {'cache' if sup.from_cache else 'trained'}, final loss {sup.history[-1]['loss']:.3f}")
layers = ssl.encoder.layer_names


def stats_of(trained, data, idx, keep=()):
    """Unit statistics of ``trained`` on ``data[idx]``, each point seen through ``unit_views`` fixed views of the
    encoder's own training augmentation (cached)."""
    aug = trained.measuring()
    return cached_unit_stats(cache, trained, data, idx, ViewBank(aug, unit_views, seed=pair.split_seed + SplitSeed.UNIT_VIEWS), keep=keep,
                             device=dev, force=force)


ssl_stats = stats_of(ssl, train_data, D, keep=layers)  # per-point values: the SSLMem link
sup_stats = stats_of(sup, train_data, D, keep=layers if unit_rest == "median" else [])
ssl_table, sup_table = layer_table(ssl_stats, unit_rest), layer_table(sup_stats, unit_rest)
report.table(ssl_table, "units_ssl")
report.table(sup_table, "units_supervised")
for name, st in (("SSL", ssl_stats), ("supervised", sup_stats)):
    out_ = {l: f"{int(s.dead.sum())} dead, {int(s.negative.sum())} negative" for l, s in st.items() if s.excluded.any()}
    print(f"{name}: excluded units (reported, not scored): {out_ or 'none'}")

# %% [markdown]
# ## UnitMem per layer, and across datasets
# Each box is the distribution of UnitMem over the units of one layer. Memorisation is spread over the
# whole encoder rather than concentrated in the last layer. The second panel compares the last layer of
# encoders trained with the same recipe on different datasets: the more complex the data, the more units
# memorise strongly.

# %%
summ_ssl, summ_sup = layer_summary(ssl_table), layer_summary(sup_table)
summ = summ_ssl.merge(summ_sup, on="layer", suffixes=("_ssl", "_sup"))
report.table(summ, "layer_summary")
display(summ.round(3))
fig = plots.per_layer_box({"SSL (SimCLR)": {l: ssl_table[ssl_table.layer == l].unitmem for l in layers},
                           "supervised": {l: sup_table[sup_table.layer == l].unitmem for l in layers}},
                          "UnitMem per layer", "UnitMem", report.caption(f"{pair.arch} x{pair.width}, K={unit_views} views"))
report.figure(fig, "unitmem_per_layer")

across = {pair.dataset: ssl_table[ssl_table.layer == layers[-1]].unitmem.to_numpy()}
if second_epochs > 0:
    ssl2 = load(ssl2_job)
    print(f"{second_dataset} encoder: {'cache' if ssl2.from_cache else 'trained'}, final loss {ssl2.history[-1]['loss']:.3f}")
    st2 = stats_of(ssl2, second_train, torch.arange(len(second_train)))
    t2 = layer_table(st2, unit_rest)
    across[second_dataset] = t2[t2.layer == layers[-1]].unitmem.to_numpy()
    report.table(t2, f"units_ssl_{second_dataset}")
across_df = pd.DataFrame([{"dataset": k, "mean UnitMem (last layer)": np.nanmean(v), "median": np.nanmedian(v),
                           "frac > 0.5": float(np.mean(v[np.isfinite(v)] > 0.5))} for k, v in across.items()])
report.table(across_df, "unitmem_across_datasets")
display(across_df.round(3))
fig = plots.subset_distributions({k: v[np.isfinite(v)] for k, v in across.items()},
                                 f"UnitMem of the last layer ({layers[-1]}) across datasets",
                                 report.caption("SimCLR encoders, same recipe"), xlabel="UnitMem")
report.figure(fig, "unitmem_across_datasets")

# %% [markdown]
# ## ClassMem against UnitMem (SSL: top row, supervised: bottom row)
# Each dot is a unit. Below the red diagonal a unit is more selective for a single point than for a class.
# SSL has no labels, so its units should sit mostly below the diagonal, increasingly so with depth; a
# supervised encoder is trained to separate classes, so more of its units move above it.

# %%
fig = plots.unit_scatter_grid({"SSL": ssl_table, "supervised": sup_table}, layers,
                              "ClassMem vs UnitMem per layer", report.caption(f"{pair.arch} x{pair.width}"))
report.figure(fig, "classmem_vs_unitmem")
frac = pd.DataFrame({"layer": layers,
                     "SSL: frac UnitMem > ClassMem": summ_ssl.set_index("layer").loc[layers, "frac_unitmem_gt_classmem"].values,
                     "supervised: frac UnitMem > ClassMem": summ_sup.set_index("layer").loc[layers, "frac_unitmem_gt_classmem"].values})
report.table(frac, "fraction_above_diagonal")
display(frac.round(3))

# %% [markdown]
# ## UnitMem over training
# f was snapshotted during training (notebook 02's `snapshot_epochs`). The mean UnitMem of one layer over
# the snapshots shows when units start to single out points: the paper sees it rise fastest early and keep
# growing more slowly afterwards.

# %%
dyn_layer = dynamics_layer or layers[-1]
choice("dynamics_layer", dyn_layer, layers)
Dd = D[balanced_subset(train_data.labels[D].numpy(), min(dynamics_points, len(D)), pair.split_seed + SplitSeed.DYNAMICS_POINTS)]
dyn = []
for e in sorted(ssl.snapshots):
    st = stats_of(ssl.at_epoch(e), train_data, Dd)[dyn_layer]
    um = unitmem(st, "mean")
    dyn.append({"epoch": e, "mean UnitMem": float(um[~st.excluded].mean()), "excluded units": int(st.excluded.sum())})
dyn = pd.DataFrame(dyn)
report.table(dyn, "unitmem_over_epochs")
display(dyn.round(4))
if len(dyn):
    fig = plots.lines(dyn["epoch"], {dyn_layer: dyn["mean UnitMem"]}, f"Mean UnitMem of {dyn_layer} over training",
                      "epoch", "mean UnitMem", report.caption(f"{pair.method}, {pair.arch} x{pair.width}, {len(Dd)} points"),
                      vline=cfg.warmup_epochs)
    report.figure(fig, "unitmem_over_epochs")

# %% [markdown]
# ## Memorised points and memorising units
# The localisation paper links a data point to the units it activates maximally: the units u whose top point
# (the one reaching mu_max,u) it is. We take the top-k and least-k points by SSLMem (notebook 02's scores),
# count the units each group tops, and compare those units' UnitMem (one-sided Welch, top > least), layer by
# layer. A point that tops no unit has no linked unit. (`point_selectivity`, each point's most selective
# unit, is a different quantity, kept in the library as an extra.)

# %%
scored = pair.scored(splits, train_data.labels)
bank = ViewBank(ssl.measuring(pair.measure_aug), 2 * pair.view_pairs, seed=pair.split_seed)
results = cached_scores(cache, fs, gs, train_data, test_data, scored, bank, n_pairs=pair.view_pairs, rep=pair.representation,
                        device=dev, force=force)
m = normalized(results, layers[-1])
mem = dict(zip(torch.cat([scored["S_C"], scored["S_S"]]).tolist(), torch.cat([m["S_C"], m["S_S"]]).tolist()))
order = sorted((i for i in D.tolist() if i in mem), key=lambda i: mem[i])
top_pts, least_pts = order[-top_k:], order[:top_k]
link = pd.DataFrame([{"layer": l, **link_test(ssl_table, top_pts, least_pts, l)} for l in layers])
report.table(link, "sslmem_unitmem_link")
display(link.round(4))
pu = point_unit_link(ssl_table[ssl_table.layer == layers[-1]], order)
pu["SSLMem"] = pu.point.map(mem)
hits = pd.DataFrame([{"group": g, "points": len(pts), "points that top some unit": int((pu.point.isin(pts) & (pu.n_units > 0)).sum()),
                      "units they top": int(pu[pu.point.isin(pts)].n_units.sum())}
                     for g, pts in ((f"top-{top_k} memorised", top_pts), (f"least-{top_k} memorised", least_pts))])
report.table(hits, "mu_max_points")
display(hits)
tops = pu[pu.n_units > 0]
rho = sst.spearmanr(tops.SSLMem, tops.mean_unitmem) if len(tops) > 2 else None
fig = plots.scatter(tops.SSLMem, tops.mean_unitmem, f"SSLMem vs the UnitMem of the units a point tops ({layers[-1]})",
                    "SSLMem (normalised, notebook 02)", "mean UnitMem of the units it activates maximally",
                    report.caption(f"{len(tops)} of {len(order)} training points of f top some unit"),
                    note="" if rho is None else f"Spearman rho = {rho.statistic:.3f} (p = {rho.pvalue:.2g})")
report.figure(fig, "sslmem_vs_unitmem")

# %% [markdown]
# ## Pruning by UnitMem
# We zero 10% and 20% of the units of every layer -- the highest-UnitMem units, the lowest, or random ones
# -- and measure linear-probe accuracy downstream. Pruning sets the unit's output to zero for the layers
# after it; no weights are edited, so no BatchNorm row is touched (the public code zeroed rows of every
# parameter, BatchNorm included). The paper finds that removing the most memorising units hurts most.

# %%
probe_idx = balanced_subset(test_data.labels.numpy(), min(probe_test, len(test_data)), pair.split_seed + SplitSeed.PROBE_TEST)
norm1 = Augmentation("none", mean=cfg.mean, std=cfg.std).normalize
m2_, s2_ = second_train.stats()
norm2 = Augmentation("none", mean=m2_, std=s2_).normalize
tasks = {pair.dataset: (train_data.images[F], train_data.labels[F], test_data.images[probe_idx], test_data.labels[probe_idx], norm1),
         second_dataset: (second_train.images, second_train.labels, second_test.images, second_test.labels, norm2)}


def probe_all(enc):
    out = {}
    for name, (xtr, ytr, xte, yte, nf) in tasks.items():
        out[name] = linear_probe(extract(enc, xtr, nf, device=dev), ytr, extract(enc, xte, nf, device=dev), yte, device=dev)
    return out


rows = [{"fraction": 0.0, "strategy": "none", "dataset": k, "accuracy": v} for k, v in probe_all(ssl.encoder).items()]
for frac_ in prune_fracs:
    for strategy in ("highest", "lowest", "random"):
        with pruned(ssl.encoder, prune_masks(ssl_table, frac_, strategy, seed=prune_seed)):
            rows += [{"fraction": frac_, "strategy": strategy, "dataset": k, "accuracy": v}
                     for k, v in probe_all(ssl.encoder).items()]
prune = pd.DataFrame(rows)
report.table(prune, "pruning")
display(prune.pivot_table(index=["fraction", "strategy"], columns="dataset", values="accuracy").round(4))
fig = plots.grouped_bars(prune[prune.fraction > 0], "fraction", "strategy", "accuracy", "Probe accuracy after pruning",
                         "linear probe accuracy", report.caption("units chosen by UnitMem, per layer"), panels="dataset")
for ax, k in zip(fig.axes, tasks):
    ax.axhline(prune[(prune.strategy == "none") & (prune.dataset == k)].accuracy.iloc[0], color="k", ls="--", lw=1,
               label="unpruned")
report.figure(fig, "pruning")

# %% [markdown]
# ## Differential privacy
# DP-SGD bounds how much any single training point can change the encoder, so it should lower unit-level
# memorisation. Contrastive losses couple the images of a batch and do not admit per-example clipping, so
# the DP encoders use SimSiam (a per-image loss) with GroupNorm; the non-private reference uses the same
# recipe without clipping or noise.

# %%
dp_rows = []
if dp_epochs > 0:
    runs = {k: load(j) if k == "inf" else load_dp(j, cache, dev, from_cache=status[j.name] == "cached")
            for k, j in dp_jobs.items()}
    print("DP encoders:", ", ".join(f"eps={k} {'cache' if t.from_cache else 'trained'}" for k, t in runs.items()))
    for name, tr in runs.items():
        st = stats_of(tr, train_data, Ddp)
        t = layer_table(st, unit_rest)
        acc = probe_all(tr.encoder)[pair.dataset]
        for l in layers:
            d = live_units(t[t.layer == l])
            dp_rows.append({"epsilon": name, "layer": l, "mean UnitMem": d.unitmem.mean(), "probe acc": acc})
    dp_df = pd.DataFrame(dp_rows)
    report.table(dp_df, "dp_unitmem")
    display(dp_df.pivot_table(index="layer", columns="epsilon", values="mean UnitMem", sort=False).round(4))
    fig = plots.lines(range(len(layers)), {f"epsilon={k}": dp_df[dp_df.epsilon == k]["mean UnitMem"].to_numpy()
                                           for k in runs}, "Mean UnitMem per layer under DP-SGD", "layer index",
                      "mean UnitMem", report.caption(f"SimSiam, GroupNorm {pair.arch} x{pair.width}, {dp_epochs} epochs"))
    report.figure(fig, "dp_unitmem")
else:
    print("DP section skipped (dp_epochs = 0 in this profile).")

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
deep = layers[-deep_layers:]
s_ssl = summ_ssl.set_index("layer")
for l in deep:
    f_ = s_ssl.loc[l, "frac_unitmem_gt_classmem"]
    report.claim(f"SSL, layer {l}: most units have UnitMem > ClassMem", f_ > 0.5,
                 f"{f_:.1%} of {int(s_ssl.loc[l, 'units_live'])} live units")
def cm_gt(t):  # the fraction of scored (live) units with ClassMem > UnitMem
    t = live_units(t)
    return float((t.classmem > t.unitmem).mean())


report.claim("the supervised encoder has a larger fraction of units with ClassMem > UnitMem than the SSL encoder",
             cm_gt(sup_table) > cm_gt(ssl_table),
             f"supervised {cm_gt(sup_table):.1%} vs SSL {cm_gt(ssl_table):.1%} (all layers)")
s_sup = summ_sup.set_index("layer")
report.claim("class memorisation is higher in the supervised encoder's deepest layers (mean ClassMem)",
             all(s_sup.loc[l, "mean_classmem"] > s_ssl.loc[l, "mean_classmem"] for l in deep),
             "; ".join(f"{l}: supervised {s_sup.loc[l, 'mean_classmem']:.3f} vs SSL {s_ssl.loc[l, 'mean_classmem']:.3f}"
                       for l in deep))
if len(dyn) > 1:
    report.claim(f"mean UnitMem of {dyn_layer} grows during training (last snapshot > first)",
                 dyn["mean UnitMem"].iloc[-1] > dyn["mean UnitMem"].iloc[0],
                 f"epoch {dyn.epoch.iloc[0]}: {dyn['mean UnitMem'].iloc[0]:.4f} -> epoch {dyn.epoch.iloc[-1]}: "
                 f"{dyn['mean UnitMem'].iloc[-1]:.4f}")
pr = prune[prune.fraction > 0].groupby(["dataset", "strategy"]).accuracy.mean().unstack()
report.claim("pruning the highest-UnitMem units costs more probe accuracy than pruning random units (mean over "
             "fractions), on every dataset", bool((pr["highest"] < pr["random"]).all()),
             "; ".join(f"{k}: highest {r['highest']:.4f}, lowest {r['lowest']:.4f}, random {r['random']:.4f}"
                       for k, r in pr.iterrows()))
lt = link.set_index("layer")
report.claim(f"the units the top-{top_k} SSLMem points activate maximally have higher UnitMem than those of the "
             f"least-{top_k}, in most layers (Welch p < {alpha})", (lt["p"] < alpha).sum() > len(layers) / 2,
             f"{int((lt['p'] < alpha).sum())}/{len(layers)} layers significant; {layers[-1]}: "
             f"{lt['units_top'].iloc[-1]} vs {lt['units_least'].iloc[-1]} units, mean UnitMem "
             f"{lt['mean_top'].iloc[-1]:.4f} vs {lt['mean_least'].iloc[-1]:.4f}")
if dp_rows:
    last_dp = dp_df[dp_df.layer == layers[-1]].set_index("epsilon")["mean UnitMem"]
    report.claim("DP-SGD (every epsilon tried) lowers the mean UnitMem of the last layer below the non-private encoder",
                 all(last_dp[f"{e:g}"] < last_dp["inf"] for e in dp_epsilons),
                 ", ".join(f"eps={k}: {v:.4f}" for k, v in last_dp.items()))
report.claims_table()

# %% [markdown]
# ## Closing note

# %%
print(f"profile {profile} | {pair.dataset} | {pair.method}/{pair.arch} x{pair.width}, {pair.epochs} epochs | |D|={len(D)}, K={unit_views} "
      f"| device {dev} | wall time {time.time() - T0:.0f}s")
report.print_claims()
