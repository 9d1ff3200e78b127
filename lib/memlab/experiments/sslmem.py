"""Notebook 02 (SSLMem, Wang et al. ICLR 2024, §3-4, appendix A): its parameters, data and plan of encoders.

``SSLMemParams`` checks the notebook's parameters before any compute; ``load_data`` loads the pair's data and
splits and every other data set the cross-method tables need (``SSLMemData``); ``train`` declares every encoder
of the notebook -- the main f/g pair (``recipes.SSLMemPair``) and each table cell's pair (``grid``) -- as one
plan, runs it and loads f and g. The main pair's scores, tables and figures are ``sslmem_scores``'s, the
cross-method tables ``sslmem_tables``'s.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import pandas as pd

from memlab.augmentation.augment import PRESETS
from memlab.data.datasets import DATASETS
from memlab.engine.jobs import Plan
from memlab.engine.train import load_encoder
from memlab.experiments.common import SessionParams, check_keys
from memlab.experiments.grid import CELL_KEYS, cell_jobs, cell_spec, main_recipe_snapshots, overlap_sizes
from memlab.experiments.recipes import SSLMemPair
from memlab.experiments.sslmem_toys import ToyConfig
from memlab.io.params import ParameterError, choice
from memlab.metrics.sslmem import SUBSETS
from memlab.models.networks import MODELS
from memlab.objectives.losses import OBJECTIVES

TABLES = ("table1", "table4", "rankings", "table11", "table7", "table8", "table9")


@dataclass(frozen=True)
class SSLMemParams(SessionParams, SSLMemPair):
    """Notebook 02's parameters (the short meaning of each is in the notebook's parameters cell): the session's
    (``common.SessionParams``), the f/g pair's (``recipes.SSLMemPair``, defined there once) and its own.

    - The pair, ``dataset`` to ``train_aug``: notebooks 04 and 05 read these from this notebook's profile file
      (``recipes.sslmem_pair``), so they reuse its encoders. Split sizes are counts, or fractions of the split.
    - ``pair_seeds``: g_s shares f_s's seed (common random numbers: the same initial weights and augmentation
      draws on the shared points lower the variance of m(x) without changing its expectation).
    - ``measure_aug``: the augmentation of the view bank ("" = the encoder's own training augmentation).
    - ``normalize_over``: the reference set of the normalising range (appendix A): "S_C+S_S" (every table uses
      it), "all", or one subset.
    - ``tables``: "table1" (methods x architectures x datasets), "table4" (SSLMem beside Déjà Vu memorisation per
      cell: ``dejavu_k``-NN over the probe's test images, corner crops of ``dejavu_crop`` a side, A's most
      confident ``dejavu_conf``; ``sslmem_dejavu``), "rankings" (Tables 12-13, Fig. 9), "table11"
      (supervised encoders), ablations "table7" (overlap fraction), "table8" (measuring augmentation), "table9"
      (training augmentation, MAE mask ratio). ``grid``: Table 1's cells, dicts of ``grid.CELL_KEYS``; keys a
      cell omits take the pair's settings. ``grid_seeds``: f/g seeds per cell (one on the laptop, for time: a
      cell's p-value is weaker than the main pair's). A cell's "snapshot_epochs" (at least 2) give its claim
      m(S_C) > m(S_S) an effect-versus-compute curve: Cohen's d at those epochs, on ``grid_trend_points``
      points per subset, and at the trained cell (``sslmem_strength.d_trend``).
    - ``supervised_epochs``: Table 11's training lengths (the longest enters the rankings); ``supervised_arch``
      "" = the pair's architecture (the paper: resnet50).
    - ``toy_steps``, ``toy_seed``, ``toy_encoders``, ``toy_view_pairs``: the intuition toys of appendix D.3 (Figs. 10
      and 11, ``sslmem_toys.ToyConfig``, as ``toys``): Adam steps per encoder, seed, f/g pairs averaged, view pairs.
    """
    normalize_over: str
    dynamics_epochs: list
    dynamics_points: int
    dynamics_pairs: int
    probe_test: int
    gallery_k: int
    alpha: float
    force: bool
    tables: list
    grid: list
    grid_seeds: list
    grid_view_pairs: int
    grid_points: int
    grid_trend_points: int
    dejavu_k: int
    dejavu_crop: float
    dejavu_conf: float
    supervised_epochs: list
    supervised_lr: float
    supervised_arch: str
    topk: list
    overlap_fracs: list
    measure_augs: list
    simclr_augs: list
    mae_mask_ratios: list
    toy_steps: int
    toy_seed: int
    toy_encoders: int
    toy_view_pairs: int

    def __post_init__(self):
        SSLMemPair.__post_init__(self)
        self.toys  # noqa: B018 -- ParameterError for a bad toy_* value, before any compute
        choice("dataset", self.dataset, DATASETS)
        choice("method", self.method, OBJECTIVES)
        choice("arch", self.arch, MODELS)
        if self.supervised_arch:
            choice("supervised_arch", self.supervised_arch, MODELS)
        choice("representation", self.representation, ["flat", "pooled"])
        choice("normalize_over", self.normalize_over, ["S_C+S_S", "all", *SUBSETS])
        if not self.seeds:
            raise ParameterError("parameter 'seeds' must list at least one seed (one f and one g per seed)")
        for t in self.tables:
            choice("tables", t, TABLES)
        for c in self.grid:
            if isinstance(c, dict):
                check_keys("grid", c, sorted(CELL_KEYS))
        for c in self.cells:  # unknown keys and missing settings fail here, before any compute
            choice("grid method", c["method"], OBJECTIVES), choice("grid arch", c["arch"], MODELS)
            choice("grid dataset", c["dataset"], DATASETS)
        for a in [*self.measure_augs, *self.simclr_augs]:
            choice("measure_augs / simclr_augs", a, PRESETS)
        for c in self.cells:
            choice(f"grid cell {c['label']}: aug", c["aug"], ["", *PRESETS])
            choice(f"grid cell {c['label']}: measure_aug", c["measure_aug"], ["", *PRESETS])
        choice("measure_aug", self.measure_aug, ["", *PRESETS])
        for fr in self.overlap_fracs:
            overlap_sizes(self.split_shared + self.split_candidates + self.split_independent, fr)
        if "table4" in self.tables and not 1 <= self.dejavu_k <= self.probe_test:
            raise ParameterError(f"parameter 'dejavu_k' = {self.dejavu_k}: Table 4's k-NN needs 1 <= k <= probe_test "
                                 f"= {self.probe_test} (its public set); lower it or raise probe_test")
        if self.grid_trend_points < 2:
            raise ParameterError(f"parameter 'grid_trend_points' must be >= 2 (points per subset at each snapshot of "
                                 f"a cell's curve), got {self.grid_trend_points}")
        if {"table11", "rankings"} & set(self.tables) and not self.supervised_epochs:
            raise ParameterError("tables table11 and rankings need at least one supervised_epochs value: add one, "
                                 "or drop them from 'tables'")

    @cached_property
    def toys(self) -> ToyConfig:
        """The intuition toys' settings (Figs. 10 and 11)."""
        return ToyConfig(steps=self.toy_steps, seed=self.toy_seed, encoders=self.toy_encoders,
                         view_pairs=self.toy_view_pairs)

    # ------------------------------------------------------------------------- the pair and the tables' cells
    @cached_property
    def pair(self) -> SSLMemPair:
        """The main f/g recipe: the same object notebooks 04 and 05 build from this profile."""
        return SSLMemPair.of(vars(self))

    @cached_property
    def cell_defaults(self) -> dict:
        """The settings a cell takes where it names none: the pair's, with ``grid_seeds``."""
        return self.pair.base_cell(self.grid_seeds)

    @cached_property
    def cells(self) -> list:
        """Table 1's cells, completed (``grid.cell_spec``)."""
        try:
            cells = [cell_spec(c, self.cell_defaults) for c in self.grid]
            for c in cells:
                self.snapshots(c)   # a main-recipe cell may only ask for the main pair's snapshots
            return cells
        except (TypeError, ValueError) as e:
            raise ParameterError(f"parameter 'grid': {e}") from e

    def snapshots(self, spec: dict) -> tuple:
        """A cell that repeats the main pair's recipe keeps its snapshot list, so it shares the pair's encoders."""
        return main_recipe_snapshots(spec, self.cell_defaults, self.snapshot_epochs)

    def wants(self, *tables) -> bool:
        """Whether any of ``tables`` is selected."""
        return bool(set(tables) & set(self.tables))

    @cached_property
    def grid_specs(self) -> list:
        """The cells of Table 1 (also those of Tables 4 and 11-13)."""
        return self.cells if self.wants("table1", "table4", "rankings", "table11") else []

    @cached_property
    def supervised_specs(self) -> list:
        """Table 11: plain supervised training (SGD, one warm-up epoch, no blur) at each of ``supervised_epochs``."""
        # supervised encoders keep their own (weak) augmentation whatever the pair's train_aug
        own = {"method": "supervised", "lr": self.supervised_lr, "optimizer": "sgd", "warmup_epochs": 1.0, "blur": 0.0,
               "aug": "",
               **({"arch": self.supervised_arch} if self.supervised_arch else {})}
        return [cell_spec({**own, "epochs": e, "label": f"supervised {e} ep."}, self.cell_defaults)
                for e in sorted(self.supervised_epochs)] if self.wants("table11", "rankings") else []

    @cached_property
    def overlap_specs(self) -> list:
        """Table 7: ``(fraction, cell, (dataset, |S_S|, |S_C|, |S_I|))`` for each overlap fraction."""
        out = []
        for fr in (self.overlap_fracs if self.wants("table7") else []):
            shared, rest = overlap_sizes(self.split_shared + self.split_candidates + self.split_independent, fr)
            out.append((fr, cell_spec({"label": f"overlap {fr:.0%}"}, self.cell_defaults),
                        (self.dataset, shared, rest, rest)))
        return out

    @cached_property
    def table9_specs(self) -> list:
        """Table 9: SimCLR with one augmentation type each, and MAE (the grid's MAE cell) at each mask ratio."""
        if not self.wants("table9"):
            return []
        mae = next((c for c in self.grid if c.get("method") == "mae"), {"method": "mae", "arch": "vit_tiny"})
        return ([cell_spec({"label": f"simclr, {a} augmentation", "aug": a, "blur": 0.0}, self.cell_defaults)
                 for a in self.simclr_augs]
                + [cell_spec({**mae, "label": f"mae mask {r:.0%}",
                              "objective_kw": {**mae.get("objective_kw", {}), "mask_ratio": r}}, self.cell_defaults)
                   for r in self.mae_mask_ratios])


