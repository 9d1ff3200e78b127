"""LayerMem and Delta-LayerMem: where in the encoder is a point memorised? (Wang et al., NeurIPS 2024,
"Localizing Memorization in SSL Vision Encoders", §3; methods.md §3.)

    LayerMem_l(x)   = SSLMem of x with h replaced by the encoder truncated after layer l:
                      m_l(x) = E_g L_align(g_{<=l}, x) - E_f L_align(f_{<=l}, x),
                      L_align(h, x) = E_{x',x''} || norm(flat(h(x'))) - norm(flat(h(x''))) ||_2,
                      on the same f/g pair and the same K view pairs as the final layer; every layer comes from
                      ONE forward pass per view (``sslmem.score(..., layers=...)``).
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
Downstream uses (§5 of the paper): fine-tuning only chosen layers (``finetune``) and swapping layers between
encoders (``replace_layers``); ``layer_keys`` maps a layer to its parameters and buffers. Fine-tuning runs on
``engine.fit`` (``train.view_step`` as its step, a seeded permutation as its batches).
"""
from __future__ import annotations

import copy
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from memlab.metrics.rankings import agreement
from memlab.metrics.sslmem import score
from memlab.metrics.stats import welch

MODES = ("layer", "shared")


# ----------------------------------------------------------------------------- which layers
def layermem_layers(encoder) -> list[str]:
    """The layers LayerMem reports, in network order: all of ``encoder.layer_names`` except, for a ViT, the
    patch embedding and the final LayerNorm (methods.md §3: each block after attention and after MLP)."""
    names = list(encoder.layer_names)
    if any(n.endswith(".attn") for n in names):
        return [n for n in names if re.fullmatch(r"block\d+\.(attn|mlp)", n)]
    return names


def _prefixes(encoder) -> dict:
    """{layer: state-dict key prefixes of the modules that compute it (from the previous layer's output)}."""
    from memlab.models.networks import CNN, ResNet, ResNet9, ViT
    names = list(encoder.layer_names)
    if isinstance(encoder, ResNet9):
        return {n: [f"{n}." if n == "prep" or "." in n else f"{n}.conv."] for n in names}
    if isinstance(encoder, ResNet):
        return {n: [f"{n}."] for n in names}
    if isinstance(encoder, CNN):
        return {n: [f"blocks.{i}."] for i, n in enumerate(names)}
    if isinstance(encoder, ViT):
        out = {"patch_embed": ["vit.patch_embed.", "vit.cls_token", "vit.pos_embed", "vit.reg_token",
                               "vit.norm_pre."], "norm": ["vit.norm."]}
        for n in names:
            m = re.fullmatch(r"block(\d+)\.(attn|mlp)", n)
            if m:
                i, j = m.group(1), "1" if m.group(2) == "attn" else "2"
                out[n] = [f"vit.blocks.{i}.norm{j}.", f"vit.blocks.{i}.{m.group(2)}.", f"vit.blocks.{i}.ls{j}."]
        return out
    raise TypeError(f"no layer-to-parameter map for {type(encoder).__name__}")


def layer_keys(encoder, layers) -> list[str]:
    """State-dict keys (parameters and buffers) of ``layers``: what fine-tuning trains and replacement swaps."""
    encoder._check_layers(layers)
    pre = _prefixes(encoder)
    want = [p for l in layers for p in pre[l]]
    return [k for k in encoder.state_dict() if any(k.startswith(p) for p in want)]


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
    """Raw per-layer SSLMem ``{layer: {"align_f", "align_g", "raw"}}`` from one forward pass per view and
    encoder (``sslmem.score`` with ``layers``); ``kw``: n_pairs, rep, batch_size, device, progress."""
    for enc in [*f_encoders, *g_encoders]:
        if hasattr(enc, "_check_layers"):
            enc._check_layers(layers)  # unknown layer names fail before any compute
    return score(f_encoders, g_encoders, images, idx, bank, layers=list(layers), **kw)


