"""Every seeded random stream of memlab, named in one table.

Two kinds of randomness come from a seed:

* **Hash streams.** Augmentations, epoch orders and DP batch draws are counter-based: a draw is a pure
  function of (seed, stream + counter, example index) (``augment.hash_uniform``). Each use owns a stream
  base below. Training views use the bases 0 .. epochs x views; every other base is a power of two at or above
  2**40, so no counter (epoch, view, step) of one use can reach the base of another. Changing a base changes
  every number drawn from it (and invalidates cached results: bump the cache's code version).
* **Seed offsets.** A notebook draws several subsets from one base seed (``split_seed`` in notebooks 02-05,
  ``data_seed`` and the training ``seed`` in 01 and 06). Each subset adds its own offset, so the subsets are
  independent draws that one parameter fixes. Offsets are per notebook (the values are historical; equal
  offsets in two notebooks draw from different populations, so they do not correlate anything).
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- hash stream bases
VIEW_BANK = 1 << 40            # augment.ViewBank: fixed view k of a point is drawn at VIEW_BANK + k
BENIGN_FIXED_VIEWS = 1 << 41   # benign: the B fixed augmentations per image (Fig. 5)
BENIGN_INVARIANCE = 1 << 42    # benign: the invariance measurement pairs (Fig. 6): 2p and 2p + 1
BENIGN_IID = 1 << 43           # benign: which i.i.d. example stands in for an anchor, per epoch (Table 4)
BENIGN_ORDER = 1 << 44         # benign: data order per epoch
BENIGN_MSE_VIEWS = 10**6       # benign: view a of the appendix-B decomposition is drawn at 10**6 + a (historical:
                               # below 2**40, but above every epoch counter of a training run)
EPOCH_ORDER = 1 << 50          # engine: the default data order per epoch
DP_POISSON = 1 << 52           # dp: Poisson sampling of the DP-SGD batches, one counter per global step

# ----------------------------------------------------------------------------- seeds derived in the library
G_SEED_OFFSET = 1000           # sslmem: g's seed is f's + 1000 when pair_seeds is off (independent inits)
SYNTHETIC_TEST_OFFSET = 7919   # data: the synthetic test split is generated with seed + 7919 (a prime)
S_E_ORDER_OFFSET = 1           # splits: S_E is taken from the test set in the order of seed + 1
SCORED_SHARED_OFFSET = 1       # sslmem: the scored part of S_S is drawn with seed + 1
MIXUP_SEED_STRIDE = 1_000_003  # benign: the mixup draws of step i use seed * 1_000_003 + i (a prime stride)
TOY_SEED_STRIDE = 7919         # toy: the data of n points use seed * 7919 + n (a prime stride)
TOY_B_STRIDE = 1_000_003       # toy: the augmentations of B views per point use seed * 7919 + n + 1_000_003 * B


class SplitSeed:
    """Offsets from ``split_seed`` in the SSLMem notebooks (02 to 05)."""
    PROBE_TRAIN = 2            # 03: training images of the downstream linear probes
    PROBE_TEST = 2             # 02, 04, 05: test images of the linear probe
    REMOVAL_PROBE_TEST = 3     # 03: test images of the downstream linear probes
    UNIT_VIEWS = 3             # 05: the UnitMem view bank
    DYNAMICS_POINTS = 4        # 03, 05: the points followed over training (03: scored at the snapshots)
    DP_POINTS = 5              # 03, 05: the training points of the DP encoders
    UNIT_POINTS = 6            # 05: D, the points of UnitMem
    LAYERMEM_GROUPS = 7        # 04: the random candidates beside the top / least memorised
    LAYERMEM_SAMPLES = 8       # 04: the random batches of the sample-size ablation
    SECOND_DATASET = 11        # 04, 05: the subset of the second dataset
    CLASSMEM_DATASET = 12      # 05: the subset of classmem_dataset
    RANDOM_LAYERS = 100        # 04: + draw d: the random layers fine-tuned in draw d
    RANDOM_REPLACED = 200      # 04: + draw d: the random layers replaced in draw d
    SYNTHETIC_STAND_IN = 100   # 03: x (k + 1): the k-th synthetic stand-in dataset; 05: + SECOND_DATASET, x k: the
                               # k-th other dataset


class ProfilesSeed:
    """Offsets from ``data_seed`` in notebook 01."""
    RECORDED = 1               # X, the recorded subset of the training images
    PROBE_TEST = 2             # test images of the linear probe
    VIEW_BANK = 3              # the fixed recognition views
    RANDOM_LABELS = 7          # the random labels, drawn once per sample
    ACTMAX_CHANNELS = 0        # + block j: the random channels of block j shown in appendix C


class BenignSeed:
    """Offsets in notebook 06: from ``data_seed`` (subsets) and from the training ``seed`` (labels, views)."""
    TEST = 1                   # data_seed: the test images of the probes
    INVARIANCE = 2             # data_seed: the images of I(x; q, T)
    LAYER_PROBE = 3            # data_seed: the training images probed per layer
    CAPACITY = 4               # data_seed: the images of the capacity runs (Fig. 5)
    ANCHORS = 5                # data_seed: the anchors of Table 4
    SWEEP = 6                  # data_seed: the images of the sweeps
    SECOND_DATASET = 11        # data_seed: the synthetic stand-in second dataset
    CAPACITY_LABELS = 1        # seed: the random labels of the capacity runs
    CAPACITY_VIEWS = 2         # seed: the fixed views of the capacity runs
    ANCHOR_LABELS = 3          # seed: the anchors' random labels
    IID_SETS = 4               # seed: the i.i.d. "augmentations" of Table 4
    SWEEP_LABELS = 7           # seed: the random labels of the sweeps


class SSLMemToySeed:
    """Offsets from ``toy_seed`` in notebook 02's intuition toys (``experiments.sslmem_toys``, Figs. 10 and 11)."""
    DATA = 0                   # the 2-D toy's cluster points
    VIEWS = 1                  # the fixed measuring view pairs of the alignment loss (the same for f and g)
    ENCODERS = 2               # the initial weights and training jitter of every f_i and g_i (f_i and g_i share theirs)
