"""Cross-method SSLMem (SSLMem paper Table 1 / 15, Tables 7-9, 11): one f/g pair per grid cell.

A cell is a dict (``CELL_KEYS``) naming the method, architecture and dataset, plus any training setting that
differs from the notebook's defaults (each method has its own optimiser and learning rate); ``cell_spec``
completes it. ``cell_jobs`` declares its f and g for a notebook's plan; ``run_cell`` loads them (training inline
what the plan did not), scores the requested subsets with SSLMem (``scoring.cached_sslmem``) -- measured with the
cell's own training augmentation unless ``measure_aug`` names another -- and probes f's representations linearly
(``scoring.probe_accuracy``). Every encoder and score set is a cache entry, so an interrupted grid resumes at the
first unfinished cell.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from memlab.augmentation.augment import ViewBank
from memlab.experiments.recipes import encoder_config, f_and_g_jobs, train_f_and_g
from memlab.experiments.scoring import cached_sslmem, probe_accuracy
from memlab.metrics.sslmem import normalised_sslmem, reference_label

CELL_KEYS = {"label", "method", "arch", "width", "dataset", "epochs", "batch_size", "optimizer", "lr",
             "weight_decay", "temperature", "objective_kw", "model_kw", "seeds", "measure_aug", "aug",
             "warmup_epochs", "blur", "micro_batch", "snapshot_epochs"}
TRAIN_KEYS = ("arch", "width", "method", "temperature", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
              "warmup_epochs", "blur", "micro_batch")


def cell_spec(cell: dict, defaults: dict) -> dict:
    """Complete a grid cell with ``defaults`` (and a "label": "<method>/<arch>[/<dataset>]" unless it has one).
    Raises, before any compute, TypeError for a cell that is not a dict and ValueError for unknown keys, a
    training setting neither gives, or no seeds."""
    if not isinstance(cell, dict):
        raise TypeError(f"a grid cell must be a dict, got {type(cell).__name__}: {cell!r}")
    bad = sorted(set(cell) - CELL_KEYS)
    if bad:
        raise ValueError(f"unknown grid-cell key(s) {bad} in {cell}; valid: {sorted(CELL_KEYS)}")
    # warm-up and blur default to encoder_config's (1 epoch, no blur), so a grid without them keeps its cache keys
    spec = {"objective_kw": {}, "model_kw": {}, "measure_aug": "", "aug": "", "warmup_epochs": 1.0, "blur": 0.0,
            "micro_batch": 0, "snapshot_epochs": [], **defaults, **cell}
    missing = [k for k in TRAIN_KEYS if k not in spec]
    if missing:
        raise ValueError(f"cell {cell}: no value for {missing}; give them in the cell or in the grid's defaults")
    if "label" not in cell:
        spec["label"] = f"{spec['method']}/{spec['arch']}" + (f"/{spec['dataset']}" if "dataset" in cell else "")
    if not spec["seeds"]:
        raise ValueError(f"cell {spec['label']}: seeds must list at least one seed")
    snaps = spec["snapshot_epochs"]
    if not all(isinstance(e, int) and 1 <= e < spec["epochs"] for e in snaps) or len(set(snaps)) != len(snaps):
        raise ValueError(f"cell {spec['label']}: snapshot_epochs must be distinct whole epochs in [1, "
                         f"{spec['epochs'] - 1}] (the last epoch is the trained encoder itself), got {snaps}")
    return spec


def cell_config(spec: dict, mean, std, snapshot_epochs=()):
    """The ``TrainConfig`` of a cell's f and g (``recipes.encoder_config``; ``spec["aug"]`` overrides the
    objective's training augmentation). ``mean``, ``std``: the training data's channel statistics."""
    cfg = encoder_config(**{k: spec[k] for k in TRAIN_KEYS}, snapshot_epochs=snapshot_epochs, mean=mean, std=std,
                         objective_kw=spec["objective_kw"], **spec["model_kw"])
    return replace(cfg, aug=spec["aug"]) if spec["aug"] else cfg


def main_recipe_snapshots(spec: dict, base_cell: dict, snapshot_epochs) -> tuple:
    """The ``snapshot_epochs`` a cell trains with: the main pair's when the cell repeats the main pair's recipe
    (``base_cell``, seeds aside), so it shares the main pair's cache entries; otherwise the cell's own
    "snapshot_epochs" (the epochs of its effect-versus-compute curve; none by default). Raises ValueError when
    the main pair lacks one of the cell's snapshot epochs."""
    same = all(spec[k] == base_cell.get(k, "") for k in {*base_cell, "aug"} if k != "seeds") and not (
        spec["objective_kw"] or spec["model_kw"])
    if not same:
        return tuple(spec.get("snapshot_epochs", ()))
    missing = sorted(set(spec.get("snapshot_epochs", ())) - set(snapshot_epochs))
    if missing:
        raise ValueError(f"cell {spec['label']} repeats the main pair's recipe, which keeps no snapshot at epoch(s) "
                         f"{missing}; add them to snapshot_epochs or choose epochs from {list(snapshot_epochs)}")
    return tuple(snapshot_epochs)


