"""Cross-method SSLMem (SSLMem paper Table 1 / 15, Tables 7-9, 11): one f/g pair per grid cell.

A cell is a dict naming the method, architecture and dataset, plus any training setting that differs from
the notebook's defaults (each method has its own optimiser and learning rate). ``run_cell`` trains (or
loads from the cache) f on S_S u S_C and g on S_S u S_I for each seed, scores the requested subsets with
SSLMem -- measured with the cell's own training augmentation unless ``measure_aug`` names another -- and
probes f's representations linearly. Every encoder and score set is a cache entry, so an interrupted grid
resumes at the first unfinished cell.
"""
from __future__ import annotations

from dataclasses import dataclass

from memlab.augmentation.augment import ViewBank
from memlab.metrics.probes import extract, linear_probe
from memlab.metrics.sslmem import cached_scores, encoder_config, f_and_g_jobs, normalized, reference_label, train_f_and_g

CELL_KEYS = {"label", "method", "arch", "width", "dataset", "epochs", "batch_size", "optimizer", "lr",
             "weight_decay", "temperature", "objective_kw", "model_kw", "seeds", "measure_aug", "aug",
             "warmup_epochs", "blur", "micro_batch"}
TRAIN_KEYS = ("arch", "width", "method", "temperature", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
              "warmup_epochs", "blur", "micro_batch")


def cell_spec(cell: dict, defaults: dict) -> dict:
    """Complete a grid cell with ``defaults``; unknown keys are an error (raised before any compute)."""
    if not isinstance(cell, dict):
        raise TypeError(f"a grid cell must be a dict, got {type(cell).__name__}: {cell!r}")
    bad = sorted(set(cell) - CELL_KEYS)
    if bad:
        raise ValueError(f"unknown grid-cell key(s) {bad} in {cell}; valid: {sorted(CELL_KEYS)}")
    # warm-up and blur default to encoder_config's (1 epoch, no blur), so a grid without them keeps its cache keys
    spec = {"objective_kw": {}, "model_kw": {}, "measure_aug": "", "aug": "", "warmup_epochs": 1.0, "blur": 0.0,
            "micro_batch": 0, **defaults, **cell}
    missing = [k for k in TRAIN_KEYS if k not in spec]
    if missing:
        raise ValueError(f"cell {cell}: no value for {missing}; give them in the cell or in the grid's defaults")
    if "label" not in cell:
        spec["label"] = f"{spec['method']}/{spec['arch']}" + (f"/{spec['dataset']}" if "dataset" in cell else "")
    if not spec["seeds"]:
        raise ValueError(f"cell {spec['label']}: seeds must list at least one seed")
    return spec


def cell_config(spec: dict, mean, std, snapshot_epochs=()):
    from dataclasses import replace
    cfg = encoder_config(**{k: spec[k] for k in TRAIN_KEYS}, snapshot_epochs=snapshot_epochs, mean=mean, std=std,
                         objective_kw=spec["objective_kw"], **spec["model_kw"])
    return replace(cfg, aug=spec["aug"]) if spec["aug"] else cfg


def main_recipe_snapshots(spec: dict, base_cell: dict, snapshot_epochs) -> tuple:
    """The ``snapshot_epochs`` a cell trains with: the main pair's when the cell repeats the main pair's recipe
    (``base_cell``, seeds aside), so it shares the main pair's cache entries; none otherwise."""
    same = all(spec[k] == base_cell[k] for k in base_cell if k != "seeds") and not (
        spec["objective_kw"] or spec["model_kw"] or spec["aug"])
    return tuple(snapshot_epochs) if same else ()


def cell_jobs(spec: dict, train_data, splits, *, cache, snapshot_epochs=(), force: bool = False) -> tuple:
    """The f and g jobs of a cell (``sslmem.f_and_g_jobs`` with the cell's config), ``(f_jobs, g_jobs)`` named
    "cell <label> f|g seed <s>", for a notebook's plan; ``run_cell`` with the same arguments then finds them in
    the cache."""
    mean, std = train_data.stats()
    return f_and_g_jobs(cell_config(spec, mean, std, snapshot_epochs), train_data, splits, seeds=spec["seeds"],
                        pair_seeds=True, cache=cache, force=force, label=f"cell {spec['label']}")


@dataclass
class CellResult:
    spec: dict
    fs: list
    gs: list
    results: dict      # score_splits output {subset: {layer: {align_f, align_g, raw}}}
    m: dict            # normalised scores per subset (range over the cell's scored S_C u S_S: sslmem.REFERENCE)
    probe_acc: float
    measure_aug: str

    def summary(self) -> dict:
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
    encoders. ``force`` recomputes the scores; to retrain the encoders, declare ``cell_jobs(..., force=True)``
    in the plan."""
    mean, std = train_data.stats()
    cfg = cell_config(spec, mean, std, snapshot_epochs)
    fs, gs = train_f_and_g(cfg, train_data, splits, seeds=spec["seeds"], pair_seeds=True, cache=cache,
                           device=device, progress=progress)
    meas = fs[0].measuring(measure_aug or spec["measure_aug"])
    meas_name = meas.name
    bank = ViewBank(meas, 2 * view_pairs, seed=bank_seed)
    res = cached_scores(cache, fs, gs, train_data, test_data, subsets, bank, n_pairs=view_pairs, rep=rep,
                        device=device, force=force)
    layer = fs[0].encoder.layer_names[-1]
    m = normalized(res, layer)
    acc = probe(fs[0], train_data, test_data, splits.f_train, probe_idx, meas.normalize, device)
    return CellResult(spec, fs, gs, res, m, acc, meas_name)


def probe(trained, train_data, test_data, train_idx, test_idx, normalize, device) -> float:
    """Linear-probe accuracy of an encoder's pooled representation (trained on ``train_idx``)."""
    tr = extract(trained.encoder, train_data.images[train_idx], normalize, device=device)
    te = extract(trained.encoder, test_data.images[test_idx], normalize, device=device)
    return float(linear_probe(tr, train_data.labels[train_idx], te, test_data.labels[test_idx], device=device))


def overlap_sizes(total: int, frac: float) -> tuple[int, int]:
    """Table 7: |S_S| = frac * total and |S_C| = |S_I| = (total - |S_S|) / 2 for a pool of ``total`` points."""
    if not 0 < frac < 1:
        raise ValueError(f"overlap fraction must be in (0, 1), got {frac}")
    shared = int(round(frac * total))
    rest = (total - shared) // 2
    if rest < 1:
        raise ValueError(f"overlap {frac} of {total} points leaves no candidates")
    return shared, rest