def cached_layer_scores(cache, f_list, g_list, data, idx, bank, *, layers, n_pairs: int, rep: str, id_offset: int = 0,
                        device=None, force: bool = False, progress: bool = True) -> dict:
    """``layer_scores`` of ``data.images[idx]`` through the cache (keyed by the encoders' keys, the view bank,
    the points and the layers). ``id_offset`` shifts the view-bank ids (test-split points)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    key = {"f": [t.key for t in f_list], "g": [t.key for t in g_list], "bank": bank.describe(), "pairs": n_pairs,
           "rep": rep, "points": idx.tolist(), "offset": id_offset, "layers": list(layers), "data": data.name}
    return cache.get_or_compute("layermem", key, lambda: layer_scores(
        [t.encoder for t in f_list], [t.encoder for t in g_list], data.images[idx], (idx + id_offset).numpy(), bank,
        layers=layers, n_pairs=n_pairs, rep=rep, device=device, progress=progress), force=force)


def normalise(raw: dict, *, mode: str = "layer", reference=None) -> dict:
    """LayerMem per point: ``raw[l] / range`` with the range (max - min) of ``raw[l][reference]`` (default all
    points) for ``mode="layer"``, or the largest such range over all layers for ``mode="shared"``.
    ``raw``: {layer: (N,) raw scores}. A layer whose reference scores are all zero gets 0 (its output carried
    no point-specific alignment difference); equal non-zero scores cannot be normalised (error)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not raw:
        raise ValueError("no layers to normalise")
    bad = [l for l, v in raw.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"LayerMem: raw scores of layer(s) {bad} hold non-finite values (a diverged f or g?)")
    ref = {l: (v if reference is None else v[reference]).float() for l, v in raw.items()}
    rng = {l: float(v.max() - v.min()) for l, v in ref.items()}
    for l, r in rng.items():
        if not r > 0 and bool((ref[l] != 0).any()):
            raise ValueError(f"layer {l}: all reference scores equal {float(ref[l][0])}; cannot normalise")
    if mode == "shared":
        top = max(rng.values())
        if not top > 0:
            return {l: torch.zeros_like(v, dtype=torch.float32) for l, v in raw.items()}
        rng = {l: top for l in rng}
    return {l: raw[l].float() / rng[l] if rng[l] > 0 else torch.zeros_like(raw[l], dtype=torch.float32) for l in raw}


def delta(lm: dict, layers=None) -> dict:
    """Delta-LayerMem per point: ``lm[l] - lm[previous layer]``; the first layer keeps its LayerMem."""
    layers = list(layers or lm)
    out, prev = {}, None
    for l in layers:
        out[l] = lm[l] if prev is None else lm[l] - lm[prev]
        prev = l
    return out


def groups(final, *, n_random: int, k: int, seed: int) -> dict:
    """Positions of the point groups of the paper's tables, ranked by final-layer SSLMem ``final`` (N,):
    ``random`` (n_random points, fixed by seed), ``top`` (the k most memorised), ``least`` (the k least)."""
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
    """The paper's LayerMem table: per layer, mean LayerMem and Delta-LayerMem of every group, and the SD of
    LayerMem. ``lm``: {layer: (N,) LayerMem}; ``grp``: {group: positions}."""
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
    """Per layer: one-sided Welch t-test LayerMem(top) > LayerMem(least)."""
    rows = []
    for l in layers:
        t = welch(lm[l][grp["top"]], lm[l][grp["least"]])
        rows.append({"layer": l, "top": t["mean_a"], "least": t["mean_b"], "t": t["t"], "p (top > least)": t["p"],
                     "d": t["d"]})
    return pd.DataFrame(rows)


def vit_sublayers(table: pd.DataFrame) -> pd.DataFrame:
    """ViT: one row per block with the attention and the MLP sub-layer side by side (every numeric column of
    a ``layer_table``)."""
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
    """For every pair of layers: Kendall tau-b (and p) between their LayerMem rankings of the same points, and
    the top-k overlap (fraction); ``gap`` = distance of the two layers in network order."""
    if not 1 <= k <= len(next(iter(lm.values()))):
        raise ValueError(f"overlap k={k} must lie in 1..{len(next(iter(lm.values())))}")
    t = agreement({l: lm[l] for l in layers}, ks=(k,))
    pos = {l: i for i, l in enumerate(layers)}
    t["gap"] = [abs(pos[a] - pos[b]) for a, b in zip(t.a, t.b)]
    return t


