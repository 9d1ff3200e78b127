"""UnitMem and ClassMem: which units (channels, neurons) memorise single data points, and which classes
(Wang et al., NeurIPS 2024, "Localizing Memorization in SSL Vision Encoders"; methods.md §4).

For a unit u (a conv channel averaged over space; a linear/transformer unit's activation averaged over
tokens), a set D of training points and K augmented views per point:

    mu_u(x)    = mean over the K views of u's activation on x
    mu_max,u   = max over x in D of mu_u(x)
    mu_-max,u  = mean of mu_u(x) over the other points of D   (option: median, as the reference code)
    UnitMem(u) = (mu_max,u - mu_-max,u) / (mu_max,u + mu_-max,u)

ClassMem(u) is the same with class means: mu_c = mean of mu_u(x) over the points of class c, the max over
classes against the mean over the other classes (class selectivity, Morcos et al. 2018). Activations are
taken after the ReLU / residual addition, so both lie in [0, 1].

Signed activations (ViT tokens, GELU outputs, anything before a ReLU): the formula assumes mu_u >= 0, and
with negative values it leaves [0, 1] or divides by zero. So a unit with mu_u(x) < 0 for some x in D is
*excluded* (flag ``negative``), like a dead unit (mu_u = 0 on all of D, flag ``dead``): its scores are NaN
and ``layer_summary`` counts both kinds per layer. A ViT unit's activation is its mean over ALL tokens,
the CLS token included (``forward_features(pool=True)``: 1 of 65 tokens at 32 px with 4-px patches).

The link to SSLMem (the localisation paper, §4): a point is linked to the units it activates maximally,
the units u whose mu_max,u it attains (``point_unit_link``); the top-k and least-k SSLMem points are compared
on the UnitMem of their units (``link_test``). ``point_selectivity`` is an extra, not the paper's link.

Every layer is measured from ONE forward pass per view. Statistics are accumulated in a streaming way:
per unit a running max (and its arg-max point), a sum and per-class sums -- memory O(units x classes), not
|D| x units x views. Per-point means are kept only for the layers in ``keep`` (needed for the median and
for linking points to units). A dead unit (zero on every point, so 0/0) is reported and excluded: it is
flagged in ``dead`` and its scores are NaN, never silently mixed into summaries.

Ranges: UnitMem and ClassMem of a kept unit lie in [0, 1]; excluded units are NaN.

Pruning units by UnitMem and the DP-SGD comparison are experiments, not metrics:
``memlab.experiments.unitmem_interventions``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from memlab.augmentation.augment import ViewBank


@dataclass
class UnitStats:
    """Streaming statistics of one layer's units over a point set D."""
    layer: str
    max: torch.Tensor          # (U,) mu_max
    argmax: torch.Tensor       # (U,) global index of the point reaching mu_max
    sum: torch.Tensor          # (U,) sum over D of mu_u(x)
    n: int                     # |D|
    class_sum: torch.Tensor    # (C, U)
    class_count: torch.Tensor  # (C,)
    values: torch.Tensor | None = None   # (|D|, U) per-point means, for layers in ``keep``
    index: torch.Tensor | None = None    # (|D|,) global indices of the rows of ``values``
    min: torch.Tensor | None = None      # (U,) min over D of mu_u(x)

    @property
    def negative(self) -> torch.Tensor:
        """Units with mu_u(x) < 0 for some x (signed activations): excluded, UnitMem is only defined for >= 0."""
        return torch.zeros_like(self.max, dtype=torch.bool) if self.min is None else self.min < 0

    @property
    def excluded(self) -> torch.Tensor:
        """Dead or negative units: their UnitMem and ClassMem are NaN."""
        return self.dead | self.negative

    @property
    def units(self) -> int:
        return self.max.numel()

    @property
    def dead(self) -> torch.Tensor:
        """Units whose activation is zero on every point (UnitMem and ClassMem are 0/0)."""
        return (self.max <= 0) & ~self.negative


