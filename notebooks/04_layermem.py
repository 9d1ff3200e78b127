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
# Each parameter is explained in memlab.experiments.layermem.LayerMemParams. The SSL encoder pair f/g and the
# method cells are notebook 02's, read from params/<profile>/02_sslmem.yaml: they come from 02's cache.
profile: str = "laptop"         # parameter profile: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"
executor: str = "auto"          # where jobs run: "auto", "inline", "local" or "slurm" ($MEMLAB_EXECUTOR overrides)
workers: int = 0                # local executor: worker processes (0: one per CPU core or GPU)
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, mem_gb, sbatch, ...
# -- LayerMem
layer_view_pairs: int = 5       # K view pairs per point (the first of notebook 02's view bank; paper: 5)
layer_candidates: int = 500     # S_C candidates scored at every layer; top/least are ranked among them
layer_shared: int = 200         # S_S points scored as a control (trained by both f and g: LayerMem about 0)
layer_range: str = "layer"      # normalising range: "layer" (per layer) or "shared" (one range for all layers)
random_points: int = 100        # the paper's "100 random candidates"
top_k: int = 50                 # the 50 most / least memorised candidates (by final-layer SSLMem)
overlap_k: int = 100            # top-k overlap between layers
distant_gap: int = 4            # layer pairs at least this far apart count as "distant"
sample_sizes: list = [25, 50, 100, 150]  # batch sizes of the sample-size ablation (sample_draws disjoint batches of each fit in layer_candidates)
sample_draws: int = 3           # random batches per size (the paper: 3)
# -- other encoders (one f/g pair per cell and grid seed)
grid_seeds: list = [0]          # seeds per cell: a subset of 02's grid_seeds
method_cells: list = ["simclr/resnet9", "dino/resnet9", "simsiam/resnet9", "mae/vit_tiny"]  # labels of 02's grid cells
arch_cells: list = []           # other architectures, cells in 02's format (laptop: none; the ViT is the MAE cell)
cell_view_pairs: int = 5        # K view pairs per point for the other encoders
cell_candidates: int = 500      # S_C candidates scored per other encoder
trend_candidates: int = 500     # candidates scored at each snapshot of a ViT cell (its effect-versus-compute curve)
trend_view_pairs: int = 5       # K view pairs per point there (the cell's K: its last point is then the claim's)
depth_trend_epochs: list = [10, 20, 40]  # snapshots of the pair where last-over-first is measured again (none: [])
# -- downstream: a second dataset
second_dataset: str = "fashion_mnist"  # second dataset (downstream / transfer)
synthetic_fallback: bool = False  # True: synthetic data stands in for an unavailable second_dataset
second_n_train: int = 2000      # training images taken from the second dataset
second_n_test: int = 1000       # test images taken from the second dataset
second_epochs: int = 20         # SimCLR epochs of the encoder trained on the second dataset (layer replacement)
k_layers: int = 2               # how many layers are fine-tuned, and replaced in the claim
replace_counts: list = [1, 2, 3]  # counts of replaced layers (the paper's appendix: 1, 2, 3; must include k_layers)
random_draws: int = 2           # random layer choices averaged
finetune_epochs: int = 3        # epochs of the fine-tuning in the layer experiments
finetune_lr: float = 0.02       # learning rate of that fine-tuning
probe_test: int = 2000          # CIFAR-10 test images for the probe
probe_kind: str = "linear"      # "linear" probe (as in the paper) or "knn" (20-NN, cosine; for quick runs)
alpha: float = 0.01             # significance level of the printed claims
force: bool = False             # recompute cached results instead of reusing them

# %%
from IPython.display import display

from memlab.experiments import layermem as X, layermem_downstream as down, layermem_findings as find
from memlab.experiments import layermem_samples as samples, layermem_trend as trend
from memlab.metrics import layermem as LM
from memlab.streams import SplitSeed

P, S = X.begin(globals())   # every check before any compute, notebook 02's recipe included
R = X.load_data(P, S)       # data first: a missing dataset fails here, before any training

# %% [markdown]
# ## The plan
# Every training of this notebook is a job keyed by the cache -- the f/g pair, each cell's f/g pair and the
# encoder trained on the second dataset -- listed below with its cost and trained by the executor; a rerun
# finds them cached. (The few-epoch fine-tunings of the last section run in the notebook, cached too.)

# %%
X.train(R)

# %% [markdown]
# ## The encoders and the scored points
# f and g are notebook 02's SimCLR pair (loaded from the cache when 02 has run). We score
# `layer_candidates` candidates (trained on by f only) and `layer_shared` shared points (trained on by both:
# their LayerMem should stay near 0 in every layer) with the first `layer_view_pairs` view pairs of
# notebook 02's view bank. One forward pass per view yields every layer.

