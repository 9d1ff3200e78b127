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
# Each parameter is explained in memlab.experiments.unitmem_classmem.UnitMemParams. The SSL encoder pair f/g is
# notebook 02's, read from params/<profile>/02_sslmem.yaml: it and its SSLMem scores come from 02's cache.
profile: str = "laptop"         # parameter profile: smoke, laptop or paper; it also selects notebook 02's pair
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"
executor: str = "auto"          # where jobs run: "auto", "inline", "local" or "slurm" ($MEMLAB_EXECUTOR overrides)
workers: int = 0                # local executor: worker processes; 0: one per CPU core (or GPU)
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, mem_gb, sbatch, ...
# -- UnitMem
unit_views: int = 10            # K augmentations per point (paper: 10)
unit_points: int = 1000         # |D|: a class-balanced part of f's training set (all of it when larger)
unit_rest: str = "mean"         # mu_-max: "mean" of the other points (paper) or "median" (reference code)
deep_layers: int = 2            # how many of the last layers count as "the deepest" for the claim
dynamics_layer: str = ""        # layer followed over training ("": the last layer)
dynamics_points: int = 1000     # points of D used per snapshot
top_k: int = 50                 # top-k vs least-k memorised points (by SSLMem)
trend_epochs: list = [10, 20, 40]  # snapshots of f where two claims are measured again (the trained f adds the last)
trend_points: int = 500         # S_C and S_S points scored with SSLMem at each (laptop: notebook 02's dynamics_points)
trend_pairs: int = 5            # their view pairs (laptop: notebook 02's dynamics_pairs, so its cached scores serve)
# -- supervised encoder (same architecture and training points, true labels, weak augmentation)
supervised_epochs: int = 120    # long enough to fit the training set (cross-entropy about 0.01)
supervised_lr: float = 0.05     # learning rate of the supervised encoders
# -- other datasets: an SSL encoder each (UnitMem across datasets) and a probe each after pruning
other_datasets: list = ["fashion_mnist"]  # datasets beside the pair's (paper: svhn, stl10)
classmem_dataset: str = ""      # SSL and supervised encoders trained on it: ClassMem and transfer (paper: cifar100)
synthetic_fallback: bool = False  # True: synthetic data stands in for an unavailable other dataset
second_n_train: int = 2000      # training images taken from each other dataset and from classmem_dataset
second_n_test: int = 1000       # test images taken from each of them
second_epochs: int = 40         # SimCLR epochs of the encoders of those datasets
classmem_n_train: int = 2000    # training images of classmem_dataset (paper: all 50000 of CIFAR-100)
# -- pruning
prune_fracs: list = [0.1, 0.2]  # fractions of units pruned (highest UnitMem, lowest, random)
prune_seed: int = 0             # seed of the random pruning
prune_draws: int = 5            # random prunings per fraction (their mean is the random baseline)
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
from IPython.display import display

from memlab.experiments import unitmem_classmem as X, unitmem_findings as find, unitmem_interventions as act
from memlab.experiments import ssl_vs_supervised as vs, unitmem_trends as trends
from memlab.io import plots
from memlab.metrics.unitmem import layer_summary

P, S = X.begin(globals())   # every check before any compute, notebook 02's recipe included
R = X.load_data(P, S)       # data first: a missing dataset fails here, before any training

# %% [markdown]
# ## The plan
# Every training of this notebook is a job keyed by the cache -- notebook 02's f/g pair, the supervised
# encoder, an SSL encoder per other dataset, the SSL and supervised encoders of `classmem_dataset` and the DP
# encoders -- listed below with its cost and trained by the executor; a rerun finds them cached.

# %%
X.train(R)

# %% [markdown]
# ## The encoders
# * **SSL:** f of notebook 02 (SimCLR on $S_S \cup S_C$), loaded from the cache when 02 has run.
# * **Supervised:** the same architecture trained with cross-entropy on the same images and their labels.
#
# D, the point set of UnitMem, is a class-balanced set of `unit_points` of f's training images (all of
# them by default); each point is seen through `unit_views` fixed views of the encoder's own training
# augmentation.

# %%
ssl_table, sup_table = X.unit_tables(R)
S.report.table(ssl_table, "units_ssl")
S.report.table(sup_table, "units_supervised")
layers = R.layers

# %% [markdown]
# ## UnitMem per layer, and across datasets
# Each box is the distribution of UnitMem over the units of one layer. Memorisation is spread over the
# whole encoder rather than concentrated in the last layer. The second panel compares the last layer of
# encoders trained with the same recipe on different datasets: the more complex the data, the more units
# memorise strongly.

