"""LayerMem and Delta-LayerMem: where in the encoder is a point memorised? (Wang et al., NeurIPS 2024,
"Localizing Memorization in SSL Vision Encoders", §3; methods.md §3.)

    LayerMem_l(x)   = SSLMem of x with h replaced by the encoder truncated after layer l:
                      m_l(x) = E_g L_align(g_{<=l}, x) - E_f L_align(f_{<=l}, x),
                      L_align(h, x) = E_{x',x''} || norm(flat(h(x'))) - norm(flat(h(x''))) ||_2,
                      on the same f/g pair and the same K view pairs as the final layer; every layer comes from
                      ONE forward pass per view (``sslmem.sslmem_scores(..., layers=...)``).
    normalisation   (SSLMem appendix A, methods.md §2): m_l divided by its range (max - min) over the scored
                      points, per layer (``mode="layer"``: LayerMem_l is exactly the normalised SSLMem of the
                      truncated encoder) or by one range shared by all layers (``mode="shared"``).
    range           memlab settles the paper's two statements ("in [0, 1]" and "normalised as SSLMem") on the
                      second: the raw difference is divided by its range, never shifted, so the sign is kept.
                      LayerMem_l lies in [-1, 1] and in an interval of width 1 inside it (the reference points'
                      max - min); 0 means "no memorisation", < 0 that g aligns the point better than f at that
                      layer (a point f did not train on, or noise). Delta-LayerMem lies in [-2, 2]. A layer
                      whose raw scores are all zero (its output does not depend on the input) has LayerMem 0.
                      A min-max map onto [0, 1] would move "no memorisation" away from 0 by a different
                      amount in every layer, so layers could not be compared.
    Delta-LayerMem_l = LayerMem_l - LayerMem_{l-1} (first layer: LayerMem_1), so sum_l Delta_l = LayerMem_L.

Layers: every block output after its residual addition (ResNet-9: 8 layers; CIFAR ResNets: stem and every
block); for a ViT each block after its attention and after its MLP sub-layer (``layermem_layers``).
The paper's downstream uses (§5: fine-tuning chosen layers, swapping layers between encoders) are experiments,
not metrics: ``memlab.experiments.layermem_downstream``.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from memlab.metrics.rankings import agreement
from memlab.metrics.sslmem import normalised_sslmem, sslmem_range, sslmem_scores
from memlab.metrics.stats import welch

MODES = ("layer", "shared")


# ----------------------------------------------------------------------------- which layers
def layermem_layers(encoder) -> list[str]:
    """The layers LayerMem reports, in network order: all of ``encoder.layer_names`` except, for a ViT, the
    patch embedding and the final LayerNorm (methods.md §3; the paper's §3 reports each ViT block after its
    attention and after its MLP sub-layer). Returns a list of layer names."""
    names = list(encoder.layer_names)
    if any(n.endswith(".attn") for n in names):
        return [n for n in names if re.fullmatch(r"block\d+\.(attn|mlp)", n)]
    return names


class Truncated(nn.Module):
    """The encoder cut after ``layer``: ``forward_features`` computes layers up to ``layer`` only (the
    reference the one-pass scoring is compared with in the tests and the benchmark)."""

    def __init__(self, encoder, layer: str):
        super().__init__()
        encoder._check_layers([layer])
        self.encoder, self.layer = encoder, layer
        self.layer_names = list(encoder.layer_names[:encoder.layer_names.index(layer) + 1])

    def _check_layers(self, layers):
        if list(layers) != [self.layer]:
            raise ValueError(f"a model truncated after {self.layer!r} only outputs that layer, not {list(layers)}")

    def forward_features(self, x, layers=None, pool=False):
        if layers is not None and list(layers) != [self.layer]:
            raise ValueError(f"a model truncated after {self.layer!r} only outputs that layer, not {layers}")
        return self.encoder.forward_features(x, [self.layer], pool=pool)

    def forward(self, x):
        return self.forward_features(x)[self.layer]


# ----------------------------------------------------------------------------- scores
def layer_scores(f_encoders, g_encoders, images, idx, bank, *, layers, **kw) -> dict:
    """Raw per-layer SSLMem m_l(x) (§3) of the points ``images`` (uint8 (N,3,H,W), global indices ``idx``: their
    view-bank keys) under the f and g encoders (lists: seeds averaged), from one forward pass per view and
    encoder (``sslmem.sslmem_scores`` with ``layers``). ``kw``: n_pairs, rep, batch_size, device, progress.
    Returns ``{layer: {"align_f", "align_g", "raw"}}``, float32 tensors (N,) in alignment-loss units (L2
    distances of normalised representations). Raises ValueError for a layer an encoder does not have, before
    any compute."""
    for enc in [*f_encoders, *g_encoders]:
        if hasattr(enc, "_check_layers"):
            enc._check_layers(layers)  # unknown layer names fail before any compute
    return sslmem_scores(f_encoders, g_encoders, images, idx, bank, layers=list(layers), **kw)


def cached_layer_scores(cache, f_list, g_list, data, idx, bank, *, layers, n_pairs: int, rep: str, id_offset: int = 0,
                        device=None, force: bool = False, progress: bool = True) -> dict:
    """``layer_scores`` of ``data.images[idx]`` under the ``train.Trained`` encoders ``f_list`` / ``g_list``,
    through ``cache`` (keyed by the encoders' keys, the view bank, ``n_pairs``, ``rep``, the points, the layers
    and the data's name; ``force`` recomputes). ``id_offset`` shifts the view-bank ids (test-split points).
    Returns what ``layer_scores`` returns."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    key = {"f": [t.key for t in f_list], "g": [t.key for t in g_list], "bank": bank.describe(), "pairs": n_pairs,
           "rep": rep, "points": idx.tolist(), "offset": id_offset, "layers": list(layers), "data": data.name}
    return cache.get_or_compute("layermem", key, lambda: layer_scores(
        [t.encoder for t in f_list], [t.encoder for t in g_list], data.images[idx], (idx + id_offset).numpy(), bank,
        layers=layers, n_pairs=n_pairs, rep=rep, device=device, progress=progress), force=force)


