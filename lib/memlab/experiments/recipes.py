"""Named encoder recipes: notebook 02's SSLMem f/g pair, defined once per profile (SSLMem paper §3.2).

The pair: f trains on S_S u S_C and g on S_S u S_I (``load_splits``), same method, hyper-parameters and seeds
(``encoder_config``, ``f_and_g_jobs``); SSLMem scores all of S_C, S_I and S_E and a class-balanced part of S_S
(``scored_subsets``). The pair's settings are the encoder parameters of notebook 02 (``PAIR_KEYS``): its
parameters cell holds the laptop values, and ``params/<profile>/02_sslmem.yaml`` holds each profile's. Notebooks
04 (LayerMem) and 05 (UnitMem) do not repeat them: they call ``sslmem_pair(profile)`` and so train, or load from
the cache, exactly notebook 02's f and g. Notebook 04 names its other SSL methods by the labels of 02's grid
cells (``sslmem_grid(profile)``). To change the pair or a cell, edit notebook 02's profile file; all three
notebooks follow. (A ``-p`` override given to notebook 02 alone does not reach 04 and 05.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
import yaml

from memlab.data.datasets import load_dataset
from memlab.data.splits import balanced_subset, make_splits
from memlab.engine.executors import Inline
from memlab.engine.train import TrainConfig, encoder_job, load_encoder, resolve_device
from memlab.io.cache import Cache
from memlab.io.params import ParameterError, check_ranges, choice, notebook_defaults, validate
from memlab.models.networks import width_kw
from memlab.streams import G_SEED_OFFSET, SCORED_SHARED_OFFSET

PAIR_NOTEBOOK = "02_sslmem"


# ----------------------------------------------------------------------------- the pair's data, config and jobs
def load_splits(dataset: str, *, split_shared, split_candidates, split_independent, split_extra, split_seed: int,
                synthetic_n_train: int = 5000, synthetic_n_test: int = 1000, atypical_frac: float = 0.05):
    """``(train data, test data, splits)`` of an SSLMem pair: ``dataset``'s train and test splits and the disjoint,
    class-balanced S_S, S_C, S_I (train) and S_E (test) of the given sizes (counts, or fractions of the split),
    fixed by ``split_seed`` (``splits.make_splits``). The ``synthetic_*`` sizes and ``atypical_frac`` apply to
    the "synthetic" dataset only. Raises ``DatasetNotFound``, or ValueError when the sizes exceed the data."""
    kw = dict(n=synthetic_n_train, seed=split_seed, atypical_frac=atypical_frac) if dataset == "synthetic" else {}
    train = load_dataset(dataset, "train", **kw)
    test = load_dataset(dataset, "test", **({**kw, "n": synthetic_n_test} if kw else {}))
    splits = make_splits(train.labels.numpy(), test.labels.numpy(), shared=split_shared, candidates=split_candidates,
                         independent=split_independent, extra=split_extra, seed=split_seed)
    return train, test, splits


def scored_subsets(splits, train_labels, score_shared: int, seed: int) -> dict:
    """The points SSLMem scores: all of S_C, S_I and S_E, and a class-balanced part of S_S of size
    ``score_shared`` (drawn with ``seed + streams.SCORED_SHARED_OFFSET``). Returns {subset: long indices};
    S_E indexes the test split."""
    n = min(score_shared, len(splits.shared))
    part = balanced_subset(torch.as_tensor(train_labels)[splits.shared].numpy(), n, seed + SCORED_SHARED_OFFSET)
    return {"S_C": splits.candidates, "S_S": splits.shared[part], "S_I": splits.independent, "S_E": splits.extra}


def encoder_config(*, arch: str, width: float, method: str, temperature: float, epochs: int, batch_size: int,
                   optimizer: str, lr: float, weight_decay: float, snapshot_epochs=(), mean, std,
                   objective_kw: dict | None = None, warmup_epochs: float = 1.0, blur: float = 0.0,
                   micro_batch: int = 0, **model_kw) -> TrainConfig:
    """The ``TrainConfig`` of SSLMem encoders from notebook parameters. Notebooks that must share f and g
    (SSLMem, LayerMem, UnitMem) build it here, so equal parameters give equal cache keys. ``temperature``
    applies to SimCLR; ``objective_kw`` adds any other objective option (DINO temperatures, MAE mask ratio);
    ``width`` applies to ResNets and VGGs; ``model_kw``: other model options (ViT depth, ...); ``warmup_epochs``: linear
    warm-up before the cosine decay; ``blur``: probability of a Gaussian blur in the training views (SimCLR's
    recipe uses 0.5; 0 leaves the augmentation, and the cache key, as before); ``micro_batch``: gradient
    accumulation over parts of the batch (supervised and MAE only; ``TrainConfig``). Snapshot epochs beyond
    ``epochs`` are dropped."""
    okw = {"temperature": temperature} if method == "simclr" else {}
    return TrainConfig(model=arch, model_kw={**width_kw(arch, width), **model_kw},
                       objective=method, objective_kw={**okw, **(objective_kw or {})},
                       aug_kw={"blur_p": float(blur)} if blur else {}, warmup_epochs=warmup_epochs,
                       epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                       snapshot_epochs=tuple(e for e in snapshot_epochs if e <= epochs), mean=mean, std=std,
                       micro_batch=micro_batch)


def f_and_g_jobs(cfg: TrainConfig, train_data, splits, *, seeds=(0,), pair_seeds: bool = True, cache,
                 force: bool = False, label: str = "") -> tuple[list, list]:
    """The training jobs (``jobs.Job``, kind "encoder") of f on S_S u S_C and g on S_S u S_I for every seed:
    ``(f_jobs, g_jobs)``, to declare in a notebook's plan, named "<label> f|g seed <s>" (``label`` defaults to
    "<objective>/<model>"). Supervised encoders train on the true labels, SSL encoders on none.

    ``pair_seeds``: g_s uses the same seed as f_s (same initial weights, same per-example augmentation
    draws on shared points: common random numbers, which lowers the variance of m(x) without changing
    its expectation). Otherwise g_s uses seed + 1000 (``streams.G_SEED_OFFSET``).
    """
    data_id = f"{train_data.name}/{train_data.split}"
    labels = train_data.labels if cfg.objective == "supervised" else None
    # one copy of f's and of g's images for all seeds: each job holds its images until it runs, and a paper-profile
    # plan of 3 seeds x many cells held about 18 GB of identical copies
    images = {"f": train_data.images[splits.f_train], "g": train_data.images[splits.g_train]}
    out = {"f": [], "g": []}
    for s in seeds:
        g_seed = s if pair_seeds else s + G_SEED_OFFSET
        for which, idx, seed in (("f", splits.f_train, s), ("g", splits.g_train, g_seed)):
            out[which].append(encoder_job(replace(cfg, seed=seed), images[which],
                                          None if labels is None else labels[idx], idx, cache=cache, data_id=data_id,
                                          name=f"{label or f'{cfg.objective}/{cfg.model}'} {which} seed {seed}",
                                          force=force))
    return out["f"], out["g"]


def train_f_and_g(cfg: TrainConfig, train_data, splits, *, seeds=(0,), pair_seeds: bool = True, cache=None,
                  device="auto", force: bool = False, progress: bool = True) -> tuple[list, list]:
    """Train (or load) f and g for every seed, here and now (the inline executor): ``(fs, gs)`` lists of
    ``Trained``. Notebooks declare ``f_and_g_jobs`` in their plan instead, and this then loads them."""
    cache = cache or Cache()
    f_jobs, g_jobs = f_and_g_jobs(cfg, train_data, splits, seeds=seeds, pair_seeds=pair_seeds, cache=cache,
                                  force=force)
    status = Inline(resolve_device(device)).run(f_jobs + g_jobs, cache, progress=progress)
    load = lambda j: load_encoder(j, cache, device, from_cache=status[j.name] == "cached")  # noqa: E731
    return [load(j) for j in f_jobs], [load(j) for j in g_jobs]


# ----------------------------------------------------------------------------- notebook 02's pair, by profile

@dataclass(frozen=True)
class EncoderRecipe:
    """An SSL encoder's training recipe, as notebook parameters name it (notebooks 02 to 05)."""
    method: str
    arch: str
    width: float
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    temperature: float

    def config(self, mean, std, **kw) -> TrainConfig:
        """The ``TrainConfig`` of this recipe (``encoder_config``) for data of channel ``mean`` and ``std``;
        ``kw``: encoder_config's other options (snapshot_epochs, objective_kw, warmup_epochs, blur, ...)."""
        return encoder_config(arch=self.arch, width=self.width, method=self.method, temperature=self.temperature,
                              epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                              weight_decay=self.weight_decay, mean=mean, std=std, **kw)


