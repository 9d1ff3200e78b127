"""What identifies a training, in every cache key: its ``TrainConfig``, checked before any compute, the
``config_key`` of that config, and the ``fingerprint`` of its training data.

Two trainings with the same config key and data fingerprint are the same training (every run is seeded and
deterministic), so the notebooks that need one encoder share its cache entry (``train.encoder_job``).
"""
from __future__ import annotations

import hashlib
import math
import weakref
from dataclasses import asdict, dataclass, field

import torch

from memlab.objectives.losses import check_objective

# objectives whose loss is a mean over the images of a batch (supervised; random labels are supervised training on
# shuffled labels; MAE over a fixed mask ratio): only these may accumulate micro-batches (TrainConfig.micro_batch)
SPLITTABLE = frozenset({"supervised", "mae"})


OPTIMIZERS = ("sgd", "adam", "adamw", "lars")


@dataclass
class TrainConfig:
    """One training: the encoder (``model``, ``model_kw``: ``memlab.models.networks``), the objective
    (``objective``, ``objective_kw``: ``memlab.objectives.losses``), the augmentation (``aug`` preset with
    ``aug_kw`` overrides, then the per-channel ``mean``/``std`` normalisation in [0, 1] pixel units) and the
    optimisation (``epochs``; ``batch_size`` in images; base ``lr`` of the warm-up + cosine schedule;
    ``warmup_epochs``, fractional allowed; ``seed`` of weights, data order and augmentations). Every field
    enters the cache key (``config_key``)."""
    model: str = "resnet9"
    model_kw: dict = field(default_factory=dict)
    objective: str = "simclr"
    objective_kw: dict = field(default_factory=dict)
    aug: str | None = None            # None: the objective's default preset
    aug_kw: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "sgd"            # sgd | adam | adamw | lars
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    snapshot_epochs: tuple = ()       # keep encoder weights after these epochs (1-based)
    micro_batch: int = 0              # images per forward/backward pass, gradients accumulated (0: the whole batch)
    mean: tuple = (0.5, 0.5, 0.5)     # per-channel normalisation after augmentation (dataset statistics)
    std: tuple = (0.25, 0.25, 0.25)

    def __post_init__(self):
        """Refuse, before any compute, a setting that makes training meaningless (ValueError naming it)."""
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch statistics, and the contrastive and variance terms, "
                             f"are over the batch), got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0 (0: the whole batch), got {self.micro_batch}")
        if 0 < self.micro_batch < self.batch_size and self.objective not in SPLITTABLE:
            raise ValueError(f"micro_batch = {self.micro_batch} with objective {self.objective!r}: its loss couples the "
                             f"images of a batch (negatives, batch statistics), so accumulating micro-batches would "
                             f"train a different loss; micro_batch works for {sorted(SPLITTABLE)}. Lower batch_size "
                             f"instead, or spread the batch over GPUs (DDP)")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs = {self.epochs}], got {self.warmup_epochs}")
        check_objective(self.objective, dict(self.objective_kw))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        self.snapshot_epochs = tuple(sorted(int(e) for e in self.snapshot_epochs))
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        bad = [e for e in self.snapshot_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"snapshot_epochs {bad} outside 1..{self.epochs}")


def config_key(cfg) -> dict:
    """``cfg`` (a ``TrainConfig`` or ``benign.BenignConfig``) as the dict that enters cache keys: every field,
    except ``micro_batch`` when it is 0 (so the keys of everything trained before micro-batches existed stay
    valid)."""
    d = asdict(cfg)
    if not cfg.micro_batch:
        del d["micro_batch"]
    return d


_PREFIX: dict = {}  # id(tensor) -> (weakref to it, its version, sha256 state after hashing it): see fingerprint


def _hashed_first(t: torch.Tensor):
    """sha256 state after feeding ``t`` (dtype, shape, bytes), remembered while ``t`` lives unmodified: a plan
    fingerprints the same 50,000 training images for each of its jobs, and hashing them is the slow part."""
    memo = _PREFIX.get(id(t))
    if memo is not None and memo[0]() is t and memo[1] == t._version:
        return memo[2].copy()
    h = hashlib.sha256()
    c = t.contiguous().cpu()
    h.update(str((c.dtype, tuple(c.shape))).encode())
    h.update(c.numpy().tobytes())
    if t.numel() >= 1 << 16:
        for k in [k for k, v in _PREFIX.items() if v[0]() is None]:
            del _PREFIX[k]
        _PREFIX[id(t)] = (weakref.ref(t), t._version, h.copy())
    return h


def fingerprint(*tensors) -> str:
    """sha256 (first 20 hex digits) of the tensors' dtypes, shapes and bytes: identifies a training set in cache
    keys. None entries are skipped."""
    tensors = [torch.as_tensor(t) for t in tensors if t is not None]
    if not tensors:
        return hashlib.sha256().hexdigest()[:20]
    h = _hashed_first(tensors[0])
    for t in tensors[1:]:
        t = t.contiguous().cpu()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]