@torch.no_grad()
def unit_stats(encoder, images: torch.Tensor, idx, labels, bank: ViewBank, *, n_views: int | None = None,
               layers=None, keep=(), num_classes: int | None = None, batch_size: int = 256, device=None,
               progress: bool = False) -> dict:
    """Accumulate ``UnitStats`` for every layer in ``layers`` (default: all) over the points
    ``images`` (uint8 (N,3,H,W), global indices ``idx``, int64 class ``labels``), each seen through ``n_views``
    views of the bank (default all); mu_u(x) is the mean over views of the unit's spatial (token) mean. One
    forward pass per view yields every layer. ``keep``: layers whose per-point means (N, U) are kept (the
    median and the link to points need them). Returns {layer: UnitStats}, on the CPU. Raises ValueError when
    more views are asked for than the bank holds."""
    layers = list(layers or encoder.layer_names)
    keep = set(keep)
    n_views = n_views or bank.n_views
    if n_views > bank.n_views:
        raise ValueError(f"{n_views} views asked; the bank has {bank.n_views}")
    device = device or next(encoder.parameters()).device
    encoder.eval()
    idx = torch.as_tensor(idx, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long)
    c = num_classes or int(labels.max()) + 1
    st, kept = {}, {l: [] for l in layers if l in keep}
    for s in tqdm(range(0, len(idx), batch_size), disable=not progress, desc="unit statistics", leave=False):
        x = images[s:s + batch_size].to(device)
        ii = idx[s:s + batch_size]
        acc = None
        for k in range(n_views):  # mu_u(x): mean over views of the spatial/token-mean activation
            f = encoder.forward_features(bank.view(x, ii.numpy(), k), layers=layers, pool=True)
            acc = {l: f[l].float() for l in layers} if acc is None else {l: acc[l] + f[l].float() for l in layers}
        y = labels[s:s + batch_size].to(device)
        for l in layers:
            mu = acc[l] / n_views                                    # (b, U)
            bmax, barg = mu.max(0)
            onehot = torch.nn.functional.one_hot(y, c).float()      # (b, C)
            if l not in st:
                st[l] = UnitStats(l, torch.full_like(bmax, -float("inf")), torch.zeros_like(barg), torch.zeros_like(bmax),
                                  0, torch.zeros(c, mu.shape[1], device=device), torch.zeros(c, device=device),
                                  min=torch.full_like(bmax, float("inf")))
            u = st[l]
            better = bmax > u.max
            u.argmax = torch.where(better, ii.to(device)[barg], u.argmax)
            u.max = torch.maximum(u.max, bmax)
            u.sum += mu.sum(0)
            u.n += mu.shape[0]
            u.class_sum += onehot.t() @ mu
            u.class_count += onehot.sum(0)
            u.min = torch.minimum(u.min, mu.min(0).values)
            if l in kept:
                kept[l].append(mu.cpu())
    out = {}
    for l, u in st.items():
        out[l] = UnitStats(l, u.max.cpu(), u.argmax.cpu(), u.sum.cpu(), u.n, u.class_sum.cpu(), u.class_count.cpu(),
                           torch.cat(kept[l]) if l in kept else None, idx.clone() if l in kept else None,
                           u.min.cpu())
    return out