# ----------------------------------------------------------------------------- data
class SSLMemData:
    """Data, splits and scored subsets per (dataset, |S_S|, |S_C|, |S_I|), each loaded once: the pair's, and
    those of the cross-method cells (other datasets, Table 7's pool sizes). ``train``, ``test``, ``splits`` and
    ``scored`` are the pair's."""

    def __init__(self, p: SSLMemParams):
        self.p = p
        self._loaded = {}
        self.train, self.test, self.splits, self.scored = self.get()

    def get(self, dataset: str | None = None, shared=None, candidates=None, independent=None) -> tuple:
        """``(train, test, splits, scored)`` of ``dataset`` (default the pair's) with the given pool sizes (default
        the pair's). Raises ``DatasetNotFound``, or ValueError when the sizes exceed the data."""
        p = self.p
        key = (dataset or p.dataset, shared or p.split_shared, candidates or p.split_candidates,
               independent or p.split_independent)
        if key not in self._loaded:
            pair = replace(p.pair, dataset=key[0], split_shared=key[1], split_candidates=key[2],
                           split_independent=key[3])
            train, test, splits = pair.load()
            self._loaded[key] = (train, test, splits, pair.scored(splits, train.labels))
        return self._loaded[key]

    def sizes(self) -> pd.DataFrame:
        """Size of each subset and how many of its points are scored."""
        return pd.DataFrame([{"subset": k, "size": len(self.splits[k]), "scored": len(self.scored[k])}
                             for k in SUBSETS])


