"""Notebook 01, memorization profiles vs binomial noise (Sadrtdinov, Chirkova, Lobacheva 2021; methods.md section
1): its parameters, its data, and the N networks per paradigm it trains with their recognition records.

``ProfilesStudy`` is the notebook's state: the parameters ``P``, the session ``S`` (device, cache, report), the data
and, once trained, per paradigm the records bool (N, E, M, |X|) (``records``), the recorded epochs and the networks.
The tables, figures and claims computed from them are ``profiles_tables``::

    study = ProfilesStudy(parameters(ProfilesParams, globals()))   # ParameterError before any compute
    study.load_data()
    study.train()                                                  # the plan: one cached job per network
    profiles_tables.binomial_comparison(study)                     # Fig. 2 and its tables, written and shown
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.data.datasets import DATASETS, load_dataset
from memlab.data.splits import balanced_subset, random_labels
from memlab.engine.jobs import Plan
from memlab.engine.train import TrainConfig
from memlab.experiments.common import SessionParams, check_keys, start
from memlab.experiments.ensemble import ensemble_plan_jobs, load_networks, network_jobs, stack_records, views_needed
from memlab.io.params import ParameterError, choice
from memlab.models.networks import MODELS
from memlab.streams import ProfilesSeed

PARADIGMS = {  # objective, training augmentation, labels
    "supervised": ("supervised", "weak", "true"),
    "simclr": ("simclr", "simclr", None),
    "random_labels": ("supervised", "none", "random"),
    "random_labels_aug": ("supervised", "weak", "random"),
}
PER_PARADIGM = ("optimizer", "lr", "epochs", "record_every", "batch_size")   # dict parameters, one value per paradigm


@dataclass(frozen=True)
class ProfilesParams(SessionParams):
    """Notebook 01's parameters (names, types and defaults: its parameters cell; ranges: ``io.params.RANGES``;
    the session's, ``profile`` to ``slurm``: ``common.SessionParams``).

    The per-paradigm dicts (``batch_size``, ``optimizer``, ``lr``, ``epochs``, ``record_every``) need a value for
    every paradigm of ``paradigms``; their keys must be paradigm names. ``simclr_crop_scale`` is the area range of
    SimCLR's RandomResizedCrop, in training and in the recognition views: SimCLR's own [0.08, 1] (the paper
    profile) left the laptop CNN4 at mean p = 0.35 after 100 epochs, so the laptop profile uses the usual CIFAR
    [0.2, 1]. ``backend``: "jobs" trains one job per network (run by ``executor``), "vmap" all networks of a
    paradigm at once with torch.func (fast on a GPU for small models), "auto" chooses
    (``ensemble.ensemble_backend``). ``cpu_threads`` sets torch's threads of this process on a CPU (0: torch's
    default); training jobs always run single-threaded on a CPU."""
    cpu_threads: int
    dataset: str                # training dataset; "synthetic" works offline
    synthetic_n_train: int      # training-split size of the generated data
    n_train: int                # class-balanced training images
    n_points: int               # |X|, the recorded subset of the training images (<= n_train)
    n_networks: int             # N networks per paradigm
    n_aug: int                  # M fixed augmentations (SimCLR: view pairs) per image
    data_seed: int              # seed of the subsets (offsets: streams.ProfilesSeed) and of the noise draws
    arch: str                   # "cnn" (CNN4, the paper's), "resnet9" or "resnet18"
    channels: list              # CNN4 channels (arch "cnn")
    width: float                # width multiplier (ResNets)
    weight_decay: float
    temperature: float          # SimCLR
    proj_dim: int               # SimCLR output dimension
    simclr_crop_scale: list     # [lo, hi], 0 < lo <= hi <= 1
    eval_batch: int             # B of the fixed SimCLR evaluation batches
    paradigms: list             # the paradigms compared; must include "supervised"
    batch_size: dict
    optimizer: dict             # "sgd", "adam" or "adamw" per paradigm
    lr: dict
    epochs: dict
    record_every: dict          # epochs between recognition records (epochs 1 and the last are always recorded)
    backend: str
    n_draws: int                # binomial noise draws per MAE
    targets: list               # Fig. 3: the mean p the paradigms are aligned at
    claim_ratio: float          # the supervised MAE / other MAE at p ~ 0.5 the claim asks for
    alpha: float                # significance level of the chi-square claim
    scatter_every: int          # Fig. 4: every ... th image of X
    tsne_points: int            # appendix C: images in the t-SNE plot
    probe_test: int             # test images of the linear probe
    actmax_channels: int        # appendix C: random channels per block
    actmax_steps: int           # appendix C: gradient steps of activation maximisation
    force: bool                 # retrain cached networks

    def __post_init__(self):
        choice("dataset", self.dataset, DATASETS)
        choice("arch", self.arch, MODELS)
        choice("backend", self.backend, ["auto", "jobs", "vmap"])
        for p in self.paradigms:
            choice("paradigms", p, PARADIGMS)
        if "supervised" not in self.paradigms:
            raise ParameterError("paradigms must include 'supervised' (the claims compare against it)")
        for name in PER_PARADIGM:
            d = getattr(self, name)
            check_keys(name, d, PARADIGMS)
            missing = [p for p in self.paradigms if p not in d]
            if missing:
                raise ParameterError(f"parameter {name!r} has no value for {missing}")
        for p in self.paradigms:
            choice(f"optimizer[{p}]", self.optimizer[p], ["sgd", "adam", "adamw"])
        lo_hi = self.simclr_crop_scale
        if (len(lo_hi) != 2 or not all(isinstance(v, (int, float)) for v in lo_hi)
                or not 0 < lo_hi[0] <= lo_hi[1] <= 1):
            raise ParameterError(f"simclr_crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, got {lo_hi}")
        if self.n_points > self.n_train:
            raise ParameterError(f"n_points ({self.n_points}) must not exceed n_train ({self.n_train})")
        if self.eval_batch < 2:
            raise ParameterError("eval_batch must be >= 2")


def recorded_epochs(every: int, epochs: int) -> list:
    """The epochs whose recognition records are kept: every ``every``-th, and always the first and the last."""
    return sorted(set(range(every, epochs + 1, every)) | {1, epochs})


class ProfilesStudy:
    """Notebook 01's networks: the parameters ``P``, the session ``S``, the data and, after ``train``, per paradigm
    its config, recorded epochs, networks and records."""

    def __init__(self, P: ProfilesParams):
        self.P = P
        self.S = start("01_profiles_vs_binomial", P, threads=P.cpu_threads)
        self.configs, self.rec_epochs, self.jobs_of, self.records, self.nets_of = {}, {}, {}, {}, {}
        self.tables = {}   # the notebook's result tables by name, as its sections compute them
        self.speed = 0.0   # networks per hour over the networks this run trained (0: none trained)

    def load_data(self) -> None:
        """The ``n_train`` class-balanced training images, X (``n_points`` of them, as positions in the training
        set), ``probe_test`` test images and the random labels (drawn once per image, shared by both random-label
        paradigms). A missing dataset, or one smaller than ``n_train``, fails here, before any training."""
        P = self.P
        if P.dataset == "synthetic":
            full = load_dataset("synthetic", "train", n=P.synthetic_n_train, seed=P.data_seed)
            test = load_dataset("synthetic", "test", n=max(P.probe_test, 100), seed=P.data_seed)
        else:
            full, test = load_dataset(P.dataset, "train"), load_dataset(P.dataset, "test")
        if P.n_train > len(full):
            raise ParameterError(f"n_train ({P.n_train}) exceeds the {len(full)} training images of {P.dataset}")
        self.train_idx = balanced_subset(full.labels.numpy(), P.n_train, P.data_seed)
        self.trainset = full.subset(self.train_idx)
        self.X = balanced_subset(self.trainset.labels.numpy(), P.n_points, P.data_seed + ProfilesSeed.RECORDED).numpy()
        self.testset = test.subset(balanced_subset(test.labels.numpy(), min(P.probe_test, len(test)),
                                                   P.data_seed + ProfilesSeed.PROBE_TEST))
        self.mean, self.std = self.trainset.stats()
        self.rand_y = random_labels(P.n_train, self.trainset.num_classes, P.data_seed + ProfilesSeed.RANDOM_LABELS)
        print(f"device {self.S.device} | {P.dataset}: {P.n_train} training images, |X| = {len(self.X)}, "
              f"{len(self.testset)} test images | N = {P.n_networks}, M = {P.n_aug} | cache {self.S.cache.root}")

    def config(self, p: str) -> TrainConfig:
        """The training recipe of paradigm ``p`` (its seed is each network's)."""
        P = self.P
        objective, aug, _ = PARADIGMS[p]
        okw = {"temperature": P.temperature, "proj_dim": P.proj_dim} if objective == "simclr" else {}
        mkw = {"channels": tuple(P.channels)} if P.arch == "cnn" else {"width": P.width}
        akw = {"crop_scale": tuple(float(v) for v in P.simclr_crop_scale)} if aug == "simclr" else {}
        return TrainConfig(model=P.arch, model_kw=mkw, objective=objective, objective_kw=okw, aug=aug, aug_kw=akw,
                           epochs=P.epochs[p], batch_size=P.batch_size[p], optimizer=P.optimizer[p], lr=P.lr[p],
                           weight_decay=P.weight_decay, warmup_epochs=0.0, mean=self.mean, std=self.std)

    def declare(self, plan: Plan, p: str) -> None:
        """The N network jobs of paradigm ``p`` (or one vmap job over them, ``ensemble_plan_jobs``): each trains and
        records, after its recorded epochs, the recognition indicators of X through the paradigm's fixed view
        bank (M views; SimCLR 2M, the pairs; random labels without augmentation 1, the image itself)."""
        P, cfg = self.P, self.config(p)
        _, aug, lab = PARADIGMS[p]
        m = 1 if aug == "none" else P.n_aug
        bank = ViewBank(Augmentation(aug, mean=self.mean, std=self.std, **cfg.aug_kw), views_needed(cfg, m),
                        seed=P.data_seed + ProfilesSeed.VIEW_BANK)
        self.rec_epochs[p] = recorded_epochs(P.record_every[p], P.epochs[p])
        labels = {"true": self.trainset.labels, "random": self.rand_y, None: None}[lab]
        self.configs[p] = cfg
        self.jobs_of[p] = network_jobs(cfg, range(P.n_networks), self.trainset.images, labels, self.train_idx, self.X,
                                       bank, m, self.rec_epochs[p], eval_batch=P.eval_batch, cache=self.S.cache,
                                       data_id=f"{P.dataset}/train", name=p, force=P.force)
        plan.add_all(ensemble_plan_jobs(cfg, self.jobs_of[p], self.S.cache, self.S.device, P.backend))

    def train(self) -> pd.DataFrame:
        """Declare every network as a job, train what the cache lacks, and load the records and networks.
        Returns the training history (one row per network and epoch; written as ``training_history``)."""
        P = self.P
        plan = Plan("01_profiles_vs_binomial", cache=self.S.cache, device=self.S.device)
        for p in P.paradigms:
            self.declare(plan, p)
        t0 = time.time()
        status = self.S.run(plan)
        trained = [j.name for p in P.paradigms for j in self.jobs_of[p] if status[j.name] == "trained"]
        histories = []
        for p in P.paradigms:
            nets = load_networks(self.jobs_of[p], self.S.cache, trained)
            self.records[p], self.nets_of[p] = stack_records(nets), nets
            histories += [{"paradigm": p, "seed": n["seed"], **h} for n in nets for h in n["history"]]
            print(f"{p:18s} {P.n_networks} networks ({sum(n['from_cache'] for n in nets)} from the cache) | "
                  f"mean p at the last epoch {self.records[p][:, -1].mean():.3f}")
        if trained:  # networks/hour including recording, over the whole plan, for the networks trained in this run
            self.speed = len(trained) / (time.time() - t0) * 3600
        self.history = pd.DataFrame(histories)
        self.S.report.table(self.history, "training_history")
        self.train_time = self.history.groupby("paradigm").time.sum() / P.n_networks
        return self.history

    def training_summary(self) -> pd.DataFrame:
        """Per paradigm the training seconds per network (recording excluded) and the epochs."""
        return pd.DataFrame({"training seconds per network (recording excluded)": self.train_time.round(1),
                             "epochs": pd.Series(self.P.epochs)}).loc[self.P.paradigms]
