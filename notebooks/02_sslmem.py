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
#
# **Training views at laptop scale.** The laptop profile trains the pair and the SSL cells of Table 1 with
# crop+flip views only (`train_aug: crop`), not SimCLR's colour-jittered views, and measures with the same
# crop+flip. Memorisation is weak after a few CPU-minutes; the memorisation-strength study (README, issue 19)
# found this knob the strongest: with one f/g seed, d of m(S_C) > m(S_S) rises from 0.11 to 0.34 at equal
# compute. A plausible reading: colour jitter makes every view of a point hard to align, for f and g alike, which buries the part
# of the alignment that only f learnt. The price is accuracy: f's linear probe falls from 0.379 to 0.334 (cold
# laptop runs with and without colour jitter), so within one method more memorisation here comes with weaker
# features; read Table 1's memorisation-accuracy link across methods, as the paper does. The paper profile keeps
# each method's own views (`train_aug: ''`).

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/02_sslmem.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto", "cpu", "cuda", "cuda:1", ...
executor: str = "auto"          # where training jobs run: "auto", "inline", "local" or "slurm" ($MEMLAB_EXECUTOR wins)
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, mem_gb, sbatch, ...
# -- the f/g pair (dataset to train_aug): notebooks 04 and 05 reuse it from params/<profile>/02_sslmem.yaml
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
train_aug: str = "crop"         # training views of the pair and SSL cells: crop+flip only ("crop"), or each method's own ("")
snapshot_epochs: list = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80]  # encoder weights kept
dynamics_epochs: list = [10, 20, 40, 80]  # snapshots scored for the training-dynamics figure (Fig. 2b)
dynamics_points: int = 500      # candidates (and as many shared points) scored per snapshot
dynamics_pairs: int = 5         # view pairs per point for the snapshots
probe_test: int = 2000          # test images for the linear probe
gallery_k: int = 10             # images per row of the most / least memorised galleries
alpha: float = 0.01             # significance level of the printed claims
force: bool = False             # recompute cached encoders and scores
# -- cross-method tables (SSLMemParams in memlab.experiments.sslmem explains each)
tables: list = ["table1", "table4", "rankings", "table11"]  # of table1, table4, rankings, table11, table7, table8, table9
grid: list = [                  # snapshot_epochs: the epochs of a cell's effect-versus-compute curve
    {"method": "simclr", "snapshot_epochs": [20, 40]},  # the main pair above (served from the cache)
    {"method": "dino", "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001, "epochs": 30,
     "snapshot_epochs": [8, 15]},
    {"method": "vicreg", "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001, "epochs": 30,
     "snapshot_epochs": [8, 15]},
    {"method": "simsiam", "epochs": 30, "snapshot_epochs": [8, 15]},
    {"method": "mae", "arch": "vit_tiny", "model_kw": {"depth": 4, "embed_dim": 128, "num_heads": 4},
     "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.05, "epochs": 30, "snapshot_epochs": [8, 15]},
]                               # Table 1 cells; missing keys take the encoder settings above (dataset, arch, ...)
grid_seeds: list = [0]          # f/g seeds per cell
grid_view_pairs: int = 10       # K view pairs per point in the grid
grid_points: int = 500          # S_C and S_S points scored per cell
grid_trend_points: int = 250    # S_C and S_S points scored at each snapshot of a cell's curve
dejavu_k: int = 100             # Table 4: neighbours of the Deja Vu k-NN (the authors: 100)
dejavu_crop: float = 0.3        # Table 4: side fraction of the lower-left background crop (the authors: 0.3)
dejavu_conf: float = 0.2        # Table 4: the target's most confident fraction of points
supervised_epochs: list = [20, 50]  # Table 11: two training lengths; the longest enters the rankings
supervised_lr: float = 0.05     # learning rate of the supervised encoders (Table 11)
supervised_arch: str = ""       # architecture of the supervised encoders ("": the pair's; Table 11: resnet50)
topk: list = [10, 20, 50, 100, 200]  # k of the top-k overlaps between rankings (Tables 12-13)
overlap_fracs: list = [0.7, 0.8, 0.85]  # Table 7: |S_S| as a fraction of the pool
measure_augs: list = ["noise", "rotate", "colordrop"]  # Table 8: measured with other augmentations
simclr_augs: list = ["croponly", "crop", "noise", "mask"]  # Table 9: SimCLR trained with one augmentation type
mae_mask_ratios: list = [0.5, 0.75, 0.8, 0.9]  # Table 9: MAE mask ratio
# -- the intuition toys (appendix D.3, Figs. 10 and 11): seconds on a CPU
toy_steps: int = 400            # full-batch Adam steps of every toy encoder
toy_seed: int = 0               # seed of the toys' data, weights, jitter and measuring views
toy_encoders: int = 3           # f/g pairs per toy, averaged in m(x) (the expectations over the training seeds)
toy_view_pairs: int = 32        # K view pairs of each toy alignment loss

# %%
from IPython.display import display

from memlab.experiments import sslmem, sslmem_scores, sslmem_tables, sslmem_toys
from memlab.experiments.common import parameters, start
from memlab.io.params import check_injected

check_injected()
P = parameters(sslmem.SSLMemParams, globals())  # bad parameters fail here, before any compute
S = start("02_sslmem", P)
print(f"device: {S.device} | cache: {S.cache.root}")

# %% [markdown]
# ## Intuition first: why is SSLMem high for outliers? (appendix D.3, Figs. 10 and 11)
# Augmentations turn each training point into a small region, Aug(x). Training makes an encoder map each region
# to (nearly) one representation. If x is an **inlier**, its region overlaps those of its neighbours, so even an
# encoder g that never saw x is held aligned around x by them: $L_{align}(g, x) \approx L_{align}(f, x)$ and
# m(x) is about 0. If x is an **outlier**, no other region overlaps its own: only f, which trained on x, is asked
# to align it, and g is free to vary there; where it does, $L_{align}(g, x) > L_{align}(f, x)$ and m(x) > 0. A
# memorised point is one whose own training changed how the encoder treats its neighbourhood.
#
# Two toys make this concrete with actual fitted encoders, trained in seconds with InfoNCE (NT-Xent) on
# Gaussian-jitter views: small MLPs whose one-dimensional output is an angle on the unit circle (the normalised
# representation), f with x and g without it, `toy_encoders` seeds each (`memlab.experiments.sslmem_toys`).
#
# **Fig. 10, 1-D.** Two clusters of points on a line. (a) x is an inlier: f and g almost coincide. (b) x is an
# outlier in the gap: g sweeps from one cluster's representation to the other's right across Aug(x), while f
# bends to keep Aug(x) closer together. Where the outlier sits matters: the argument only says g is *unconstrained*
# at x. Beyond the clusters this g happens to be flat already, and m(x) comes out negative there (f bends to tell x
# from its neighbours; `sslmem_toys` notes the numbers): SSLMem measures what training on x changed.
# %%
display(sslmem_toys.figure10(P.toys, S.report).round(4))

# %% [markdown]
# **Fig. 11, 2-D.** Two latent classes, each a cluster plus one outlier; f trains with the outliers, g without.
# The heatmaps show the alignment loss $L_{align}(h, p)$ at every point p of the plane: both encoders align the
# clusters, only f aligns the outliers' neighbourhoods, so g - f (SSLMem over the plane) is high exactly there.
# %%
display(sslmem_toys.figure11(P.toys, S.report).round(4))

# %% [markdown]
# ## Data and splits
# The splits are class-balanced and fixed by `split_seed`; they are written next to the results so every
# number below can be traced back to the exact points.
# %%
D = sslmem.load_data(P, S.report)  # also every data set of the selected tables, checked before training
display(D.sizes())

# %% [markdown]
# ## The plan: f and g, and every cell of the tables
# Same method, architecture, hyper-parameters and seeds for f and g; only the training sets differ. Every
# encoder of this notebook -- the main pair and each table's f/g pairs -- is a job keyed by the cache (the
# full configuration and a fingerprint of the training images), listed with its cost before anything trains
# and then trained by the executor. A rerun, or another notebook that needs the same pair (LayerMem,
# UnitMem), finds them in the cache.
# %%
pair = sslmem.train(P, S, D)  # the plan: shown with its cost, then trained (or served by the cache)
display(pair.training_summary())

# %% [markdown]
# ## Score every point
# For each point we compute the alignment loss on f and on g over `view_pairs` fixed view pairs, and
# their difference. Scores are normalised by their range (appendix A), so they lie in an interval of
# width 1; the raw differences are kept in the CSV as well.
# %%
R = sslmem_scores.PairScores(pair)
display(R.subset_summary().round(4))

# %% [markdown]
# ## Table 1 row: mean memorization and downstream accuracy
# The paper's headline number is the mean normalised SSLMem over $S_C$, reported next to the accuracy of
# a linear probe on f's frozen representations (trained on f's training images with their labels,
# tested on held-out test images).
# %%
display(R.table1_row().round(4))

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
display(R.subset_tests().round(5))

# %% [markdown]
# ## How many f/g seeds does the claim need, and a test without the offset
# Each point's score is noisy: the views drawn and the random seeds of f and g both move it. Averaging the
# alignment over seeds (the expectations over $\mathcal{A}$ in Eq. 2) removes part of the second noise, so
# the effect size d of $m(S_C) > m(S_S)$ grows with the number of seeds. The scorer keeps every seed's
# alignment, so the table below tests the claim with each f/g seed pair alone and with the seeds averaged,
# at no extra cost; the claim lines say how many seeds this profile needs.
#
# The last columns test Table 16's "f memorises $S_C$, g memorises $S_I$" in a form the f/g offset cannot
# touch: each encoder's alignment advantage on its *own* training points, $L_g - L_f$ on $S_C$ and
# $L_f - L_g$ on $S_I$, is on average positive exactly when $m(S_C) > m(S_I)$. A common offset shifts both
# subsets alike and drops out of that Welch test, while memorisation counts twice (f's on $S_C$, g's on
# $S_I$).
# %%
display(R.seed_strength().round(5))

# %% [markdown]
# ## Fig. 2a: alignment on f against alignment on g
# Each dot is a candidate. Points below the diagonal are aligned better by f, which trained on them: these
# are the memorised points. Low alignment loss alone is *not* memorisation: easy points sit near the
# origin on both axes.
# %%
R.alignment_figure()

# %% [markdown]
# ## Fig. 2b: memorisation over training
# The encoders were snapshotted during training; scoring each snapshot pair (on `dynamics_points`
# candidates and shared points, with `dynamics_pairs` view pairs, to keep it cheap) shows how the training
# loss, the probe accuracy and the mean memorisation of the candidates evolve. The paper observes that
# memorisation keeps growing after loss and accuracy plateau.
# %%
display(R.dynamics().round(4))

# %% [markdown]
# ## Fig. 1: the most and the least memorised candidates
# The most memorised candidates tend to be atypical (unusual pose, background or colour); the least
# memorised ones look like the prototypes of their class.
# %%
R.galleries()

# %% [markdown]
# ## Fig. 5: how many points are memorised, and how strongly?
# The fraction of points whose score exceeds a threshold. Candidates have a heavier right tail than the
# shared and extra points: a minority of candidates is memorised strongly.
# %%
R.threshold_fractions()

# %% [markdown]
# ## Planted atypical points (synthetic data only)
# The synthetic dataset plants rare variants, corrupted images and flipped labels and returns their
# indices. If SSLMem singles out atypical points, it ranks the planted candidates above the typical ones:
# a ROC AUC above 0.5. (Flipped labels do not change the image, so an SSL encoder cannot see them.)
# %%
display(R.atypical_auc().round(3))

# %% [markdown]
# ## Table 1: memorisation and downstream accuracy across SSL methods
# Each cell of the grid is its own f/g pair, trained with the same splits and scored on the same
# candidates and shared points (measured with the cell's own training augmentation). The paper finds that
# every method memorises its candidates, and that methods that memorise more also probe better.
# MAE runs on a small ViT: its encoder keeps the patch order fixed, so SSLMem compares token i of one view
# with token i of the other (the public reference code shuffles them).
# %%
T = sslmem_tables.CrossMethod(R)
display(T.table1().round(4))

# %% [markdown]
# ## Table 1, effect versus compute: does each method's memorisation emerge with training?
# A cell trained for a few CPU-minutes may memorise too little for its test to pass. Each cell with
# `snapshot_epochs` is scored again at those snapshots (`grid_trend_points` points per subset), and
# Cohen's d of $m(S_C) > m(S_S)$ is fitted against log2(epochs) with its 95% band. The dotted line is the
# claim's own bar written as a d: the d at which the one-sided test reaches p = `alpha` with the cell's
# scored points. Each claim line says "holds", "trend agrees, not yet significant" (the slope points the
# paper's way, one-sided p < 0.05) or "fails", and where the fitted line would cross the bar. The snapshots
# share one training run, so the points are not independent and the band is optimistic.
# %%
display(T.trend_figure().round(4))

# %% [markdown]
# ## Table 4: SSLMem beside Déjà Vu memorisation
# Déjà Vu (Meehan et al., 2023) asks whether an encoder recovers a training image's label from a background crop
# alone: f and g each embed the lower-left corner of every candidate (`dejavu_crop` of each side) and label it by a
# `dejavu_k`-NN vote over the probe's labelled test images. A candidate is déjà vu memorised when f (trained on it)
# is right and g (not trained on it) is wrong. The paper finds the two scores disagree on MAE: Déjà Vu rates it
# highest, SSLMem lowest (`memlab.metrics.dejavu`).
# %%
display(T.table4().round(4))

# %% [markdown]
# ## Table 11: supervised encoders, scored with SSLMem
# A supervised network with its classification layer removed is an encoder too. We train it on the same
# f/g splits with the true labels (weak augmentation), at two training lengths, and score it exactly like the
# SSL encoders (measured with its own training augmentation).
# %%
display(T.table11().round(4))

# %% [markdown]
# ## Tables 12-13 and Fig. 9: do the methods memorise the same points?
# Kendall's tau (with p-values) and the top-k overlap between the SSLMem rankings of the candidates under
# every method and under the supervised encoder, plus Feldman's label memorisation of the supervised f/g
# pair, $P_f(y|x) - P_g(y|x)$. The paper: SSL methods agree more with each other (tau about 0.2-0.26) than
# with the supervised encoder (about 0.07-0.11).
# %%
display(*T.rankings())

# %% [markdown]
# ## Ablations (Tables 7, 8, 9)
# - **Table 7**: the share of points both encoders train on. With |S_S| at 70/80/85% of the pool (the rest
#   split evenly into S_C and S_I), does the signal persist?
# - **Table 8**: the main SimCLR pair measured with augmentations it was not trained with.
# - **Table 9**: SimCLR trained with a single augmentation type, and MAE with different mask ratios.
# %%
display(T.ablations().round(4))

# %% [markdown]
# ## The paper's claims, checked on this run
# %%
T.claims()

# %% [markdown]
# ## Closing note
# %%
R.closing()
