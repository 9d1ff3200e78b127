"""SSLMem: per-example memorization of SSL encoders (Wang et al., ICLR 2024, §3, Eq. 1-2, appendix A).

    L_align(h, x) = E_{x', x'' ~ Aug(x)} || norm(h(x')) - norm(h(x'')) ||_2        (two augmented views)
    m(x)          = E_{g ~ A(S \\ x)} L_align(g, x)  -  E_{f ~ A(S)} L_align(f, x)

Estimated with K fixed view pairs per point from a ``ViewBank`` (the same views for f and g) and, when
given, several f and g seeds (their alignment losses are averaged: the expectations over A). h(x) is the
encoder's full output flattened (``rep="flat"``: ResNet pre-pool map, ViT all tokens) or its spatial mean
(``rep="pooled"``), L2-normalised. Any layer of the encoder can be scored from the same single forward
pass per view (``layers=[...]``), which is what LayerMem (methods.md §3) uses.

Normalisation (appendix A, ``normalised_sslmem``): raw differences divided by their range (max - min) over a
reference set of scored points -- in every table the scored S_C u S_S points of the same f/g pair
(``REFERENCE``) -- so scores lie in an interval of width 1. The raw scores are always kept beside them.

The subsets (§3.2): f trains on S_S u S_C and g on S_S u S_I; S_E are test points neither saw (``SUBSETS``).
Training f and g and scoring them through the cache is the experiments layer's (``memlab.experiments``).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from memlab.augmentation.augment import ViewBank

SUBSETS = ("S_C", "S_S", "S_I", "S_E")   # candidates, shared, independent, extra (§3.2)
REFERENCE = ("S_C", "S_S")   # the one reference set of every SSLMem table, figure and CSV (methods.md §2)


def _rep(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t.float().flatten(1), dim=1)


@torch.no_grad()
def alignment_losses(encoder, images: torch.Tensor, idx, bank: ViewBank, *, n_pairs: int | None = None,
                     rep: str = "flat", layers=None, batch_size: int = 256, device=None,
                     progress: bool = False) -> dict:
    """Per-point, per-pair alignment distances ``d(norm(h(v_2k)), norm(h(v_2k+1)))`` (the samples of Eq. 1).

    ``images``: uint8 (N,3,H,W) of the points; ``idx``: their global indices (they key the view bank).
    Returns ``{layer: float32 tensor (N, n_pairs)}`` for ``layers`` (default: the encoder's final layer), in
    units of Euclidean distance between unit vectors (0 to 2). Views 2k and 2k+1 of the bank form pair k; every
    view goes through the encoder once. Raises ValueError for an unknown ``rep`` or more pairs than the bank has.
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
    chunk = max(1, batch_size // 2)   # both views of a pair share one forward pass
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


def alignment_per_encoder(encoders, images, idx, bank, **kw) -> dict:
    """L_align (Eq. 1) of each encoder (one per seed): the alignment distance averaged over the view pairs,
    ``{layer: (E, N) float32}`` for E encoders. ``kw``: those of ``alignment_losses``."""
    encoders = encoders if isinstance(encoders, (list, tuple)) else [encoders]
    each = [{l: d.mean(1) for l, d in alignment_losses(enc, images, idx, bank, **kw).items()} for enc in encoders]
    return {l: torch.stack([e[l] for e in each]) for l in each[0]}


def mean_alignment(encoders, images, idx, bank, **kw) -> dict:
    """L_align (Eq. 1): the alignment distance averaged over the view pairs and over several encoders (seeds,
    the expectation over A): ``{layer: (N,) float32}``. ``kw``: those of ``alignment_losses``."""
    return {l: v.mean(0) for l, v in alignment_per_encoder(encoders, images, idx, bank, **kw).items()}


def sslmem_raw(align_f: torch.Tensor, align_g: torch.Tensor) -> torch.Tensor:
    """m(x) = L_align(g, x) - L_align(f, x) (Eq. 2), before normalisation (positive: f aligns x better)."""
    return align_g - align_f


def sslmem_scores(f_encoders, g_encoders, images, idx, bank, **kw) -> dict:
    """The SSLMem of each point (Eq. 2): alignment under f and under g and their raw difference, per layer.

    ``f_encoders`` / ``g_encoders``: an encoder or a list (seeds, averaged); ``images``: uint8 (N,3,H,W);
    ``idx``: their global indices (view-bank keys); ``kw``: n_pairs, rep, layers, batch_size, device, progress
    (``alignment_losses``). Returns ``{layer: {"align_f", "align_g", "raw", "align_f_each", "align_g_each"}}``:
    the first three float32 (N,), averaged over the seeds; the last two (E_f, N) and (E_g, N), one row per
    encoder, so that a single seed's SSLMem (``align_g_each[s] - align_f_each[s]``) costs no extra pass."""
    af = alignment_per_encoder(f_encoders, images, idx, bank, **kw)
    ag = alignment_per_encoder(g_encoders, images, idx, bank, **kw)
    return {l: {"align_f": af[l].mean(0), "align_g": ag[l].mean(0), "raw": sslmem_raw(af[l].mean(0), ag[l].mean(0)),
                "align_f_each": af[l], "align_g_each": ag[l]} for l in af}


# ----------------------------------------------------------------------------- normalisation (appendix A)
def reference_subsets(results: dict, reference=REFERENCE) -> list:
    """The subsets of ``results`` whose raw scores set the normalising range: those of ``reference`` (a subset
    name, a sequence of names, or "all") that were scored; all scored subsets when none of them was."""
    names = list(results) if reference == "all" else [reference] if isinstance(reference, str) else list(reference)
    return [k for k in names if k in results] or list(results)


def reference_label(results: dict, reference=REFERENCE) -> str:
    """The reference set for captions and CSV columns, e.g. "S_C u S_S"."""
    return " u ".join(reference_subsets(results, reference))


def sslmem_range(reference: torch.Tensor, what: str = "reference") -> float:
    """The normalising range max - min of the raw scores ``reference`` (any shape). 0.0 when they are all 0
    (the encoders' outputs carried no point-specific alignment difference). Raises ValueError for non-finite
    scores (a diverged f or g) or for equal non-zero scores (no range to divide by)."""
    _finite(reference, what)
    rng = float(reference.max() - reference.min())
    if not rng > 0 and bool((reference != 0).any()):
        raise ValueError(f"cannot normalise SSLMem scores: the {what} scores have zero range (all equal "
                         f"{float(reference.flatten()[0])})")
    return rng


def normalised_sslmem(raw, reference=None, *, layer: str | None = None, span: float | None = None):
    """Normalised SSLMem (appendix A, methods.md §2): raw scores divided by a range, never shifted, so the sign
    is kept (0 is "not memorised"); the reference points' scores then span an interval of width 1 in [-1, 1].

    Two forms:

    - ``raw``: a float tensor (N,) of raw scores. ``reference``: the raw scores (any shape) whose max - min is
      the range (default ``raw`` itself). Returns a tensor (N,).
    - ``raw``: scored subsets ``{subset: {layer: {"raw": (N_s,), ...}}}`` (``sslmem_scores`` per subset, e.g.
      ``experiments.scoring.cached_sslmem``) with ``layer`` naming the layer. ``reference``: a subset name, a
      sequence of names or "all" (default ``REFERENCE``, S_C u S_S; ``reference_subsets``). Returns
      ``{subset: (N_s,) tensor}``, every subset divided by the one range of the reference subsets' raw scores.

    ``span``: divide by this range instead (LayerMem's one range for all layers). A zero range (all reference
    scores 0) gives scores of 0. Raises ValueError for non-finite scores or equal non-zero reference scores
    (``sslmem_range``), or for subsets without ``layer``."""
    if isinstance(raw, dict):
        if layer is None:
            raise ValueError("normalising scored subsets needs the layer whose scores to normalise")
        subsets = {k: _finite(v[layer]["raw"], f"raw {k}") for k, v in raw.items()}
        ref = torch.cat([subsets[k] for k in reference_subsets(raw, REFERENCE if reference is None else reference)])
        rng = sslmem_range(ref) if span is None else span
        return {k: _divide(v, rng) for k, v in subsets.items()}
    _finite(raw, "raw")
    rng = sslmem_range(raw if reference is None else reference) if span is None else span
    return _divide(raw, rng)


def _finite(scores: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"cannot normalise SSLMem scores: the {what} scores hold "
                         f"{int((~torch.isfinite(scores)).sum())} non-finite value(s) (a diverged f or g?)")
    return scores


def _divide(raw: torch.Tensor, rng: float) -> torch.Tensor:
    return raw / rng if rng > 0 else torch.zeros_like(raw, dtype=torch.float32)