def load_data(p: SSLMemParams, report) -> SSLMemData:
    """The pair's data and splits (saved to ``splits.json`` beside the tables), then every other data set and
    pool size the selected tables need -- now, before any training, so that a missing dataset or a split
    larger than the data fails here."""
    d = SSLMemData(p)
    d.splits.save(report.tables / "splits.json")
    print(f"{p.dataset}: {len(d.train)} train / {len(d.test)} test images, {d.train.num_classes} classes")
    if p.wants("table1", "rankings", "table11", "table9"):
        for ds in sorted({c["dataset"] for c in p.cells} - {p.dataset}):
            d.get(ds)
    for _, _, key in p.overlap_specs:
        d.get(*key)
    return d


# ----------------------------------------------------------------------------- the plan
@dataclass
class TrainedPair:
    """The main pair after the plan ran: f and g per seed (``Trained``), their config and the session."""
    p: SSLMemParams
    S: object
    data: SSLMemData
    cfg: object
    fs: list
    gs: list

    def training_summary(self) -> pd.DataFrame:
        """Writes ``training_history`` (every epoch of every f and g); returns the final loss, training time
        (seconds) and source ("cache" or "trained") of each encoder."""
        encoders = [(f"{w}{i}", t) for w, ts in (("f", self.fs), ("g", self.gs)) for i, t in enumerate(ts)]
        hist = pd.DataFrame([{"encoder": name, **h} for name, t in encoders for h in t.history])
        self.S.report.table(hist, "training_history")
        out = hist.groupby("encoder").agg(final_loss=("loss", "last"), train_seconds=("time", "sum")).round(3)
        out["source"] = out.index.map({name: "cache" if t.from_cache else "trained" for name, t in encoders})
        return out


