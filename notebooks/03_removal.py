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
# # Does memorisation help? Removal, limited alignment and differential privacy
#
# *Wang et al., "Memorization in Self-Supervised Learning Improves Downstream Generalization", ICLR 2024*,
# section 4.3-4.6 (`shared/docs/methods.md` section 2: Fig. 3, 6, 7; Eq. 3 / Fig. 4; Table 5).
#
# Notebook 02 measures *which* points an SSL encoder memorises with SSLMem,
# $m(x) = \mathbb{E}_g L_{align}(g, x) - \mathbb{E}_f L_{align}(f, x)$. This notebook asks whether that
# memorisation is useful, in three ways:
#
# 1. **Removal (Fig. 3; Fig. 6/7 for other pre-training datasets).** f and g train on *disjoint* halves of
#    the data, so every training point of f is scored. The k most memorised points -- or k random points --
#    are removed from f's data and the encoder is retrained from scratch with the same settings and seeds.
#    If memorised points carry more useful information than average ones, removing them costs more linear
#    probe accuracy, on the pre-training distribution and on other downstream datasets.
# 2. **Limiting alignment (Eq. 3, Fig. 4).** Training with
#    $L_{total} = (1 - \lambda) L_{SSL} - \lambda\, \mathbb{E}_{x', x''} d(h(x'), h(x''))$ pushes the views of
#    every point apart on the representation itself. Larger $\lambda$: less alignment, hence less
#    memorisation -- and, says the paper, lower probe accuracy.
# 3. **Differential privacy (Table 5).** DP-SGD bounds the influence of any single point, so it should
#    lower SSLMem, at a cost in accuracy.
#
# Every encoder of the notebook is one entry of a *plan* with a single progress bar (encoders done /
# total). Each is a cache entry, so a killed run resumes at the first unfinished encoder (and inside it at
# its last finished epoch), and a rerun is served from the cache.

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/03_removal.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto", "cpu", "cuda", ...
executor: str = "auto"          # where the training jobs run: "auto", "inline", "local" (one worker per CPU core or
                                # GPU) or "slurm" (submitit); the environment variable MEMLAB_EXECUTOR overrides it
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, cpus_per_task, mem_gb,
                                # array_parallelism, sbatch (a dict of extra #SBATCH options)
