"""Which points the removal experiment trains on and removes (SSLMem paper §4.3, Fig. 3).

f and g train on two disjoint, class-balanced halves of the pre-training data (``disjoint_halves``), so every
training point of f has an SSLMem score. For each removal size k (``check_ks``), the k most memorised points of f's
half, or k random ones, are removed (``removal_set``: ``STRATEGIES``) and the encoder retrains on the rest
(``retained``). Both kinds of removal set are nested in k and fixed by their seed.

Table 17 (appendix: training on the most memorised points) keeps n points instead (``kept_set``, ``check_ns``):
the n most memorised, or n random ones -- the complement of the random removal of N - n points, so that a random
kept set equal to a removal's retained set is one cache entry, trained once.
"""
from __future__ import annotations

import numpy as np
import torch

from memlab.data.splits import balanced_order

STRATEGIES = ("memorised", "random")


def disjoint_halves(labels, n_half: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint, class-balanced sets of ``n_half`` training indices (sorted long tensors): f's and g's
    training data (§4.3: "f and g ... on disjoint 25k data points"). Raises ValueError for a bad ``n_half``."""
    labels = np.asarray(torch.as_tensor(labels))
    if not isinstance(n_half, (int, np.integer)) or isinstance(n_half, bool) or n_half < 1:
        raise ValueError(f"n_half must be a positive int, got {n_half!r}")
    if 2 * n_half > len(labels):
        raise ValueError(f"two disjoint halves of {n_half} need {2 * n_half} points; the dataset has {len(labels)}")
    order = balanced_order(labels, seed)
    as_t = lambda a: torch.from_numpy(np.sort(a)).long()  # noqa: E731
    return as_t(order[:n_half]), as_t(order[n_half:2 * n_half])


def check_ks(ks, pool_size: int) -> list[int]:
    """Validate the removal sizes before any compute: distinct ints with 0 < k < pool_size. Returns them sorted;
    ValueError otherwise."""
    ks = list(ks)
    if not ks:
        raise ValueError("removal_ks must list at least one k")
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k < pool_size]
    if bad:
        raise ValueError(f"removal sizes {bad} invalid: each k must be an int with 0 < k < {pool_size} (the "
                         f"number of scored training points of f; removing all of them leaves nothing to train on)")
    if len(set(ks)) != len(ks):
        raise ValueError(f"removal sizes must be distinct, got {ks}")
    return sorted(int(k) for k in ks)


def removal_set(pool, scores, k: int, strategy: str, seed: int = 0) -> torch.Tensor:
    """The k points of ``pool`` to remove (sorted long indices).

    ``"memorised"``: the k highest ``scores`` (``scores[i]`` belongs to ``pool[i]``; ties broken by position).
    ``"random"``: a prefix of a permutation of ``pool`` fixed by ``seed`` -- so the sets are nested in k and
    reproducible; the memorised sets are nested too. Raises ValueError for an unknown strategy, k outside
    0..len(pool), or scores that are not one finite value per pool point.
    """
    pool = torch.as_tensor(pool, dtype=torch.long)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown removal strategy {strategy!r}; choose from {STRATEGIES}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(pool):
        raise ValueError(f"k = {k!r} points cannot be removed from a scored pool of {len(pool)}")
    if strategy == "memorised":
        scores = torch.as_tensor(scores).float()
        if scores.shape != (len(pool),):
            raise ValueError(f"need one score per pool point: {tuple(scores.shape)} scores for {len(pool)} points")
        if not torch.isfinite(scores).all():
            raise ValueError("scores contain NaN or inf")
        order = np.argsort(-scores.numpy(), kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(pool))
    return pool[torch.from_numpy(np.sort(order[:k]))].sort().values


def retained(pool, removed) -> torch.Tensor:
    """``pool`` without ``removed`` (sorted): the retraining set."""
    pool = torch.as_tensor(pool, dtype=torch.long)
    keep = ~torch.isin(pool, torch.as_tensor(removed, dtype=torch.long))
    return pool[keep].sort().values


def check_ns(ns, pool_size: int) -> list[int]:
    """Validate Table 17's kept-set sizes before any compute: distinct ints with 0 < n < pool_size (n = pool_size is
    f itself, always the reference); [] turns the section off. Returns them sorted, largest first; ValueError
    otherwise."""
    ns = list(ns)
    bad = [n for n in ns if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n < pool_size]
    if bad or len(set(ns)) != len(ns):
        raise ValueError(f"kept-set sizes {ns} invalid: distinct ints with 0 < n < {pool_size} (f's scored points; "
                         f"n = {pool_size} is f itself, the reference)")
    return sorted((int(n) for n in ns), reverse=True)


def kept_set(pool, scores, n: int, strategy: str, seed: int = 0) -> torch.Tensor:
    """The n points of ``pool`` an encoder retrains on in Table 17 (sorted long indices): ``"memorised"``, the n
    highest ``scores``; ``"random"``, what the random removal of len(pool) - n points with ``seed`` retains (so the
    two experiments share that encoder). Raises ValueError as ``removal_set``."""
    pool = torch.as_tensor(pool, dtype=torch.long)
    if strategy == "memorised":
        return removal_set(pool, scores, n, "memorised")
    return retained(pool, removal_set(pool, scores, len(pool) - n, strategy, seed=seed))
