"""Notebook 03 (SSLMem paper, Wang et al. ICLR 2024, §4.3-4.6): what its encoders train on, and its plan.

- **Removal (Fig. 3, 6, 7):** f and g train on disjoint, class-balanced halves of the pre-training data
  (``disjoint_halves``); every training point of f is scored with SSLMem, ``m(x) = L_align(g, x) - L_align(f, x)``.
  For each k the k highest-m points (``"memorised"``), or k points drawn at random (``"random"``), are removed
  from f's half (``removal_set``) and the encoder is retrained from scratch on the rest (``retained``) with the
  same settings and seeds.
- **Limiting alignment (Eq. 3, Fig. 4):** ``L = (1 - lam) L_SSL - lam * E d(h(x'), h(x''))`` (``lambda_config``).
- **DP-SGD (Table 5):** f and g trained with DP-SGD (``engine.dp.dp_job``) at several epsilon.
- **Effect versus compute (issue 19):** the lambda sweep's and the DP encoders keep snapshots at
  ``lambda_snapshots`` / ``dp_snapshots`` (``common.check_snapshots``), scored by ``removal_trends``.

``RemovalParams`` checks the notebook's parameters before any compute, ``RemovalData`` loads the data sets (a
synthetic stand-in for an unavailable downstream one when allowed), and ``plan`` declares every encoder as one
plan (``jobs.Plan``): the retrained encoders depend on f's scores, so they are declared with their cost
(``train.training_cost``) and added once f and g are scored (``removal_results``). A killed run resumes at each
encoder's last finished epoch. Which points are kept and removed is ``removal_sets``'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import torch

from memlab.augmentation.augment import PRESETS
from memlab.data.datasets import DATASETS, UNLABELED, DatasetNotFound, load_dataset
from memlab.data.splits import balanced_subset
from memlab.engine.dp import dp_job, require_opacus
from memlab.engine.jobs import Plan
from memlab.engine.train import TrainConfig, encoder_job, training_cost
from memlab.experiments.common import SessionParams, check_snapshots
from memlab.experiments.fallback import load_or_stand_in
from memlab.experiments.recipes import EncoderRecipe
from memlab.experiments.removal_sets import STRATEGIES, check_ks, check_ns, disjoint_halves
from memlab.io.params import ParameterError, choice
from memlab.models.networks import MODELS
from memlab.objectives.losses import OBJECTIVES
from memlab.streams import SplitSeed


@dataclass(frozen=True)
class RemovalParams(SessionParams, EncoderRecipe):
    """Notebook 03's parameters (the short meaning of each is in the notebook's parameters cell): the session's
    (``common.SessionParams``), the SSL encoders' recipe (``recipes.EncoderRecipe``) and its own.

    - ``train_aug``: the training views of every SSL encoder of the notebook (f, g, the retrained, lambda and DP
      encoders): a preset of ``augmentation.augment.PRESETS`` ("crop": crop+flip, no colour jitter, the laptop
      profile's, as notebook 02's pair), or "" for each objective's own. SSLMem is measured with the same views.
    - ``pretrain_split``: "unlabeled" pre-trains f and g on STL-10's 100k unlabelled images (Fig. 6); the probes
      keep the labelled splits. ``n_half``: the points of each half (paper: 25000).
    - ``removal_ks``: distinct sizes 0 < k < n_half (paper: 500, 1k, 2k, 4k, 8k, 16k of 25k); the random removal
      of seed s draws with ``removal_seed + s``.
    - ``keep_ns``: Table 17, retraining on only the n most memorised of f's points (or n random ones: the complement
      of a random removal of n_half - n, shared with the removal section where the sizes agree); [] turns it off.
    - ``synthetic_fallback``: synthetic data stands in for an unavailable downstream or lambda dataset (never for
      the pre-training data); captions and tables then say "synthetic (for <name>)".
    - ``lambda_n_half``: fewer points for more epochs per point, i.e. stronger memorisation per CPU-minute.
    - DP: SimSiam on a GroupNorm ResNet (``dp_arch``), ``dp_points`` of each half; ``dp_batch_size`` is DP-SGD's
      logical (expected Poisson) batch, ``dp_physical_batch`` the images per per-image-gradient pass (0: the
      whole batch); ``dp_epochs`` 0 turns the section off. The epsilon = inf reference is always added.
    - Effect versus compute (``removal_trends``): ``lambda_snapshots`` / ``dp_snapshots`` are the epochs, before
      the last, at which the lambda sweep's / the DP encoders keep their weights (``common.check_snapshots``: [] or >= 2
      of them, for 3 compute points with the last epoch); ``trend_points`` points of each half are scored there
      with ``trend_pairs`` <= ``view_pairs`` view pairs.
    """
    dataset: str
    pretrain_split: str
    synthetic_n_train: int
    synthetic_n_test: int
    atypical_frac: float
    n_half: int
    split_seed: int
    download: bool
    objective_kw: dict
    train_aug: str
    seeds: list
    view_pairs: int
    representation: str
    removal_ks: list
    removal_seed: int
    keep_ns: list
    downstream: list
    synthetic_fallback: bool
    probe_train: int
    probe_test: int
    probe_iters: int
    lambdas: list
    lambda_datasets: list
    lambda_n_half: int
    lambda_epochs: int
    lambda_seeds: list
    dp_epsilons: list
    dp_epochs: int
    dp_points: int
    dp_arch: str
    dp_width: float
    dp_lr: float
    dp_batch_size: int
    dp_physical_batch: int
    dp_max_grad_norm: float
    lambda_snapshots: list
    dp_snapshots: list
    trend_points: int
    trend_pairs: int
    force: bool

    def __post_init__(self):
        choice("dataset", self.dataset, DATASETS)
        choice("pretrain_split", self.pretrain_split, ["train", "unlabeled"])
        if self.pretrain_split == "unlabeled" and self.dataset not in UNLABELED:
            raise ParameterError(f"pretrain_split 'unlabeled' needs a dataset with an unlabeled split "
                                 f"({list(UNLABELED)}); dataset is {self.dataset!r}: use pretrain_split 'train'")
        choice("method", self.method, OBJECTIVES)
        choice("train_aug", self.train_aug, ["", *PRESETS])
        choice("arch", self.arch, MODELS)
        choice("dp_arch", self.dp_arch, [a for a in MODELS if a.startswith("resnet")])
        choice("representation", self.representation, ["flat", "pooled"])
        for name in [*self.downstream, *self.lambda_datasets]:
            choice("downstream / lambda_datasets entry", name, DATASETS)
        if any(len(set(names)) != len(names) for names in (self.downstream, self.lambda_datasets)):
            raise ParameterError("downstream and lambda_datasets must not repeat a dataset")
        if not (self.seeds and self.lambda_seeds and self.downstream and self.lambdas and self.lambda_datasets):
            raise ParameterError("seeds, lambda_seeds, downstream, lambdas and lambda_datasets must not be empty")
        if any(not 0 <= lam < 1 for lam in self.lambdas) or len(set(self.lambdas)) != len(self.lambdas):
            raise ParameterError(f"lambdas must be distinct values in [0, 1), got {self.lambdas}")
        if any(not e > 0 for e in self.dp_epsilons):
            raise ParameterError(f"dp_epsilons must be positive (the non-private reference is added), got "
                                 f"{self.dp_epsilons}")
        try:
            self.ks  # every k < the scored pool of f
        except ValueError as e:
            raise ParameterError(f"parameter 'removal_ks': {e}") from e
        try:
            self.ns
        except ValueError as e:
            raise ParameterError(f"parameter 'keep_ns': {e}") from e
        if self.dp_points > self.n_half:
            raise ParameterError(f"dp_points = {self.dp_points} exceeds n_half = {self.n_half}")
        check_snapshots("lambda_snapshots", self.lambda_snapshots, self.lambda_epochs)
        if self.dp_epochs > 0:
            check_snapshots("dp_snapshots", self.dp_snapshots, self.dp_epochs)
        if not 1 <= self.trend_pairs <= self.view_pairs or self.trend_points < 2:
            raise ParameterError(f"trend_pairs = {self.trend_pairs} must be in [1, view_pairs = {self.view_pairs}] "
                                 f"(the snapshots use the first pairs of the same view bank) and trend_points = "
                                 f"{self.trend_points} >= 2 (a standard error needs 2 points)")

    @cached_property
    def ks(self) -> list:
        """``removal_ks``, checked and sorted (``check_ks``)."""
        return check_ks(self.removal_ks, self.n_half)

    @cached_property
    def ns(self) -> list:
        """``keep_ns``, checked and sorted largest first (``check_ns``)."""
        return check_ns(self.keep_ns, self.n_half)


# ----------------------------------------------------------------------------- the encoders' configs and jobs
def lambda_config(cfg: TrainConfig, lam: float) -> TrainConfig:
    """``cfg`` with the Eq. 3 regulariser of strength ``lam`` around its objective. ``lam == 0`` returns ``cfg``
    itself (the same loss), so the unregularised encoders are shared with the removal experiment's cache."""
    if not 0 <= lam < 1:
        raise ValueError(f"lambda must be in [0, 1), got {lam} (lambda = 1 drops the SSL loss entirely)")
    if lam == 0:
        return cfg
    return replace(cfg, objective="aligned",
                   objective_kw={"base": cfg.objective, "lam": float(lam), "base_kw": dict(cfg.objective_kw)})