# %%
summ_ssl, summ_sup = layer_summary(ssl_table), layer_summary(sup_table)
summ = summ_ssl.merge(summ_sup, on="layer", suffixes=("_ssl", "_sup"))
S.report.table(summ, "layer_summary")
display(summ.round(3))
S.report.figure(find.per_layer_figure(R, ssl_table, sup_table), "unitmem_per_layer")

# %%
across, other_tables = find.across_datasets(R, ssl_table)
for name, table in other_tables.items():
    S.report.table(table, f"units_ssl_{S.report.slug(name)}")
across_df = find.across_table(across)
S.report.table(across_df, "unitmem_across_datasets")
display(across_df.round(3))
S.report.figure(find.across_figure(R, across), "unitmem_across_datasets")

# %% [markdown]
# ## ClassMem against UnitMem (SSL: top row, supervised: bottom row)
# Each dot is a unit. Below the red diagonal a unit is more selective for a single point than for a class.
# SSL has no labels, so its units should sit mostly below the diagonal, increasingly so with depth; a
# supervised encoder is trained to separate classes, so more of its units move above it.

# %%
fig = plots.unit_scatter_grid({"SSL": ssl_table, "supervised": sup_table}, layers, "ClassMem vs UnitMem per layer",
                              S.report.caption(f"{P.pair.arch} x{P.pair.width}"))
S.report.figure(fig, "classmem_vs_unitmem")
frac = find.fraction_above_diagonal(layers, summ_ssl, summ_sup)
S.report.table(frac, "fraction_above_diagonal")
display(frac.round(3))

# %% [markdown]
# ## ClassMem against UnitMem over training: effect versus compute
# Encoders trained for a few CPU-minutes may not yet have units above the diagonal. The fraction of units
# with ClassMem > UnitMem is measured again at snapshots of f (`trend_epochs`) and of the supervised encoder
# at the same fractions of its training, on the points the next section follows; the difference supervised
# minus SSL, with its standard error, is fitted against log2(epochs) with its 95% band (`metrics.trend`).
# The last fitted point is the trained encoders measured the same way; the claim's own measurement (more points) is
# the table's last row, which decides the claim and is not fitted. The claim line then says whether the claim holds, whether
# the trend points the paper's way without being significant yet, or whether it fails, and where the fitted
# line would cross 0. Each encoder's snapshots share one training run, so the band is optimistic.

# %%
cm_dyn = trends.classmem_over_training(R, ssl_table, sup_table)
S.report.table(cm_dyn, "classmem_fraction_over_training")
display(cm_dyn.round(4))
if trends.has_curve(cm_dyn):  # effect versus compute: the fitted trend, its band, and where it would reach the claim
    S.report.figure(trends.classmem_figure(R, cm_dyn), "classmem_fraction_trend")

# %% [markdown]
# ## UnitMem over training
# f was snapshotted during training (notebook 02's `snapshot_epochs`). The mean UnitMem of one layer over
# the snapshots shows when units start to single out points: the paper sees it rise fastest early and keep
# growing more slowly afterwards. The second figure fits that statistic against log2(epochs), with its 95%
# band: the claim line then says whether it holds, whether the trend points the paper's way without being
# significant yet, or whether it fails (`metrics.trend`).

# %%
dyn, dyn_layer, n_dyn = find.unitmem_over_training(R)
S.report.table(dyn, "unitmem_over_epochs")
display(dyn.round(4))
if len(dyn):
    S.report.figure(find.dynamics_figure(R, dyn, dyn_layer, n_dyn), "unitmem_over_epochs")
if len(dyn) >= 3:  # effect versus compute: the fitted trend, its band, and where it would reach the claim
    S.report.figure(find.growth_figure(R, dyn, dyn_layer, n_dyn), "unitmem_growth_trend")

# %% [markdown]
# ## ClassMem against UnitMem on a second labelled dataset, and transfer
# The paper repeats the ClassMem figure on CIFAR-100: an SSL encoder (the pair's recipe) and a supervised one,
# both trained on `classmem_dataset`, measured on all of their training images. Their frozen features are then
# probed on every dataset of this notebook. The paper, pre-training on CIFAR-100, finds the supervised encoder
# better on CIFAR-100 and CIFAR-10 and the SSL encoder better on STL-10 and SVHN: class memorisation helps near
# the training labels and hurts far from them. The laptop profile skips this section (`classmem_dataset: ''`):
# CIFAR-100 is a download, and the two encoders would add to the 90-minute budget.

# %%
E = vs.second_encoders(R)
if E is not None:
    summ2 = vs.classmem_summary(E)
    S.report.table(summ2, "classmem_second_dataset")
    display(summ2.round(3))
    S.report.figure(vs.classmem_figure(R, E), f"classmem_vs_unitmem_{S.report.slug(E.shown)}")
    transfer = vs.transfer_table(R, E)
    S.report.table(transfer, "transfer_ssl_vs_supervised")
    display(transfer.pivot_table(index="dataset", columns="encoder", values="accuracy", sort=False).round(4))
    S.report.figure(vs.transfer_figure(R, transfer), "transfer_ssl_vs_supervised")