# %%
main = X.main_result(R)
layers, tab = main.layers, main.table
S.report.table(tab, X.main_table_name(P))
display(tab[["layer", "LayerMem random", "Delta random", "LayerMem top", "Delta top", "LayerMem least", "Delta least",
             "LayerMem S_S control"]].round(4))

# %% [markdown]
# ## The paper's table: LayerMem and Delta-LayerMem per layer
# Three groups of candidates: 100 random ones, the 50 most and the 50 least memorised by final-layer SSLMem.
# The control (shared points, trained on by both f and g) shows the level of "no memorisation" at each layer:
# a control away from 0 is an offset between f and g at that layer (as in notebook 02's subset means), and a
# layer memorises its candidates only insofar as they score above it.

# %%
S.report.figure(find.per_layer_figure(R, main), "layermem_per_layer")
S.report.figure(find.delta_figure(R, main), "delta_layermem_per_layer")
tvl = LM.top_vs_least(main.cand, layers, main.grp)
S.report.table(tvl, "top_vs_least")
display(tvl.round(5))

# %% [markdown]
# ## Does the last layer overtake the first with training? (effect versus compute)
# The paper finds LayerMem growing with depth. When the pair's last layer does not yet beat its first here, the
# question is whether training is heading there. The pair's f and g are scored again at the snapshots
# `depth_trend_epochs` (notebook 02 keeps them), with the same candidates and view pairs, and the claim's
# statistic -- mean LayerMem of the last layer minus that of the first, over the random candidates, with its
# standard error over those points -- is fitted against log2(epochs) with its 95% band (`metrics.trend`). The
# last point is the result above. The snapshots share one training run, so the band is optimistic.

# %%
depth_dyn = trend.depth_over_training(R, main)
depth_trend = trend.depth_trend(main, depth_dyn)
if len(depth_dyn):
    S.report.table(depth_dyn, "layermem_depth_over_training")
    display(depth_dyn.round(4))
if depth_trend:
    S.report.figure(trend.depth_trend_figure(R, depth_trend), "layermem_depth_trend")
else:
    print("depth_trend_epochs lists fewer than 2 snapshots: no curve")

# %% [markdown]
# ## Consistency between layers
# Do the layers memorise the same points? For every pair of layers: the overlap of their `overlap_k` most
# memorised candidates and Kendall's tau between their rankings. The paper finds high agreement between
# adjacent layers (especially deep ones) and little between distant ones.

# %%
cons = LM.consistency(main.cand, layers, P.overlap_k)
S.report.table(cons, "layer_consistency")
adj = LM.adjacent_vs_distant(cons, P.overlap_k, P.distant_gap)
S.report.table(adj, "adjacent_vs_distant")
display(adj.round(4))
for name, fig in find.consistency_figures(R, main, cons).items():
    S.report.figure(fig, name)

# %% [markdown]
# ## How many points does LayerMem need? (the sample-size ablation)
# The paper computes LayerMem on batches of 100 to 5,000 points, three random batches each, and finds it "not
# significantly affected by the size or composition of the batch". We redo it on the candidates scored above
# (no new forward pass): `sample_draws` disjoint random batches of each of `sample_sizes` points, each batch
# normalised by its own range, as a run that scored only those points would be. The band is the 95% interval over the
# batches; the claim is a one-way ANOVA per layer across sizes, and the layers' order is compared with that of
# all candidates (Kendall tau). A batch's range widens with its size, which alone can shrink LayerMem's scale.
# With 3 batches per size the ANOVA has little power: a PASS means no difference this design can detect, not
# that LayerMem does not depend on the batch (the band shows how large a difference could hide).

# %%
cand_raw = {l: main.raw[l]["raw"][:len(main.cand[layers[0]])] for l in layers}   # the candidates' raw scores
sample_tab = samples.draws_table(cand_raw, layers, P.sample_sizes, P.sample_draws,
                                 P.pair.split_seed + SplitSeed.LAYERMEM_SAMPLES, P.layer_range)
sample_summary = samples.summary(sample_tab, samples.all_means(cand_raw, layers, P.layer_range))
sample_tests = samples.anova(sample_tab)
S.report.table(sample_summary, "layermem_sample_size")
S.report.table(sample_tests, "layermem_sample_size_anova")
display(sample_summary.pivot(index="layer", columns="points", values="mean").round(4))
S.report.figure(samples.figure(R, sample_summary, P.sample_draws), "layermem_sample_size")
samples.claim(S.report, sample_summary, sample_tests, P.alpha)

# %% [markdown]
# ## Other architectures, and attention against MLP in a ViT
# Each cell is its own f/g pair trained on the same splits. A ViT's layers are the outputs of each block's
# attention sub-layer and MLP sub-layer (after their residual additions); Delta-LayerMem of a sub-layer is
# what that sub-layer adds. The paper: the MLP sub-layers memorise more than the attention sub-layers.


