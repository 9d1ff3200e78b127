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
# # LayerMem and Delta-LayerMem: in which layers does an SSL encoder memorise?
#
# *Wang et al., "Localizing Memorization in SSL Vision Encoders", NeurIPS 2024* (`shared/docs/methods.md`
# section 3). SSLMem (notebook 02) compares how well an encoder f that trained on a point aligns two views of
# it with how well an encoder g that did not train on it does. **LayerMem** asks the same question of every
# layer: the encoder is cut after layer $l$ and that layer's output (after any residual addition, flattened,
# L2-normalised) is the representation.
#
# $$\mathrm{LayerMem}_l(x) = \frac{m_l(x)}{\max_{x'} m_l(x') - \min_{x'} m_l(x')},\qquad
#   m_l(x) = \mathbb{E}_g L_{align}(g_{\le l}, x) - \mathbb{E}_f L_{align}(f_{\le l}, x)$$
#
# $$\Delta\mathrm{LayerMem}_l = \mathrm{LayerMem}_l - \mathrm{LayerMem}_{l-1}\quad(\text{first layer: } \mathrm{LayerMem}_1)$$
#
# The range is taken over all scored points, per layer (`layer_range = "layer"`: LayerMem$_l$ is exactly the
# normalised SSLMem of the truncated encoder, section 2's normalisation) or once for all layers (`"shared"`).
# Scores lie in an interval of width 1 and 0 means no memorisation. The same f/g pair and the same view pairs
# serve every layer, and all layers come from **one forward pass per view**.
#
# The paper's findings: memorisation grows with depth but not monotonically; the most memorised points
# (atypical ones) are memorised more in every layer; adjacent layers memorise the same points, distant ones
# do not; in a ViT the MLP sub-layers memorise more than the attention sub-layers; different SSL methods
# memorise in similar layers; and fine-tuning the most memorising layers beats fine-tuning the last ones.

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/04_layermem.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"
executor: str = "auto"          # where the training jobs run: "auto", "inline", "local" (one worker per CPU core or
                                # GPU) or "slurm" (submitit); the environment variable MEMLAB_EXECUTOR overrides it
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, cpus_per_task, mem_gb,
                                # array_parallelism, sbatch (a dict of extra #SBATCH options)
# -- the SSL encoder pair f/g is notebook 02's, read from params/<profile>/02_sslmem.yaml (memlab.experiments.recipes):
#    it comes from 02's cache by construction
# -- LayerMem
layer_view_pairs: int = 5       # K view pairs per point: the first pairs of the same view bank as SSLMem (paper: 5)
layer_candidates: int = 500     # S_C candidates scored at every layer; top/least are ranked among them
layer_shared: int = 200         # S_S points scored as a control (trained by both f and g: LayerMem about 0)
layer_range: str = "layer"      # normalising range: "layer" (per layer) or "shared" (one range for all layers)
random_points: int = 100        # the paper's "100 random candidates"
top_k: int = 50                 # the 50 most / least memorised candidates (by final-layer SSLMem)
overlap_k: int = 100            # top-k overlap between layers
distant_gap: int = 4            # layer pairs at least this far apart count as "distant"
# -- other encoders. method_cells: SSL methods, named by the labels of notebook 02's grid cells in this profile
#    (their f/g come from 02's cache); arch_cells: other architectures, as cells in 02's format (missing keys
#    take the pair's settings; SimCLR unless set). Every cell trains one f/g pair per grid seed.
grid_seeds: list = [0]          # seeds per cell: a subset of 02's grid_seeds (its cached encoders are reused per seed)
method_cells: list = ["simclr/resnet9", "dino/resnet9", "simsiam/resnet9", "mae/vit_tiny"]  # labels of 02's grid cells
arch_cells: list = []           # laptop: the larger ResNets are paper-profile only; the ViT comes from the MAE cell
cell_view_pairs: int = 5        # K view pairs per point for the other encoders
cell_candidates: int = 500      # S_C candidates scored per other encoder
# -- downstream: a second dataset (STL-10 / CIFAR-100 when available, else Fashion-MNIST, else synthetic)
second_dataset: str = "fashion_mnist"  # second dataset (downstream / transfer)
synthetic_fallback: bool = False  # True: synthetic data stands in for an unavailable second_dataset
second_n_train: int = 2000      # training images taken from the second dataset
second_n_test: int = 1000       # test images taken from the second dataset
second_epochs: int = 20         # SimCLR epochs of the encoder trained on the second dataset (layer replacement)
k_layers: int = 2               # how many layers are fine-tuned / replaced
random_draws: int = 2           # random layer choices averaged
finetune_epochs: int = 3        # epochs of the fine-tuning in the layer experiments
finetune_lr: float = 0.02       # learning rate of that fine-tuning
probe_test: int = 2000          # CIFAR-10 test images for the probe
probe_kind: str = "linear"      # "linear" probe (as in the paper) or "knn" (20-NN, cosine; for quick runs)
alpha: float = 0.01             # significance level of the printed claims
force: bool = False             # recompute cached results instead of reusing them