@dataclass(frozen=True)
class SSLMemPair(EncoderRecipe):
    """Notebook 02's f/g recipe: data and splits, the SSL encoder and its training, and how points are scored.
    Field meanings are those of notebook 02's parameters (``papermill --help-notebook``)."""
    dataset: str
    synthetic_n_train: int
    synthetic_n_test: int
    atypical_frac: float
    split_shared: int | float
    split_candidates: int | float
    split_independent: int | float
    split_extra: int | float
    split_seed: int
    score_shared: int
    seeds: tuple
    pair_seeds: bool
    view_pairs: int
    measure_aug: str
    representation: str
    snapshot_epochs: tuple
    warmup_epochs: float
    blur: float
    train_aug: str

    def __post_init__(self):
        from memlab.augmentation.augment import PRESETS
        choice("train_aug", self.train_aug, ["", *PRESETS])   # before any compute, in 02, 04 and 05 alike

    @classmethod
    def of(cls, values) -> "SSLMemPair":
        """The pair from notebook 02's parameter values (a mapping with at least ``PAIR_KEYS``; lists become
        tuples)."""
        return cls(**{k: tuple(values[k]) if isinstance(values[k], list) else values[k] for k in PAIR_KEYS})

    def load(self):
        """(train data, test data, splits) of the pair (``load_splits``). Raises ``DatasetNotFound``."""
        return load_splits(self.dataset, split_shared=self.split_shared, split_candidates=self.split_candidates,
                           split_independent=self.split_independent, split_extra=self.split_extra,
                           split_seed=self.split_seed, synthetic_n_train=self.synthetic_n_train,
                           synthetic_n_test=self.synthetic_n_test, atypical_frac=self.atypical_frac)

    def config(self, mean, std, **kw) -> TrainConfig:
        """The ``TrainConfig`` of f and g (``encoder_config``, with the pair's snapshots, warm-up and blur, and
        ``train_aug`` in place of the objective's own training augmentation when it names a preset): the cache
        key of both."""
        cfg = super().config(mean, std, snapshot_epochs=self.snapshot_epochs, warmup_epochs=self.warmup_epochs,
                             blur=self.blur, **kw)
        return replace(cfg, aug=self.train_aug) if self.train_aug else cfg

    def jobs(self, cfg, train_data, splits, *, cache, force: bool = False):
        """``(f_jobs, g_jobs)`` of the pair for a plan (``f_and_g_jobs``)."""
        return f_and_g_jobs(cfg, train_data, splits, seeds=self.seeds, pair_seeds=self.pair_seeds, cache=cache,
                            force=force)

    def base_cell(self, seeds) -> dict:
        """The settings a cross-method cell of notebook 02 takes where it names none (``grid.cell_spec``)."""
        return dict(method=self.method, arch=self.arch, width=self.width, dataset=self.dataset, epochs=self.epochs,
                    batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                    temperature=self.temperature, warmup_epochs=self.warmup_epochs, blur=self.blur,
                    aug=self.train_aug, seeds=list(seeds))

    def scored(self, splits, train_labels) -> dict:
        """The points SSLMem scores (``scored_subsets``): {subset: indices}."""
        return scored_subsets(splits, train_labels, self.score_shared, self.split_seed)