# %%
cell_res = X.cell_results(R)
if cell_res:
    S.report.table(find.cells_table(cell_res), "layermem_cells")
arch_res = {c["label"]: cell_res[c["label"]] for c in P.arch_specs}
if arch_res:
    S.report.figure(find.architectures_figure(R, arch_res), "layermem_architectures")
    display(find.cells_table(arch_res)[["cell", "layer", "LayerMem random", "Delta random", "LayerMem top",
                                        "LayerMem least"]].round(4))
vit = find.vit_table(cell_res)
for k, sub in (vit.groupby("cell", sort=False) if len(vit) else []):
    S.report.figure(find.vit_figure(R, sub, k), f"vit_attn_vs_mlp_{k.replace('/', '_')}")
if len(vit):
    S.report.table(vit, "vit_attn_vs_mlp")
    display(vit[["cell", "block", "LayerMem random (attn)", "LayerMem random (mlp)", "Delta random (attn)",
                 "Delta random (mlp)"]].round(4))

# %% [markdown]
# ## Attention against MLP over training: effect versus compute
# On a laptop the ViT cell trains for minutes, and its MLP sub-layers may not yet memorise more than its
# attention sub-layers. A ViT cell with `snapshot_epochs` (in notebook 02's grid, or in `arch_cells`) is
# scored again at those snapshots and at the trained cell, with the same candidates and view pairs, and the
# claim's statistic -- mean Delta-LayerMem of the MLP sub-layers minus that of the attention sub-layers, over
# the random candidates, with its standard error over those points -- is fitted against log2(epochs) with its
# 95% band. The claim line then says whether it holds, whether the trend points the paper's way without being
# significant yet, or whether it fails, and where the fitted line would cross 0 (`metrics.trend`). The
# snapshots share one training run, so the points are not independent and the band is optimistic.

# %%
vit_dyn = trend.vit_over_training(R, cell_res)
vit_trends = trend.vit_trends(vit, vit_dyn)
if len(vit_dyn):
    S.report.table(vit_dyn, "vit_attn_vs_mlp_over_training")
    display(vit_dyn.round(4))
for k, t in vit_trends.items():
    S.report.figure(trend.vit_trend_figure(R, t, k), f"vit_trend_{k.replace('/', '_')}")
if not vit_trends:
    print("no ViT cell has 2 or more snapshot_epochs in this profile: no curve")

# %% [markdown]
# ## Several SSL methods on one architecture: do they memorise in the same layers?
# For the methods trained on the same architecture, we compare their per-layer LayerMem profiles (Kendall tau
# between the per-layer means) and which layers they rank highest by Delta-LayerMem. Methods on another
# architecture (MAE on a ViT) appear in the section above.

# %%
by_arch = find.methods_by_arch(R, cell_res)
for arch, same in by_arch.items():
    S.report.figure(find.methods_figure(R, arch, same), f"layermem_methods_{arch}")
    display(find.delta_profiles(same).round(4))
methods = find.method_agreement(R, by_arch)
if len(methods):
    S.report.table(methods, "methods_layer_agreement")
    display(methods.round(3))
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
# memorising layers are replaced by its layers, `replace_counts` layers at a time (the paper's appendix: 1, 2
# and 3; its main table and our claim: `k_layers`). We report probe accuracy on both datasets. If the most
# memorising layers hold what f learned about CIFAR-10, replacing them costs the most CIFAR-10 accuracy.
# Inputs are normalised with f's training statistics throughout.

# %%
ft = down.finetune_table(R, tab)
S.report.table(ft, "finetune")
display(ft.round(4))
S.report.figure(down.finetune_figure(R, ft), "finetune")

# %%
rep = down.replacement_table(R, tab)
S.report.table(rep, "replacement")
display(rep.pivot_table(index=["k layers", "group"], columns="dataset", values="accuracy", sort=False).round(4))
S.report.figure(down.replacement_figure(R, rep), "replacement")

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
find.claims(R, main, tvl, adj, vit, methods, ft, rep, vit_trends, depth_trend)
S.report.claims_table()

# %% [markdown]
# ## Closing note

# %%
pair = P.pair
print(f"profile {P.profile} | {pair.dataset} | {pair.method}/{pair.arch} x{pair.width}, {pair.epochs} epochs, seeds "
      f"{list(pair.seeds)} | K={P.layer_view_pairs} view pairs | {len(R.candidates)} candidates + {len(R.controls)} "
      f"controls | range: {P.layer_range} | device {S.device} | wall time {S.elapsed():.0f}s")
S.report.print_claims()
