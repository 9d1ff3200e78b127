"""Memorization profiles and their comparison with binomial noise (Sadrtdinov, Chirkova, Lobacheva 2021,
§3, §4.1, appendix B; methods.md §1).

Recognition indicator I_theta(x~) of network theta for one augmented example x~:

- classification (supervised, random labels): ``argmax logits(x~) == y`` with y the label it was trained on;
- SimCLR: inside a *fixed evaluation batch* of B images (X split into fixed chunks), the two views
  (x', x'') of every image give 2B projections; x is recognised when x'' is the most cosine-similar of the
  other 2B - 1 views to the anchor x' (the InfoNCE "classification inside the batch"). Convention: the
  anchor is the FIRST view of each pair, so every (image, pair) gives one indicator.

Records: a bool array ``(N networks, E recorded epochs, M augmentations, |X|)``, stored packed (bitsets,
``pack_bits``). From it:

- ``p_t(x)  = mean_{n, m} I``  (averaged over augmentations);
- ``p_t(x~) = mean_n I``       (fixed augmentation m);
- profile = the values sorted ascending over x.

Binomial comparison: p_hat = mean_x p_t(x); |X| draws of Binomial(N, p_hat) / N, sorted; the score is the
mean absolute difference of the two sorted curves, averaged over ``n_draws`` (10) noise draws. For fixed
augmentations also Pearson's chi-square goodness of fit of the counts N * p_t(x~) to Binomial(N, p_hat)
(bins with expected count < 5 pooled with their neighbours, one degree of freedom taken for p_hat).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as sst


# ----------------------------------------------------------------------------- recognition
def recognized_classification(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """I = [argmax_c logits[i, c] == labels[i]], bool (B,)."""
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits (B, C) and labels (B,) expected, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return logits.argmax(1) == labels.to(logits.device)


def recognized_in_batch(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimCLR recognition inside one evaluation batch, bool (B,).

    ``z1[i]``, ``z2[i]``: projections of the two views of image i. With s = cosine similarity over the 2B
    views, image i is recognised when ``argmax_{j != i} s(z1[i], v_j) == z2[i]`` (anchor = first view).
    Ties count as not recognised unless the positive is the unique maximum."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z[:b] @ z.t()                                   # (B, 2B): anchors against every view
    sim[torch.arange(b), torch.arange(b)] = float("-inf")  # not itself
    pos = sim[torch.arange(b), torch.arange(b, 2 * b)]
    sim[torch.arange(b), torch.arange(b, 2 * b)] = float("-inf")
    return pos > sim.max(1).values


def eval_chunks(n: int, batch: int) -> list[np.ndarray]:
    """The fixed evaluation batches: positions 0..n-1 in ceil(n / batch) consecutive chunks of (almost)
    equal size <= batch, so that no image sits in an easier, smaller last batch."""
    if n < 1 or batch < 2:
        raise ValueError(f"need n >= 1 and an evaluation batch >= 2, got n={n}, batch={batch}")
    return np.array_split(np.arange(n), math.ceil(n / batch))


# ----------------------------------------------------------------------------- records
def pack_bits(rec) -> torch.Tensor:
    """bool array (..., n) -> uint8 tensor (..., ceil(n / 8)), bitset along the last axis."""
    return torch.from_numpy(np.packbits(np.asarray(rec, dtype=bool), axis=-1))


def unpack_bits(packed, n: int) -> np.ndarray:
    """Inverse of ``pack_bits``: uint8 (..., ceil(n / 8)) -> bool (..., n)."""
    a = packed.numpy() if torch.is_tensor(packed) else np.asarray(packed)
    return np.unpackbits(a, axis=-1, count=n).astype(bool)


def p_averaged(rec: np.ndarray) -> np.ndarray:
    """p_t(x) = mean over networks and augmentations: (N, E, M, X) -> (E, X)."""
    return np.asarray(rec, dtype=np.float64).mean(axis=(0, 2))


def p_fixed(rec: np.ndarray, m: int | None = None) -> np.ndarray:
    """p_t(x~) = mean over networks: (N, E, M, X) -> (E, M, X), or (E, X) for augmentation ``m``."""
    p = np.asarray(rec, dtype=np.float64).mean(axis=0)
    return p if m is None else p[:, m]


def sorted_profile(p: np.ndarray) -> np.ndarray:
    """The memorization profile: p sorted ascending along the last axis."""
    return np.sort(np.asarray(p, dtype=np.float64), axis=-1)


# ----------------------------------------------------------------------------- binomial comparison
def binomial_noise(n_points: int, n_networks: int, p_hat: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted binomial noise, float64 (n_points,): draws of Binomial(n_networks, p_hat) / n_networks from ``rng``
    (appendix B: the profile of N networks if every image were equally hard)."""
    return np.sort(rng.binomial(n_networks, p_hat, size=n_points) / n_networks)