PAIR_KEYS = tuple(f.name for f in fields(SSLMemPair))


def project_root() -> Path:
    """The folder holding ``notebooks/`` and ``params/``: ``$MEMLAB_ROOT``, else the working folder (``run_all.sh``
    runs every notebook in its checkout), else the checkout this (editable) package lives in. Raises
    ``FileNotFoundError`` when none has them."""
    here = Path(__file__).resolve().parents[3]
    for root in ([Path(os.environ["MEMLAB_ROOT"])] if os.environ.get("MEMLAB_ROOT") else []) + [Path.cwd(), here]:
        if (root / "params").is_dir() and (root / "notebooks" / f"{PAIR_NOTEBOOK}.py").is_file():
            return root
    raise FileNotFoundError(f"memlab's params/ and notebooks/ folders were found neither in the working folder "
                            f"({Path.cwd()}) nor beside the package ({here}); set MEMLAB_ROOT to the checkout that "
                            f"holds them")


def _pair_notebook_values(profile: str) -> tuple[dict, Path]:
    """Notebook 02's parameter values in ``profile`` (its defaults updated by its profile file), validated."""
    root = project_root()
    defaults = notebook_defaults(root / "notebooks" / f"{PAIR_NOTEBOOK}.py")
    path = root / "params" / profile / f"{PAIR_NOTEBOOK}.yaml"
    if not path.is_file():
        raise ParameterError(f"profile {profile!r} has no {path}: it defines notebook 02's f/g pair and grid cells, "
                             f"which this notebook reuses; choose a profile from "
                             f"{sorted(p.name for p in (root / 'params').iterdir() if p.is_dir())}")
    given = yaml.safe_load(path.read_text()) or {}
    validate(given, defaults, str(path))
    values = {**defaults, **given}
    check_ranges(values, str(path))
    return values, path


def sslmem_grid(profile: str) -> tuple[list, list]:
    """Notebook 02's cross-method cells in ``profile``: ``(grid, grid_seeds)``, each cell a dict in 02's format
    (keys it omits take the pair's settings: ``grid.cell_spec(cell, pair.base_cell(grid_seeds))``)."""
    values, _ = _pair_notebook_values(profile)
    return list(values["grid"]), list(values["grid_seeds"])


def sslmem_pair(profile: str) -> SSLMemPair:
    """Notebook 02's f/g recipe in ``profile``: notebook 02's defaults, overridden by the pair's keys of
    ``params/<profile>/02_sslmem.yaml``. Raises ``ParameterError`` for a profile without that file, or for
    values of the wrong type or out of range (before any compute)."""
    return SSLMemPair.of(_pair_notebook_values(profile)[0])
