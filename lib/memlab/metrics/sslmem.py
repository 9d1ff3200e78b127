"""SSLMem: per-example memorization of SSL encoders (Wang et al., ICLR 2024, §3, Eq. 1-2, appendix A).

    L_align(h, x) = E_{x', x'' ~ Aug(x)} || norm(h(x')) - norm(h(x'')) ||_2        (two augmented views)
    m(x)          = E_{g ~ A(S \\ x)} L_align(g, x)  -  E_{f ~ A(S)} L_align(f, x)

Estimated with K fixed view pairs per point from a ``ViewBank`` (the same views for f and g) and, when
given, several f and g seeds (their alignment losses are averaged: the expectations over A). h(x) is the
encoder's full output flattened (``rep="flat"``: ResNet pre-pool map, ViT all tokens) or its spatial mean
(``rep="pooled"``), L2-normalised. Any layer of the encoder can be scored from the same single forward
pass per view (``layers=[...]``), which is what LayerMem (methods.md §3) uses.

Normalisation (appendix A): raw differences divided by their range (max - min) over a reference set of
scored points -- by default all points scored together -- so scores lie in an interval of width 1. Raw
scores are always kept.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from memlab.augmentation.augment import ViewBank
from memlab.streams import G_SEED_OFFSET, SCORED_SHARED_OFFSET


def _rep(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t.float().flatten(1), dim=1)


@torch.no_grad()
def alignment_losses(encoder, images: torch.Tensor, idx, bank: ViewBank, *, n_pairs: int | None = None,
                     rep: str = "flat", layers=None, batch_size: int = 256, device=None,
                     progress: bool = False) -> dict:
    """Per-point, per-pair alignment distances ``d(norm(h(v_2k)), norm(h(v_2k+1)))``.

    ``images``: uint8 (N,3,H,W) of the points; ``idx``: their global indices (they key the view bank).
    Returns ``{layer: tensor (N, n_pairs)}`` for ``layers`` (default: the encoder's final layer).
    Views 2k and 2k+1 of the bank form pair k; every view goes through the encoder once.
    """
    if rep not in ("flat", "pooled"):
        raise ValueError(f"rep must be 'flat' or 'pooled', got {rep!r}")
    n_pairs = n_pairs or bank.n_views // 2
    if 2 * n_pairs > bank.n_views:
        raise ValueError(f"{n_pairs} view pairs need {2 * n_pairs} views; the bank has {bank.n_views}")
    layers = list(layers or [encoder.layer_names[-1]])
    device = device or next(encoder.parameters()).device
    encoder.eval()
    idx = np.asarray(torch.as_tensor(idx).cpu())
    out = {l: torch.empty(len(idx), n_pairs) for l in layers}
    chunk = max(1, batch_size // 2)
    for s in tqdm(range(0, len(idx), chunk), disable=not progress, desc="alignment", leave=False):
        x = images[s:s + chunk].to(device)
        ii = idx[s:s + chunk]
        for k in range(n_pairs):
            v = torch.cat([bank.view(x, ii, 2 * k), bank.view(x, ii, 2 * k + 1)])
            feats = encoder.forward_features(v, layers=layers, pool=rep == "pooled")
            for l in layers:
                a, b = _rep(feats[l]).chunk(2)
                out[l][s:s + len(ii), k] = (a - b).norm(dim=1).cpu()
    return out


def mean_alignment(encoders, images, idx, bank, **kw) -> dict:
    """Alignment loss averaged over view pairs and over several encoders (seeds): {layer: (N,)}."""
    encoders = encoders if isinstance(encoders, (list, tuple)) else [encoders]
    acc = None
    for enc in encoders:
        al = {l: d.mean(1) for l, d in alignment_losses(enc, images, idx, bank, **kw).items()}
        acc = al if acc is None else {l: acc[l] + al[l] for l in acc}
    return {l: v / len(encoders) for l, v in acc.items()}


def sslmem_raw(align_f: torch.Tensor, align_g: torch.Tensor) -> torch.Tensor:
    """m(x) = L_align(g, x) - L_align(f, x), before normalisation (positive: f aligns x better)."""
    return align_g - align_f


def normalize_scores(raw: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Divide by the range (max - min) of ``reference`` (default: ``raw`` itself), appendix A."""
    ref = raw if reference is None else reference
    for name, v in (("raw", raw), ("reference", ref)):
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"cannot normalise SSLMem scores: the {name} scores hold "
                             f"{int((~torch.isfinite(v)).sum())} non-finite value(s) (a diverged f or g?)")
    rng = float(ref.max() - ref.min())
    if not rng > 0:
        raise ValueError("cannot normalise SSLMem scores: the reference scores have zero range")
    return raw / rng