def ssl_job(name: str, cfg: TrainConfig, data, idx, *, cache, force: bool = False):
    """The job of an SSL encoder (no labels) trained on ``data[idx]`` (``train.encoder_job``), for the plan."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    return encoder_job(cfg, data.images[idx], None, idx, cache=cache, data_id=f"{data.name}/{data.split}", name=name,
                       force=force)


def dp_unavailable() -> str | None:
    """``None`` when opacus can be imported; otherwise the message telling how to install it (the notebook
    prints it, skips its DP section and runs everything else)."""
    try:
        require_opacus()
    except ImportError as e:
        return f"{e}\nThe differential-privacy section is skipped; everything else runs."
    return None


# ----------------------------------------------------------------------------- data
class RemovalData:
    """The notebook's data, loaded before any training: the pre-training split and f's and g's halves of it,
    the downstream probe tasks, the lambda sweep's data sets and halves, and the DP encoders' points."""

    def __init__(self, p: RemovalParams):
        self.p, self._loaded = p, {}
        self.train = self.load(p.dataset)[0]   # a missing pre-training dataset fails here (no stand-in)
        if p.pretrain_split != "train":  # f and g pre-train on another split; the probes keep the labelled splits
            self.train = load_dataset(p.dataset, p.pretrain_split, download=p.download)
        self.f_pool, self.g_pool = disjoint_halves(self.train.labels, p.n_half, p.split_seed)
        self.tasks = dict(self.task(name, i) for i, name in enumerate(p.downstream))
        self.lam_data = {}   # {shown name: (train, f's half, g's half, probe task)}
        for i, name in enumerate(p.lambda_datasets):
            tr, _, shown = self.load(name, i)
            halves = disjoint_halves(tr.labels, p.lambda_n_half, p.split_seed)
            self.lam_data[shown] = (tr, *halves, self.task(name, i)[1])
        self.dp_message = dp_unavailable() if p.dp_epochs > 0 else "DP section off (dp_epochs = 0 in this profile)."
        self.dp_epsilons = ([math.inf] + list(p.dp_epsilons)) if self.dp_message is None else []
        mean, std = self.train.stats()
        self.cfg = p.config(mean, std, objective_kw=p.objective_kw)   # f, g and every retrained encoder
        if p.train_aug:   # a preset in place of the objective's own training views (as notebook 02's pair)
            self.cfg = replace(self.cfg, aug=p.train_aug)
        self.dp_cfg, self.dp_f, self.dp_g = None, None, None   # the DP pair's recipe and points, when it runs
        if self.dp_epsilons:
            self.dp_cfg = TrainConfig(model=p.dp_arch, model_kw={"width": p.dp_width, "norm": "group"},
                                      objective="simsiam", objective_kw={"norm": "layer"}, epochs=p.dp_epochs,
                                      batch_size=p.dp_batch_size, lr=p.dp_lr, weight_decay=0.0, mean=mean, std=std,
                                      seed=p.seeds[0], snapshot_epochs=tuple(p.dp_snapshots), aug=p.train_aug or None)
            self.dp_f, self.dp_g = (pool[balanced_subset(self.train.labels[pool].numpy(), p.dp_points,
                                                         p.split_seed + SplitSeed.DP_POINTS)]
                                    for pool in (self.f_pool, self.g_pool))

    def describe(self) -> str:
        """What the notebook trains on and probes, in one line (and why the DP section is off, if it is)."""
        p = self.p
        return ((f"{self.dp_message}\n" if self.dp_message else "") + f"pre-training {p.dataset}: halves of "
                f"{p.n_half} | downstream: {list(self.tasks)} | lambda sweep on {list(self.lam_data)}")

    def load(self, name: str, i: int = 0) -> tuple:
        """(train, test, shown name) of dataset ``name``, the ``i``-th of its list, loaded once. Synthetic data is
        generated with ``split_seed + i``; a stand-in for an unavailable dataset (``synthetic_fallback``) with
        ``split_seed + SYNTHETIC_STAND_IN * (i + 1)`` and is shown as "synthetic (for <name>)"."""
        p = self.p
        if name not in self._loaded:
            n = (p.synthetic_n_train, p.synthetic_n_test)
            synthetic, pretraining = name == "synthetic", name == p.dataset
            try:   # the pre-training data never has a stand-in: a missing one fails with its own error
                tr, te = load_or_stand_in(name, synthetic_fallback=p.synthetic_fallback and not pretraining,
                                          n=n if synthetic else (None, None),
                                          seed=p.split_seed + i if synthetic else 0, download=p.download,
                                          stand_in_n=n, atypical_frac=p.atypical_frac,
                                          stand_in_seed=p.split_seed + SplitSeed.SYNTHETIC_STAND_IN * (i + 1))
            except DatasetNotFound as e:
                raise (e.__cause__ or e) if pretraining else e   # without the hint to allow a stand-in
            self._loaded[name] = (tr, te, name if tr.name == name else f"synthetic (for {name})")
        return self._loaded[name]

    def task(self, name: str, i: int) -> tuple:
        """``(shown name, (x_train, y_train, x_test, y_test))``: class-balanced ``probe_train`` / ``probe_test``
        images of a dataset's train / test split, a linear-probe task (``scoring.probe_accuracy``)."""
        p = self.p
        tr, te, shown = self.load(name, i)
        a = balanced_subset(tr.labels.numpy(), min(p.probe_train, len(tr)), p.split_seed + SplitSeed.PROBE_TRAIN)
        b = balanced_subset(te.labels.numpy(), min(p.probe_test, len(te)), p.split_seed + SplitSeed.REMOVAL_PROBE_TEST)
        return shown, (tr.images[a], tr.labels[a], te.images[b], te.labels[b])


