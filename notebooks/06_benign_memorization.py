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
# # Benign memorization: random labels plus data augmentation still teach useful features
#
# *Anagnostidis, Bachmann, Noci, Hofmann, "The Curious Case of Benign Memorization", ICLR 2023*
# (`shared/docs/methods.md` section 5).
#
# A network f = g ∘ h (encoder h, projector g = Linear → ReLU → Linear) is trained on **random labels**:
# each image gets a label drawn once, kept by every augmentation of it. Without data augmentation (DA)
# the network memorises the labels and its features get worse than at initialisation. With DA it *also*
# fits the random labels, but the encoder's features become *better* than at initialisation:
#
# > **Definition 4.1.** An encoder-projector pair that perfectly fits the random labels is a *benign*
# > memorisation if probing its encoder beats probing at initialisation, and a *malign* one otherwise.
#
# Probes: K-NN with K = 20 on L2-normalised embeddings, the clean training set with its **true** labels
# as memory, evaluated on the test set (and linear probes, appendix A). The explanation of the paper: DA
# inflates the effective sample size beyond the network's capacity (section 5.1), so the cheapest way to
# fit is to become invariant to the augmentations (section 5.2), and invariance makes features cluster.
#
# Sections: Table 2 (with the verdicts) and appendix A · Fig. 3 per-layer probes · Fig. 6 invariance over
# training · Fig. 5 capacity · Table 4 i.i.d. "augmentations" · Figs. 7, 8, 12, 11, 9 sweeps ·
# appendix E toy model · appendix B (MSE = Inv + Bias).

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/06_benign_memorization.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto", "cpu", "cuda", ...
executor: str = "auto"          # where the training jobs run: "auto", "inline", "local" (one worker per CPU core or
                                # GPU) or "slurm" (submitit); the environment variable MEMLAB_EXECUTOR overrides it
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, cpus_per_task, mem_gb,
                                # array_parallelism, sbatch (a dict of extra #SBATCH options)
threads: int = 0                # torch CPU threads (0: the torch default; 1 is faster on a busy shared machine)
dataset: str = "cifar10"        # any memlab dataset; "synthetic" works offline
synthetic_n_train: int = 3000   # sizes of the generated splits for the synthetic dataset
synthetic_n_test: int = 1000    # test-split size of the generated data when dataset is "synthetic"
n_train: int = 1000             # training images (class-balanced); also the K-NN memory bank (clean labels)
n_test: int = 1000              # test images of the probes
data_seed: int = 0              # seed of the class-balanced subsets
# -- network and training (Table 2)
arch: str = "resnet9"           # encoder (memlab.models.networks); paper: resnet18
width: float = 0.25             # width multiplier of resnet encoders
hidden: int = 512               # projector hidden width
num_classes: int = 10           # random classes C
loss: str = "ce"                # "ce" or "mse" on one-hot targets
mixup: float = 0.0              # Beta(a, a) mixup on the DA runs (0: off; strongest runs of the paper: 1.0)
optimizer: str = "adam"         # "adam" or "sgd"
lr: float = 1e-3                # learning rate
weight_decay: float = 0.0       # weight decay
batch_size: int = 128           # training batch size
micro_batch: int = 0            # images per forward/backward pass, gradients accumulated (0: the whole batch)
seed: int = 0                   # training seed
fit_target: float = 1.0         # "fitted": this training accuracy on the unaugmented set (Definition 4.1: 1.0)
eval_every: int = 5             # epochs between fit checks (training stops once fitted)
epochs_noaug: int = 60          # budget: random labels without DA (stops when fitted)
epochs_aug: int = 250           # budget: random labels with DA
epochs_clean: int = 30          # budget: clean labels with DA
probe_every: int = 10           # K-NN and invariance of the DA run recorded every ... epochs
knn_k: int = 20                 # k of the K-NN probe
# -- Fig. 3 (per-layer probes) and Fig. 6 (invariance)
layer_probe_train: int = 1000   # training images probed per layer (clean K-NN memory; random-label K-NN)
layer_probe_test: int = 1000    # test images probed per layer
inv_images: int = 100           # images for I(x; q, T)
inv_pairs: int = 2              # augmentation pairs per image
# -- Fig. 5 (capacity): B fixed augmentations per image, fixed step budget
cap_n: int = 100                # Fig. 5: images of the capacity runs
cap_B: list = [1, 4, 16]        # Fig. 5: fixed augmentations per image
cap_steps: int = 100            # Fig. 5: gradient steps per run
# -- Table 4: i.i.d. "augmentations"
iid_s: int = 100                # anchor images
iid_B: int = 10                 # same-class real examples per anchor (the anchor included)
iid_steps: int = 100            # Table 4: gradient steps
# -- sweeps (short budgets on sweep_n images, random labels with DA unless stated)
sweep_n: int = 400              # images of the sweep runs
sweep_epochs: int = 20          # epochs of each sweep run
sweep_widths: list = [64, 512, 2048]  # Fig. 7: projector hidden width
sweep_classes: list = [10, 100, "per_sample"]  # Fig. 8: number of random classes
sweep_noise: list = [0.0, 0.5, 1.0]  # Fig. 12: label-noise fraction, with and without DA
sweep_magnitudes: list = [1, 9, 17]  # Fig. 11: RandAugment magnitude (2 ops)
# -- Fig. 9: transfer to a second dataset
second_dataset: str = "fashion_mnist"  # Fig. 9: dataset the features transfer to
second_n_train: int = 1000      # Fig. 9: training images of the second dataset
second_n_test: int = 1000       # Fig. 9: test images of the second dataset
# -- appendix E toy model
toy_n: list = [25, 100, 400]    # toy model: training-set sizes
toy_B: list = [1, 5, 20, 50]    # toy model: augmentations per point
toy_d: int = 20                 # toy model: input dimension
toy_d1: int = 2                 # toy model: dimension of the informative subspace
toy_classes: int = 5            # toy model: classes
toy_K: int = 10                 # toy model: hidden width
toy_sigma: float = 1.0          # toy model: augmentation noise scale
toy_steps: int = 300            # toy model: gradient steps
# -- appendix B
mse_images: int = 64            # appendix B: images of the MSE run
mse_views: int = 8              # appendix B: views per image
force: bool = False             # recompute cached runs

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from memlab.engine import executors
from memlab.io import plots
from memlab.metrics.benign import (BenignConfig, Monitor, benign_job, build_net, extract_layers, fixed_views_set, iid_set,
                           knn_noise, load_benign, make_aug, make_labels, mse_decomposition, plain_set, verdict)