def binomial_mae(p, n_networks: int, n_draws: int = 10, seed: int = 0) -> float:
    """Mean |sorted(p) - sorted(Binomial(N, p_hat) / N)| with p_hat = mean(p), averaged over ``n_draws``
    noise draws (methods.md §1, Fig. 2). Depends on N: compare paradigms at equal N."""
    p = np.asarray(p, dtype=np.float64).ravel()
    if p.size == 0 or n_networks < 1 or n_draws < 1:
        raise ValueError("binomial_mae needs a non-empty p, n_networks >= 1 and n_draws >= 1")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("p must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    prof, p_hat = np.sort(p), float(p.mean())
    return float(np.mean([np.abs(prof - binomial_noise(p.size, n_networks, p_hat, rng)).mean()
                          for _ in range(n_draws)]))


def _pool_bins(obs: np.ndarray, exp: np.ndarray, min_expected: float):
    """Merge adjacent bins until every expected count is >= min_expected: the smallest bin is merged into
    its smaller neighbour, repeatedly."""
    obs, exp = list(map(float, obs)), list(map(float, exp))
    while len(exp) > 1 and min(exp) < min_expected:
        i = int(np.argmin(exp))
        if i == 0:
            j = 1
        elif i == len(exp) - 1:
            j = i - 1
        else:
            j = i - 1 if exp[i - 1] <= exp[i + 1] else i + 1
        lo, hi = min(i, j), max(i, j)
        e, o = exp.pop(hi), obs.pop(hi)
        exp[lo] += e
        obs[lo] += o
    return np.array(obs, dtype=np.float64), np.array(exp, dtype=np.float64)


def chi_square_binomial(p, n_networks: int, min_expected: float = 5.0) -> dict:
    """Pearson chi-square goodness of fit of the counts k(x) = N * p(x) (integers 0..N) to
    Binomial(N, p_hat), p_hat = mean(p): observed vs |X| * pmf(k) over k = 0..N, bins with expected count
    < ``min_expected`` pooled, dof = bins - 1 - 1 (p_hat estimated). Only meaningful for fixed
    augmentations (p(x~) is exactly Binomial(N, p) / N under the null, appendix B).
    Returns ``{"chi2", "dof", "p_value", "bins"}``; p_value is NaN when fewer than 3 bins remain."""
    p = np.asarray(p, dtype=np.float64).ravel()
    k = p * n_networks
    if np.abs(k - np.round(k)).max(initial=0) > 1e-6:
        raise ValueError("chi_square_binomial needs fixed-augmentation values p = k / N with integer k")
    k = np.round(k).astype(int)
    p_hat = float(p.mean())
    obs = np.bincount(k, minlength=n_networks + 1).astype(np.float64)
    exp = p.size * sst.binom.pmf(np.arange(n_networks + 1), n_networks, p_hat)
    obs, exp = _pool_bins(obs, exp, min_expected)
    dof = len(obs) - 2
    if dof < 1:
        return {"chi2": float("nan"), "dof": dof, "p_value": float("nan"), "bins": len(obs)}
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    return {"chi2": chi2, "dof": dof, "p_value": float(sst.chi2.sf(chi2, dof)), "bins": len(obs)}


def closest_epoch(mean_p, epochs, target: float) -> int:
    """The recorded epoch whose mean p_t is closest to ``target`` (Fig. 3 alignment; first on ties)."""
    mean_p = np.asarray(mean_p, dtype=np.float64)
    return int(np.asarray(epochs)[int(np.argmin(np.abs(mean_p - target)))])


def profile_table(rec: np.ndarray, epochs, n_draws: int = 10, seed: int = 0, fixed_view: int = 0) -> list[dict]:
    """Fig. 2's numbers per recorded epoch of ``rec`` (bool (N, E, M, |X|); ``epochs``: the E epoch numbers): a row
    ``{"epoch", "mean_p", "mae_averaged", "mae_fixed", "mae_fixed_all_views", "chi2_fixed", "chi2_dof",
    "chi2_p_fixed"}``: mean p, the MAE to binomial noise (``binomial_mae``, ``n_draws`` draws from ``seed``)
    averaged over augmentations and for the fixed augmentation ``fixed_view`` (and its mean over all M fixed
    augmentations), and the chi-square test of the fixed augmentation (``chi_square_binomial``)."""
    n = rec.shape[0]
    pa, pf = p_averaged(rec), p_fixed(rec)
    rows = []
    for e, ep in enumerate(epochs):
        chi = chi_square_binomial(pf[e, fixed_view], n)
        rows.append({"epoch": int(ep), "mean_p": float(pa[e].mean()),
                     "mae_averaged": binomial_mae(pa[e], n, n_draws, seed),
                     "mae_fixed": binomial_mae(pf[e, fixed_view], n, n_draws, seed),
                     "mae_fixed_all_views": float(np.mean([binomial_mae(pf[e, m], n, n_draws, seed)
                                                           for m in range(pf.shape[1])])),
                     "chi2_fixed": chi["chi2"], "chi2_dof": chi["dof"], "chi2_p_fixed": chi["p_value"]})
    return rows
