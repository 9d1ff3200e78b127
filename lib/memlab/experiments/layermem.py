"""Notebook 04, LayerMem and Delta-LayerMem (Wang et al., NeurIPS 2024, "Localizing Memorization in SSL Vision
Encoders", §3; methods.md §3): its parameters, its plan of jobs, and the computations that turn the cached
encoders into the notebook's tables and claim values.

The f/g pair is notebook 02's, and the other SSL methods are notebook 02's grid cells, both named by profile
(``recipes.sslmem_pair``, ``recipes.sslmem_grid``): this notebook trains nothing of its own for them, it reuses
02's cache entries by construction. The metric itself is ``memlab.metrics.layermem``; the figures, the
comparisons across encoders and the claims are ``experiments.layermem_findings``, the downstream section
(fine-tuning and replacing layers, §5) ``experiments.layermem_downstream``, the ViT claim over a cell's snapshots
(effect versus compute) ``experiments.layermem_trend``. Usage::

    P, S = begin(globals())         # ParameterError before any compute; the session
    R = load_data(P, S)             # data first
    train(R)                        # then the plan (cached or trained)
    main = main_result(R)           # LayerMem of every layer of f/g
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from memlab.augmentation.augment import ViewBank
from memlab.data.datasets import DATASETS
from memlab.engine.jobs import Plan
from memlab.engine.train import encoder_job
from memlab.experiments.common import Session, check_snapshots
from memlab.experiments.grid import cell_jobs, cell_spec, main_recipe_snapshots
from memlab.experiments.layermem_samples import check_sizes
from memlab.experiments.pair_run import PairRun, begin as _begin, pair_data
from memlab.experiments.recipes import sslmem_grid, sslmem_pair
from memlab.io.params import ParameterError, choice
from memlab.metrics import layermem as LM
from memlab.models.networks import MODELS
from memlab.objectives.losses import OBJECTIVES
from memlab.streams import SplitSeed

NOTEBOOK = "04_layermem"


@dataclass(frozen=True)
class LayerMemParams:
    """Notebook 04's parameters, one field per name of its parameters cell (defaults there: the laptop profile;
    profiles: ``params/<profile>/04_layermem.yaml``). ``__post_init__`` raises ``ParameterError`` naming the
    parameter, before any compute."""
    profile: str            # smoke, laptop or paper: labels the outputs and selects notebook 02's pair and cells
    output_dir: str         # folder of the figures, tables and claims
    device: str             # "auto", "cpu", "cuda" or "cuda:N"
    executor: str           # "auto", "inline", "local" or "slurm" (engine.executors; $MEMLAB_EXECUTOR overrides)
    workers: int            # local executor: worker processes (0: one per CPU core or GPU)
    slurm: dict             # slurm executor: partition, time_min, gpus_per_task, ... (engine.executors.Slurm)
    layer_view_pairs: int   # K view pairs per point: the first K pairs of notebook 02's view bank (paper: 5)
    layer_candidates: int   # S_C candidates scored at every layer; the top / least groups are ranked among them
    layer_shared: int       # S_S control points, trained on by f and g alike: their LayerMem shows "no memorisation"
    layer_range: str        # LayerMem's range: "layer" (per layer, = normalised SSLMem of the truncated encoder)
                            # or "shared" (one range for all layers; metrics.layermem.layermem)
    random_points: int      # the paper's "100 random candidates"
    top_k: int              # the k most / least memorised candidates, ranked by final-layer SSLMem
    overlap_k: int          # k of the top-k overlap between two layers' rankings
    distant_gap: int        # layer pairs at least this many layers apart count as "distant" (>= 2)
    sample_sizes: list      # batch sizes of the sample-size ablation (layermem_samples; draws x size <= layer_candidates)
    sample_draws: int       # random batches per size (>= 2)
    grid_seeds: list        # seeds per cell: a subset of notebook 02's grid_seeds, whose cached encoders are reused
    method_cells: list      # SSL methods, as labels of notebook 02's grid cells in this profile
    arch_cells: list        # other architectures: cells in notebook 02's format; missing keys take the pair's
    cell_view_pairs: int    # K view pairs per point for the cells' encoders
    cell_candidates: int    # S_C candidates scored per cell
    trend_candidates: int   # candidates scored at each snapshot of a ViT cell (layermem_trend; <= cell_candidates)
    trend_view_pairs: int   # view pairs per point at those snapshots (the cell's own: its last point is the claim's)
    depth_trend_epochs: list  # snapshot epochs of the pair f/g where "last layer > first" is measured again
                            # (layermem_trend.depth_over_training; [] for no curve, else >= 2 of 02's snapshot_epochs)
    second_dataset: str     # downstream / transfer data (STL-10 in the paper)
    synthetic_fallback: bool  # let synthetic data stand in for an unavailable second_dataset (experiments.fallback)
    second_n_train: int     # training images of the second dataset (class-balanced subset)
    second_n_test: int      # test images of the second dataset
    second_epochs: int      # SimCLR epochs of the encoder trained on the second dataset (the replacement's source)
    k_layers: int           # how many layers are fine-tuned, and replaced in the replacement claim
    replace_counts: list    # the counts of replaced layers (the paper: 1, 2, 3); must include k_layers
    random_draws: int       # random layer choices, averaged
    finetune_epochs: int    # epochs of the layer fine-tuning
    finetune_lr: float      # learning rate of the layer fine-tuning
    probe_test: int         # CIFAR-10 test images of the probe
    probe_kind: str         # "linear" probe (the paper) or "knn" (20-NN, cosine; quick runs)
    alpha: float            # significance level of the claims
    force: bool             # recompute cached results instead of reusing them

    @cached_property
    def pair(self):
        """Notebook 02's f/g recipe in this profile (``recipes.SSLMemPair``)."""
        return sslmem_pair(self.profile)

    @cached_property
    def base_cell(self) -> dict:
        """The settings a cell takes where it names none: the pair's, with ``grid_seeds``."""
        return self.pair.base_cell(self.grid_seeds)

    @cached_property
    def method_specs(self) -> list:
        """Complete specs (``grid.cell_spec``) of ``method_cells``, looked up among notebook 02's grid cells."""
        grid02, _ = sslmem_grid(self.profile)
        cells = {c["label"]: c for c in (cell_spec(c, self.base_cell) for c in grid02)}
        missing = [c for c in self.method_cells if c not in cells]
        if missing:
            raise ParameterError(f"method_cells {missing} are not cells of notebook 02's grid in profile "
                                 f"{self.profile!r}; its cells: {list(cells)}")
        return [cells[c] for c in self.method_cells]

    @cached_property
    def arch_specs(self) -> list:
        """Complete specs of ``arch_cells``, labelled "<method>/<arch>"."""
        pair = self.pair
        return [cell_spec({"label": f"{c.get('method', pair.method)}/{c.get('arch', pair.arch)}", **c}, self.base_cell)
                for c in self.arch_cells]

    @property
    def cells(self) -> list:
        """Every cell scored: the architecture cells, then the method cells not among them."""
        own = {a["label"] for a in self.arch_specs}
        return self.arch_specs + [c for c in self.method_specs if c["label"] not in own]

    def __post_init__(self):
        pair = self.pair
        choice("dataset", pair.dataset, DATASETS)
        choice("second_dataset", self.second_dataset, DATASETS)
        choice("method", pair.method, OBJECTIVES)
        choice("arch", pair.arch, MODELS)
        choice("representation", pair.representation, ["flat", "pooled"])
        choice("layer_range", self.layer_range, LM.MODES)
        choice("probe_kind", self.probe_kind, ["linear", "knn"])
        if max(self.layer_view_pairs, self.cell_view_pairs, self.trend_view_pairs) > pair.view_pairs or min(
                self.layer_view_pairs, self.cell_view_pairs, self.trend_view_pairs) < 1:
            raise ParameterError(f"layer_view_pairs, cell_view_pairs and trend_view_pairs ({self.layer_view_pairs}, "
                                 f"{self.cell_view_pairs}, {self.trend_view_pairs}) take the first pairs of the SSLMem "
                                 f"view bank and must lie in [1, view_pairs = {pair.view_pairs}]")
        if max(self.random_points, 2 * self.top_k, self.overlap_k) > min(self.layer_candidates, self.cell_candidates):
            raise ParameterError(f"layer_candidates and cell_candidates ({self.layer_candidates}, "
                                 f"{self.cell_candidates}) must be at least random_points, 2 * top_k and overlap_k "
                                 f"({self.random_points}, {2 * self.top_k}, {self.overlap_k})")
        if not max(self.random_points, 2 * self.top_k) <= self.trend_candidates <= self.cell_candidates:
            raise ParameterError(f"trend_candidates ({self.trend_candidates}) must be at least random_points and "
                                 f"2 * top_k ({self.random_points}, {2 * self.top_k}) and at most cell_candidates "
                                 f"({self.cell_candidates})")
        check_snapshots("depth_trend_epochs", self.depth_trend_epochs, pair.epochs)
        if not set(self.depth_trend_epochs) <= set(pair.snapshot_epochs):   # the pair keeps only these
            raise ParameterError(f"depth_trend_epochs {self.depth_trend_epochs}: each must be a snapshot of the pair, "
                                 f"from notebook 02's snapshot_epochs in profile {self.profile!r}: "
                                 f"{sorted(e for e in pair.snapshot_epochs if e < pair.epochs)}")
        if self.distant_gap < 2:
            raise ParameterError(f"distant_gap must be >= 2, got {self.distant_gap}")
        if self.k_layers not in self.replace_counts or len(set(self.replace_counts)) != len(self.replace_counts) or \
                min(self.replace_counts) < 1:
            raise ParameterError(f"replace_counts {self.replace_counts} must be distinct counts >= 1 of replaced "
                                 f"layers and include k_layers = {self.k_layers} (its claim's count)")
        try:
            check_sizes(self.sample_sizes, self.sample_draws, self.layer_candidates)
        except ValueError as e:
            raise ParameterError(f"parameter 'sample_sizes' / 'sample_draws': {e}") from e
        if not pair.seeds or not self.grid_seeds:
            raise ParameterError("seeds and grid_seeds must list at least one seed")
        _, grid_seeds02 = sslmem_grid(self.profile)
        self.method_specs  # unknown labels fail here
        if not set(self.grid_seeds) <= set(grid_seeds02):
            raise ParameterError(f"grid_seeds {self.grid_seeds} must be a subset of notebook 02's grid_seeds "
                                 f"{grid_seeds02} (profile {self.profile!r}), whose cached encoders this notebook "
                                 f"reuses")
        for c in self.method_specs + self.arch_specs:
            choice("cell method", c["method"], OBJECTIVES), choice("cell arch", c["arch"], MODELS)
            if c["dataset"] != pair.dataset:
                raise ParameterError(f"cell {c['label']}: LayerMem cells must use the main dataset {pair.dataset!r}")
            if c["method"] == "supervised":
                raise ParameterError(f"cell {c['label']}: LayerMem cells are SSL encoders")
            try:   # a main-recipe cell may only ask for the main pair's snapshots
                main_recipe_snapshots(c, self.base_cell, pair.snapshot_epochs)
            except ValueError as e:
                raise ParameterError(f"cell {c['label']}: {e}") from e


