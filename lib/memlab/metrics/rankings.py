"""Agreement between memorisation rankings, and Feldman's label memorisation (SSLMem paper §5, Tables 12-13).

- Kendall's tau-b between two score vectors over the same points, with its two-sided p-value.
- Top-k overlap: ``|top_k(a) ∩ top_k(b)| / k`` (the fraction of a's k most memorised points that are also
  among b's k most memorised).
- Feldman memorisation of a supervised f/g pair (Feldman 2020, estimated with one model per side):
  ``mem(x) = P_f(y_x | x) - P_g(y_x | x)``, the softmax probability of the true label under the model that
  trained on x minus the one that did not.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau


NAN = float("nan")


def _np(x, name: str = "scores") -> np.ndarray:
    a = np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=float)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} hold {int((~np.isfinite(a)).sum())} non-finite value(s): a ranking of them is "
                         "meaningless")
    return a


def _in_top(s: np.ndarray, k: int) -> np.ndarray:
    """P(point i is among the k highest of s) when ties are broken at random: 1 above the k-th value, 0 below,
    and (places left) / (points tied) for the points tied at it."""
    kth = np.sort(s)[::-1][k - 1]
    above, tied = s > kth, s == kth
    return above + tied * (k - above.sum()) / tied.sum()


def topk_overlap(a, b, k: int) -> float:
    """Fraction of the k highest-scored points of ``a`` that are among the k highest of ``b`` (SSLMem paper,
    Table 13). a, b: 1-D scores over the same points. Ties at the k-th place are broken at random, in
    expectation: two constant vectors give k / n (chance), not 1. Raises ValueError for unequal lengths, k
    outside 1..n, or non-finite scores."""
    a, b = _np(a, "a"), _np(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape} vs {b.shape}")
    if not 1 <= k <= len(a):
        raise ValueError(f"k must be in 1..{len(a)}, got {k}")
    return float((_in_top(a, k) * _in_top(b, k)).sum() / k)


def agreement(scores: dict, ks=(10, 20, 50, 100, 200)) -> pd.DataFrame:
    """One row per unordered pair of rankings in ``scores`` ({name: vector over the same points}):
    Kendall tau-b, its p-value, and the top-k overlap for every k (k larger than the points are skipped).
    A constant score vector has no ranking: tau and p are NaN, and ``note`` says so."""
    rows = []
    for a, b in itertools.combinations(scores, 2):
        x, y = _np(scores[a], a), _np(scores[b], b)
        const = [name for name, v in ((a, x), (b, y)) if len(v) and v.max() == v.min()]
        if const or len(x) < 2:   # scipy would warn and give NaN: say why instead
            tau, p, note = NAN, NAN, f"constant scores ({', '.join(const)}): no ranking" if const else "< 2 points"
        else:
            (tau, p), note = kendalltau(x, y), ""
        row = {"a": a, "b": b, "kendall_tau": float(tau), "p": float(p), "n": len(x), "note": note}
        row.update({f"top{k}": topk_overlap(x, y, k) for k in ks if k <= len(x)})
        rows.append(row)
    return pd.DataFrame(rows)


def square(table: pd.DataFrame, value: str, names: list) -> pd.DataFrame:
    """The symmetric matrix of ``value`` (e.g. "kendall_tau", "top50") over ``names``, from the pair rows of
    ``agreement``, with 1 on the diagonal (a ranking agrees with itself): the heatmaps of Tables 12-13."""
    m = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for _, r in table.iterrows():
        m.loc[r["a"], r["b"]] = m.loc[r["b"], r["a"]] = r[value]
    return m


@torch.no_grad()
def true_label_prob(trained, images: torch.Tensor, labels, normalize, *, batch_size: int = 512, device=None):
    """Softmax probability of the true label under a supervised ``Trained`` (encoder + classifier head),
    on the un-augmented images: ``images`` uint8 (N,3,H,W), ``labels`` int (N,), ``normalize`` the encoder's
    input normalisation. Returns a float tensor (N,) in [0, 1]. Raises ValueError for an encoder without a
    classification head (``objective.logits``)."""
    if not hasattr(trained.objective, "logits"):
        raise ValueError("Feldman memorisation needs a supervised encoder with its classification head")
    device = device or next(trained.encoder.parameters()).device
    trained.encoder.eval(), trained.objective.eval()
    out = []
    for s in range(0, len(images), batch_size):
        x = normalize(images[s:s + batch_size].to(device))
        p = torch.softmax(trained.objective.logits(trained.encoder, x).float(), dim=1)
        y = torch.as_tensor(labels[s:s + batch_size]).to(device)
        out.append(p.gather(1, y[:, None])[:, 0].cpu())
    return torch.cat(out)


def feldman(f_list, g_list, images, labels, normalize, **kw) -> torch.Tensor:
    """Feldman's label memorisation (Feldman 2020; SSLMem paper Tables 12-13) of each point:
    ``mean_f P_f(y|x) - mean_g P_g(y|x)`` over the supervised ``Trained`` f's (trained on the points) and g's
    (not), several seeds averaging the expectations. Returns a float tensor (N,) in [-1, 1]; ``kw``: those of
    ``true_label_prob``."""
    pf = torch.stack([true_label_prob(t, images, labels, normalize, **kw) for t in f_list]).mean(0)
    pg = torch.stack([true_label_prob(t, images, labels, normalize, **kw) for t in g_list]).mean(0)
    return pf - pg
