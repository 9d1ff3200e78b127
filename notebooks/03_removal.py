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
# 4. **Effect versus compute.** A laptop trains for minutes where the paper trains for GPU-days. Where a claim
#    fails here, its statistic is followed over the encoders' training, so the curve shows whether the effect
#    is emerging.
#
# **Training views.** The laptop profile trains every SSL encoder here on crop+flip views without colour
# jitter (`train_aug: crop`), as notebook 02's pair: on this CPU budget it gives several times the
# memorisation of SimCLR's colour views for the same compute (the README's memorisation-strength study), and
# SSLMem is measured with the same views. The paper profile uses each method's own views (`train_aug: ''`).
#
# Every encoder of the notebook is one entry of a *plan* with a single progress bar (encoders done /
# total). Each is a cache entry, so a killed run resumes at the first unfinished encoder (and inside it at
# its last finished epoch), and a rerun is served from the cache.

# %% tags=["parameters"]
# Notebook parameters (defaults = the laptop profile; profiles live in params/<profile>/03_removal.yaml)
profile: str = "laptop"         # parameter profile these values come from: smoke, laptop or paper (labels the outputs)
output_dir: str = "outputs/laptop"  # folder of the figures, tables and claims (outputs/<profile>)
device: str = "auto"            # "auto", "cpu", "cuda", ...
executor: str = "auto"          # where training jobs run: "auto", "inline", "local" or "slurm" ($MEMLAB_EXECUTOR wins)
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, mem_gb, sbatch (#SBATCH options)
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
train_aug: str = "crop"         # training views of every SSL encoder: crop+flip only ("crop"), or each method's own ("")
seeds: list = [0, 1]            # f, g and every retrained encoder, once per seed (error bars)
view_pairs: int = 5             # K view pairs per point for SSLMem (paper: 5)
representation: str = "flat"    # "flat" (full output) or "pooled"
# -- removal (Fig. 3)
removal_ks: list = [300, 500]   # paper: 500, 1k, 2k, 4k, 8k, 16k of 25k
keep_ns: list = [700]           # Table 17: retrain on only the n most memorised (paper: 24k to 12k of 25k); [] off
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
# -- effect versus compute (issue 19): the statistics of the lambda and DP claims at snapshots, against epochs
lambda_snapshots: list = [8, 15]  # epochs before lambda_epochs at which the sweep's encoders keep weights ([]: off)
dp_snapshots: list = [1, 2]     # epochs before dp_epochs at which the DP encoders keep weights ([]: off)
trend_points: int = 100         # points of each half scored at each snapshot (class-balanced)
trend_pairs: int = 3            # view pairs per point at the snapshots (at most view_pairs)
force: bool = False             # recompute cached results instead of reusing them

# %%
from IPython.display import display

from memlab.experiments import removal, removal_results
from memlab.experiments.common import parameters, start
from memlab.io.params import check_injected

check_injected()
P = parameters(removal.RemovalParams, globals())  # bad parameters fail here, before any compute
S = start("03_removal", P)
D = removal.RemovalData(P)  # a missing pre-training dataset fails here; a missing downstream one may stand in
print(f"device {S.device} | {D.describe()}")

# %% [markdown]
# ## The plan
# Every encoder of the three experiments is a job keyed by the cache, listed with its cost before anything
# trains: f and g per seed, f and g per lambda, dataset and seed, and the DP pairs. The retrained encoders
# depend on the SSLMem scores of f, so they are declared now (with their cost) and filled in once f and g
# are scored. The executor trains each stage; a killed run resumes, and a rerun finds everything cached.
# %%
run = removal_results.RemovalRun(P, S, D)  # shown with its cost, then trained stage by stage (or served by the cache)

# %% [markdown]
# ## 1. Removal (Fig. 3)
# f trains on one half, g on the other; SSLMem scores all of f's points (f and g averaged over the seeds).
# The k highest-scoring points -- or k random points (a different draw per seed) -- are removed and the
# encoder is retrained with the same recipe and seed. k = 0 is f itself. Probe accuracy is a linear probe
# on the pooled representation, fitted on each downstream dataset's own labelled images.
# %%
display(*run.removal())

# %% [markdown]
# ## 1b. Training on the most memorised points only (Table 17)
# The other side of removal: the encoder retrains from scratch on only the n most memorised of f's points (the
# same scores), for each n of `keep_ns`; n random points of the same size are beside them (the complement of a
# random removal, so the encoders are shared where the sizes agree), and f itself is n = all. The paper finds that
# the most memorised 80 to 96% of the data match, or beat, the full data. If random subsets of that size match
# f as well, that says little about memorisation: compare the two lines.
# %%
display(run.keep())

# %% [markdown]
# ## 2. Limiting alignment (Eq. 3, Fig. 4)
# For each dataset and $\lambda$, f and g (disjoint halves) are trained with the regulariser. $\lambda = 0$
# is the plain objective. Every training point of the pair is scored against the encoder that did not see
# it (f's half against g, g's half against f; `removal_results.both_halves`): two encoders trained on different
# data differ in how tightly they align *every* image, and on f's half alone that constant gap reads as
# memorisation of either sign. Over both halves it cancels; the table keeps it as `f-g offset`. SSLMem is
# normalised per run (appendix A); the raw mean is kept too.
# %%
display(run.lambda_sweep().round(4))

# %% [markdown]
# ## 3. Differential privacy (Table 5)
# Contrastive losses couple the images of a batch, so per-example clipping does not bound one image's
# influence; the DP encoders use SimSiam (a per-image loss) on a GroupNorm ResNet, trained with DP-SGD
# (opacus's optimizer and RDP accountant, delta = 1/n). The epsilon = inf row is the same recipe without
# clipping or noise. f and g train on `dp_points` points of their halves; SSLMem scores both halves, each
# against the other encoder, as in the lambda sweep.
# %%
display(run.dp_table().round(4))

# %% [markdown]
# ## 4. Effect versus compute
# Four claims need more training than a laptop gives: at a few CPU-minutes per encoder SSLMem is close to zero
# at every lambda and epsilon, so there is little memorisation to reduce. The lambda sweep's encoders and the DP
# encoders kept snapshots during training (`lambda_snapshots`, `dp_snapshots`); at each snapshot and at the last
# epoch we measure each claim's statistic:
# - SSLMem at the smallest lambda minus at the largest, per dataset (the claim needs > 0), and the same for f's
#   probe accuracy on that dataset;
# - SSLMem at epsilon = inf minus at the smallest epsilon, and the same for the probe accuracy (> 0): the two
#   ends of the claim's chain.
#
# SSLMem is scored on `trend_points` points of each half with `trend_pairs` view pairs, the same design at every
# epoch, with its standard error over the points; the accuracy gap has a binomial one. The last point can
# therefore differ a little from the claim's own numbers, which score every point with every view pair. The
# fit is linear in log2(epochs), with its 95% band (`metrics.trend`); the figures show where the fitted line
# would cross zero. Each claim line below appends a verdict from the numbers: "holds" (the claim's own test
# passes), "trend agrees, not yet significant" (it does not pass yet, but the slope points the paper's way with
# one-sided p < 0.05), or "fails". The snapshots of one run share its network, so the band is optimistic. A DP
# snapshot has spent less privacy than its target (the table's `epsilon spent (f)`).
# %%
display(run.effect_vs_compute().round(4))

# %% [markdown]
# ## The paper's claims, checked on this run
# %%
run.claims()

# %% [markdown]
# ## Closing note
# At laptop scale the encoders are small and briefly trained, so the differences are a few points of accuracy
# at most; the error bars over seeds show whether a gap is larger than the seed-to-seed spread. The paper's
# sizes are in the `paper` profile (a GPU is needed).
# %%
run.closing()