# -- pre-training data (Fig. 3: cifar10; Fig. 6: stl10; Fig. 7: cifar100 -- any memlab dataset)
dataset: str = "cifar10"        # pre-training data (Fig. 3: cifar10; Fig. 6: stl10; Fig. 7: cifar100)
pretrain_split: str = "train"   # split f and g train on: "train", or "unlabeled" (STL-10's 100k images, Fig. 6)
synthetic_n_train: int = 3000   # sizes of the generated splits when a dataset is "synthetic"
synthetic_n_test: int = 1000    # test-split size of the generated data when dataset is "synthetic"
atypical_frac: float = 0.05     # synthetic data: fraction of planted atypical points
n_half: int = 1000              # points of f's half and of g's (disjoint; paper: 25000 each)
split_seed: int = 0             # seed of the disjoint splits S_S, S_C, S_I, S_E
download: bool = True           # let torchvision download a missing dataset (False: fall back to synthetic at once)
# -- the SSL encoders
method: str = "simclr"          # SSL objective of f, g and the retrained encoders
arch: str = "resnet9"           # encoder architecture (memlab.models.networks)
width: float = 0.25             # width multiplier of the ResNet encoders
objective_kw: dict = {}         # extra objective options (e.g. MAE mask ratio)
epochs: int = 40                # training epochs of f, g and the retrained encoders
batch_size: int = 256           # training batch size
optimizer: str = "sgd"          # "sgd", "adam", "adamw" or "lars"
lr: float = 0.06                # base learning rate (cosine schedule)
weight_decay: float = 5e-4      # weight decay of the optimizer
temperature: float = 0.5        # NT-Xent temperature
seeds: list = [0, 1]            # f, g and every retrained encoder, once per seed (error bars)
view_pairs: int = 5             # K view pairs per point for SSLMem (paper: 5)
representation: str = "flat"    # "flat" (full output) or "pooled"
# -- removal (Fig. 3)
removal_ks: list = [300, 500]   # paper: 500, 1k, 2k, 4k, 8k, 16k of 25k
removal_seed: int = 0           # random removal with seed removal_seed + training seed
downstream: list = ["cifar10", "fashion_mnist"]  # linear-probe datasets
synthetic_fallback: bool = False  # True: synthetic data stands in for an unavailable downstream / lambda dataset
probe_train: int = 2000         # training images of the linear probe
probe_test: int = 1000          # test images of the linear probe
probe_iters: int = 200          # L-BFGS iterations of the linear probe
# -- limiting alignment (Eq. 3, Fig. 4)
lambdas: list = [0.0, 0.1, 0.3, 0.5]  # alignment weights lambda of Eq. 3 (0: plain SSL)
lambda_datasets: list = ["cifar10", "fashion_mnist"]  # datasets of the lambda sweep
lambda_n_half: int = 250        # fewer points for more epochs per point: stronger memorisation per CPU-minute
lambda_epochs: int = 30         # training epochs of the lambda sweep's encoders
lambda_seeds: list = [0]        # seeds of the lambda sweep's f and g
# -- differential privacy (Table 5): DP-SGD, SimSiam, GroupNorm ResNet; needs opacus
dp_epsilons: list = [20.0, 8.0]  # plus the non-private reference, epsilon inf
dp_epochs: int = 5              # 0: skip
dp_points: int = 500            # points of f's and of g's half used by the DP encoders
dp_arch: str = "resnet9"        # encoder of the DP runs (GroupNorm variant)
dp_width: float = 0.25          # width multiplier of the DP encoder
dp_lr: float = 0.05             # learning rate of DP-SGD
dp_batch_size: int = 256        # DP-SGD's logical (expected Poisson) batch; the SSL encoders keep batch_size
dp_physical_batch: int = 0      # images per per-image-gradient pass (opacus BatchMemoryManager); 0: the whole batch
dp_max_grad_norm: float = 1.0   # per-example gradient clipping norm C of DP-SGD
force: bool = False             # recompute cached results instead of reusing them

# %%
import math
import time
from dataclasses import replace

import pandas as pd
import torch
from IPython.display import display

from memlab.engine import executors
from memlab.io import plots
from memlab.augmentation.augment import ViewBank
from memlab.io.cache import Cache
from memlab.data.datasets import DATASETS, UNLABELED, DatasetNotFound, load_dataset, stand_in
from memlab.models.networks import MODELS
from memlab.objectives.losses import OBJECTIVES
from memlab.io.params import ParameterError, check_injected, choice
from memlab.engine.dp import dp_job, load_dp
from memlab.engine.jobs import Plan
from memlab.experiments.removal import (check_ks, disjoint_halves, dp_unavailable, f_scores, lambda_config, mean_sd, pair_scores,
                            probe_accuracy, removal_gap, removal_set, retained, ssl_job)
from memlab.io.report import Report
from memlab.data.splits import balanced_subset
from memlab.streams import SplitSeed
from memlab.metrics.sslmem import encoder_config
from memlab.engine.train import TrainConfig, load_encoder, resolve_device, training_cost

check_injected()
choice("dataset", dataset, DATASETS)
choice("pretrain_split", pretrain_split, ["train", "unlabeled"])
if pretrain_split == "unlabeled" and dataset not in UNLABELED:
    raise ParameterError(f"pretrain_split 'unlabeled' needs a dataset with an unlabeled split ({list(UNLABELED)}); "
                         f"dataset is {dataset!r}: use pretrain_split 'train'")