# %%
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from scipy.stats import kendalltau

from memlab.engine import executors
from memlab.metrics import layermem as LM
from memlab.io import plots
from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache
from memlab.data.datasets import DATASETS, DatasetNotFound, load_dataset, stand_in
from memlab.experiments.grid import cell_jobs, cell_spec, main_recipe_snapshots
from memlab.engine.jobs import Plan
from memlab.models.networks import MODELS
from memlab.objectives.losses import OBJECTIVES
from memlab.io.params import ParameterError, check_injected, choice
from memlab.metrics.probes import extract, knn_accuracy, linear_probe
from memlab.metrics.rankings import square
from memlab.io.report import Report
from memlab.data.splits import balanced_subset
from memlab.streams import SplitSeed
from memlab.experiments.recipes import sslmem_grid, sslmem_pair
from memlab.engine.train import encoder_job, load_encoder, resolve_device

# Reject bad parameters before any compute.
check_injected()
pair = sslmem_pair(profile)  # notebook 02's f/g recipe of this profile (params/<profile>/02_sslmem.yaml)
choice("dataset", pair.dataset, DATASETS)
choice("second_dataset", second_dataset, DATASETS)
choice("method", pair.method, OBJECTIVES)
choice("arch", pair.arch, MODELS)
choice("representation", pair.representation, ["flat", "pooled"])
choice("layer_range", layer_range, LM.MODES)
choice("probe_kind", probe_kind, ["linear", "knn"])
if layer_view_pairs > pair.view_pairs or cell_view_pairs > pair.view_pairs:
    raise ParameterError(f"layer_view_pairs ({layer_view_pairs}) and cell_view_pairs ({cell_view_pairs}) take the "
                         f"first pairs of the SSLMem view bank and must not exceed view_pairs ({pair.view_pairs})")
if max(random_points, 2 * top_k, overlap_k) > min(layer_candidates, cell_candidates):
    raise ParameterError(f"layer_candidates and cell_candidates ({layer_candidates}, {cell_candidates}) must be at least "
                         f"random_points, 2 * top_k and overlap_k ({random_points}, {2 * top_k}, {overlap_k})")
if distant_gap < 2:
    raise ParameterError(f"distant_gap must be >= 2, got {distant_gap}")
if not pair.seeds or not grid_seeds:
    raise ParameterError("seeds and grid_seeds must list at least one seed")
base_cell = pair.base_cell(grid_seeds)
grid02, grid_seeds02 = sslmem_grid(profile)  # notebook 02's cells: method_cells names some of them
grid_cells = {c["label"]: c for c in (cell_spec(c, base_cell) for c in grid02)}
if [c for c in method_cells if c not in grid_cells]:
    raise ParameterError(f"method_cells {[c for c in method_cells if c not in grid_cells]} are not cells of notebook 02's "
                         f"grid in profile {profile!r}; its cells: {list(grid_cells)}")
if not set(grid_seeds) <= set(grid_seeds02):
    raise ParameterError(f"grid_seeds {grid_seeds} must be a subset of notebook 02's grid_seeds {grid_seeds02} "
                         f"(profile {profile!r}), whose cached encoders this notebook reuses")