def score(f_encoders, g_encoders, images, idx, bank, **kw) -> dict:
    """Alignment of f and g and the raw SSLMem of each point, for every requested layer:
    ``{layer: {"align_f", "align_g", "raw"}}`` (tensors of shape (N,))."""
    af = mean_alignment(f_encoders, images, idx, bank, **kw)
    ag = mean_alignment(g_encoders, images, idx, bank, **kw)
    return {l: {"align_f": af[l], "align_g": ag[l], "raw": sslmem_raw(af[l], ag[l])} for l in af}


# ----------------------------------------------------------------------------- the SSLMem experiment
SUBSETS = ("S_C", "S_S", "S_I", "S_E")


def load_splits(dataset: str, *, split_shared, split_candidates, split_independent, split_extra, split_seed: int,
                synthetic_n_train: int = 5000, synthetic_n_test: int = 1000, atypical_frac: float = 0.05):
    """(train data, test data, splits) of the SSLMem experiment; notebooks sharing f and g call this."""
    from memlab.data.datasets import load_dataset
    from memlab.data.splits import make_splits
    kw = dict(n=synthetic_n_train, seed=split_seed, atypical_frac=atypical_frac) if dataset == "synthetic" else {}
    train = load_dataset(dataset, "train", **kw)
    test = load_dataset(dataset, "test", **({**kw, "n": synthetic_n_test} if kw else {}))
    splits = make_splits(train.labels.numpy(), test.labels.numpy(), shared=split_shared, candidates=split_candidates,
                         independent=split_independent, extra=split_extra, seed=split_seed)
    return train, test, splits


def encoder_config(*, arch: str, width: float, method: str, temperature: float, epochs: int, batch_size: int,
                   optimizer: str, lr: float, weight_decay: float, snapshot_epochs=(), mean, std,
                   objective_kw: dict | None = None, warmup_epochs: float = 1.0, blur: float = 0.0, micro_batch: int = 0,
                   **model_kw):
    """The TrainConfig of the SSLMem encoders from notebook parameters. Notebooks that must share f and g
    (SSLMem, LayerMem, UnitMem) build it here, so equal parameters give equal cache keys. ``temperature``
    applies to SimCLR; ``objective_kw`` adds any other objective option (DINO temperatures, MAE mask ratio);
    ``warmup_epochs``: linear warm-up before the cosine decay; ``blur``: probability of a Gaussian blur in the
    training views (SimCLR's recipe uses 0.5; 0 leaves the augmentation, and the cache key, as before);
    ``micro_batch``: gradient accumulation over parts of the batch (supervised and MAE only; ``TrainConfig``)."""
    from memlab.engine.train import TrainConfig
    okw = {"temperature": temperature} if method == "simclr" else {}
    return TrainConfig(model=arch, model_kw={**({"width": width} if arch.startswith("resnet") else {}), **model_kw},
                       objective=method, objective_kw={**okw, **(objective_kw or {})},
                       aug_kw={"blur_p": float(blur)} if blur else {}, warmup_epochs=warmup_epochs,
                       epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                       snapshot_epochs=tuple(e for e in snapshot_epochs if e <= epochs), mean=mean, std=std,
                       micro_batch=micro_batch)


def scored_subsets(splits, train_labels, score_shared: int, seed: int) -> dict:
    """The points SSLMem scores: all of S_C, S_I and S_E, and a class-balanced part of S_S of size
    ``score_shared`` (fixed by ``seed``)."""
    from memlab.data.splits import balanced_subset
    n = min(score_shared, len(splits.shared))
    part = balanced_subset(torch.as_tensor(train_labels)[splits.shared].numpy(), n, seed + SCORED_SHARED_OFFSET)
    return {"S_C": splits.candidates, "S_S": splits.shared[part], "S_I": splits.independent, "S_E": splits.extra}


def cached_scores(cache, f_list, g_list, train_data, test_data, subsets: dict, bank, *, n_pairs: int, rep: str,
                  device=None, force: bool = False) -> dict:
    """``score_splits`` through the cache, keyed by the encoders' keys, the view bank and the points."""
    key = {"f": [t.key for t in f_list], "g": [t.key for t in g_list], "bank": bank.describe(), "pairs": n_pairs,
           "rep": rep, "subsets": {k: torch.as_tensor(v).tolist() for k, v in subsets.items()}}
    return cache.get_or_compute("sslmem", key, lambda: score_splits(
        [t.encoder for t in f_list], [t.encoder for t in g_list], train_data, test_data, subsets, bank,
        n_pairs=n_pairs, rep=rep, device=device), force=force)