choice("method", method, OBJECTIVES)
choice("arch", arch, MODELS)
choice("dp_arch", dp_arch, [a for a in MODELS if a.startswith("resnet")])
choice("representation", representation, ["flat", "pooled"])
for name in list(downstream) + list(lambda_datasets):
    choice("downstream / lambda_datasets entry", name, DATASETS)
if len(set(downstream)) != len(downstream) or len(set(lambda_datasets)) != len(lambda_datasets):
    raise ParameterError("downstream and lambda_datasets must not repeat a dataset")
if not seeds or not lambda_seeds or not downstream or not lambdas or not lambda_datasets:
    raise ParameterError("seeds, lambda_seeds, downstream, lambdas and lambda_datasets must not be empty")
if any(not 0 <= lam < 1 for lam in lambdas) or len(set(lambdas)) != len(lambdas):
    raise ParameterError(f"lambdas must be distinct values in [0, 1), got {lambdas}")
if any(not e > 0 for e in dp_epsilons):
    raise ParameterError(f"dp_epsilons must be positive (the non-private reference is added), got {dp_epsilons}")
removal_ks = check_ks(removal_ks, n_half)          # every k < the scored pool of f: before any compute
if dp_points > n_half:
    raise ParameterError(f"dp_points = {dp_points} exceeds n_half = {n_half}")
dev = resolve_device(device)
executors.make(executor, device=dev, workers=workers or None, slurm=slurm)
T0 = time.time()
report = Report(output_dir, "03_removal", profile, dataset)
cache = Cache()

# Data first: a missing pre-training dataset fails here; a missing downstream dataset falls back to synthetic.
_loaded = {}


def load(name, fallback_seed=0):
    """(train, test, shown name) of a dataset; synthetic stands in for one that is unavailable."""
    if name not in _loaded:
        if name == "synthetic":
            kw = dict(seed=split_seed + fallback_seed, atypical_frac=atypical_frac)
            _loaded[name] = (load_dataset(name, "train", n=synthetic_n_train, **kw),
                             load_dataset(name, "test", n=synthetic_n_test, **kw), name)
        else:
            try:
                _loaded[name] = (load_dataset(name, "train", download=download),
                                 load_dataset(name, "test", download=download), name)
            except DatasetNotFound as e:
                if name == dataset:
                    raise
                stand_in(e, name, synthetic_fallback)
                kw = dict(seed=split_seed + SplitSeed.SYNTHETIC_STAND_IN * (fallback_seed + 1), atypical_frac=atypical_frac)
                _loaded[name] = (load_dataset("synthetic", "train", n=synthetic_n_train, **kw),
                                 load_dataset("synthetic", "test", n=synthetic_n_test, **kw),
                                 f"synthetic (for {name})")
    return _loaded[name]


train_data, test_data, _ = load(dataset)
if pretrain_split != "train":  # f and g pre-train on another split; the probes keep the labelled splits
    train_data = load_dataset(dataset, pretrain_split, download=download)
f_pool, g_pool = disjoint_halves(train_data.labels, n_half, split_seed)


def task(name, i):
    """Linear-probe task: class-balanced probe_train / probe_test images of a dataset's train / test split."""
    tr, te, shown = load(name, i)
    a = balanced_subset(tr.labels.numpy(), min(probe_train, len(tr)), split_seed + SplitSeed.PROBE_TRAIN)
    b = balanced_subset(te.labels.numpy(), min(probe_test, len(te)), split_seed + SplitSeed.REMOVAL_PROBE_TEST)
    return shown, (tr.images[a], tr.labels[a], te.images[b], te.labels[b])


tasks = dict(task(name, i) for i, name in enumerate(downstream))
lam_data = {}
for i, name in enumerate(lambda_datasets):
    tr, te, shown = load(name, i)
    lam_data[shown] = (tr, *disjoint_halves(tr.labels, lambda_n_half, split_seed), task(name, i)[1])
dp_msg = dp_unavailable() if dp_epochs > 0 else "DP section off (dp_epochs = 0 in this profile)."
dp_eps_all = ([math.inf] + list(dp_epsilons)) if dp_msg is None else []
if dp_msg:
    print(dp_msg)