def cell_jobs(spec: dict, train_data, splits, *, cache, snapshot_epochs=(), force: bool = False) -> tuple:
    """The f and g jobs of a cell (``recipes.f_and_g_jobs`` with the cell's config), ``(f_jobs, g_jobs)`` named
    "cell <label> f|g seed <s>", for a notebook's plan; ``run_cell`` with the same arguments then finds them in
    the cache."""
    mean, std = train_data.stats()
    return f_and_g_jobs(cell_config(spec, mean, std, snapshot_epochs), train_data, splits, seeds=spec["seeds"],
                        pair_seeds=True, cache=cache, force=force, label=f"cell {spec['label']}")


@dataclass
class CellResult:
    """A cell's f/g pair, its SSLMem scores and f's linear-probe accuracy."""
    spec: dict
    fs: list
    gs: list
    results: dict      # cached_sslmem output {subset: {layer: {align_f, align_g, raw}}}
    m: dict            # normalised scores per subset (range over the cell's scored S_C u S_S: sslmem.REFERENCE)
    probe_acc: float
    measure_aug: str

    def summary(self) -> dict:
        """The cell's row of Table 1: its settings, mean (normalised and raw) SSLMem of S_C and S_S, the
        reference set of the normalisation and the probe accuracy."""
        mc = self.m["S_C"]
        return {"cell": self.spec["label"], "method": self.spec["method"], "arch": self.spec["arch"],
                "dataset": self.spec["dataset"], "epochs": self.spec["epochs"], "seeds": len(self.fs),
                "measured with": self.measure_aug, "mean SSLMem(S_C)": float(mc.mean()),
                **({"mean SSLMem(S_S)": float(self.m["S_S"].mean())} if "S_S" in self.m else {}),
                "mean raw SSLMem(S_C)": float(self._raw("S_C").mean()),
                **({"mean raw SSLMem(S_S)": float(self._raw("S_S").mean())} if "S_S" in self.m else {}),
                "normalised over": reference_label(self.results), "linear probe acc": self.probe_acc}

    def _raw(self, subset: str):
        return self.results[subset][self.fs[0].encoder.layer_names[-1]]["raw"]


def run_cell(spec: dict, train_data, test_data, splits, subsets: dict, *, cache, device, view_pairs: int,
             rep: str, probe_idx, bank_seed: int = 0, measure_aug: str = "", snapshot_epochs=(),
             force: bool = False, progress: bool = True) -> CellResult:
    """Load (or train inline) the cell's f and g, score ``subsets`` ({name: indices}) and probe f.
    ``snapshot_epochs`` are part of the training config (and its cache key): pass the main pair's to reuse its
    encoders. ``probe_idx``: the test images of the probe; ``bank_seed``: the view bank's seed; ``view_pairs``
    and ``rep``: as in ``cached_sslmem``. ``force`` recomputes the scores; to retrain the encoders, declare
    ``cell_jobs(..., force=True)`` in the plan. Returns the ``CellResult``, its scores normalised over the cell's
    scored S_C u S_S (``sslmem.REFERENCE``)."""
    mean, std = train_data.stats()
    cfg = cell_config(spec, mean, std, snapshot_epochs)
    fs, gs = train_f_and_g(cfg, train_data, splits, seeds=spec["seeds"], pair_seeds=True, cache=cache,
                           device=device, progress=progress)
    meas = fs[0].measuring(measure_aug or spec["measure_aug"])
    bank = ViewBank(meas, 2 * view_pairs, seed=bank_seed)
    res = cached_sslmem(cache, fs, gs, train_data, test_data, subsets, bank, n_pairs=view_pairs, rep=rep,
                        device=device, force=force)
    m = normalised_sslmem(res, layer=fs[0].encoder.layer_names[-1])
    task = (train_data.images[splits.f_train], train_data.labels[splits.f_train], test_data.images[probe_idx],
            test_data.labels[probe_idx])
    return CellResult(spec, fs, gs, res, m, probe_accuracy(fs[0], task, device=device), meas.name)


def overlap_sizes(total: int, frac: float) -> tuple[int, int]:
    """Table 7: |S_S| = frac * total and |S_C| = |S_I| = (total - |S_S|) / 2 for a pool of ``total`` points."""
    if not 0 < frac < 1:
        raise ValueError(f"overlap fraction must be in (0, 1), got {frac}")
    shared = int(round(frac * total))
    rest = (total - shared) // 2
    if rest < 1:
        raise ValueError(f"overlap {frac} of {total} points leaves no candidates")
    return shared, rest