@dataclass
class LayerMemRun(PairRun):
    """One run of notebook 04 (``PairRun``); its jobs: "f", "g", "second" and "cells" ({label: (f jobs, g jobs)})."""

    @cached_property
    def scored(self) -> dict:
        """The points notebook 02 scores: {"S_C": indices, "S_S": indices, ...} (``SSLMemPair.scored``)."""
        return self.P.pair.scored(self.splits, self.train_data.labels)

    @property
    def candidates(self) -> torch.Tensor:
        """The ``layer_candidates`` S_C points scored at every layer (global indices of the training split)."""
        return self.scored["S_C"][:self.P.layer_candidates]

    @property
    def controls(self) -> torch.Tensor:
        """The ``layer_shared`` S_S control points (trained on by f and g alike)."""
        return self.scored["S_S"][:self.P.layer_shared]


def begin(namespace: dict) -> tuple:
    """``(P, S)``: the notebook's parameters from ``namespace`` (its globals), checked, and its session
    (``pair_run.begin``)."""
    return _begin(LayerMemParams, NOTEBOOK, namespace)


def load_data(P: LayerMemParams, S: Session) -> LayerMemRun:
    """The pair's data and splits and the second dataset (synthetic when allowed and it is missing).
    Raises ``DatasetNotFound`` for missing data, ``ParameterError`` when the candidates exceed |S_C|."""
    R = LayerMemRun(P, S, *pair_data(P))
    if max(P.layer_candidates, P.cell_candidates) > len(R.splits.candidates):
        raise ParameterError(f"layer_candidates / cell_candidates exceed |S_C| = {len(R.splits.candidates)}")
    print(f"device {S.device} | cache {S.cache.root} | {P.pair.dataset}: {len(R.train_data)} train images | "
          f"second dataset: {R.second_train.name}")
    return R