print(f"device {dev} | pre-training {dataset}: halves of {n_half} | downstream: {list(tasks)} | "
      f"lambda sweep on {list(lam_data)}")
mean, std = train_data.stats()
cfg = encoder_config(arch=arch, width=width, method=method, temperature=temperature, epochs=epochs,
                     batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay, mean=mean, std=std,
                     objective_kw=objective_kw)
if dp_eps_all:
    dp_cfg = TrainConfig(model=dp_arch, model_kw={"width": dp_width, "norm": "group"}, objective="simsiam",
                         objective_kw={"norm": "layer"}, epochs=dp_epochs, batch_size=dp_batch_size, lr=dp_lr,
                         weight_decay=0.0, mean=mean, std=std, seed=seeds[0])
    fd = f_pool[balanced_subset(train_data.labels[f_pool].numpy(), dp_points, split_seed + SplitSeed.DP_POINTS)]
    gd = g_pool[balanced_subset(train_data.labels[g_pool].numpy(), dp_points, split_seed + SplitSeed.DP_POINTS)]

# %% [markdown]
# ## The plan
# Every encoder of the three experiments is a job keyed by the cache, listed with its cost before anything
# trains: f and g per seed, f and g per lambda, dataset and seed, and the DP pairs. The retrained encoders
# depend on the SSLMem scores of f, so they are declared now (with their cost) and filled in once f and g
# are scored. The executor trains each stage; a killed run resumes, and a rerun finds everything cached.

# %%
plan = Plan("03_removal", cache=cache, device=dev)
f_jobs = [plan.add(ssl_job(f"f seed {s}", replace(cfg, seed=s), train_data, f_pool, cache=cache, force=force))
          for s in seeds]
g_jobs = [plan.add(ssl_job(f"g seed {s}", replace(cfg, seed=s), train_data, g_pool, cache=cache, force=force))
          for s in seeds]
for k in removal_ks:
    for strategy in ("memorised", "random"):
        for s in seeds:
            plan.defer(f"remove {k} {strategy} seed {s}", "encoder", training_cost(cfg, len(f_pool) - k),
                       stand_in=lambda k=k, s=s: ssl_job(f"remove {k} seed {s} (stand-in)", replace(cfg, seed=s),
                                                         train_data, f_pool[k:], cache=cache))  # for a dry run
lam_jobs = {}
for dname, (dtr, fp, gp, _) in lam_data.items():
    m_, s_ = dtr.stats()
    base = replace(cfg, epochs=lambda_epochs, mean=m_, std=s_)
    for lam in lambdas:
        for s in lambda_seeds:
            c = replace(lambda_config(base, lam), seed=s)
            lam_jobs[dname, lam, s] = [plan.add(ssl_job(f"lambda {lam} {dname} {w} seed {s}", c, dtr, idx, cache=cache,
                                                        force=force)) for w, idx in (("f", fp), ("g", gp))]
dp_jobs = {}
for eps in dp_eps_all:
    for w, idx in (("f", fd), ("g", gd)):
        dp_jobs[eps, w] = plan.add(
            ssl_job(f"DP eps=inf {w}", dp_cfg, train_data, idx, cache=cache, force=force) if math.isinf(eps) else
            dp_job(dp_cfg, train_data.images[idx], idx, epsilon=eps, cache=cache,
                   data_id=f"{train_data.name}/{train_data.split}", max_grad_norm=dp_max_grad_norm,
                   physical_batch=dp_physical_batch or None, name=f"DP eps={eps:g} {w}", force=force))
status = plan.run(executor, workers=workers or None, slurm=slurm)


def loaded(job):
    """A job's encoder from the cache (DP jobs with their privacy accounting)."""
    return (load_dp if job.kind == "dp_encoder" else load_encoder)(job, cache, dev,
                                                                  from_cache=status[job.name] == "cached")


