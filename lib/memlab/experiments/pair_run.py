"""A run of a notebook built on notebook 02's f/g pair (notebooks 04 and 05): its parameters and session, the
pair's data and splits, a second dataset, and -- once its plan has run -- the jobs, their status and the
encoders f and g, loaded from the cache on first use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from memlab.data.datasets import ImageData
from memlab.engine.train import load_encoder
from memlab.experiments.common import Session, parameters, start
from memlab.experiments.fallback import load_or_stand_in
from memlab.io.params import check_injected
from memlab.streams import SplitSeed


def begin(cls, notebook: str, namespace: dict) -> tuple:
    """A pair notebook's first step: ``(P, S)``. Papermill's injected values are checked against the parameters
    cell (``io.params.check_injected``), ``P = parameters(cls, namespace)`` (every check before any compute,
    notebook 02's recipe included) and ``S = start(notebook, P)`` (device, executor, cache, report captioned with
    the pair's dataset). Raises ``ParameterError``."""
    check_injected()
    P = parameters(cls, namespace)
    return P, start(notebook, P, dataset=P.pair.dataset)


def pair_data(P) -> tuple:
    """``(train, test, splits, second_train, second_test)``: the pair's data and its disjoint splits
    (``SSLMemPair.load``) and ``P.second_n_train`` / ``P.second_n_test`` class-balanced images of
    ``P.second_dataset`` -- synthetic data when it is missing and ``P.synthetic_fallback`` allows that
    (``experiments.fallback``). Raises ``DatasetNotFound`` for missing data."""
    main = P.pair.load()   # the main dataset first: the pair cannot do without it
    second = load_or_stand_in(P.second_dataset, synthetic_fallback=P.synthetic_fallback,
                              n=(P.second_n_train, P.second_n_test), seed=P.pair.split_seed + SplitSeed.SECOND_DATASET)
    return (*main, *second)


@dataclass
class PairRun:
    """One run of a notebook on notebook 02's pair. ``P``: the notebook's parameters (with ``P.pair``)."""
    P: object
    S: Session
    train_data: ImageData
    test_data: ImageData
    splits: object                  # data.splits.Splits of the pair
    second_train: ImageData         # the second dataset (or its synthetic stand-in: .name says which)
    second_test: ImageData
    cfg: object = None              # the pair's TrainConfig, set by the notebook's plan
    jobs: dict = field(default_factory=dict)    # the plan's jobs: "f", "g" (lists, one per seed), and others
    status: dict = field(default_factory=dict)  # {job name: "cached" | "trained"}

    def load(self, job):
        """A trained encoder of the plan (``train.Trained``), read from the cache."""
        return load_encoder(job, self.S.cache, self.S.device, from_cache=self.status[job.name] == "cached")

    @cached_property
    def f(self) -> list:
        """The pair's f encoders, one per seed."""
        return [self.load(j) for j in self.jobs["f"]]

    @cached_property
    def g(self) -> list:
        """The pair's g encoders, one per seed."""
        return [self.load(j) for j in self.jobs["g"]]