else:
    print("No classmem_dataset in this profile: the second-dataset ClassMem and transfer section is skipped.")

# %% [markdown]
# ## Memorised points and memorising units
# The localisation paper links a data point to the units it activates maximally: the units u whose top point
# (the one reaching mu_max,u) it is. We take the top-k and least-k points by SSLMem (notebook 02's scores),
# count the units each group tops, and compare those units' UnitMem (one-sided Welch, top > least), layer by
# layer. A point that tops no unit has no linked unit. (`point_selectivity`, each point's most selective
# unit, is a different quantity, kept in the library as an extra.)

# %%
link = find.sslmem_unitmem_link(R, ssl_table)
S.report.table(link.table, "sslmem_unitmem_link")
display(link.table.round(4))
S.report.table(link.hits, "mu_max_points")
display(link.hits)
S.report.figure(find.link_figure(R, link), "sslmem_vs_unitmem")

# %% [markdown]
# ## Memorised points and memorising units over training: effect versus compute
# The same test at snapshots of f (`trend_epochs`): SSLMem of the snapshots of f and g ranks the points
# (`trend_points` per subset with `trend_pairs` view pairs: notebook 02's Fig. 2b scores on the laptop), the
# snapshot's units are linked to them, and each layer gets its one-sided Welch test. "Most layers" holds
# exactly when the layer ranked just past the middle by its z-score (z = the normal quantile of 1 - p) has
# z above the bar of p = `alpha`; that z is followed over training and fitted against log2(epochs), with a
# standard error of 1 (a z-score's). The trained f and g are the last fitted point, measured the same way; the
# claim's own test (all points) is the table's last row and is not fitted.

# %%
link_dyn = trends.link_over_training(R, link)
S.report.table(link_dyn, "sslmem_unitmem_link_over_training")
display(link_dyn.round(4))
if trends.has_curve(link_dyn):
    S.report.figure(trends.link_figure(R, link_dyn), "sslmem_unitmem_link_trend")

# %% [markdown]
# ## Pruning by UnitMem
# We zero 10% and 20% of the units of every layer -- the highest-UnitMem units, the lowest, or random ones
# -- and measure linear-probe accuracy on the pair's dataset and on each of `other_datasets` (the paper:
# CIFAR-10, SVHN and STL-10). Random pruning is drawn `prune_draws` times: one draw is a noisy baseline.
# Pruning sets the unit's output to zero for the layers
# after it; no weights are edited, so no BatchNorm row is touched (the public code zeroed rows of every
# parameter, BatchNorm included). The paper finds that removing the most memorising units hurts most.

# %%
prune = act.pruning_table(R, ssl_table)
S.report.table(prune, "pruning")
display(prune.pivot_table(index=["fraction", "strategy"], columns="dataset", values="accuracy").round(4))
S.report.figure(act.pruning_figure(R, prune), "pruning")

# %% [markdown]
# ## Differential privacy
# DP-SGD bounds how much any single training point can change the encoder, so it should lower unit-level
# memorisation. Contrastive losses couple the images of a batch and do not admit per-example clipping, so
# the DP encoders use SimSiam (a per-image loss) with GroupNorm; the non-private reference uses the same
# recipe without clipping or noise.

# %%
dp = act.dp_table(R)
if dp is not None:
    S.report.table(dp, "dp_unitmem")
    display(dp.pivot_table(index="layer", columns="epsilon", values="mean UnitMem", sort=False).round(4))
    S.report.figure(act.dp_figure(R, dp), "dp_unitmem")
else:
    print("DP section skipped (dp_epochs = 0 in this profile).")

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
find.claims(R, summ_ssl=summ_ssl, summ_sup=summ_sup, ssl_table=ssl_table, sup_table=sup_table, dyn=dyn,
            dyn_layer=dyn_layer, prune=prune, link=link, dp=dp, cm_dyn=cm_dyn, link_dyn=link_dyn)
if E is not None:
    vs.classmem_on_second(R, E)
    vs.transfer_claims(R, transfer)
S.report.claims_table()

# %% [markdown]
# ## Closing note

# %%
pair = P.pair
print(f"profile {P.profile} | {pair.dataset} | {pair.method}/{pair.arch} x{pair.width}, {pair.epochs} epochs | "
      f"|D|={len(R.points)}, K={P.unit_views} | device {S.device} | wall time {S.elapsed():.0f}s")
S.report.print_claims()