def bank_for(trained):
    """K fixed view pairs of the encoder's own training augmentation (the same views for f and g)."""
    aug = trained.measuring()
    return ViewBank(aug, 2 * view_pairs, seed=split_seed)


# %% [markdown]
# ## 1. Removal (Fig. 3)
# f trains on one half, g on the other; SSLMem scores all of f's points (f and g averaged over the seeds).
# The k highest-scoring points -- or k random points (a different draw per seed) -- are removed and the
# encoder is retrained with the same recipe and seed. k = 0 is f itself. Probe accuracy is a linear probe
# on the pooled representation, fitted on each downstream dataset's own labelled images.

# %%
fs, gs = [loaded(j) for j in f_jobs], [loaded(j) for j in g_jobs]
sc = f_scores(cache, fs, gs, train_data, f_pool, bank_for(fs[0]), n_pairs=view_pairs, rep=representation, device=dev,
              force=force)
m = sc["m"]
print(f"SSLMem of f's {len(f_pool)} points: mean {m.mean():.3f} (raw {sc['raw'].mean():.4f}), "
      f"{(m > 0).float().mean():.0%} positive")
fig = plots.subset_distributions({"f's training points": m},
                                 "SSLMem of f's training points (f and g on disjoint halves)",
                                 report.caption(f"{method}/{arch}, {len(seeds)} seed(s), K={view_pairs}"))
report.figure(fig, "sslmem_f_points")

rows, removed_info, retrain = [], [], {}
for s, f in zip(seeds, fs):  # k = 0: f itself, the start of both curves
    acc = probe_accuracy(cache, f, tasks, device=dev, max_iter=probe_iters, force=force)
    rows += [{"k": 0, "strategy": strategy, "seed": s, "downstream": d, "accuracy": a}
             for strategy in ("memorised", "random") for d, a in acc.items()]
for k in removal_ks:  # the second stage of the plan: retrain without the removed points
    for strategy in ("memorised", "random"):
        for s in seeds:
            out = removal_set(f_pool, m, k, strategy, seed=removal_seed + s)
            pos = torch.isin(f_pool, out)
            removed_info.append({"k": k, "strategy": strategy, "seed": s, "mean SSLMem removed": float(m[pos].mean()),
                                 **({"planted atypical removed": int(torch.isin(out, train_data.atypical).sum())}
                                    if train_data.atypical is not None else {})})
            retrain[k, strategy, s] = plan.add(ssl_job(f"remove {k} {strategy} seed {s}", replace(cfg, seed=s),
                                                       train_data, retained(f_pool, out), cache=cache, force=force))
status = plan.run(executor, workers=workers or None, slurm=slurm)
for (k, strategy, s), job in retrain.items():
    acc = probe_accuracy(cache, loaded(job), tasks, device=dev, max_iter=probe_iters, force=force)
    rows += [{"k": k, "strategy": strategy, "seed": s, "downstream": d, "accuracy": a} for d, a in acc.items()]
removal = pd.DataFrame(rows)
report.table(removal, "removal_accuracy")
report.table(pd.DataFrame(removed_info), "removed_points")
display(pd.DataFrame(removed_info).groupby(["k", "strategy"]).mean(numeric_only=True).drop(columns="seed").round(3))
rsum = mean_sd(removal, ["downstream", "strategy", "k"], "accuracy")
report.table(rsum, "removal_summary")
display(rsum.pivot_table(index="k", columns=["downstream", "strategy"], values="mean").round(4))
fig = plots.errorbar_panels(rsum, "k", "mean", "std", "strategy", "downstream", "Probe accuracy after removal",
                            "points removed from f's training data (k)", "linear probe accuracy",
                            report.caption(f"pre-trained on {dataset} ({n_half} points), {method}/{arch}, "
                                           f"mean +- sd over {len(seeds)} seed(s)"),
                            styles={"memorised": {"color": "#d62728"}, "random": {"color": "#1f77b4", "ls": "--"}})
