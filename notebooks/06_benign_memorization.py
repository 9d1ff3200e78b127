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
executor: str = "auto"          # where the training jobs run: auto, inline, local or slurm ($MEMLAB_EXECUTOR overrides)
workers: int = 0                # local executor: worker processes; 0 means one per CPU core, or one per GPU
slurm: dict = {}                # slurm executor: partition, time_min, gpus_per_task, cpus_per_task, mem_gb, sbatch, ...
threads: int = 0                # torch CPU threads (0: the torch default; 1 is faster on a busy shared machine)
dataset: str = "cifar10"        # any memlab dataset; "synthetic" works offline
synthetic_n_train: int = 3000   # sizes of the generated splits for the synthetic dataset
synthetic_n_test: int = 1000    # test-split size of the generated data when dataset is "synthetic"
n_train: int = 1000             # training images (class-balanced); also the K-NN memory bank (clean labels)
n_test: int = 1000              # test images of the probes
data_seed: int = 0              # seed of the class-balanced subsets
arch: str = "resnet9"           # Table 2: encoder (memlab.models.networks); paper: resnet18
width: float = 0.25             # width multiplier of resnet and vgg encoders
table2_archs: list = []         # Table 2: other encoders trained on the same three runs (paper: vgg16; laptop: none, for time)
table2_datasets: list = []      # Table 2: other datasets, same runs, every encoder (paper: cifar100, tiny_imagenet)
table2_n_train: int = 1000      # Table 2: class-balanced training images of each other dataset (0: the whole split)
table2_n_test: int = 1000       # Table 2: test images of each other dataset (0: the whole split)
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
layer_probe_train: int = 1000   # Fig. 3: training images probed per layer (clean K-NN memory; random-label K-NN)
layer_probe_test: int = 1000    # Fig. 3: test images probed per layer
inv_images: int = 100           # Fig. 6: images for I(x; q, T)
inv_pairs: int = 2              # Fig. 6: augmentation pairs per image
cap_n: int = 100                # Fig. 5: images of the capacity runs
cap_B: list = [1, 4, 16]        # Fig. 5: fixed augmentations per image
cap_steps: int = 100            # Fig. 5: gradient steps per run
iid_s: int = 100                # Table 4: anchor images
iid_B: int = 10                 # Table 4: same-class real examples per anchor (the anchor included)
iid_steps: int = 100            # Table 4: gradient steps
sweep_n: int = 400              # sweeps: images of the sweep runs (random labels with DA unless stated)
sweep_epochs: int = 20          # sweeps: epochs of each sweep run
sweep_widths: list = [64, 512, 2048]  # Fig. 7: projector hidden width
sweep_classes: list = [10, 100, "per_sample"]  # Fig. 8: number of random classes
sweep_noise: list = [0.0, 0.5, 1.0]  # Fig. 12: label-noise fraction, with and without DA
sweep_magnitudes: list = [1, 9, 17]  # Fig. 11: RandAugment magnitude (2 ops)
transfer_datasets: list = ["fashion_mnist"]  # Fig. 9: datasets the features transfer to (paper: cifar100, stl10)
second_n_train: int = 1000      # Fig. 9: training images (K-NN memory) of each transfer dataset
second_n_test: int = 1000       # Fig. 9: test images of each transfer dataset
toy_n: list = [25, 100, 400]    # toy model: training-set sizes
toy_B: list = [1, 5, 20, 50]    # toy model: augmentations per point
toy_d: int = 20                 # toy model: input dimension
toy_d1: int = 2                 # toy model: dimension of the informative subspace
toy_classes: int = 5            # toy model: classes
toy_K: int = 10                 # toy model: hidden width
toy_sigma: float = 1.0          # toy model: augmentation noise scale
toy_steps: int = 300            # toy model: gradient steps
mse_images: int = 64            # appendix B: images of the MSE run
mse_views: int = 8              # appendix B: views per image
force: bool = False             # recompute cached runs

# %%
from memlab.experiments import benign_tables as T
from memlab.experiments.benign_figures import fit_trend, knn_over_epochs
from memlab.experiments.benign_memorization import BenignParams, BenignStudy
from memlab.experiments.common import parameters
from memlab.io.params import check_injected

check_injected()                                      # papermill's values: types and ranges, before any compute
study = BenignStudy(parameters(BenignParams, globals()))  # threads, device, executor, report and cache

# %% [markdown]
# ## Data
# `n_train` class-balanced training images: they are trained on, and with their clean labels they are the
# K-NN memory bank. The rest of the training split supplies the i.i.d. examples of Table 4. Table 2's other
# datasets (`table2_datasets`: the paper's CIFAR-100 and Tiny-ImageNet) load here too, `table2_n_train` and
# `table2_n_test` images of each, so that a missing one stops the notebook before any training.

# %%
study.load_data()

# %% [markdown]
# ## The plan
# Every training of the notebook (Table 2, Fig. 5, Table 4, the sweeps) is a job keyed by the cache, listed
# here with its cost and trained by the executor (in parallel, one process per core on a laptop); a rerun
# finds them all cached, and the sections below only read their runs by name.

# %%
study.train()   # the plan of every run: Table 2, Fig. 5, Table 4, the sweeps

