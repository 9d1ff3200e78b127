"""What the SSLMem experiments measure on trained encoders: SSLMem scores and linear-probe accuracy.

- ``cached_sslmem``: the SSLMem scores (``metrics.sslmem.sslmem_scores``, Eq. 2) of named subsets of points
  under an f/g pair, through the cache. The one entry point every notebook scores SSLMem with (02, 03, 05):
  equal encoders, views and points give the same cache entry.
- ``probe_accuracy``: linear-probe test accuracy of an encoder's pooled representation (SSLMem paper Table 1,
  Fig. 3; ``metrics.probes.linear_probe``), through the cache when one is given.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.engine.train import Trained, fingerprint
from memlab.metrics.probes import extract, linear_probe
from memlab.metrics.sslmem import sslmem_scores


def cached_sslmem(cache, f_list, g_list, train_data, test_data, subsets: dict, bank: ViewBank, *, n_pairs: int,
                  rep: str, device=None, force: bool = False, progress: bool = True) -> dict:
    """SSLMem of the points of each subset under the pair (f_list, g_list), cached.

    ``f_list`` / ``g_list``: ``Trained`` encoders (several seeds are averaged: the expectations of Eq. 2);
    ``subsets``: {name: long indices}; the subset named "S_E" indexes ``test_data``, every other one
    ``train_data`` (S_E's view-bank ids are offset by len(train) so they never share draws with training
    points); ``bank``: the K >= ``n_pairs`` fixed view pairs; ``rep``: "flat" or "pooled".
    Returns ``{subset: {layer: {"align_f", "align_g", "raw", "align_f_each", "align_g_each"}}}`` (float32
    tensors, one value per point, the ``_each`` ones one row per seed: ``sslmem_scores``; raw in alignment-loss
    units) for the encoders' final layer. The cache key is the encoders' keys, the view bank,
    ``n_pairs``, ``rep`` and the points; ``force`` recomputes."""
    # "per_encoder": the entries keep each seed's alignment (sslmem_scores); older entries did not
    key = {"per_encoder": True, "f": [t.key for t in f_list], "g": [t.key for t in g_list], "bank": bank.describe(),
           "pairs": n_pairs, "rep": rep, "subsets": {k: torch.as_tensor(v).tolist() for k, v in subsets.items()}}
    f_enc, g_enc = [t.encoder for t in f_list], [t.encoder for t in g_list]

    def compute() -> dict:
        out = {}
        bar = tqdm(subsets.items(), disable=not progress, desc="SSLMem scoring", unit="subset")
        for name, idx in bar:
            bar.set_postfix(subset=name, points=len(idx))
            idx = torch.as_tensor(idx, dtype=torch.long)
            src, off = (test_data, len(train_data)) if name == "S_E" else (train_data, 0)
            out[name] = sslmem_scores(f_enc, g_enc, src.images[idx], (idx + off).numpy(), bank, n_pairs=n_pairs,
                                      rep=rep, device=device)
        return out

    return cache.get_or_compute("sslmem", key, compute, force=force)


def probe_accuracy(trained: Trained, task: tuple, *, device, max_iter: int = 200, cache=None, name: str = "",
                   force: bool = False) -> float:
    """Linear-probe test accuracy (a fraction in [0, 1]) of ``trained``'s pooled representation.

    ``task``: ``(x_train, y_train, x_test, y_test)``, uint8 images (N,3,H,W) and int64 labels, normalised with
    the encoder's own training constants; the probe is ``probes.linear_probe`` with ``max_iter`` L-BFGS
    iterations. With a ``cache``, the accuracy is cached per (encoder, ``name`` of the task, fingerprint of its
    images and labels, ``max_iter``); ``force`` recomputes. Raises ValueError for non-finite features (a
    diverged encoder)."""
    xtr, ytr, xte, yte = task
    norm = Augmentation("none", mean=trained.config.mean, std=trained.config.std).normalize

    def run() -> dict:
        ftr = extract(trained.encoder, xtr, norm, device=device)
        fte = extract(trained.encoder, xte, norm, device=device)
        return {"accuracy": float(linear_probe(ftr, ytr, fte, yte, max_iter=max_iter, device=device))}

    if cache is None:
        return run()["accuracy"]
    key = {"encoder": trained.key, "task": name, "data": fingerprint(xtr, ytr, xte, yte), "rep": "pooled",
           "max_iter": max_iter}
    return float(cache.get_or_compute("probe", key, run, force=force)["accuracy"])