report.figure(fig, "removal_accuracy")

# %% [markdown]
# ## 2. Limiting alignment (Eq. 3, Fig. 4)
# For each dataset and $\lambda$, f and g (disjoint halves) are trained with the regulariser. $\lambda = 0$
# is the plain objective. Every training point of the pair is scored against the encoder that did not see
# it (f's half against g, g's half against f; `removal.pair_scores`): two encoders trained on different
# data differ in how tightly they align *every* image, and on f's half alone that constant gap reads as
# memorisation of either sign. Over both halves it cancels; the table keeps it as `f-g offset`. SSLMem is
# normalised per run (appendix A); the raw mean is kept too.

# %%
lrows = []
for dname, (dtr, fp, gp, dtask) in lam_data.items():
    for lam in lambdas:
        for s in lambda_seeds:
            f, g = (loaded(j) for j in lam_jobs[dname, lam, s])
            sc_l = pair_scores(cache, [f], [g], dtr, fp, gp, bank_for(f), n_pairs=view_pairs, rep=representation,
                               device=dev, force=force)
            acc = probe_accuracy(cache, f, {dname: dtask}, device=dev, max_iter=probe_iters, force=force)[dname]
            lrows.append({"dataset": dname, "lambda": lam, "seed": s, "mean SSLMem": float(sc_l["m"].mean()),
                          "mean raw SSLMem": float(sc_l["raw"].mean()), "f-g offset": sc_l["offset"],
                          "accuracy": acc})
lam_df = pd.DataFrame(lrows)
report.table(lam_df, "lambda_sweep")
lsum = pd.concat([mean_sd(lam_df, ["dataset", "lambda"], v).assign(metric=v)
                  for v in ("mean SSLMem", "accuracy")])
report.table(lsum, "lambda_summary")
display(lsum.pivot_table(index="lambda", columns=["metric", "dataset"], values="mean").round(4))
fig = plots.errorbar_panels(lsum, "lambda", "mean", "std", "dataset", "metric", "Limiting alignment (Eq. 3)",
                            "lambda", "mean SSLMem / probe accuracy",
                            report.caption(f"{method}/{arch}, halves of {lambda_n_half}, {lambda_epochs} epochs, "
                                           f"mean +- sd over {len(lambda_seeds)} seed(s)"))
fig.axes[0].set_ylabel("mean SSLMem (normalised)")
fig.axes[1].set_ylabel("linear probe accuracy")
report.figure(fig, "lambda_sweep")

# %% [markdown]
# ## 3. Differential privacy (Table 5)
# Contrastive losses couple the images of a batch, so per-example clipping does not bound one image's
# influence; the DP encoders use SimSiam (a per-image loss) on a GroupNorm ResNet, trained with DP-SGD
# (opacus's optimizer and RDP accountant, delta = 1/n). The epsilon = inf row is the same recipe without
# clipping or noise. f and g train on `dp_points` points of their halves; SSLMem scores both halves, each
# against the other encoder, as in the lambda sweep.

# %%
dp_rows = []
if dp_eps_all:
    for eps in dp_eps_all:
        f, g = loaded(dp_jobs[eps, "f"]), loaded(dp_jobs[eps, "g"])
        spent = math.inf if math.isinf(eps) else f.dp["epsilon"]
        sc_d = pair_scores(cache, [f], [g], train_data, fd, gd, bank_for(f), n_pairs=view_pairs,
                           rep=representation, device=dev, force=force)
        acc = probe_accuracy(cache, f, tasks, device=dev, max_iter=probe_iters, force=force)
        dp_rows.append({"epsilon": eps, "epsilon spent (f)": spent, "mean SSLMem": float(sc_d["m"].mean()),
                        "mean raw SSLMem": float(sc_d["raw"].mean()), "f-g offset": sc_d["offset"],
                        **{f"acc {k}": v for k, v in acc.items()}})
    dp_df = pd.DataFrame(dp_rows)
    report.table(dp_df, "dp_table5")
    display(dp_df.round(4))
    fig = plots.bars({f"eps={e:g}": v for e, v in zip(dp_df.epsilon, dp_df["mean raw SSLMem"])},
                     "Raw SSLMem under DP-SGD (Table 5)", "mean raw SSLMem of f's points",
                     report.caption(f"SimSiam, GroupNorm {dp_arch} x{dp_width}, {dp_points} points, "
                                    f"{dp_epochs} epochs"))
    report.figure(fig, "dp_sslmem")