from memlab.io.cache import Cache
from memlab.data.datasets import DATASETS, load_dataset
from memlab.engine.jobs import Plan
from memlab.models.networks import MODELS
from memlab.io.params import ParameterError, check_injected, choice
from memlab.metrics.probes import knn_accuracy, knn_loo_accuracy, linear_probe
from memlab.io.report import Report
from memlab.data.splits import balanced_subset
from memlab.streams import BenignSeed
from memlab.experiments.toy import ToyConfig
from memlab.experiments.toy import grid as toy_grid
from memlab.engine.train import resolve_device

# Reject bad parameters before any compute.
check_injected()
choice("dataset", dataset, DATASETS)
choice("second_dataset", second_dataset, DATASETS)
choice("arch", arch, MODELS)
choice("loss", loss, ["ce", "mse"])
choice("optimizer", optimizer, ["adam", "sgd"])
for name, vals in {"cap_B": cap_B, "sweep_widths": sweep_widths, "toy_n": toy_n, "toy_B": toy_B}.items():
    if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
        raise ParameterError(f"{name} must be a non-empty list of positive ints, got {vals!r}")
if not sweep_noise or any(not 0 <= v <= 1 for v in sweep_noise):
    raise ParameterError(f"sweep_noise must list fractions in [0, 1], got {sweep_noise!r}")
if not sweep_magnitudes or any(not isinstance(v, int) or not 0 <= v <= 30 for v in sweep_magnitudes):
    raise ParameterError(f"sweep_magnitudes must list ints in 0..30, got {sweep_magnitudes!r}")
if not sweep_classes or any(c != "per_sample" and not (isinstance(c, int) and c >= 2) for c in sweep_classes):
    raise ParameterError(f"sweep_classes must list ints >= 2 or 'per_sample', got {sweep_classes!r}")
if iid_B < 2 or fit_target > 1 or max(sweep_n, cap_n, iid_s, layer_probe_train) > n_train:
    raise ParameterError("need iid_B >= 2, fit_target <= 1 and sweep_n, cap_n, iid_s, layer_probe_train <= n_train")
if threads < 0:
    raise ParameterError(f"threads must be >= 0, got {threads}")
if threads:
    torch.set_num_threads(threads)
dev = resolve_device(device)
executors.make(executor, device=dev, workers=workers or None, slurm=slurm)
T0 = time.time()
report = Report(output_dir, "06_benign_memorization", profile, dataset)
cache = Cache()
model_kw = {"width": width} if arch.startswith("resnet") else {}
print(f"device: {dev} | CPU threads: {torch.get_num_threads()} | cache: {cache.root}")

# %% [markdown]
# ## Data
# `n_train` class-balanced training images: they are trained on, and with their clean labels they are the
# K-NN memory bank. The rest of the training split supplies the i.i.d. examples of Table 4.

# %%
kw = dict(n=synthetic_n_train) if dataset == "synthetic" else {}
train_full = load_dataset(dataset, "train", **kw)
test_full = load_dataset(dataset, "test", **(dict(n=synthetic_n_test) if dataset == "synthetic" else {}))
main_idx = balanced_subset(train_full.labels.numpy(), n_train, data_seed)
train = train_full.subset(main_idx)
test = test_full.subset(balanced_subset(test_full.labels.numpy(), min(n_test, len(test_full)), data_seed + BenignSeed.TEST))
C_true = train_full.num_classes
mean, std = train.stats()
Xtr, Ytr, Xte, Yte = train.images, train.labels, test.images, test.labels
rand_labels = make_labels(Ytr, 1.0, num_classes, seed)      # drawn once per image
print(f"{dataset}: {len(train)} training / {len(test)} test images, {C_true} classes; "
      f"random labels over {num_classes} classes agree with the true ones on {(rand_labels == Ytr).float().mean():.1%}")