m_cells = [grid_cells[c] for c in method_cells]
a_cells = [cell_spec({"label": f"{c.get('method', pair.method)}/{c.get('arch', pair.arch)}", **c}, base_cell) for c in arch_cells]
for c in m_cells + a_cells:
    choice("cell method", c["method"], OBJECTIVES), choice("cell arch", c["arch"], MODELS)
    if c["dataset"] != pair.dataset:
        raise ParameterError(f"cell {c['label']}: LayerMem cells must use the main dataset {pair.dataset!r}")
    if c["method"] == "supervised":
        raise ParameterError(f"cell {c['label']}: LayerMem cells are SSL encoders")
dev = resolve_device(device)
executors.make(executor, device=dev, workers=workers or None, slurm=slurm)  # a bad executor fails here
T0 = time.time()
report = Report(output_dir, "04_layermem", profile, pair.dataset)
cache = Cache()

# Data first: a missing dataset fails here, before any training.
train_data, test_data, splits = pair.load()
if min(layer_candidates, cell_candidates) > len(splits.candidates):
    raise ParameterError(f"layer_candidates / cell_candidates exceed |S_C| = {len(splits.candidates)}")
try:
    second_train = load_dataset(second_dataset, "train", n=second_n_train, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
    second_test = load_dataset(second_dataset, "test", n=second_n_test, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
except DatasetNotFound as e:
    stand_in(e, second_dataset, synthetic_fallback)
    second_dataset = "synthetic"
    second_train = load_dataset("synthetic", "train", n=second_n_train, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
    second_test = load_dataset("synthetic", "test", n=second_n_test, seed=pair.split_seed + SplitSeed.SECOND_DATASET)
print(f"device {dev} | cache {cache.root} | {pair.dataset}: {len(train_data)} train images | second dataset: {second_dataset}")

# %% [markdown]
# ## The plan
# Every training of this notebook is a job keyed by the cache -- the f/g pair, each cell's f/g pair and the
# encoder trained on the second dataset -- listed below with its cost and trained by the executor; a rerun
# finds them cached. (The few-epoch fine-tunings of the last section run in the notebook, cached too.)

# %%
mean, std = train_data.stats()
cfg = pair.config(mean, std)
cells = a_cells + [c for c in m_cells if c["label"] not in {a["label"] for a in a_cells}]


plan = Plan("04_layermem", cache=cache, device=dev)
f_jobs, g_jobs = (plan.add_all(js) for js in pair.jobs(cfg, train_data, splits, cache=cache, force=force))
# a cell that repeats the main pair's recipe keeps its snapshot list (as in notebook 02): it is the main pair
cell_fg = {c["label"]: [plan.add_all(js) for js in cell_jobs(c, train_data, splits, cache=cache, force=force,
                                                              snapshot_epochs=main_recipe_snapshots(c, base_cell,
                                                                                                    pair.snapshot_epochs))]
           for c in cells}
m2_job = plan.add(encoder_job(replace(cfg, epochs=second_epochs, snapshot_epochs=()), second_train.images, None,
                              torch.arange(len(second_train)), cache=cache, data_id=f"{second_dataset}/train",
                              name=f"second-dataset encoder ({second_dataset})", force=force))
status = plan.run(executor, workers=workers or None, slurm=slurm)


def load(job):
    """A trained encoder of the plan, read from the cache."""
    return load_encoder(job, cache, dev, from_cache=status[job.name] == "cached")


def origins(label, trained):
    """Where each encoder came from in this run: "cache" or "trained" (by the plan)."""
    return f"{label}: " + ", ".join("cache" if t.from_cache else "trained" for t in trained)

# %% [markdown]
# ## The encoders and the scored points
# f and g are notebook 02's SimCLR pair (loaded from the cache when 02 has run). We score
# `layer_candidates` candidates (trained on by f only) and `layer_shared` shared points (trained on by both:
# their LayerMem should stay near 0 in every layer) with the first `layer_view_pairs` view pairs of
# notebook 02's view bank. One forward pass per view yields every layer.

# %%
fs, gs = [load(j) for j in f_jobs], [load(j) for j in g_jobs]
print(origins("f", fs), "|", origins("g", gs))
scored = pair.scored(splits, train_data.labels)
cand_pts = scored["S_C"][:layer_candidates]
ctrl_pts = scored["S_S"][:layer_shared]


def layermem_of(f_list, g_list, n_cand, n_pairs, measure=""):
    """LayerMem (normalised) and raw scores at every LayerMem layer (plus the final layer, which ranks the
    points) for n_cand candidates and the control points."""
    enc = f_list[0].encoder
    layers = LM.layermem_layers(enc)
    final = enc.layer_names[-1]
    meas = f_list[0].measuring(measure)
    bank = ViewBank(meas, 2 * pair.view_pairs, seed=pair.split_seed)
    pts = torch.cat([cand_pts[:n_cand], ctrl_pts])
    res = LM.cached_layer_scores(cache, f_list, g_list, train_data, pts, bank, layers=list(dict.fromkeys(layers + [final])),
                                 n_pairs=n_pairs, rep=pair.representation, device=dev, force=force)
    lm_all = LM.normalise({l: r["raw"] for l, r in res.items()}, mode=layer_range)
    nc = len(cand_pts[:n_cand])
    cand = {l: v[:nc] for l, v in lm_all.items()}
    ctrl = {l: v[nc:] for l, v in lm_all.items()}
    grp = LM.groups(cand[final], n_random=random_points, k=top_k, seed=pair.split_seed + SplitSeed.LAYERMEM_GROUPS)
    table = LM.layer_table(cand, layers, grp)
    table["LayerMem S_S control"] = [float(ctrl[l].mean()) for l in layers] if len(ctrl_pts) else np.nan
    table["raw m S_C (mean)"] = [float(res[l]["raw"][:nc].mean()) for l in layers]
    return {"layers": layers, "final": final, "cand": cand, "grp": grp, "table": table, "raw": res}


main = layermem_of(fs, gs, layer_candidates, layer_view_pairs, pair.measure_aug)
layers, tab = main["layers"], main["table"]
report.table(tab, "layermem_resnet9" if pair.arch == "resnet9" else f"layermem_{pair.arch}")
cols = ["layer", "LayerMem random", "Delta random", "LayerMem top", "Delta top", "LayerMem least", "Delta least",
        "LayerMem S_S control"]
display(tab[cols].round(4))

# %% [markdown]
# ## The paper's table: LayerMem and Delta-LayerMem per layer
# Three groups of candidates: 100 random ones, the 50 most and the 50 least memorised by final-layer SSLMem.
# The control (shared points, trained on by both f and g) shows the level of "no memorisation" at each layer:
# a control away from 0 is an offset between f and g at that layer (as in notebook 02's subset means), and a
# layer memorises its candidates only insofar as they score above it.

# %%
x_ = np.arange(1, len(layers) + 1)
fig = plots.lines(x_, {f"{random_points} random candidates": tab["LayerMem random"], f"top-{top_k}": tab["LayerMem top"],
                       f"least-{top_k}": tab["LayerMem least"], "S_S control": tab["LayerMem S_S control"]},
                  f"LayerMem per layer ({pair.method}, {pair.arch} x{pair.width})", "layer", "LayerMem (in [-1, 1]; 0: none)",
                  report.caption(f"K={layer_view_pairs} view pairs, {len(fs)} f/g seeds, range: {layer_range}"))
fig.axes[0].set_xticks(x_, layers, rotation=30, ha="right", fontsize=8)
fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption
report.figure(fig, "layermem_per_layer")
long = tab.melt(id_vars=["layer"], value_vars=["Delta random", "Delta top", "Delta least"], var_name="group",
                value_name="Delta-LayerMem")
fig = plots.grouped_bars(long, "layer", "group", "Delta-LayerMem", "Delta-LayerMem per layer", "Delta-LayerMem (in [-2, 2])",
                         report.caption(f"{pair.method}, {pair.arch} x{pair.width}"))
fig.axes[0].set_ylim(min(0, long["Delta-LayerMem"].min() * 1.1), None)
fig.axes[0].tick_params(axis="x", labelrotation=30, labelsize=7)
fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption
report.figure(fig, "delta_layermem_per_layer")
tvl = LM.top_vs_least(main["cand"], layers, main["grp"])
report.table(tvl, "top_vs_least")
display(tvl.round(5))

# %% [markdown]
# ## Consistency between layers
# Do the layers memorise the same points? For every pair of layers: the overlap of their `overlap_k` most
# memorised candidates and Kendall's tau between their rankings. The paper finds high agreement between
# adjacent layers (especially deep ones) and little between distant ones.

# %%
cons = LM.consistency(main["cand"], layers, overlap_k)
report.table(cons, "layer_consistency")
fig = plots.heatmap(square(cons, f"top{overlap_k}", layers),
                    f"Top-{overlap_k} overlap of the most memorised candidates between layers",
                    report.caption(f"{len(main['cand'][layers[0]])} candidates, chance {overlap_k / len(main['cand'][layers[0]]):.2f}"),
                    cbar="overlap fraction")
report.figure(fig, "layer_topk_overlap")
fig = plots.heatmap(square(cons, "kendall_tau", layers), "Kendall tau between the layers' LayerMem rankings",
                    report.caption(f"{len(main['cand'][layers[0]])} candidates"), cbar="Kendall tau")
report.figure(fig, "layer_kendall_tau")
adj = LM.adjacent_vs_distant(cons, overlap_k, distant_gap)
report.table(adj, "adjacent_vs_distant")
display(adj.round(4))
fig = plots.scatter(cons.gap, cons.kendall_tau, "Agreement against distance between layers", "distance (layers apart)",
                    "Kendall tau", report.caption(f"{len(cons)} layer pairs"))
report.figure(fig, "tau_vs_distance")

# %% [markdown]
# ## Other architectures, and attention against MLP in a ViT
# Each cell is its own f/g pair trained on the same splits. A ViT's layers are the outputs of each block's
# attention sub-layer and MLP sub-layer (after their residual additions); Delta-LayerMem of a sub-layer is
# what that sub-layer adds. The paper: the MLP sub-layers memorise more than the attention sub-layers.


# %%
def run_cell_layers(spec):
    f_c, g_c = ([load(j) for j in js] for js in cell_fg[spec["label"]])
    print(origins("f", f_c), "|", origins("g", g_c))
    out = layermem_of(f_c, g_c, cell_candidates, cell_view_pairs, spec["measure_aug"])
    out["table"].insert(0, "cell", spec["label"])
    return out


cell_res = {}
for c in cells:
    print(f"-- cell {c['label']}")
    cell_res[c["label"]] = run_cell_layers(c)
if cell_res:
    report.table(pd.concat([r["table"] for r in cell_res.values()]), "layermem_cells")
arch_res = {c["label"]: cell_res[c["label"]] for c in a_cells}
if arch_res:
    fig = plots.lines(None, {k: ((np.arange(len(r["layers"])) + 1) / len(r["layers"]), r["table"]["LayerMem random"])
                             for k, r in arch_res.items()}, "LayerMem over depth, per architecture",
                      "relative depth (layer / number of layers)", "LayerMem (random candidates)",
                      report.caption(f"K={cell_view_pairs}, {cell_candidates} candidates"))
    report.figure(fig, "layermem_architectures")
    for k, r in arch_res.items():
        display(r["table"][["cell", "layer", "LayerMem random", "Delta random", "LayerMem top", "LayerMem least"]].round(4))
vit_rows = []
for k, r in cell_res.items():
    if any(l.endswith(".mlp") for l in r["layers"]):
        sub = LM.vit_sublayers(r["table"].drop(columns=["cell"]))
        sub.insert(0, "cell", k)
        vit_rows.append(sub)
        long = pd.concat([pd.DataFrame({"block": sub.block, "sub-layer": s, "Delta-LayerMem": sub[f"Delta random ({s})"]})
                          for s in ("attn", "mlp")])
        fig = plots.grouped_bars(long, "block", "sub-layer", "Delta-LayerMem", f"ViT sub-layers ({k})",
                                 "Delta-LayerMem (random candidates)", report.caption(f"K={cell_view_pairs}"))
        fig.axes[0].set_ylim(min(0, long["Delta-LayerMem"].min() * 1.1), None)
        report.figure(fig, f"vit_attn_vs_mlp_{k.replace('/', '_')}")
vit_tab = pd.concat(vit_rows) if vit_rows else pd.DataFrame()
if len(vit_tab):
    report.table(vit_tab, "vit_attn_vs_mlp")
    display(vit_tab[["cell", "block", "LayerMem random (attn)", "LayerMem random (mlp)", "Delta random (attn)",
                     "Delta random (mlp)"]].round(4))

# %% [markdown]
# ## Several SSL methods on one architecture: do they memorise in the same layers?
# For the methods trained on the same architecture, we compare their per-layer LayerMem profiles (Kendall tau
# between the per-layer means) and which layers they rank highest by Delta-LayerMem. Methods on another
# architecture (MAE on a ViT) appear in the section above.

# %%
method_labels = [c["label"] for c in m_cells]
by_arch = {}
for k in method_labels:
    by_arch.setdefault(next(c["arch"] for c in m_cells if c["label"] == k), {})[k] = cell_res[k]
method_rows = []
for arch_, same in by_arch.items():
    if len(same) < 2:
        continue
    layers_ = next(iter(same.values()))["layers"]
    xs = np.arange(1, len(layers_) + 1)
    fig = plots.lines(xs, {k: r["table"]["LayerMem random"] for k, r in same.items()},
                      f"LayerMem per layer across SSL methods ({arch_})", "layer", "LayerMem (random candidates)",
                      report.caption(f"K={cell_view_pairs}, {cell_candidates} candidates, seeds {list(grid_seeds)}"))
    fig.axes[0].set_xticks(xs, layers_, rotation=30, ha="right", fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption
    report.figure(fig, f"layermem_methods_{arch_}")
    display(pd.DataFrame({k: r["table"].set_index("layer")["Delta random"] for k, r in same.items()}).round(4))
    names = list(same)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ta, tb = same[a]["table"], same[b]["table"]
            tau = kendalltau(ta["LayerMem random"], tb["LayerMem random"])
            tau_d = kendalltau(ta["Delta random"], tb["Delta random"])
            ka, kb = set(LM.pick_layers(ta, k_layers, "Delta")), set(LM.pick_layers(tb, k_layers, "Delta"))
            method_rows.append({"arch": arch_, "a": a, "b": b, "tau LayerMem profile": tau.statistic, "p": tau.pvalue,
                                "tau Delta profile": tau_d.statistic,
                                f"shared top-{k_layers} Delta layers": len(ka & kb) / k_layers})
method_tab = pd.DataFrame(method_rows)
if len(method_tab):
    report.table(method_tab, "methods_layer_agreement")
    display(method_tab.round(3))
else:
    print("no architecture has two SSL methods among method_cells: no cross-method comparison")

# %% [markdown]
# ## Downstream use: fine-tuning and replacing layers
# **Fine-tuning.** Starting from f, only `k_layers` layers are fine-tuned on the second dataset's training
# images with f's own SSL objective (SimCLR) and augmentation; all other weights and BatchNorm statistics stay
# frozen. The layers are the most memorising ones (by LayerMem or by Delta-LayerMem of the random
# candidates), the last ones, or random ones. We report the probe accuracy on the second dataset (linear
# probe; `probe_kind = "knn"` swaps in a 20-NN probe for quick runs).
#
# **Replacement.** An encoder with f's recipe is trained on the second dataset; f's most, least or random
# memorising layers are replaced by its layers. We report probe accuracy on both datasets. If the most
# memorising layers hold what f learned about CIFAR-10, replacing them costs the most CIFAR-10 accuracy.
# Inputs are normalised with f's training statistics throughout.

# %%
f0 = fs[0]
norm = Augmentation("none", mean=cfg.mean, std=cfg.std).normalize
probe_idx = balanced_subset(test_data.labels.numpy(), min(probe_test, len(test_data)), pair.split_seed + SplitSeed.PROBE_TEST)
tasks = {pair.dataset: (train_data.images[splits.f_train], train_data.labels[splits.f_train], test_data.images[probe_idx],
                   test_data.labels[probe_idx]),
         f"{second_dataset} (2nd)": (second_train.images, second_train.labels, second_test.images, second_test.labels)}


def probe_on(enc, which):
    xtr, ytr, xte, yte = tasks[which]
    a_, b_ = extract(enc, xtr, norm, device=dev), extract(enc, xte, norm, device=dev)
    return linear_probe(a_, ytr, b_, yte, device=dev) if probe_kind == "linear" else knn_accuracy(a_, ytr, b_, yte)


choices = {s: LM.pick_layers(tab, k_layers, s) for s in ("LayerMem", "Delta", "last")}
for d_ in range(random_draws):
    choices[f"random #{d_ + 1}"] = LM.pick_layers(tab, k_layers, "random", seed=pair.split_seed + SplitSeed.RANDOM_LAYERS + d_)
second_key = list(tasks)[1]
ft_rows = [{"strategy": "none (frozen f)", "layers": "", "accuracy": cache.get_or_compute(
    "layer_probe", {"enc": f0.key, "task": second_key, "n": [second_n_train, second_n_test, pair.split_seed], "probe": probe_kind},
    lambda: probe_on(f0.encoder, second_key), force=force)}]
for s, ls in choices.items():
    key = {"enc": f0.key, "layers": ls, "epochs": finetune_epochs, "lr": finetune_lr, "data": second_dataset,
           "n": [second_n_train, second_n_test, pair.split_seed], "seed": pair.split_seed, "probe": probe_kind}

    def run_ft(ls=ls):  # a few epochs of a few layers: fine-tuned here, not a job of the plan
        enc, hist = LM.finetune(f0, ls, second_train.images, epochs=finetune_epochs, lr=finetune_lr,
                                batch_size=pair.batch_size, seed=pair.split_seed, device=dev)
        return {"acc": probe_on(enc, second_key), "loss": hist[-1]["loss"]}

    r_ = cache.get_or_compute("layer_finetune", key, run_ft, force=force)
    ft_rows.append({"strategy": s, "layers": ", ".join(ls), "accuracy": r_["acc"], "final loss": r_["loss"]})
ft = pd.DataFrame(ft_rows)
ft["group"] = ft.strategy.str.replace(r" #\d+$", "", regex=True)
report.table(ft, "finetune")
display(ft.round(4))
ftg = ft.groupby("group", sort=False).accuracy.mean()
fig = plots.bars(ftg.to_dict(), f"Fine-tuning {k_layers} chosen layers on {second_dataset}",
                 f"{probe_kind} probe accuracy ({second_dataset})",
                 report.caption(f"{finetune_epochs} epochs, lr {finetune_lr}, random: mean of {random_draws} draws"))
fig.axes[0].set_ylim(max(0, ftg.min() - 0.05), None)
report.figure(fig, "finetune")

# %%
m2 = load(m2_job)
print(f"second-dataset encoder: {'cache' if m2.from_cache else 'trained'}, final loss {m2.history[-1]['loss']:.3f}")
rep_choices = {"most (LayerMem)": LM.pick_layers(tab, k_layers, "LayerMem"),
               "most (Delta)": LM.pick_layers(tab, k_layers, "Delta"),
               "least (LayerMem)": LM.pick_layers(tab, k_layers, "least LayerMem"),
               "least (Delta)": LM.pick_layers(tab, k_layers, "least Delta")}
for d_ in range(random_draws):
    rep_choices[f"random #{d_ + 1}"] = LM.pick_layers(tab, k_layers, "random", seed=pair.split_seed + SplitSeed.RANDOM_REPLACED + d_)
rep_rows = []
for s, ls in [("none (f)", []), *rep_choices.items(), ("all (second-dataset encoder)", layers)]:
    key = {"target": f0.key, "source": m2.key, "layers": list(ls), "probe": [probe_kind, probe_test, second_n_train,
                                                                             second_n_test, pair.split_seed]}

    def run_rep(ls=ls):
        enc = LM.replace_layers(f0.encoder, m2.encoder, ls) if ls else f0.encoder
        return {k: probe_on(enc, k) for k in tasks}

    accs = cache.get_or_compute("layer_replace", key, run_rep, force=force)
    rep_rows += [{"strategy": s, "layers": ", ".join(ls) if ls != layers else "all", "dataset": k, "accuracy": v}
                 for k, v in accs.items()]
rep = pd.DataFrame(rep_rows)
rep["group"] = rep.strategy.str.replace(r" #\d+$", "", regex=True)
report.table(rep, "replacement")
display(rep.pivot_table(index=["group"], columns="dataset", values="accuracy", sort=False).round(4))
fig = plots.grouped_bars(rep.groupby(["dataset", "group"], sort=False).accuracy.mean().reset_index(), "group",
                         "dataset", "accuracy", f"Replacing {k_layers} layers of f with the {second_dataset} encoder's",
                         f"{probe_kind} probe accuracy", report.caption("random: mean over draws"))
fig.axes[0].tick_params(axis="x", labelrotation=25, labelsize=7)
fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption
report.figure(fig, "replacement")

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
first, last = layers[0], layers[-1]
r_first, r_last = tab.set_index("layer").loc[first], tab.set_index("layer").loc[last]
report.claim(f"LayerMem of the last layer exceeds that of the first ({random_points} random candidates)",
             r_last["LayerMem random"] > r_first["LayerMem random"],
             f"{first}: {r_first['LayerMem random']:.4f}, {last}: {r_last['LayerMem random']:.4f}")
others = tvl[tvl.layer != main["final"]]
n_sig = int((others["p (top > least)"] < alpha).sum())
report.claim(f"the top-{top_k} points have higher LayerMem than the least-{top_k} in most layers (Welch p < {alpha}; "
             f"the ranking layer {main['final']} excluded)", n_sig > len(others) / 2,
             f"{n_sig}/{len(others)} layers; per layer mean top vs least: " +
             ", ".join(f"{r.layer} {r.top:.3f}/{r.least:.3f}" for r in others.itertuples()))
neg = tab[tab["Delta random"] < 0].layer.tolist()
report.claim("memorisation grows with depth, but not monotonically (some layer has Delta-LayerMem < 0)",
             bool(r_last["LayerMem random"] > r_first["LayerMem random"] and neg),
             f"layers with negative Delta: {neg or 'none'}")
a_ = adj.set_index("pairs")["mean kendall tau"]
report.claim("adjacent layers agree more than distant layers (mean Kendall tau)", a_.iloc[0] > a_.iloc[1],
             f"adjacent {a_.iloc[0]:.3f} vs distant {a_.iloc[1]:.3f}; top-{overlap_k} overlap "
             f"{adj.iloc[0, 3]:.2f} vs {adj.iloc[1, 3]:.2f}")
for k, g_ in (vit_tab.groupby("cell") if len(vit_tab) else []):
    da, dm = g_["Delta random (attn)"].mean(), g_["Delta random (mlp)"].mean()
    report.claim(f"{k}: the MLP sub-layers memorise more than the attention sub-layers (mean Delta-LayerMem)",
                 dm > da, f"MLP {dm:.4f} vs attention {da:.4f} over {len(g_)} blocks")
if len(method_tab):
    report.claim("SSL methods on one architecture memorise in similar layers (mean Kendall tau of the per-layer "
                 "LayerMem profiles > 0)", method_tab["tau LayerMem profile"].mean() > 0,
                 f"mean tau {method_tab['tau LayerMem profile'].mean():.3f} over {len(method_tab)} method pairs")
fa = ft.groupby("group", sort=False).accuracy.mean()
best_mem = max(fa["LayerMem"], fa["Delta"])
report.claim(f"fine-tuning the {k_layers} most memorising layers beats fine-tuning the last {k_layers} (probe "
             f"accuracy on {second_dataset})", best_mem > fa["last"],
             f"LayerMem {fa['LayerMem']:.4f}, Delta {fa['Delta']:.4f}, last {fa['last']:.4f}, random {fa['random']:.4f}")
ra = rep[rep.dataset == pair.dataset].groupby("group", sort=False).accuracy.mean()
worst_most = min(ra["most (LayerMem)"], ra["most (Delta)"])
report.claim(f"replacing the most memorising layers costs the most {pair.dataset} accuracy (vs least and random)",
             worst_most < min(ra["least (LayerMem)"], ra["least (Delta)"], ra["random"]),
             ", ".join(f"{k} {v:.4f}" for k, v in ra.items()))
report.claims_table()

# %% [markdown]
# ## Closing note

# %%
print(f"profile {profile} | {pair.dataset} | {pair.method}/{pair.arch} x{pair.width}, {pair.epochs} epochs, seeds {list(pair.seeds)} | "
      f"K={layer_view_pairs} view pairs | {len(cand_pts)} candidates + {len(ctrl_pts)} controls | range: {layer_range} "
      f"| device {dev} | wall time {time.time() - T0:.0f}s")
report.print_claims()