def f_and_g_jobs(cfg, train_data, splits, *, seeds=(0,), pair_seeds: bool = True, cache, force: bool = False,
                 label: str = ""):
    """The training jobs (``jobs.Job``, kind "encoder") of f on S_S u S_C and g on S_S u S_I for every seed:
    ``(f_jobs, g_jobs)``, to declare in a notebook's plan, named "<label> f|g seed <s>" (``label`` defaults to
    "<objective>/<model>").

    ``pair_seeds``: g_s uses the same seed as f_s (same initial weights, same per-example augmentation
    draws on shared points: common random numbers, which lowers the variance of m(x) without changing
    its expectation). Otherwise g_s uses seed + 1000 (``streams.G_SEED_OFFSET``).
    """
    from dataclasses import replace

    from memlab.engine.train import encoder_job
    data_id = f"{train_data.name}/{train_data.split}"
    labels = train_data.labels if cfg.objective == "supervised" else None
    out = {"f": [], "g": []}
    for s in seeds:
        for which, idx, seed in (("f", splits.f_train, s), ("g", splits.g_train, s if pair_seeds else s + G_SEED_OFFSET)):
            out[which].append(encoder_job(replace(cfg, seed=seed), train_data.images[idx],
                                          None if labels is None else labels[idx], idx, cache=cache, data_id=data_id,
                                          name=f"{label or f'{cfg.objective}/{cfg.model}'} {which} seed {seed}",
                                          force=force))
    return out["f"], out["g"]


def train_f_and_g(cfg, train_data, splits, *, seeds=(0,), pair_seeds: bool = True, cache=None, device="auto",
                  force: bool = False, progress: bool = True):
    """Train (or load) f and g for every seed, here and now (the inline executor): ``(fs, gs)`` lists of
    ``Trained``. Notebooks declare ``f_and_g_jobs`` in their plan instead."""
    from memlab.io.cache import Cache
    from memlab.engine.train import load_encoder, resolve_device
    from memlab.engine.executors import Inline
    cache = cache or Cache()
    f_jobs, g_jobs = f_and_g_jobs(cfg, train_data, splits, seeds=seeds, pair_seeds=pair_seeds, cache=cache,
                                  force=force)
    status = Inline(resolve_device(device)).run(f_jobs + g_jobs, cache, progress=progress)
    load = lambda j: load_encoder(j, cache, device, from_cache=status[j.name] == "cached")  # noqa: E731
    return [load(j) for j in f_jobs], [load(j) for j in g_jobs]


def score_splits(f_encoders, g_encoders, train_data, test_data, subsets: dict, bank, progress: bool = True,
                 **kw) -> dict:
    """Score the points of each subset. ``subsets``: {name: indices}; "S_E" indexes the test split (its
    view-bank ids are offset by len(train) so they never share draws with training points).
    Returns {name: {layer: {"align_f", "align_g", "raw"}}}."""
    out = {}
    bar = tqdm(subsets.items(), disable=not progress, desc="SSLMem scoring", unit="subset")
    for name, idx in bar:
        bar.set_postfix(subset=name, points=len(idx))
        idx = torch.as_tensor(idx, dtype=torch.long)
        src, off = (test_data, len(train_data)) if name == "S_E" else (train_data, 0)
        out[name] = score(f_encoders, g_encoders, src.images[idx], (idx + off).numpy(), bank, **kw)
    return out


REFERENCE = ("S_C", "S_S")   # the one reference set of every SSLMem table, figure and CSV (methods.md §2)


def reference_subsets(results: dict, reference=REFERENCE) -> list:
    """The subsets of ``results`` whose raw scores set the normalising range: those of ``reference`` (a subset
    name, a sequence of names, or "all") that were scored; all scored subsets when none of them was."""
    names = list(results) if reference == "all" else [reference] if isinstance(reference, str) else list(reference)
    return [k for k in names if k in results] or list(results)


def reference_label(results: dict, reference=REFERENCE) -> str:
    """The reference set for captions and CSV columns, e.g. "S_C u S_S"."""
    return " u ".join(reference_subsets(results, reference))


def normalized(results: dict, layer: str, reference=REFERENCE) -> dict:
    """Normalised SSLMem per subset for one layer (SSLMem appendix A): every subset's raw scores divided by
    the range (max - min) of the raw scores over the reference set (``reference_subsets``). By default that
    set is the scored S_C u S_S points of the same f/g pair, in every table (main, grid cells, Tables 7-9,
    the UnitMem link), so normalised numbers compare across tables; the raw differences (``results[k][layer]
    ["raw"]``, in alignment-loss units) are kept beside them. Values lie in [-1, 1] for the reference points.
    Returns {subset: (N,) float tensor}; ValueError for non-finite scores or a zero range."""
    raw = {k: v[layer]["raw"] for k, v in results.items()}
    ref = torch.cat([raw[k] for k in reference_subsets(results, reference)])
    return {k: normalize_scores(v, ref) for k, v in raw.items()}
