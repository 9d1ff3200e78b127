"""Notebook 05, UnitMem and ClassMem (Wang et al., NeurIPS 2024, "Localizing Memorization in SSL Vision Encoders",
§4; methods.md §4): its parameters, its plan of jobs, and the unit statistics and tables of its encoders.

The SSL encoder is notebook 02's f (``recipes.sslmem_pair``: reused from 02's cache by construction); beside it
the plan trains a supervised encoder of the same architecture on the same points, an SSL encoder on a second
dataset and the DP-SGD encoders. The metrics are ``memlab.metrics.unitmem``; the comparisons and claims are
``experiments.unitmem_findings``, pruning and differential privacy ``experiments.unitmem_interventions``, two
claims measured over training (effect versus compute) ``experiments.unitmem_trends``. Usage::

    P, S = begin(globals())         # ParameterError before any compute; the session
    R = load_data(P, S)             # data first
    train(R)                        # then the plan (cached or trained)
    ssl_table, sup_table = unit_tables(R)   # UnitMem and ClassMem of every unit
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch

from memlab.augmentation.augment import ViewBank
from memlab.data.datasets import DATASETS, ImageData
from memlab.data.splits import balanced_subset
from memlab.engine.jobs import Plan
from memlab.engine.train import TrainConfig, encoder_job
from memlab.experiments.common import Session
from memlab.experiments.fallback import load_or_stand_in
from memlab.experiments.pair_run import PairRun, begin as _begin, pair_data, sized
from memlab.experiments.recipes import sslmem_pair
from memlab.io.params import ParameterError, choice
from memlab.metrics.unitmem import cached_unit_stats, layer_table
from memlab.models.networks import MODELS
from memlab.streams import SplitSeed

NOTEBOOK = "05_unitmem_classmem"


@dataclass(frozen=True)
class UnitMemParams:
    """Notebook 05's parameters, one field per name of its parameters cell (defaults there: the laptop profile;
    profiles: ``params/<profile>/05_unitmem_classmem.yaml``). ``__post_init__`` raises ``ParameterError`` naming
    the parameter, before any compute."""
    profile: str            # smoke, laptop or paper: labels the outputs and selects notebook 02's f/g pair
    output_dir: str         # folder of the figures, tables and claims
    device: str             # "auto", "cpu", "cuda" or "cuda:N"
    executor: str           # "auto", "inline", "local" or "slurm" (engine.executors; $MEMLAB_EXECUTOR overrides)
    workers: int            # local executor: worker processes (0: one per CPU core or GPU)
    slurm: dict             # slurm executor: partition, time_min, gpus_per_task, ... (engine.executors.Slurm)
    unit_views: int         # K: augmentations per point whose mean activation is mu_u(x) (paper: 10)
    unit_points: int        # |D|: a class-balanced part of f's training points (all of them when larger)
    unit_rest: str          # mu_-max: "mean" of the other points (the paper) or "median" (the reference code)
    deep_layers: int        # how many of the last layers count as "the deepest" in the claims
    dynamics_layer: str     # the layer followed over training ("": the last layer)
    dynamics_points: int    # points of D measured at every snapshot of f
    top_k: int              # the k most / least memorised points by notebook 02's SSLMem, linked to units
    trend_epochs: list      # snapshot epochs of f where two claims are measured again (unitmem_trends; the
                            # supervised encoder at the same fractions of its training); the trained f adds the last
    trend_points: int       # S_C and S_S points scored with SSLMem at each of them (within the dynamics points)
    trend_pairs: int        # their view pairs (laptop: notebook 02's dynamics_* values, whose cached scores serve)
    supervised_epochs: int  # epochs of the supervised encoder (long enough to fit: cross-entropy about 0.01)
    supervised_lr: float    # its learning rate
    other_datasets: list    # datasets beside the pair's: an SSL encoder each (UnitMem across datasets, the paper's
                            # SVHN and STL-10 panel) and a probe each after pruning (the paper's SVHN and STL-10)
    classmem_dataset: str   # a dataset with an SSL and a supervised encoder of its own: ClassMem vs UnitMem there
                            # (the paper's CIFAR-100 figures) and the SSL-vs-supervised transfer table ("": skip)
    synthetic_fallback: bool  # let synthetic data stand in for an unavailable other dataset (experiments.fallback)
    second_n_train: int     # training images of each other dataset and of classmem_dataset (class-balanced)
    second_n_test: int      # their test images
    second_epochs: int      # SimCLR epochs of the encoders of those datasets
    classmem_n_train: int   # training images of classmem_dataset (class-balanced; the paper: all of CIFAR-100)
    prune_fracs: list       # fractions of every layer's live units pruned, each in (0, 1)
    prune_seed: int         # seed of the random pruning
    prune_draws: int        # random prunings per fraction (seeds prune_seed + d); their mean is the random baseline
    probe_test: int         # test images of the main dataset's probe after pruning
    dp_epsilons: list       # privacy budgets of the DP-SGD encoders (a non-private reference runs too)
    dp_epochs: int          # epochs of the DP encoders (0: no DP section)
    dp_points: int          # their training points (per-example gradients are slow on a CPU)
    dp_lr: float            # DP-SGD's learning rate
    dp_batch_size: int      # DP-SGD's logical (expected Poisson) batch
    dp_physical_batch: int  # images per per-example-gradient pass (opacus BatchMemoryManager; 0: the whole batch)
    alpha: float            # significance level of the claims
    force: bool             # recompute cached results instead of reusing them

    @cached_property
    def pair(self):
        """Notebook 02's f/g recipe in this profile (``recipes.SSLMemPair``)."""
        return sslmem_pair(self.profile)

    def __post_init__(self):
        choice("dataset", self.pair.dataset, DATASETS)
        if len(set(self.other_datasets)) != len(self.other_datasets):
            raise ParameterError(f"other_datasets lists a dataset twice: {self.other_datasets}; list each once")
        if self.pair.dataset in self.other_datasets:
            raise ParameterError(f"other_datasets {self.other_datasets} lists {self.pair.dataset!r}, the pair's own "
                                 f"dataset, whose encoder and probe are f's already (its rows would replace f's); "
                                 f"drop it")
        for name in self.other_datasets:
            choice("other_datasets", name, DATASETS)
        if self.classmem_dataset:
            if self.classmem_dataset == self.pair.dataset:
                raise ParameterError(f"classmem_dataset {self.classmem_dataset!r} is the pair's dataset, which f and the "
                                     f"supervised encoder already cover; name another (the paper: cifar100) or ''")
            choice("classmem_dataset", self.classmem_dataset, DATASETS)
        choice("arch", self.pair.arch, MODELS)
        choice("unit_rest", self.unit_rest, ["mean", "median"])
        if any(not 0 < f < 1 for f in self.prune_fracs):
            raise ParameterError(f"prune_fracs must lie in (0, 1), got {self.prune_fracs}")
        pair = self.pair
        bad = [e for e in self.trend_epochs if e not in pair.snapshot_epochs or e >= pair.epochs
               or e * self.supervised_epochs % pair.epochs]
        if bad or len(set(self.trend_epochs)) != len(self.trend_epochs):
            raise ParameterError(f"trend_epochs {self.trend_epochs}: each must be a distinct snapshot epoch of f "
                                 f"before its last ({sorted(e for e in pair.snapshot_epochs if e < pair.epochs)}, "
                                 f"notebook 02's snapshot_epochs) at which supervised_epochs "
                                 f"({self.supervised_epochs}) gives a whole epoch of the supervised encoder "
                                 f"(e * {self.supervised_epochs} / {pair.epochs}); not: {bad or 'repeated'}")
        if len(self.trend_epochs) == 1:
            raise ParameterError(f"trend_epochs {self.trend_epochs}: give none (no curves) or at least 2 epochs "
                                 f"(with the trained encoders, the 3 points a fitted trend needs)")
        if self.trend_points < self.top_k:
            raise ParameterError(f"trend_points ({self.trend_points}) must be >= top_k ({self.top_k}): the snapshots "
                                 f"rank that many points to pick the top-{self.top_k} and least-{self.top_k}")
        if not 1 <= self.trend_pairs <= pair.view_pairs:
            raise ParameterError(f"trend_pairs ({self.trend_pairs}) takes the first pairs of the SSLMem view bank and "
                                 f"must lie in [1, view_pairs = {pair.view_pairs}]")

    @property
    def supervised_trend_epochs(self) -> list:
        """The supervised encoder's epochs at the same fractions of its training as ``trend_epochs`` of f's."""
        return [e * self.supervised_epochs // self.pair.epochs for e in self.trend_epochs]


@dataclass
class UnitMemRun(PairRun):
    """One run of notebook 05 (``PairRun``); its jobs: "f", "g", "supervised", "others" ({shown name: SSL encoder job}),
    "classmem_ssl" and "classmem_supervised" (with a ``classmem_dataset``) and "dp" ({epsilon: job})."""
    dp: bool = False                # the DP section runs: dp_epochs > 0 and opacus is installed
    classmem: tuple = ()            # (shown name, train, test) of classmem_dataset; () when it is ""

    @property
    def ssl(self):
        """The SSL encoder of the unit statistics: f of the pair's first seed."""
        return self.f[0]

    @cached_property
    def supervised(self):
        """The supervised encoder: f's architecture and training points, cross-entropy on the true labels."""
        return self.load(self.jobs["supervised"])

    @property
    def layers(self) -> list:
        """The layers whose units are measured: all of the SSL encoder's, in network order."""
        return list(self.ssl.encoder.layer_names)

    @cached_property
    def dp_points(self) -> torch.Tensor:
        """The training points of the DP encoders: a class-balanced part of f's training points."""
        F, P = self.splits.f_train, self.P
        return F[balanced_subset(self.train_data.labels[F].numpy(), min(P.dp_points, len(F)),
                                 P.pair.split_seed + SplitSeed.DP_POINTS)]

    @cached_property
    def snapshot_points(self) -> torch.Tensor:
        """The points of D measured at the snapshots: ``dynamics_points`` class-balanced points of D."""
        D, P = self.points, self.P
        return D[balanced_subset(self.train_data.labels[D].numpy(), min(P.dynamics_points, len(D)),
                                 P.pair.split_seed + SplitSeed.DYNAMICS_POINTS)]

    @cached_property
    def points(self) -> torch.Tensor:
        """D, the points of UnitMem: ``unit_points`` class-balanced points of f's training set (all when fewer)."""
        F, P = self.splits.f_train, self.P
        if P.unit_points >= len(F):
            return F
        return F[balanced_subset(self.train_data.labels[F].numpy(), P.unit_points,
                                 P.pair.split_seed + SplitSeed.UNIT_POINTS)]


def begin(namespace: dict) -> tuple:
    """``(P, S)``: the notebook's parameters from ``namespace`` (its globals), checked, and its session
    (``pair_run.begin``)."""
    return _begin(UnitMemParams, NOTEBOOK, namespace)


def load_data(P: UnitMemParams, S: Session) -> UnitMemRun:
    """The pair's data and splits, each of ``other_datasets`` and ``classmem_dataset`` (synthetic data when
    allowed and one is missing); whether the DP section can run (it needs opacus). Raises ``DatasetNotFound`` for
    missing data, ``ParameterError`` when a size parameter asks for more images than a split holds."""
    R = UnitMemRun(P, S, *pair_data(P, P.other_datasets))
    if P.classmem_dataset:
        name = P.classmem_dataset
        tr, te = sized(lambda: load_or_stand_in(name, synthetic_fallback=P.synthetic_fallback,
                                                n=(P.classmem_n_train, P.second_n_test),
                                                seed=P.pair.split_seed + SplitSeed.CLASSMEM_DATASET),
                       "classmem_n_train / second_n_test", name)
        R.classmem = (name if tr.name == name else f"synthetic (for {name})", tr, te)
    R.dp = P.dp_epochs > 0
    if R.dp:
        from memlab.engine.dp import require_opacus
        try:
            require_opacus()
        except ImportError as e:
            print(f"{e}\nThe DP section is skipped; everything else runs.")
            R.dp = False
    print(f"device {S.device} | {P.pair.dataset}: {len(R.train_data)} train images | other datasets: "
          f"{', '.join(R.others) or 'none'} | ClassMem dataset: {R.classmem[0] if R.classmem else 'none'}")
    return R


def train(R: UnitMemRun) -> None:
    """The plan: the pair's f/g, the supervised encoder, an SSL encoder per other dataset,
    the SSL and supervised encoders of ``classmem_dataset`` and the DP encoders (``R.dp``); shown, then trained by
    the session's executor or found in the cache."""
    P, S, pair, data = R.P, R.S, R.P.pair, R.train_data
    R.cfg = cfg = pair.config(*data.stats())
    F = R.splits.f_train
    plan = Plan(NOTEBOOK, cache=S.cache, device=S.device)
    R.jobs["f"], R.jobs["g"] = (plan.add_all(js) for js in pair.jobs(cfg, data, R.splits, cache=S.cache, force=P.force))
    sup_cfg = replace(cfg, objective="supervised", objective_kw={}, aug="weak", aug_kw={}, optimizer="sgd",
                      warmup_epochs=1.0, epochs=P.supervised_epochs, lr=P.supervised_lr,
                      snapshot_epochs=tuple(P.supervised_trend_epochs))   # unitmem_trends measures them
    R.jobs["supervised"] = plan.add(encoder_job(sup_cfg, data.images[F], data.labels[F], F, cache=S.cache,
                                                data_id=f"{pair.dataset}/train", name=f"supervised/{pair.arch}",
                                                force=P.force))

    def on(data: ImageData, shown: str, recipe: TrainConfig, labels=None, kind: str = pair.method, why: str = ""):
        """The job training ``recipe`` on all of ``data`` (with its own normalisation and no snapshots)."""
        m, s = data.stats()
        return plan.add(encoder_job(replace(recipe, snapshot_epochs=(), mean=m, std=s), data.images, labels,
                                    torch.arange(len(data)), cache=S.cache, data_id=f"{data.name}/train",
                                    name=f"{kind}/{pair.arch} on {shown}{why}", force=P.force))
    ssl2 = replace(cfg, epochs=P.second_epochs, snapshot_epochs=())
    R.jobs["others"] = {shown: on(tr, shown, ssl2) for shown, (tr, _) in R.others.items()}
    if R.classmem:
        shown, tr, _ = R.classmem
        why = " (ClassMem, transfer)"   # a subset of its own: other_datasets may list the same dataset
        R.jobs["classmem_ssl"] = on(tr, shown, ssl2, why=why)
        R.jobs["classmem_supervised"] = on(tr, shown, sup_cfg, labels=tr.labels, kind="supervised", why=why)
    if R.dp:
        from memlab.engine.dp import dp_job
        Ddp = R.dp_points
        dp_cfg = TrainConfig(model=pair.arch, model_kw={"width": pair.width, "norm": "group"}, objective="simsiam",
                             objective_kw={"norm": "layer"}, epochs=P.dp_epochs, batch_size=P.dp_batch_size,
                             lr=P.dp_lr, weight_decay=0.0, mean=cfg.mean, std=cfg.std)
        R.jobs["dp"] = {"inf": plan.add(encoder_job(dp_cfg, data.images[Ddp], None, Ddp, cache=S.cache,
                                                    name="DP reference (eps=inf: no clipping, no noise)",
                                                    force=P.force))}
        for eps in P.dp_epsilons:
            R.jobs["dp"][f"{eps:g}"] = plan.add(dp_job(dp_cfg, data.images[Ddp], Ddp, epsilon=eps, cache=S.cache,
                                                       physical_batch=P.dp_physical_batch or None,
                                                       data_id=f"{pair.dataset}/train", force=P.force))
    R.status = S.run(plan)


def unit_stats_of(R: UnitMemRun, trained, data: ImageData, idx, keep=()) -> dict:
    """``metrics.unitmem.UnitStats`` of every layer of ``trained`` on ``data[idx]`` (cached): each point seen
    through ``unit_views`` fixed views of the encoder's own training augmentation. ``keep``: the layers whose
    per-point means are kept (the median and the link to points need them)."""
    P = R.P
    bank = ViewBank(trained.measuring(), P.unit_views, seed=P.pair.split_seed + SplitSeed.UNIT_VIEWS)
    return cached_unit_stats(R.S.cache, trained, data, idx, bank, keep=keep, device=R.S.device, force=P.force)


def unit_tables(R: UnitMemRun) -> tuple:
    """``(ssl_table, sup_table)``: ``metrics.unitmem.layer_table`` (one row per layer and unit: UnitMem, ClassMem,
    flags, arg-max point) of the SSL encoder f and of the supervised encoder on D. Prints where each encoder
    came from and the excluded (dead or negative) units per layer."""
    ssl, sup = R.ssl, R.supervised
    print(f"SSL encoder: {'cache' if ssl.from_cache else 'trained'}, final loss {ssl.history[-1]['loss']:.3f}")
    print(f"supervised encoder: {'cache' if sup.from_cache else 'trained'}, final loss {sup.history[-1]['loss']:.3f}")
    ssl_stats = unit_stats_of(R, ssl, R.train_data, R.points, keep=R.layers)  # per-point values: the SSLMem link
    sup_stats = unit_stats_of(R, sup, R.train_data, R.points, keep=R.layers if R.P.unit_rest == "median" else [])
    for name, st in (("SSL", ssl_stats), ("supervised", sup_stats)):
        out = {l: f"{int(s.dead.sum())} dead, {int(s.negative.sum())} negative"
               for l, s in st.items() if s.excluded.any()}
        print(f"{name}: excluded units (reported, not scored): {out or 'none'}")
    return layer_table(ssl_stats, R.P.unit_rest), layer_table(sup_stats, R.P.unit_rest)