# %% [markdown]
# ## Table 2: random labels with and without DA, clean labels, initialisation
# Training stops as soon as the *unaugmented* training set is fitted (checked every `eval_every`
# epochs) or the budget runs out; the table reports the final fit. The DA run records its K-NN
# accuracy (and, for Fig. 6, the invariance of every layer) every `probe_every` epochs.
# On each of `table2_datasets` (one `dataset` value per column of the paper's table) every encoder trains the
# same three runs with random labels over that dataset's classes; 64-px images (Tiny-ImageNet) get the
# stride-2 first convolution of the paper's appendix F. Each encoder is judged against its own initialisation.

# %%
table2 = T.table2_knn_linear(study)

# %% [markdown]
# The K-NN accuracy of the DA run over training (the issue notes a peak, then a slow drift down, so it is
# recorded, not only read at the end):

# %%
knn_over_epochs(study)

# %% [markdown]
# Definition 4.1 calls a run a *memorisation* only when it fits its random labels. Under DA that takes long (the
# paper: no progress for about 3000 epochs, then a fast rise), and a laptop budget may stop short of it. The fit
# at up to 8 checks of the run's last doubling of epochs (where it rises; the early plateau would flatten the
# line) is fitted against log2(epochs), with its band, and read against `fit_target`: the claim line then says
# whether the run memorised, whether the trend points there, and where it would cross.

# %%
ft = T.fit_trend(study)
if ft is not None:
    fit_trend(study, ft)

# %% [markdown]
# ## Fig. 3: per-layer K-NN, from the stem to the projector output
# Flattened outputs of every layer. Solid: K-NN with the clean training labels as memory, evaluated on the
# test set. Dashed: leave-one-out K-NN on the training images with their *random* labels (how much the
# layer is organised by the random labels). The paper finds a sharp transition at the projector ("P",
# "O"): the encoder is organised by the true classes, the projector by the random labels.

# %%
fig3 = T.fig3_per_layer_knn(study)

# %% [markdown]
# ## Fig. 6: normalised invariance per layer over training
# $$I(x; q, T) = \frac{\mathbb{E}_{T_1,T_2}\lVert q(T_1 x) - q(T_2 x)\rVert^2}{\mathbb{E}_{x' \neq x}\lVert q(x) - q(x')\rVert^2}$$
# averaged over `inv_images` images, with `inv_pairs` fixed pairs of training augmentations per image
# (lower = more invariant; a collapsed representation is not rewarded, the denominator sees to that).
# Dashed, right axis: the K-NN error of the embedding.

# %%
fig6 = T.fig6_invariance(study)

# %% [markdown]
# ## Fig. 5: capacity
# Each of `cap_n` images gets B fixed, precomputed augmentations (views), so the training set has n·B
# items. **Labels not preserved**: every view gets its own random label; the more views, the harder the
# labels are to fit in a fixed number of steps (`cap_steps`): the augmented set exceeds the capacity.
# **Labels preserved**: the views share their image's random label; the K-NN probe improves with B as the
# network is forced to use the signal shared by the views.

# %%
capacity = T.fig5_capacity(study)

# %% [markdown]
# ## Table 4: i.i.d. "augmentations"
# The ideal label-preserving augmentation: each of `iid_s` anchors is replaced, every epoch, by one of
# `iid_B` real images of its true class (the anchor included). Under clean labels this is simply more
# data. Under random labels it is fitting random labels on s·B real images without DA: the paper finds it
# malign.

# %%
table4 = T.table4_iid(study)

# %% [markdown]
# ## Sweeps (Figs. 7, 8, 12, 11)
# Short budgets (`sweep_epochs` on `sweep_n` images): these show directions, not the paper's numbers.
# The base point (random labels over `num_classes` classes, SimCLR DA, projector width `hidden`) is
# shared by the sweeps and computed once.

# %%
sweeps = T.sweeps(study)

# %% [markdown]
# ## Fig. 9: transfer to other datasets
# K-NN on each of `transfer_datasets` (its own training images and labels as memory, its test images as
# queries) with the frozen encoders of Table 2. The paper transfers to CIFAR-100 and STL-10 (its paper profile);
# the laptop profile to Fashion-MNIST, which is on disk.

# %%
transfer = T.fig9_transfer(study)

# %% [markdown]
# ## Appendix E: the toy model
# Gaussian mixture in the first `toy_d1` coordinates, noise in the others; augmentations add noise to the
# noise coordinates only. Linear encoder W and the soft nearest-vector projector over `toy_K` vectors with
# random one-hot labels, trained on random labels. When n·B exceeds what K vectors can memorise, fitting
# forces W to suppress the noise coordinates, and the K-NN probe of the true classes improves.

# %%
toy = T.fig13_toy(study)

# %% [markdown]
# ## Appendix B: MSE under augmentation = Inv + Bias
# For the DA network, `mse_images` images with `mse_views` augmentations each and one-hot random labels:
# $L_{super} = \frac{1}{nB}\sum_{i,a}\lVert f(T_a x_i) - y_i\rVert^2$ splits exactly into the invariance
# term $\frac{1}{2nB^2}\sum_i\sum_{a,b}\lVert f(T_a x_i) - f(T_b x_i)\rVert^2$ and the bias
# $\frac{1}{n}\sum_i\lVert y_i - \frac{1}{B}\sum_a f(T_a x_i)\rVert^2$ (Theorem B.2).

# %%
mse = T.appendix_b(study)

# %% [markdown]
# ## The paper's claims, checked on this run

# %%
T.claims(study)

# %% [markdown]
# ## Closing note

# %%
T.closing(study)