def train(R: LayerMemRun) -> None:
    """The plan: the pair's f/g, every cell's f/g and the encoder of the second dataset; shown, then trained by
    the session's executor or found in the cache. Sets ``R.cfg``, ``R.jobs`` and ``R.status``."""
    P, S, pair = R.P, R.S, R.P.pair
    R.cfg = pair.config(*R.train_data.stats())
    plan = Plan(NOTEBOOK, cache=S.cache, device=S.device)
    R.jobs["f"], R.jobs["g"] = (plan.add_all(js) for js in pair.jobs(R.cfg, R.train_data, R.splits, cache=S.cache,
                                                                      force=P.force))
    # a cell that repeats the main pair's recipe keeps its snapshot list (as in notebook 02): it is the main pair
    R.jobs["cells"] = {c["label"]: [plan.add_all(js) for js in cell_jobs(
        c, R.train_data, R.splits, cache=S.cache, force=P.force,
        snapshot_epochs=main_recipe_snapshots(c, P.base_cell, pair.snapshot_epochs))] for c in P.cells}
    name = R.second_train.name
    R.jobs["second"] = plan.add(encoder_job(replace(R.cfg, epochs=P.second_epochs, snapshot_epochs=()),
                                            R.second_train.images, None, torch.arange(len(R.second_train)),
                                            cache=S.cache, data_id=f"{name}/train",
                                            name=f"second-dataset encoder ({name})", force=P.force))
    R.status = S.run(plan)