def train(p: SSLMemParams, S, data: SSLMemData) -> TrainedPair:
    """Declare every encoder of the notebook as one plan -- the main f and g per seed, then the f/g pairs of the
    selected tables' cells -- show it with its cost, train what is not cached (``S.run``) and load f and g."""
    cache = S.cache
    cfg = p.pair.config(*data.train.stats())
    plan = Plan("02_sslmem", cache=cache, device=S.device)
    f_jobs, g_jobs = p.pair.jobs(cfg, data.train, data.splits, cache=cache, force=p.force)
    plan.add_all(f_jobs + g_jobs)
    for spec in p.grid_specs + p.supervised_specs + p.table9_specs:
        train_data, _, splits, _ = data.get(spec["dataset"])
        for jobs in cell_jobs(spec, train_data, splits, cache=cache, snapshot_epochs=p.snapshots(spec), force=p.force):
            plan.add_all(jobs)
    for _, spec, key in p.overlap_specs:  # their own pool sizes: never the main pair's encoders, no snapshots
        train_data, _, splits, _ = data.get(*key)
        for jobs in cell_jobs(spec, train_data, splits, cache=cache, force=p.force):
            plan.add_all(jobs)
    status = S.run(plan)
    load = lambda j: load_encoder(j, cache, S.device, from_cache=status[j.name] == "cached")  # noqa: E731
    return TrainedPair(p, S, data, cfg, [load(j) for j in f_jobs], [load(j) for j in g_jobs])