def cfg_for(aug="simclr", epochs=epochs_aug, steps=0, **over):
    """The shared recipe; ``aug="none"`` switches DA (and mixup) off."""
    base = dict(model=arch, model_kw=model_kw, hidden=hidden, loss=loss, aug=aug,
                mixup=mixup if aug != "none" else 0.0, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                batch_size=batch_size, micro_batch=micro_batch, max_epochs=epochs, max_steps=steps, fit_target=fit_target,
                eval_every=eval_every, seed=seed, mean=mean, std=std)
    base.update(over)
    return BenignConfig(**base)


def epochs_for(steps, n_items):
    """Epochs that hold ``steps`` optimizer steps on ``n_items`` items (for step budgets)."""
    return -(-steps // max(1, n_items // min(batch_size, n_items)))


norm = make_aug(cfg_for()).normalize
emb = lambda net, imgs: extract_layers(net, imgs, norm, ["embedding"], device=dev)["embedding"]  # noqa: E731


def knn_of(net, xtr=Xtr, ytr=Ytr, xte=Xte, yte=Yte):
    return knn_accuracy(emb(net, xtr), ytr, emb(net, xte), yte, k=knn_k)


def linear_of(net):
    return linear_probe(emb(net, Xtr), Ytr, emb(net, Xte), Yte, device=dev)


# %% [markdown]
# ## The plan
# Every training of the notebook (Table 2, Fig. 5, Table 4, the sweeps) is a job keyed by the cache, listed
# here with its cost and trained by the executor (in parallel, one process per core on a laptop); a rerun
# finds them all cached, and the sections below only read their runs by name.

# %%
plan = Plan("06_benign_memorization", cache=cache, device=dev)
jobs = {}


def declare(name, cfg, ts, monitor=None):
    jobs[name] = plan.add(benign_job(cfg, ts, cache=cache, monitor=monitor, name=name, force=force))


# Table 2: the DA run records its K-NN accuracy and the invariance of every layer (Fig. 6) every probe_every epochs
inv_idx = balanced_subset(Ytr.numpy(), inv_images, data_seed + BenignSeed.INVARIANCE)
monitor = Monitor(Xtr, Ytr, Xte, Yte, norm, every=probe_every, inv_images=Xtr[inv_idx],
                  inv_aug=make_aug(cfg_for()), inv_pairs=inv_pairs, seed=seed, k=knn_k)
ts_rand = plain_set(Xtr, rand_labels, num_classes)
declare("random labels, no DA", cfg_for("none", epochs_noaug), ts_rand)
declare("random labels, DA", cfg_for("simclr", epochs_aug), ts_rand, monitor)
declare("clean labels, DA", cfg_for("simclr", epochs_clean), plain_set(Xtr, Ytr, C_true))

# Fig. 5: B fixed views of each of cap_n images, a random label per view or per image, cap_steps steps
cap_imgs = Xtr[balanced_subset(Ytr.numpy(), cap_n, data_seed + BenignSeed.CAPACITY)]
cap_img_labels = make_labels(torch.zeros(cap_n, dtype=torch.long), 1.0, num_classes, seed + BenignSeed.CAPACITY_LABELS)
cap_name = lambda B, preserved: f"capacity B={B}, labels {'preserved' if preserved else 'per view'}"  # noqa: E731
for B in cap_B:
    for preserved in (False, True):
        ts = fixed_views_set(cap_imgs, B, num_classes, seed + BenignSeed.CAPACITY_VIEWS, cap_img_labels if preserved else None)
        declare(cap_name(B, preserved), cfg_for("simclr", epochs=epochs_for(cap_steps, len(ts)), steps=cap_steps), ts)

# Table 4: iid_s anchors, each replaced every epoch by one of iid_B real images of its class (the rest of the
# training split supplies them), with clean or random labels, iid_steps steps without DA
rest = torch.from_numpy(np.setdiff1d(np.arange(len(train_full)), main_idx.numpy()))
pool_imgs = torch.cat([Xtr, train_full.images[rest]])
pool_lab = torch.cat([Ytr, train_full.labels[rest]])
anchors = balanced_subset(Ytr.numpy(), iid_s, data_seed + BenignSeed.ANCHORS)
anchor_rand = make_labels(Ytr[anchors], 1.0, num_classes, seed + BenignSeed.ANCHOR_LABELS)
iid_name = lambda B, labels_kind: f"i.i.d. B={B}, {labels_kind} labels"  # noqa: E731
for labels_kind, lab, C in (("clean", Ytr[anchors], C_true), ("random", anchor_rand, num_classes)):
    for B in (1, iid_B):
        ts = (plain_set(Xtr[anchors], lab, C) if B == 1 else
              iid_set(pool_imgs, pool_lab, anchors, B, lab, C, seed + BenignSeed.IID_SETS))
        declare(iid_name(B, labels_kind), cfg_for("none", epochs=epochs_for(iid_steps, len(ts)), steps=iid_steps), ts)

# Sweeps: sweep_epochs on sweep_n images; (figure, x, run name) in the order of the sweeps table
sw_idx = balanced_subset(Ytr.numpy(), sweep_n, data_seed + BenignSeed.SWEEP)
sw_x, sw_y = Xtr[sw_idx], Ytr[sw_idx]
rl = lambda C, per=False, noise=1.0: make_labels(sw_y, noise, C, seed + BenignSeed.SWEEP_LABELS, per_sample=per)  # noqa: E731
sw_cfg = lambda aug="simclr", **o: cfg_for(aug, sweep_epochs, **o)  # noqa: E731
sweep_points = []


def sweep_point(fig_name, x, ts, cfg, name):
    declare(name, cfg, ts)
    sweep_points.append((fig_name, x, name))


for w in sweep_widths:
    sweep_point("fig7 width", w, plain_set(sw_x, rl(num_classes), num_classes), sw_cfg(hidden=w), f"width {w}")
for c in sweep_classes:
    C = sweep_n if c == "per_sample" else c
    sweep_point("fig8 classes", c, plain_set(sw_x, rl(C, c == "per_sample"), C), sw_cfg(), f"classes {c}")
for aug in ("simclr", "none"):
    for p in sweep_noise:
        sweep_point("fig12 noise", p, plain_set(sw_x, rl(C_true, noise=p), C_true), sw_cfg(aug),
                    f"noise {p:.2f}, DA {aug}")
for m in sweep_magnitudes:
    sweep_point("fig11 RandAugment", m, plain_set(sw_x, rl(num_classes), num_classes),
                sw_cfg("randaugment", aug_kw={"n_ops": 2, "magnitude": m}), f"RandAugment M={m}")

status = plan.run(executor, workers=workers or None, slurm=slurm)


def run(name):
    """The run declared as ``name``, read from the cache, with its one-line summary (a run whose job is shared
    with an earlier name -- the same config and training set -- reads as cached)."""
    job = jobs[name]
    r = load_benign(job, cache, dev, from_cache=status[job.name] == "cached" or job.name != name)
    print(f"{name:<42s} {'cache' if r.from_cache else 'trained'}: {r.epochs} epochs / {r.steps} steps, "
          f"fit {r.fit:.3f} ({r.stopped}), {r.seconds:.0f} s")
    return r


# %% [markdown]
# ## Table 2: random labels with and without DA, clean labels, initialisation
# Training stops as soon as the *unaugmented* training set is fitted (checked every `eval_every`
# epochs) or the budget runs out; the table reports the final fit. The DA run records its K-NN
# accuracy (and, for Fig. 6, the invariance of every layer) every `probe_every` epochs.

# %%
net0 = build_net(cfg_for(), num_classes).to(dev).eval()          # the common initialisation (same seed)
runs = {name: run(name) for name in ("random labels, no DA", "random labels, DA", "clean labels, DA")}
knn_init, lin_init = knn_of(net0), linear_of(net0)
tol = knn_noise(knn_init, len(Yte))
rows = [{"run": "at initialisation", "labels": "-", "DA": "-", "epochs": 0, "stopped": "-", "fit": np.nan,
         "K-NN": knn_init, "K-NN peak": np.nan, "peak epoch": np.nan, "linear probe": lin_init, "verdict": "-"}]
for name, r in runs.items():
    k = knn_of(r.net)
    ep, ks = r.series("knn")
    clean = name.startswith("clean")
    rows.append({"run": name, "labels": "clean" if clean else f"random ({num_classes} classes)",
                 "DA": "none" if "no DA" in name else "simclr" + (f" + mixup {mixup}" if mixup else ""),
                 "epochs": r.epochs, "stopped": r.stopped, "fit": r.fit, "K-NN": k,
                 "K-NN peak": max(ks) if ks else np.nan, "peak epoch": ep[int(np.argmax(ks))] if ks else np.nan,
                 "linear probe": linear_of(r.net),
                 "verdict": "- (clean labels)" if clean else verdict(r.fit, k, knn_init, fit_target, tol)})
table2 = pd.DataFrame(rows)
report.table(table2, "table2_knn_linear")
display(table2.round(3))
print(f"noise level of a K-NN difference (2 standard errors, {len(Yte)} test images): {tol:.3f}")
for name, r in runs.items():
    if not name.startswith("clean") and r.fit < fit_target:
        print(f"NOTE: '{name}' fits {r.fit:.1%} of its random labels after {r.epochs} epochs (budget "
              f"{r.config.max_epochs}), short of the {fit_target:.0%} that Definition 4.1 requires: it is not "
              f"a memorisation in the strict sense, and its verdict says so. Its K-NN accuracy is still reported.")
fig = plots.bars({r["run"]: r["K-NN"] for r in rows}, "Table 2: K-NN probe (K=20) of the embedding",
                 "K-NN test accuracy", report.caption(f"{arch} x{width}, {n_train} images, {loss}"))
report.figure(fig, "table2_knn")

# %% [markdown]
# The K-NN accuracy of the DA run over training (the issue notes a peak, then a slow drift down, so it is
# recorded, not only read at the end):

# %%
ep, ks = runs["random labels, DA"].series("knn")
fig = plots.lines(ep, {"random labels + DA": ks, "at initialisation": [knn_init] * len(ep)},
                  "K-NN probe during training on random labels with DA", "epoch", "K-NN test accuracy",
                  report.caption(f"{arch} x{width}"))
report.figure(fig, "knn_over_epochs")

# %% [markdown]
# ## Fig. 3: per-layer K-NN, from the stem to the projector output
# Flattened outputs of every layer. Solid: K-NN with the clean training labels as memory, evaluated on the
# test set. Dashed: leave-one-out K-NN on the training images with their *random* labels (how much the
# layer is organised by the random labels). The paper finds a sharp transition at the projector ("P",
# "O"): the encoder is organised by the true classes, the projector by the random labels.

# %%
lp_tr = balanced_subset(Ytr.numpy(), layer_probe_train, data_seed + BenignSeed.LAYER_PROBE)
lp_te = torch.arange(min(layer_probe_test, len(Yte)))


def per_layer(net):
    out = {}
    for layer in net.layer_names:
        ftr = extract_layers(net, Xtr[lp_tr], norm, [layer], device=dev)[layer]
        fte = extract_layers(net, Xte[lp_te], norm, [layer], device=dev)[layer]
        out[layer] = {"clean K-NN": knn_accuracy(ftr, Ytr[lp_tr], fte, Yte[lp_te], k=knn_k),
                      "random-label K-NN (train, LOO)": knn_loo_accuracy(ftr, rand_labels[lp_tr], k=knn_k)}
    return out


layer_rows = []
for name, net in (("at initialisation", net0), ("random labels, no DA", runs["random labels, no DA"].net),
                  ("random labels, DA", runs["random labels, DA"].net)):
    for layer, v in per_layer(net).items():
        layer_rows.append({"network": name, "layer": layer, **v})
fig3 = pd.DataFrame(layer_rows)
report.table(fig3, "fig3_per_layer_knn")
display(fig3.pivot(index="layer", columns="network", values="clean K-NN").loc[net0.layer_names].round(3))
fig, ax = plt.subplots(figsize=(11, 4))
colors = {"at initialisation": "#7f7f7f", "random labels, no DA": "#d62728", "random labels, DA": "#1f77b4"}
for name, d in fig3.groupby("network", sort=False):
    d = d.set_index("layer").loc[net0.layer_names]
    ax.plot(d.index, d["clean K-NN"], "-o", ms=3, color=colors[name], label=f"{name}: clean labels (test)")
    ax.plot(d.index, d["random-label K-NN (train, LOO)"], "--s", ms=3, color=colors[name],
            label=f"{name}: random labels (train)")
ax.axvline(len(net0.encoder.layer_names) - 0.5, color="k", lw=0.8, ls=":")
ax.set(title="Fig. 3: K-NN accuracy per layer (flattened outputs)", xlabel="layer (stem → embedding → P → O)",
       ylabel="K-NN accuracy")
ax.tick_params(axis="x", rotation=35)
ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
plots.caption(fig, report.caption(f"{arch} x{width}; dotted line: end of the encoder"))
report.figure(fig, "fig3_per_layer_knn")

# %% [markdown]
# ## Fig. 6: normalised invariance per layer over training
# $$I(x; q, T) = \frac{\mathbb{E}_{T_1,T_2}\lVert q(T_1 x) - q(T_2 x)\rVert^2}{\mathbb{E}_{x' \neq x}\lVert q(x) - q(x')\rVert^2}$$
# averaged over `inv_images` images, with `inv_pairs` fixed pairs of training augmentations per image
# (lower = more invariant; a collapsed representation is not rewarded, the denominator sees to that).
# Dashed, right axis: the K-NN error of the embedding.

# %%
hist = pd.DataFrame([h for h in runs["random labels, DA"].history if "knn" in h])
inv_cols = [f"inv/{l}" for l in net0.layer_names]
report.table(hist[["epoch", "knn", *inv_cols]], "fig6_invariance")
display(hist[["epoch", "knn", *inv_cols]].round(3))
fig, ax = plt.subplots(figsize=(7.5, 4))
cmap = plt.get_cmap("viridis")
for i, c in enumerate(inv_cols):
    ax.plot(hist["epoch"], hist[c], "-o", ms=2.5, color=cmap(i / max(1, len(inv_cols) - 1)), label=c[4:])
ax.set(title="Fig. 6: normalised invariance per layer (random labels + DA)", xlabel="epoch",
       ylabel="I(x; q, T) (lower = more invariant)")
ax2 = ax.twinx()
ax2.plot(hist["epoch"], 1 - hist["knn"], "k--", lw=1.5, label="K-NN error (embedding)")
ax2.set_ylabel("K-NN error")
h1, l1 = ax.get_legend_handles_labels()
h2, l2 = ax2.get_legend_handles_labels()
ax.legend(h1 + h2, l1 + l2, fontsize=7, ncol=2, loc="upper right")
plots.caption(fig, report.caption(f"{arch} x{width}, {inv_images} images x {inv_pairs} pairs"))
report.figure(fig, "fig6_invariance")

# %% [markdown]
# ## Fig. 5: capacity
# Each of `cap_n` images gets B fixed, precomputed augmentations (views), so the training set has n·B
# items. **Labels not preserved**: every view gets its own random label; the more views, the harder the
# labels are to fit in a fixed number of steps (`cap_steps`): the augmented set exceeds the capacity.
# **Labels preserved**: the views share their image's random label; the K-NN probe improves with B as the
# network is forced to use the signal shared by the views.

# %%
cap_rows = []
for B in cap_B:
    for preserved in (False, True):
        r = run(cap_name(B, preserved))
        cap_rows.append({"B": B, "labels": "preserved" if preserved else "not preserved", "items": cap_n * B,
                         "steps": r.steps, "train acc (random labels)": r.fit, "K-NN": knn_of(r.net)})
cap = pd.DataFrame(cap_rows)
report.table(cap, "fig5_capacity")
display(cap.round(3))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
d = cap[cap["labels"] == "preserved"]
axes[0].plot(d["B"], d["K-NN"], "-o", label="labels preserved")
axes[0].axhline(knn_init, color="k", ls=":", label="at initialisation")
axes[0].set(xscale="log", title="Probe accuracy vs B (labels preserved)", xlabel="B (fixed augmentations)",
            ylabel="K-NN test accuracy")
axes[0].legend()
d = cap[cap["labels"] == "not preserved"]
axes[1].plot(d["B"], d["train acc (random labels)"], "-o", color="#d62728", label="labels not preserved")
axes[1].set(xscale="log", title=f"Fit after {cap_steps} steps", xlabel="B (fixed augmentations)",
            ylabel="training accuracy (random labels)")
axes[1].legend()
for ax in axes:
    ax.set_xticks(list(cap_B), [str(b) for b in cap_B])
    ax.minorticks_off()
fig.suptitle("Fig. 5: fixed augmentations and capacity")
plots.caption(fig, report.caption(f"{cap_n} images, {arch} x{width}"))
report.figure(fig, "fig5_capacity")

# %% [markdown]
# ## Table 4: i.i.d. "augmentations"
# The ideal label-preserving augmentation: each of `iid_s` anchors is replaced, every epoch, by one of
# `iid_B` real images of its true class (the anchor included). Under clean labels this is simply more
# data. Under random labels it is fitting random labels on s·B real images without DA: the paper finds it
# malign.

# %%
t4 = []
for labels_kind in ("clean", "random"):
    for B in (1, iid_B):
        r = run(iid_name(B, labels_kind))
        k = knn_of(r.net)
        t4.append({"labels": labels_kind, "s": iid_s, "B": B, "fit (anchors)": r.fit, "K-NN": k,
                   "verdict": verdict(r.fit, k, knn_init, fit_target, tol) if labels_kind == "random" else "-"})
t4.append({"labels": "-", "s": 0, "B": 0, "fit (anchors)": np.nan, "K-NN": knn_init, "verdict": "initialisation"})
table4 = pd.DataFrame(t4)
report.table(table4, "table4_iid")
display(table4.round(3))

# %% [markdown]
# ## Sweeps (Figs. 7, 8, 12, 11)
# Short budgets (`sweep_epochs` on `sweep_n` images): these show directions, not the paper's numbers.
# The base point (random labels over `num_classes` classes, SimCLR DA, projector width `hidden`) is
# shared by the sweeps and computed once.

# %%
sweep_rows = []
for fig_name, x, name in sweep_points:
    r = run(name)
    sweep_rows.append({"figure": fig_name, "x": str(x), "DA": r.config.aug, "fit": r.fit, "epochs": r.epochs,
                       "K-NN": knn_of(r.net)})
sweeps = pd.DataFrame(sweep_rows)


def knn_at(fig_name, da=None):
    """{x: K-NN} of one sweep (and one DA setting)."""
    d = sweeps[(sweeps["figure"] == fig_name) & ((sweeps["DA"] == da) if da else True)]
    return dict(zip(d["x"], d["K-NN"]))


fig7, fig8, fig11 = knn_at("fig7 width"), knn_at("fig8 classes"), knn_at("fig11 RandAugment")
fig12 = {aug: knn_at("fig12 noise", aug) for aug in ("simclr", "none")}
report.table(sweeps, "sweeps")
display(sweeps.round(3))
cap_s = report.caption(f"{sweep_n} images, {sweep_epochs} epochs, random labels unless stated")
init_line = {"at initialisation": [knn_init] * len(sweep_widths)}
fig = plots.lines(list(sweep_widths), {"random labels + DA": list(fig7.values()), **init_line},
                  "Fig. 7: projector width", "hidden width of the projector", "K-NN test accuracy", cap_s)
fig.axes[0].set_xscale("log")
fig.axes[0].set_xticks(list(sweep_widths), [str(w) for w in sweep_widths])
fig.axes[0].minorticks_off()
report.figure(fig, "fig7_projector_width")
fig = plots.lines(list(fig8), {"random labels + DA": list(fig8.values()),
                               "at initialisation": [knn_init] * len(fig8)},
                  "Fig. 8: number of random classes", "random classes", "K-NN test accuracy", cap_s)
report.figure(fig, "fig8_classes")
fig = plots.lines(list(sweep_noise), {"with DA": list(fig12["simclr"].values()),
                                      "without DA": list(fig12["none"].values()),
                                      "at initialisation": [knn_init] * len(sweep_noise)},
                  "Fig. 12: label noise with and without DA", "label-noise fraction", "K-NN test accuracy", cap_s)
report.figure(fig, "fig12_label_noise")
fig = plots.lines(list(sweep_magnitudes), {"random labels + RandAugment": list(fig11.values()),
                                           "at initialisation": [knn_init] * len(sweep_magnitudes)},
                  "Fig. 11: augmentation strength", "RandAugment magnitude M (2 ops)", "K-NN test accuracy", cap_s)
report.figure(fig, "fig11_strength")

# %% [markdown]
# ## Fig. 9: transfer to a second dataset
# K-NN on `second_dataset` (its own training images and labels as memory, its test images as queries) with
# the frozen encoders of Table 2.

# %%
try:
    sd_kw = dict(seed=data_seed + BenignSeed.SECOND_DATASET) if second_dataset == "synthetic" else {}
    sd_tr = load_dataset(second_dataset, "train", n=second_n_train, **sd_kw)
    sd_te = load_dataset(second_dataset, "test", n=second_n_test, **sd_kw)
except FileNotFoundError as e:
    print(f"{second_dataset} is not available ({e}); using synthetic data for the transfer")
    sd_tr = load_dataset("synthetic", "train", n=second_n_train, seed=data_seed + BenignSeed.SECOND_DATASET)
    sd_te = load_dataset("synthetic", "test", n=second_n_test, seed=data_seed + BenignSeed.SECOND_DATASET)
nets = {"at initialisation": net0, **{k: r.net for k, r in runs.items()}}
transfer = pd.DataFrame([{"encoder": k, "dataset": sd_tr.name,
                          "K-NN": knn_of(n, sd_tr.images, sd_tr.labels, sd_te.images, sd_te.labels)}
                         for k, n in nets.items()])
report.table(transfer, "fig9_transfer")
display(transfer.round(3))
fig = plots.bars(dict(zip(transfer["encoder"], transfer["K-NN"])), f"Fig. 9: transfer to {sd_tr.name}",
                 "K-NN test accuracy", report.caption(f"encoders trained on {dataset}"))
report.figure(fig, "fig9_transfer")

# %% [markdown]
# ## Appendix E: the toy model
# Gaussian mixture in the first `toy_d1` coordinates, noise in the others; augmentations add noise to the
# noise coordinates only. Linear encoder W and the soft nearest-vector projector over `toy_K` vectors with
# random one-hot labels, trained on random labels. When n·B exceeds what K vectors can memorise, fitting
# forces W to suppress the noise coordinates, and the K-NN probe of the true classes improves.

# %%
tcfg = ToyConfig(d=toy_d, d1=toy_d1, classes=toy_classes, sigma=toy_sigma, K=toy_K, steps=toy_steps, seed=seed)
t_toy = time.time()
toy = pd.DataFrame(cache.get_or_compute("toy", {"cfg": tcfg.describe(), "n": list(toy_n), "B": list(toy_B)},
                                        lambda: toy_grid(tcfg, toy_n, toy_B), force=force))
report.table(toy, "fig13_toy")
heat = toy.pivot(index="n", columns="B", values="knn")
display(heat.round(3))
print(f"toy grid: {time.time() - t_toy:.1f} s")
fig, ax = plt.subplots(figsize=(5.6, 3.8))
im = ax.imshow(heat.values, cmap="viridis", aspect="auto", origin="lower")
for i in range(heat.shape[0]):
    for j in range(heat.shape[1]):
        ax.text(j, i, f"{heat.values[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
ax.set_xticks(range(heat.shape[1]), heat.columns)
ax.set_yticks(range(heat.shape[0]), heat.index)
ax.set(title="Fig. 13: toy model, K-NN test accuracy", xlabel="B (augmentations per sample)", ylabel="n (samples)")
fig.colorbar(im, ax=ax, label="K-NN accuracy (true classes)")
plots.caption(fig, report.caption(f"toy d={toy_d}, d1={toy_d1}, C={toy_classes}, K={toy_K}, sigma={toy_sigma}"))
report.figure(fig, "fig13_toy_heatmap")

# %% [markdown]
# ## Appendix B: MSE under augmentation = Inv + Bias
# For the DA network, `mse_images` images with `mse_views` augmentations each and one-hot random labels:
# $L_{super} = \frac{1}{nB}\sum_{i,a}\lVert f(T_a x_i) - y_i\rVert^2$ splits exactly into the invariance
# term $\frac{1}{2nB^2}\sum_i\sum_{a,b}\lVert f(T_a x_i) - f(T_b x_i)\rVert^2$ and the bias
# $\frac{1}{n}\sum_i\lVert y_i - \frac{1}{B}\sum_a f(T_a x_i)\rVert^2$ (Theorem B.2).

# %%
aug_da = make_aug(cfg_for())
net_da = runs["random labels, DA"].net.eval()
mb = torch.arange(min(mse_images, n_train))
with torch.no_grad():
    outs = torch.stack([net_da(aug_da(Xtr[mb].to(dev), mb.numpy(), seed, 10**6 + a)).float().cpu()
                        for a in range(mse_views)], 1)
targets = torch.nn.functional.one_hot(rand_labels[mb], num_classes).float()
dec = mse_decomposition(outs, targets)
gap = abs(dec["mse"] - dec["inv"] - dec["bias"])
mse_table = pd.DataFrame([{**dec, "inv + bias": dec["inv"] + dec["bias"], "|mse - (inv + bias)|": gap}])
report.table(mse_table, "appendixB_mse_decomposition")
display(mse_table)

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
t2 = table2.set_index("run")
k_da, k_noda = t2.loc["random labels, DA", "K-NN"], t2.loc["random labels, no DA", "K-NN"]
report.claim("K-NN with random labels and DA exceeds K-NN at initialisation", k_da > knn_init,
             f"{k_da:.3f} vs {knn_init:.3f} (fit {t2.loc['random labels, DA', 'fit']:.3f}, "
             f"{int(t2.loc['random labels, DA', 'epochs'])} epochs; peak {t2.loc['random labels, DA', 'K-NN peak']:.3f})")
report.claim("K-NN at initialisation exceeds random labels without DA, or is within noise",
             knn_init >= k_noda - tol, f"init {knn_init:.3f} vs no DA {k_noda:.3f} (noise {tol:.3f}; fit "
             f"{t2.loc['random labels, no DA', 'fit']:.3f} after {int(t2.loc['random labels, no DA', 'epochs'])} epochs)")
da_layers = fig3[fig3["network"] == "random labels, DA"].set_index("layer")["clean K-NN"]
report.claim("embedding layer's clean K-NN exceeds the projector output's (DA run)",
             da_layers["embedding"] > da_layers["O"],
             f"embedding {da_layers['embedding']:.3f}, P {da_layers['P']:.3f}, O {da_layers['O']:.3f}")
n_fix = max(toy_n)
row = heat.loc[n_fix]
report.claim(f"toy model: K-NN accuracy rises with B at fixed n = {n_fix}", row.iloc[-1] > row.iloc[0],
             ", ".join(f"B={b}: {v:.3f}" for b, v in row.items()))
report.claim("appendix B: MSE under augmentation equals Inv + Bias on a batch", gap <= 1e-9 * max(1.0, dec["mse"]),
             f"mse {dec['mse']:.6f} = inv {dec['inv']:.6f} + bias {dec['bias']:.6f} (gap {gap:.1e})")
report.claims_table()

# %% [markdown]
# ## Closing note

# %%
print(f"profile {profile} | {dataset} | {arch} x{width} + projector {hidden} -> {num_classes} | {loss}, {optimizer} "
      f"{lr} | {n_train} images | device {dev}")
print("Table 2 verdicts (Definition 4.1): " + "; ".join(f"{r['run']}: {r['verdict']}" for r in rows[1:]))
print("Table 4 (i.i.d. augmentations): " + "; ".join(f"{r['labels']} B={r['B']}: K-NN {r['K-NN']:.3f}, fit "
                                                   f"{r['fit (anchors)']:.2f}" for r in t4[:-1]))
for fig_name, d in sweeps.groupby("figure", sort=False):
    print(f"{fig_name}: " + ", ".join(f"{x} ({da}) {k:.3f}" for x, da, k in zip(d["x"], d["DA"], d["K-NN"]))
          + f"  [init {knn_init:.3f}]")
print(f"transfer to {sd_tr.name}: " + ", ".join(f"{e} {k:.3f}" for e, k in zip(transfer["encoder"], transfer["K-NN"])))
report.print_claims(f"; wall time {time.time() - T0:.0f}s")