def origins(label: str, trained: list) -> str:
    """Where each encoder came from in this run, e.g. "f: cache, trained"."""
    return f"{label}: " + ", ".join("cache" if t.from_cache else "trained" for t in trained)


@dataclass
class LayerResult:
    """LayerMem of one f/g pair: ``layers`` (LayerMem's, network order), ``final`` (the layer ranking the points),
    ``cand`` ({layer: (n_cand,) LayerMem of the candidates}), ``grp`` (positions of the random / top / least
    groups), ``table`` (``metrics.layermem.layer_table`` plus the S_S control and the raw mean), ``raw``
    (``cached_layer_scores``' output)."""
    layers: list
    final: str
    cand: dict
    grp: dict
    table: pd.DataFrame
    raw: dict


def layer_result(R: LayerMemRun, f_list, g_list, n_cand: int, n_pairs: int, measure: str = "") -> LayerResult:
    """LayerMem (and raw scores) at every LayerMem layer plus the final layer, for the first ``n_cand``
    candidates and the controls, from the first ``n_pairs`` view pairs of notebook 02's view bank measured with
    augmentation ``measure`` ("": the encoders' own). Scores are cached."""
    P, pair = R.P, R.P.pair
    enc = f_list[0].encoder
    layers = LM.layermem_layers(enc)
    final = enc.layer_names[-1]
    bank = ViewBank(f_list[0].measuring(measure), 2 * pair.view_pairs, seed=pair.split_seed)
    cand_pts = R.candidates[:n_cand]
    res = LM.cached_layer_scores(R.S.cache, f_list, g_list, R.train_data, torch.cat([cand_pts, R.controls]), bank,
                                 layers=list(dict.fromkeys(layers + [final])), n_pairs=n_pairs, rep=pair.representation,
                                 device=R.S.device, force=P.force)
    lm_all = LM.layermem({l: r["raw"] for l, r in res.items()}, mode=P.layer_range)
    nc = len(cand_pts)
    cand = {l: v[:nc] for l, v in lm_all.items()}
    ctrl = {l: v[nc:] for l, v in lm_all.items()}
    grp = LM.groups(cand[final], n_random=P.random_points, k=P.top_k, seed=pair.split_seed + SplitSeed.LAYERMEM_GROUPS)
    table = LM.layer_table(cand, layers, grp)
    table["LayerMem S_S control"] = [float(ctrl[l].mean()) for l in layers] if len(R.controls) else np.nan
    table["raw m S_C (mean)"] = [float(res[l]["raw"][:nc].mean()) for l in layers]
    return LayerResult(layers, final, cand, grp, table, res)


def main_result(R: LayerMemRun) -> LayerResult:
    """LayerMem of the pair f/g on ``layer_candidates`` candidates and ``layer_shared`` controls."""
    print(origins("f", R.f), "|", origins("g", R.g))
    return layer_result(R, R.f, R.g, R.P.layer_candidates, R.P.layer_view_pairs, R.P.pair.measure_aug)


def main_table_name(P: LayerMemParams) -> str:
    return "layermem_resnet9" if P.pair.arch == "resnet9" else f"layermem_{P.pair.arch}"


def cell_results(R: LayerMemRun) -> dict:
    """{cell label: LayerResult} of every cell (its table starts with a "cell" column)."""
    out = {}
    for c in R.P.cells:
        print(f"-- cell {c['label']}")
        f_c, g_c = ([R.load(j) for j in js] for js in R.jobs["cells"][c["label"]])
        print(origins("f", f_c), "|", origins("g", g_c))
        r = layer_result(R, f_c, g_c, R.P.cell_candidates, R.P.cell_view_pairs, c["measure_aug"])
        r.table.insert(0, "cell", c["label"])
        out[c["label"]] = r
    return out