# ----------------------------------------------------------------------------- the plan
def plan(p: RemovalParams, S, d: RemovalData) -> tuple[Plan, dict]:
    """Declare every encoder as one plan: f and g per seed, the retrained encoders (deferred: they depend on f's
    scores), f and g per lambda, dataset and seed, and the DP pairs. Returns ``(plan, jobs)`` with ``jobs``:
    {"f": [...], "g": [...], "lambda": {(dataset, lam, seed): [f, g]}, "dp": {(epsilon, "f"|"g"): job}}.
    The lambda pairs keep snapshots at ``lambda_snapshots``; so do f and g when they train as many epochs, so that
    a lambda = 0 pair equal to them (the paper profile) stays one cache entry (snapshots enter the key)."""
    cache, cfg, force = S.cache, d.cfg, p.force
    pl = Plan("03_removal", cache=cache, device=S.device)
    snaps = tuple(p.lambda_snapshots)
    fg_cfg = replace(cfg, snapshot_epochs=snaps) if p.lambda_epochs == p.epochs else cfg
    jobs = {w: [pl.add(ssl_job(f"{w} seed {s}", replace(fg_cfg, seed=s), d.train, pool, cache=cache, force=force))
                for s in p.seeds] for w, pool in (("f", d.f_pool), ("g", d.g_pool))}
    for k in p.ks:
        for strategy in STRATEGIES:
            for s in p.seeds:   # the stand-in trains as many points, for a dry run
                pl.defer(f"remove {k} {strategy} seed {s}", "encoder", training_cost(cfg, len(d.f_pool) - k),
                         stand_in=lambda k=k, s=s: ssl_job(f"remove {k} seed {s} (stand-in)", replace(cfg, seed=s),
                                                           d.train, d.f_pool[k:], cache=cache))
    for n in p.ns:   # Table 17: a random kept set equal to a removal's retained set is that removal's encoder
        for strategy in [st for st in STRATEGIES if st == "memorised" or len(d.f_pool) - n not in p.ks]:
            for s in p.seeds:
                pl.defer(f"keep {n} {strategy} seed {s}", "encoder", training_cost(cfg, n),
                         stand_in=lambda n=n, s=s: ssl_job(f"keep {n} seed {s} (stand-in)", replace(cfg, seed=s),
                                                           d.train, d.f_pool[:n], cache=cache))
    jobs["lambda"] = {}
    for name, (tr, fp, gp, _) in d.lam_data.items():
        mean, std = tr.stats()
        base = replace(cfg, epochs=p.lambda_epochs, mean=mean, std=std, snapshot_epochs=snaps)
        for lam in p.lambdas:
            for s in p.lambda_seeds:
                c = replace(lambda_config(base, lam), seed=s)
                jobs["lambda"][name, lam, s] = [pl.add(ssl_job(f"lambda {lam} {name} {w} seed {s}", c, tr, idx,
                                                               cache=cache, force=force))
                                                for w, idx in (("f", fp), ("g", gp))]
    jobs["dp"] = {}
    for eps in d.dp_epsilons:
        for w, idx in (("f", d.dp_f), ("g", d.dp_g)):
            jobs["dp"][eps, w] = pl.add(
                ssl_job(f"DP eps=inf {w}", d.dp_cfg, d.train, idx, cache=cache, force=force) if math.isinf(eps) else
                dp_job(d.dp_cfg, d.train.images[idx], idx, epsilon=eps, cache=cache,
                       data_id=f"{d.train.name}/{d.train.split}", max_grad_norm=p.dp_max_grad_norm,
                       physical_batch=p.dp_physical_batch or None, name=f"DP eps={eps:g} {w}", force=force))
    return pl, jobs
