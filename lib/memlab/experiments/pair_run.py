"""A run of a notebook built on notebook 02's f/g pair (notebooks 04 and 05): its parameters and session, the
pair's data and splits, other datasets (04: one, 05: a list), and -- once its plan has run -- the jobs, their
status and the encoders f and g, loaded from the cache on first use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from memlab.data.archives import SubsetTooLarge
from memlab.data.datasets import ImageData
from memlab.engine.train import load_encoder
from memlab.experiments.common import Session, parameters, start
from memlab.experiments.fallback import load_or_stand_in
from memlab.io.params import ParameterError, check_injected
from memlab.streams import SplitSeed


def begin(cls, notebook: str, namespace: dict) -> tuple:
    """A pair notebook's first step: ``(P, S)``. Papermill's injected values are checked against the parameters
    cell (``io.params.check_injected``), ``P = parameters(cls, namespace)`` (every check before any compute,
    notebook 02's recipe included) and ``S = start(notebook, P)`` (device, executor, cache, report captioned with
    the pair's dataset). Raises ``ParameterError``."""
    check_injected()
    P = parameters(cls, namespace)
    return P, start(notebook, P, dataset=P.pair.dataset)


def pair_data(P, names: list | None = None) -> tuple:
    """``(train, test, splits, others)``: the pair's data and its disjoint splits (``SSLMemPair.load``) and
    ``others``, {shown name: (train, test)} of each dataset of ``names`` (default ``[P.second_dataset]``), each
    ``P.second_n_train`` / ``P.second_n_test`` class-balanced images. Where a dataset is missing and
    ``P.synthetic_fallback`` allows it, synthetic data stands in (``experiments.fallback``), shown as "synthetic
    (for <name>)" and drawn with its own seed per list position. Raises ``DatasetNotFound`` for missing data."""
    main = P.pair.load()   # the main dataset first: the pair cannot do without it
    others = {}
    for i, name in enumerate(names if names is not None else [P.second_dataset]):
        # position 0 keeps the seed of the single second dataset notebooks 04 and 05 always had (its cache keys)
        seed = P.pair.split_seed + SplitSeed.SECOND_DATASET + SplitSeed.SYNTHETIC_STAND_IN * i
        tr, te = sized(lambda: load_or_stand_in(name, synthetic_fallback=P.synthetic_fallback,
                                                n=(P.second_n_train, P.second_n_test), seed=seed),
                       "second_n_train / second_n_test", name)
        others[name if tr.name == name else f"synthetic (for {name})"] = (tr, te)
    return (*main, others)


def sized(load, params: str, name: str):
    """``load()``, with a subset larger than its split (``SubsetTooLarge``) turned into a ``ParameterError`` that
    names the size parameters ``params`` and the fix."""
    try:
        return load()
    except SubsetTooLarge as e:
        raise ParameterError(f"{params}: {e} (dataset {name!r}). Fix: ask for at most that many.") from e


@dataclass
class PairRun:
    """One run of a notebook on notebook 02's pair. ``P``: the notebook's parameters (with ``P.pair``)."""
    P: object
    S: Session
    train_data: ImageData
    test_data: ImageData
    splits: object                  # data.splits.Splits of the pair
    others: dict                    # {shown name: (train, test)} of the other datasets (pair_data), in order
    cfg: object = None              # the pair's TrainConfig, set by the notebook's plan
    jobs: dict = field(default_factory=dict)    # the plan's jobs: "f", "g" (lists, one per seed), and others
    status: dict = field(default_factory=dict)  # {job name: "cached" | "trained"}

    @property
    def second_train(self) -> ImageData:
        """The first other dataset's training images (or its synthetic stand-in: ``.name`` says which)."""
        return next(iter(self.others.values()))[0]

    @property
    def second_test(self) -> ImageData:
        """The first other dataset's test images."""
        return next(iter(self.others.values()))[1]

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