def adjacent_vs_distant(cons: pd.DataFrame, k: int, min_gap: int) -> pd.DataFrame:
    """Mean Kendall tau and top-k overlap of adjacent layer pairs (gap 1) against distant ones (gap >= min_gap)."""
    if min_gap < 2:
        raise ValueError(f"distant pairs need a gap of at least 2 layers, got {min_gap}")
    rows = []
    for name, sel in (("adjacent (gap 1)", cons.gap == 1), (f"distant (gap >= {min_gap})", cons.gap >= min_gap)):
        d = cons[sel]
        rows.append({"pairs": name, "n pairs": len(d), "mean kendall tau": d.kendall_tau.mean(),
                     f"mean top-{k} overlap": d[f"top{k}"].mean()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- downstream: choose, fine-tune, replace
STRATEGIES = ("LayerMem", "Delta", "last", "random", "least LayerMem", "least Delta")


def pick_layers(table: pd.DataFrame, k: int, strategy: str, *, column: str = "random", seed: int = 0) -> list:
    """k layers of ``table`` (a ``layer_table``): the highest mean LayerMem / Delta of group ``column``, the
    lowest ("least ..."), the last k, or k random layers (fixed by seed). Returned in network order."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    layers = list(table.layer)
    if not 1 <= k <= len(layers):
        raise ValueError(f"k={k} must lie in 1..{len(layers)}")
    if strategy == "last":
        chosen = layers[-k:]
    elif strategy == "random":
        chosen = list(np.random.default_rng(seed).choice(layers, k, replace=False))
    else:
        col = f"{'Delta' if 'Delta' in strategy else 'LayerMem'} {column}"
        v = table.set_index("layer")[col]
        chosen = list((v.nsmallest(k) if strategy.startswith("least") else v.nlargest(k)).index)
    return [l for l in layers if l in set(chosen)]


def _freeze_bn(module: nn.Module) -> None:
    """Frozen normalisation layers must not update their running statistics either."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def finetune(trained, layers, images, index=None, *, epochs: int, lr: float, batch_size: int = 256, seed: int = 0,
             device="auto", amp: bool = True, progress: bool = True):
    """Fine-tune only ``layers`` of ``trained`` (a ``train.Trained``) with its own SSL objective and training
    augmentation on ``images`` (uint8, N,3,H,W); every other parameter and BatchNorm statistic stays frozen.
    SGD (momentum 0.9), cosine schedule, AMP on CUDA. Returns ``(encoder, history)``; ``trained`` is untouched."""
    from memlab.engine.loop import Cosine, fit, grad_scaler
    from memlab.engine.train import resolve_device, view_step
    if epochs < 1 or lr <= 0:
        raise ValueError(f"epochs must be >= 1 and lr > 0, got {epochs}, {lr}")
    if trained.objective.needs_labels:
        raise ValueError("finetune uses the encoder's SSL objective; got a supervised encoder")
    dev = resolve_device(device)
    keys = set(layer_keys(trained.encoder, layers))
    enc, obj = copy.deepcopy(trained.encoder).to(dev), copy.deepcopy(trained.objective).to(dev)
    for n, p in enc.named_parameters():
        p.requires_grad_(n in keys)
    params = [p for p in [*enc.parameters(), *obj.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    n = len(images)
    index = torch.arange(n) if index is None else torch.as_tensor(index)
    bs = min(batch_size, n)
    steps = max(1, n // bs)
    gen = torch.Generator().manual_seed(seed)
    scaler = grad_scaler(dev, amp)
    cfg = replace(trained.config, seed=seed)  # view_step draws the views of (seed, epoch)

    def batches(epoch):
        perm = torch.randperm(n, generator=gen)
        return [perm[i * bs:(i + 1) * bs] for i in range(steps)]

    res = fit(view_step(cfg, enc, obj, images, None, index, opt, scaler, dev, amp), batches, epochs=epochs,
              optimizer=opt, state={}, schedule=Cosine(lr, epochs * steps), modules=(enc, obj),
              epoch_start=lambda epoch: _freeze_bn(enc), epoch_loss=lambda ls: float(np.mean([float(v) for v in ls])),
              label=f"fine-tuning {','.join(layers)}", desc=f"fine-tune {','.join(layers)}", progress=progress)
    for p in enc.parameters():
        p.requires_grad_(True)
    return enc.eval(), res.history


def replace_layers(target, source, layers):
    """A copy of encoder ``target`` whose ``layers`` (parameters and buffers) come from ``source``, an encoder
    of the same architecture (e.g. trained on another dataset). Neither input is modified."""
    keys = layer_keys(target, layers)
    ts, ss = target.state_dict(), source.state_dict()
    bad = [k for k in ts if k not in ss or ss[k].shape != ts[k].shape]
    if bad:
        raise ValueError(f"source and target encoders differ in architecture (e.g. {bad[:3]})")
    out = copy.deepcopy(target)
    out.load_state_dict({**ts, **{k: ss[k].to(ts[k].device) for k in keys}})
    return out.eval()