report.table(plan.table(), "plan")
print(f"plan: {len(plan.jobs)} encoders, {sum(v == 'trained' for v in status.values())} trained by the last stage")

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
gap = removal_gap(removal).set_index("downstream")
c_removal = report.claim(
    "averaged over k, removing the most memorised points costs more probe accuracy than removing random ones, "
    "on every downstream dataset", bool((gap["gap"] > 0).all()),
    "; ".join(f"{d}: memorised {r['memorised']:.4f} vs random {r['random']:.4f} (gap {r['gap']:+.4f})"
              for d, r in gap.iterrows()))
lm = lam_df.groupby(["dataset", "lambda"])[["mean SSLMem", "mean raw SSLMem", "accuracy"]].mean()
lo, hi = min(lambdas), max(lambdas)
c_lambda = report.claim(
    f"the larger lambda gives the lower SSLMem (lambda = {hi:g} vs {lo:g}), on every dataset of the sweep",
    all(lm.loc[(d, hi), "mean SSLMem"] < lm.loc[(d, lo), "mean SSLMem"] for d in lam_data),
    "; ".join(f"{d}: " + ", ".join(f"lambda={v:g}: {lm.loc[(d, v), 'mean SSLMem']:.4f} "
                                   f"(raw {lm.loc[(d, v), 'mean raw SSLMem']:.4f})" for v in lambdas)
              for d in lam_data))
report.claim(f"limiting alignment costs probe accuracy (lambda = {hi:g} vs {lo:g}), on every dataset of the sweep",
             all(lm.loc[(d, hi), "accuracy"] < lm.loc[(d, lo), "accuracy"] for d in lam_data),
             "; ".join(f"{d}: " + ", ".join(f"lambda={l:g}: {lm.loc[(d, l), 'accuracy']:.4f}" for l in lambdas)
                       for d in lam_data))
report.claim("removal and limiting alignment both support 'memorisation helps' (the two claims above)",
             c_removal and c_lambda)
if dp_rows:
    mono = lambda v: all(a > b for a, b in zip(v, v[1:]))  # noqa: E731  (epsilon falls along the rows)
    first = next(iter(tasks))
    report.claim("DP-SGD lowers SSLMem as epsilon falls (inf > " + " > ".join(f"{e:g}" for e in dp_epsilons) + ")",
                 mono(list(dp_df["mean SSLMem"])),
                 ", ".join(f"eps={e:g}: {v:.4f} (raw {r:.4f})" for e, v, r in
                           zip(dp_df.epsilon, dp_df["mean SSLMem"], dp_df["mean raw SSLMem"])))
    report.claim(f"DP-SGD lowers probe accuracy on {first} as epsilon falls", mono(list(dp_df[f"acc {first}"])),
                 ", ".join(f"eps={e:g}: {v:.4f}" for e, v in zip(dp_df.epsilon, dp_df[f"acc {first}"])))
report.claims_table()

# %% [markdown]
# ## Closing note
# At laptop scale the encoders are small and briefly trained, so the differences are a few points of accuracy
# at most; the error bars over seeds show whether a gap is larger than the seed-to-seed spread. The paper's
# sizes are in the `paper` profile (a GPU is needed).

# %%
print(f"profile {profile} | pre-training {dataset} | {method}/{arch}, {epochs} epochs | halves of {n_half} | "
      f"k = {removal_ks} | device {dev} | wall time {time.time() - T0:.0f}s")
report.print_claims()