def layermem(raw: dict, *, mode: str = "layer", reference=None) -> dict:
    """LayerMem per point and layer (methods.md §3): each layer's raw SSLMem divided by a range, never shifted.

    ``raw``: {layer: (N,) float tensor of raw scores m_l (alignment-loss units), ``layer_scores``' "raw"}.
    ``reference``: the positions whose max - min sets the range (default: all N points). ``mode="layer"``
    divides each layer by its own range -- exactly SSLMem's normalisation (``sslmem.normalised_sslmem``) of the
    truncated encoder; ``mode="shared"`` divides every layer by the widest layer's range, so layers keep their
    relative sizes. Returns {layer: (N,) float32}, dimensionless; the reference points span an interval of width
    1 in [-1, 1] (``mode="layer"``).

    A layer whose reference scores are all zero (its output does not depend on the input) gets LayerMem 0,
    not 0/0. Raises ValueError for an unknown mode, no layers, non-finite scores (naming the layers), or a
    layer whose reference scores are equal but not zero (no range to divide by)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not raw:
        raise ValueError("no layers to normalise")
    bad = [l for l, v in raw.items() if not bool(torch.isfinite(v).all())]
    if bad:  # named here, per layer: normalised_sslmem's own check could not say which layer
        raise ValueError(f"LayerMem: raw scores of layer(s) {bad} hold non-finite values (a diverged f or g?)")
    ref = {l: (v if reference is None else v[reference]).float() for l, v in raw.items()}
    rng = {l: sslmem_range(v, f"layer {l} reference") for l, v in ref.items()}
    span = max(rng.values()) if mode == "shared" else None   # shared: every layer on the widest layer's range
    return {l: normalised_sslmem(raw[l].float(), ref[l], span=span) for l in raw}


def delta(lm: dict, layers=None) -> dict:
    """Delta-LayerMem per point (§3): ``lm[l] - lm[previous layer]`` in the order of ``layers`` (default: the
    order of ``lm``); the first layer keeps its LayerMem, so the Deltas sum to the last layer's LayerMem.
    ``lm``: {layer: (N,) LayerMem}. Returns {layer: (N,) tensor}, in [-2, 2]."""
    layers = list(layers or lm)
    out, prev = {}, None
    for l in layers:
        out[l] = lm[l] if prev is None else lm[l] - lm[prev]
        prev = l
    return out


def groups(final, *, n_random: int, k: int, seed: int) -> dict:
    """Positions (long tensors) of the point groups of the paper's LayerMem tables (§3: 100 random candidates,
    the 50 most and the 50 least memorised), ranked by final-layer SSLMem ``final`` (N,): ``random`` (n_random
    points, sorted, fixed by ``seed``), ``top`` (the k highest), ``least`` (the k lowest; ties keep their order).
    Raises ValueError unless 1 <= k <= N/2 (top and least disjoint) and 1 <= n_random <= N."""
    final = torch.as_tensor(final).float()
    n = len(final)
    if not 1 <= k <= n // 2:
        raise ValueError(f"k={k} must lie in 1..{n // 2} for {n} scored points (top and least must not overlap)")
    if not 1 <= n_random <= n:
        raise ValueError(f"n_random={n_random} must lie in 1..{n}")
    order = torch.argsort(final, descending=True, stable=True)
    rnd = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, n_random, replace=False)))
    return {"random": rnd, "top": order[:k], "least": order.flip(0)[:k]}


def layer_table(lm: dict, layers, grp: dict) -> pd.DataFrame:
    """The paper's LayerMem table (§3, Table 1 of the localisation paper): one row per layer of ``layers`` with
    "layer index" (from 1), "layer", and per group g of ``grp``: "LayerMem g" (mean), "Delta g" (mean
    Delta-LayerMem) and "LayerMem g sd". ``lm``: {layer: (N,) LayerMem}; ``grp``: {group: positions} (``groups``)."""
    d = delta(lm, layers)
    rows = []
    for i, l in enumerate(layers):
        row = {"layer index": i + 1, "layer": l}
        for g, pos in grp.items():
            row[f"LayerMem {g}"] = float(lm[l][pos].mean())
            row[f"Delta {g}"] = float(d[l][pos].mean())
            row[f"LayerMem {g} sd"] = float(lm[l][pos].std())
        rows.append(row)
    return pd.DataFrame(rows)


def top_vs_least(lm: dict, layers, grp: dict) -> pd.DataFrame:
    """Per layer: one-sided Welch t-test of LayerMem(top) > LayerMem(least) (§3: the most memorised points are
    memorised more in every layer). Columns: layer, top and least (means), t, "p (top > least)", d (Cohen's)."""
    rows = []
    for l in layers:
        t = welch(lm[l][grp["top"]], lm[l][grp["least"]])
        rows.append({"layer": l, "top": t["mean_a"], "least": t["mean_b"], "t": t["t"], "p (top > least)": t["p"],
                     "d": t["d"]})
    return pd.DataFrame(rows)


def vit_sublayers(table: pd.DataFrame) -> pd.DataFrame:
    """A ViT's ``layer_table`` with one row per block ("block", an int) and every numeric column twice, "<column>
    (attn)" and "<column> (mlp)": the two sub-layers side by side (§3: the MLP sub-layers memorise more). Raises
    ValueError when the table has no blockN.attn / blockN.mlp layers."""
    t = table[table.layer.str.fullmatch(r"block\d+\.(attn|mlp)")].copy()
    if t.empty:
        raise ValueError("no ViT sub-layers (blockN.attn / blockN.mlp) in this table")
    t["block"] = t.layer.str.extract(r"block(\d+)")[0].astype(int)
    t["sub"] = t.layer.str.extract(r"\.(attn|mlp)$")[0]
    vals = [c for c in table.columns if c not in ("layer", "layer index")]
    w = t.pivot(index="block", columns="sub", values=vals)
    w.columns = [f"{v} ({s})" for v, s in w.columns]
    return w.reset_index()


# ----------------------------------------------------------------------------- consistency between layers
def consistency(lm: dict, layers, k: int) -> pd.DataFrame:
    """Consistency between layers (§3: adjacent layers memorise the same points, distant ones do not): for every
    pair (a, b) of ``layers``, Kendall tau-b (and its p) between their LayerMem rankings of the same points,
    ``top{k}``, the fraction of their k most memorised points they share, and ``gap``, how many layers apart
    they are. ``lm``: {layer: (N,) LayerMem}. Raises ValueError unless 1 <= k <= N."""
    if not 1 <= k <= len(next(iter(lm.values()))):
        raise ValueError(f"overlap k={k} must lie in 1..{len(next(iter(lm.values())))}")
    t = agreement({l: lm[l] for l in layers}, ks=(k,))
    pos = {l: i for i, l in enumerate(layers)}
    t["gap"] = [abs(pos[a] - pos[b]) for a, b in zip(t.a, t.b)]
    return t


def adjacent_vs_distant(cons: pd.DataFrame, k: int, min_gap: int) -> pd.DataFrame:
    """Two rows, adjacent layer pairs (gap 1) and distant ones (gap >= ``min_gap``): their count, mean Kendall
    tau and mean top-k overlap (``cons``: ``consistency``'s table). Raises ValueError for ``min_gap`` < 2."""
    if min_gap < 2:
        raise ValueError(f"distant pairs need a gap of at least 2 layers, got {min_gap}")
    rows = []
    for name, sel in (("adjacent (gap 1)", cons.gap == 1), (f"distant (gap >= {min_gap})", cons.gap >= min_gap)):
        d = cons[sel]
        rows.append({"pairs": name, "n pairs": len(d), "mean kendall tau": d.kendall_tau.mean(),
                     f"mean top-{k} overlap": d[f"top{k}"].mean()})
    return pd.DataFrame(rows)