def _selectivity(top: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    den = top + rest
    return torch.where(den > 0, (top - rest) / den.where(den > 0, torch.ones_like(den)), torch.full_like(den, float("nan")))


def unitmem(stats: UnitStats, rest: str = "mean") -> torch.Tensor:
    """UnitMem per unit (U,) float, in [0, 1]; NaN for excluded units (``stats.excluded``: dead or negative).
    ``rest``: "mean" (paper) or "median" (reference code) of mu_u over the points other than the arg-max --
    the true median (the mean of the two middle values for an even count). Raises ValueError for fewer than
    two points, non-finite activations, or the median without per-point values."""
    if stats.n < 2:
        raise ValueError("UnitMem needs at least two points")
    if not (bool(torch.isfinite(stats.max).all()) and bool(torch.isfinite(stats.sum).all())):
        raise ValueError(f"UnitMem: layer {stats.layer!r} has non-finite activations (a diverged encoder?)")
    if rest == "mean":
        other = (stats.sum - stats.max) / (stats.n - 1)
    elif rest == "median":
        if stats.values is None:
            raise ValueError(f"the median needs per-point values: pass keep=[{stats.layer!r}] to unit_stats")
        v = stats.values
        drop = v.argmax(0)  # remove the arg-max point of each unit, then take the median of the others
        mask = torch.ones_like(v, dtype=torch.bool)
        mask[drop, torch.arange(v.shape[1])] = False
        other = torch.stack([v[mask[:, j], j].double().quantile(0.5).to(v.dtype) for j in range(v.shape[1])])
    else:
        raise ValueError(f"rest must be 'mean' or 'median', got {rest!r}")
    return _excluded_nan(_selectivity(stats.max, other), stats)


def _excluded_nan(score: torch.Tensor, stats: UnitStats) -> torch.Tensor:
    return torch.where(stats.excluded, torch.full_like(score, float("nan")), score)


def classmem(stats: UnitStats) -> torch.Tensor:
    """ClassMem per unit (U,): (mu_maxclass - mean of the other class means) / (sum of both), in [0, 1];
    NaN for excluded units (dead or negative)."""
    present = stats.class_count > 0
    if present.sum() < 2:
        raise ValueError("ClassMem needs points of at least two classes")
    means = stats.class_sum[present] / stats.class_count[present, None]   # (C', U)
    top = means.max(0).values
    other = (means.sum(0) - top) / (means.shape[0] - 1)
    return _excluded_nan(_selectivity(top, other), stats)


def layer_table(stats: dict, rest: str = "mean"):
    """One row per (layer, unit) of ``stats`` ({layer: UnitStats}): "layer", "unit" (index), "unitmem" and
    "classmem" (floats in [0, 1], NaN when excluded; ``rest`` as in ``unitmem``), "dead", "negative" (bools) and
    "argmax_point" (the global index of the point reaching mu_max)."""
    import pandas as pd
    rows = []
    for l, s in stats.items():
        um, cm = unitmem(s, rest), classmem(s)
        rows.append(pd.DataFrame({"layer": l, "unit": np.arange(s.units), "unitmem": um.numpy(),
                                  "classmem": cm.numpy(), "dead": s.dead.numpy(), "negative": s.negative.numpy(),
                                  "argmax_point": s.argmax.numpy()}))
    return pd.concat(rows, ignore_index=True)


def live_units(table):
    """The rows of a ``layer_table`` whose units are scored: neither dead nor negative."""
    return table[~(table["dead"] | table["negative"])]


def layer_summary(table):
    """Per layer of a ``layer_table``: units_live, units_dead, units_negative (counts), mean_unitmem and
    mean_classmem over the live units, and frac_unitmem_gt_classmem, the fraction of live units below the
    ClassMem = UnitMem diagonal (§4: SSL units memorise single points more than classes)."""
    live = live_units(table)
    g = live.groupby("layer", sort=False)
    out = g.agg(units_live=("unit", "size"), mean_unitmem=("unitmem", "mean"), mean_classmem=("classmem", "mean"))
    out["frac_unitmem_gt_classmem"] = g.apply(lambda d: float((d["unitmem"] > d["classmem"]).mean()),
                                              include_groups=False)
    out.insert(1, "units_dead", table.groupby("layer", sort=False)["dead"].sum())
    out.insert(2, "units_negative", table.groupby("layer", sort=False)["negative"].sum())
    return out.reset_index()


def point_unit_link(table, points):
    """The localisation paper's point-to-unit link: one row per (layer, point) for ``points`` (global indices):
    ``n_units``, how many live units of the layer the point activates maximally (it attains their mu_max),
    and ``mean_unitmem``, their mean UnitMem (NaN when it is nobody's arg-max). ``table``: ``layer_table``."""
    import pandas as pd
    live = live_units(table)
    pts = [int(p) for p in points]
    rows = []
    for l, d in live.groupby("layer", sort=False):
        g = d[d["argmax_point"].isin(pts)].groupby("argmax_point")["unitmem"]
        n, m = g.size(), g.mean()
        rows += [{"layer": l, "point": p, "n_units": int(n.get(p, 0)), "mean_unitmem": float(m.get(p, np.nan))}
                 for p in pts]
    return pd.DataFrame(rows, columns=["layer", "point", "n_units", "mean_unitmem"])


def link_test(table, top, least, layer: str) -> dict:
    """Top-k vs least-k SSLMem points (global indices ``top``, ``least``) in ``layer``: the UnitMem of the units
    each group activates maximally (pooled over the group's points), compared with a one-sided Welch test
    (top > least), and how many units each group tops. Returns {units_top, units_least, mean_top,
    mean_least, t, p, note} (NaN p with a note when a group tops fewer than 2 units)."""
    from memlab.metrics.stats import welch
    d = live_units(table[table["layer"] == layer])
    a = d[d["argmax_point"].isin([int(p) for p in top])]["unitmem"].to_numpy()
    b = d[d["argmax_point"].isin([int(p) for p in least])]["unitmem"].to_numpy()
    w = welch(a, b)
    return {"units_top": len(a), "units_least": len(b), "mean_top": w["mean_a"], "mean_least": w["mean_b"],
            "t": w["t"], "p": w["p"], "note": w["note"]}


def point_selectivity(stats: UnitStats) -> tuple:
    """An extra, NOT the paper's point-to-unit link (that is ``point_unit_link``).
    For every kept point x: ``max_u (mu_u(x) - m_u(-x)) / (mu_u(x) + m_u(-x))`` with m_u(-x) the mean
    over the other points -- the UnitMem that x's most selective unit would have with x as its top
    point (equal to UnitMem(u) when x is u's arg-max). Returns (selectivity (N,), that unit (N,)).
    Dead units are skipped. Needs ``keep=[layer]``."""
    if stats.values is None:
        raise ValueError(f"pass keep=[{stats.layer!r}] to unit_stats to link points to units")
    v = stats.values
    rest = (v.sum(0, keepdim=True) - v) / (v.shape[0] - 1)
    sel = _selectivity(v, rest)
    sel[:, stats.excluded] = -float("inf")
    best, unit = sel.max(1)
    return best, unit


def cached_unit_stats(cache, trained, data, idx, bank: ViewBank, *, keep=(), device=None, force: bool = False,
                      progress: bool = True) -> dict:
    """``unit_stats`` of a cached encoder (``train.Trained``) on ``data[idx]`` (an ``ImageData``), through the
    result cache (keyed by the encoder's key, the points, the view bank, ``keep`` and the data; ``force``
    recomputes). Returns {layer: UnitStats}."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    key = {"encoder": trained.key, "points": idx.tolist(), "bank": bank.describe(), "keep": sorted(keep),
           "data": f"{data.name}/{data.split}", "stats": 2}   # 2: per-unit minimum (negative units); 1 lacked it
    raw = cache.get_or_compute("unitstats", key, lambda: {
        l: vars(s) for l, s in unit_stats(trained.encoder, data.images[idx], idx, data.labels[idx], bank, keep=keep,
                                          num_classes=data.num_classes, device=device, progress=progress).items()},
        force=force)
    return {l: UnitStats(**v) for l, v in raw.items()}
