"""Named encoder recipes: notebook 02's SSLMem f/g pair, defined once per profile.

The pair's settings are the encoder parameters of notebook 02 (``PAIR_KEYS``): its parameters cell holds the
laptop values, and ``params/<profile>/02_sslmem.yaml`` holds each profile's. Notebooks 04 (LayerMem) and 05
(UnitMem) do not repeat them: they call ``sslmem_pair(profile)`` and so train, or load from the cache, exactly
notebook 02's f and g. Notebook 04 names its other SSL methods by the labels of 02's grid cells
(``sslmem_grid(profile)``). To change the pair or a cell, edit notebook 02's profile file; all three notebooks
follow. (A ``-p`` override given to notebook 02 alone does not reach 04 and 05.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from memlab.io.params import ParameterError, check_ranges, notebook_defaults, validate

PAIR_NOTEBOOK = "02_sslmem"


@dataclass(frozen=True)
class SSLMemPair:
    """Notebook 02's f/g recipe: data and splits, the SSL encoder and its training, and how points are scored.
    Field meanings are those of notebook 02's parameters (``papermill --help-notebook``)."""
    dataset: str
    synthetic_n_train: int
    synthetic_n_test: int
    atypical_frac: float
    method: str
    arch: str
    width: float
    split_shared: int | float
    split_candidates: int | float
    split_independent: int | float
    split_extra: int | float
    split_seed: int
    score_shared: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    temperature: float
    seeds: tuple
    pair_seeds: bool
    view_pairs: int
    measure_aug: str
    representation: str
    snapshot_epochs: tuple
    warmup_epochs: float
    blur: float

    def load(self):
        """(train data, test data, splits) of the pair (``sslmem.load_splits``). Raises ``DatasetNotFound``."""
        from memlab.metrics.sslmem import load_splits
        return load_splits(self.dataset, split_shared=self.split_shared, split_candidates=self.split_candidates,
                           split_independent=self.split_independent, split_extra=self.split_extra,
                           split_seed=self.split_seed, synthetic_n_train=self.synthetic_n_train,
                           synthetic_n_test=self.synthetic_n_test, atypical_frac=self.atypical_frac)

    def config(self, mean, std):
        """The ``TrainConfig`` of f and g (``sslmem.encoder_config``): the cache key of both."""
        from memlab.metrics.sslmem import encoder_config
        return encoder_config(arch=self.arch, width=self.width, method=self.method, temperature=self.temperature,
                              epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                              weight_decay=self.weight_decay, snapshot_epochs=self.snapshot_epochs, mean=mean, std=std,
                              warmup_epochs=self.warmup_epochs, blur=self.blur)

    def jobs(self, cfg, train_data, splits, *, cache, force: bool = False):
        """``(f_jobs, g_jobs)`` of the pair for a plan (``sslmem.f_and_g_jobs``)."""
        from memlab.metrics.sslmem import f_and_g_jobs
        return f_and_g_jobs(cfg, train_data, splits, seeds=self.seeds, pair_seeds=self.pair_seeds, cache=cache,
                            force=force)

    def base_cell(self, seeds) -> dict:
        """The settings a cross-method cell of notebook 02 takes where it names none (``grid.cell_spec``)."""
        return dict(method=self.method, arch=self.arch, width=self.width, dataset=self.dataset, epochs=self.epochs,
                    batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                    temperature=self.temperature, warmup_epochs=self.warmup_epochs, blur=self.blur,
                    seeds=list(seeds))

    def scored(self, splits, train_labels) -> dict:
        """The points SSLMem scores (``sslmem.scored_subsets``): {subset: indices}."""
        from memlab.metrics.sslmem import scored_subsets
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
    values, _ = _pair_notebook_values(profile)
    return SSLMemPair(**{k: tuple(values[k]) if isinstance(values[k], list) else values[k] for k in PAIR_KEYS})
