"""Removal experiments, limiting alignment and DP-SGD (SSLMem paper, Wang et al. ICLR 2024, §4.3-4.6).

- **Removal (Fig. 3, 6, 7):** f and g train on disjoint, class-balanced halves of the pre-training data;
  every training point of f is scored with SSLMem, ``m(x) = L_align(g, x) - L_align(f, x)``. For each k the
  k highest-m points (``"memorised"``), or k points drawn at random (``"random"``), are removed from f's
  half and the encoder is retrained from scratch with the same settings and seeds; a linear probe on
  frozen features measures each encoder on several downstream datasets. The paper's finding: removing
  memorised points costs more accuracy than removing random ones.
- **Limiting alignment (Eq. 3, Fig. 4):** ``L = (1 - lam) L_SSL - lam * E d(h(x'), h(x''))``
  (``objectives.AlignmentLimited``); larger lam should give lower SSLMem and lower probe accuracy.
- **DP-SGD (Table 5):** f and g trained with DP-SGD (``dp.train_dp``) at several epsilon; SSLMem and probe
  accuracy fall as epsilon falls.
- Across recipes (lam, epsilon) memorisation is compared with ``pair_scores``: both halves, each point
  against the encoder that did not see it, so a constant alignment gap between f and g cancels.

Every encoder of the notebook is a job of its plan (``jobs.Plan``; ``ssl_job`` here, ``dp.dp_job`` for DP): the
retrained encoders depend on f's scores, so they are declared with their cost (``train.training_cost``) and added
once f and g are scored. A killed run resumes at each encoder's last finished epoch.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from memlab.data.splits import balanced_order
from memlab.engine.train import TrainConfig, Trained, encoder_job, fingerprint

STRATEGIES = ("memorised", "random")


# ----------------------------------------------------------------------------- data and removal sets
def disjoint_halves(labels, n_half: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint, class-balanced sets of ``n_half`` training indices (sorted): f's and g's training data
    (§4.3: "f and g ... on disjoint 25k data points")."""
    labels = np.asarray(torch.as_tensor(labels))
    if not isinstance(n_half, (int, np.integer)) or isinstance(n_half, bool) or n_half < 1:
        raise ValueError(f"n_half must be a positive int, got {n_half!r}")
    if 2 * n_half > len(labels):
        raise ValueError(f"two disjoint halves of {n_half} need {2 * n_half} points; the dataset has {len(labels)}")
    order = balanced_order(labels, seed)
    as_t = lambda a: torch.from_numpy(np.sort(a)).long()  # noqa: E731
    return as_t(order[:n_half]), as_t(order[n_half:2 * n_half])


def check_ks(ks, pool_size: int) -> list[int]:
    """Validate the removal sizes before any compute: distinct ints with 0 < k < pool_size."""
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
    """The k points of ``pool`` to remove (sorted indices).

    ``"memorised"``: the k highest ``scores`` (``scores[i]`` belongs to ``pool[i]``; ties broken by position).
    ``"random"``: a prefix of a permutation of ``pool`` fixed by ``seed`` -- so the sets are nested in k and
    reproducible; the memorised sets are nested too.
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


# ----------------------------------------------------------------------------- limiting alignment (Eq. 3)
def lambda_config(cfg: TrainConfig, lam: float) -> TrainConfig:
    """``cfg`` with the Eq. 3 regulariser of strength ``lam`` around its objective. ``lam == 0`` returns ``cfg``
    itself (the same loss), so the unregularised encoders are shared with the removal experiment's cache."""
    if not 0 <= lam < 1:
        raise ValueError(f"lambda must be in [0, 1), got {lam} (lambda = 1 drops the SSL loss entirely)")
    if lam == 0:
        return cfg
    return replace(cfg, objective="aligned",
                   objective_kw={"base": cfg.objective, "lam": float(lam), "base_kw": dict(cfg.objective_kw)})


# ----------------------------------------------------------------------------- the encoders' jobs
def ssl_job(name: str, cfg: TrainConfig, data, idx, *, cache, force: bool = False):
    """The job of an SSL encoder (no labels) trained on ``data[idx]`` (``train.encoder_job``), for the plan."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    return encoder_job(cfg, data.images[idx], None, idx, cache=cache, data_id=f"{data.name}/{data.split}", name=name,
                       force=force)


# ----------------------------------------------------------------------------- scoring and probing
def f_scores(cache, fs, gs, data, f_idx, bank, *, n_pairs: int, rep: str, device, force: bool = False) -> dict:
    """SSLMem of every training point of f (seeds of f and g averaged; cached): ``{"raw", "m"}`` with ``m``
    normalised by its range over these points (appendix A)."""
    from memlab.metrics.sslmem import cached_scores, normalized
    res = cached_scores(cache, fs, gs, data, data, {"S_C": torch.as_tensor(f_idx)}, bank, n_pairs=n_pairs,
                        rep=rep, device=device, force=force)
    layer = fs[0].encoder.layer_names[-1]
    return {"raw": res["S_C"][layer]["raw"], "m": normalized(res, layer)["S_C"]}


def pair_scores(cache, fs, gs, data, f_idx, g_idx, bank, *, n_pairs: int, rep: str, device,
                force: bool = False) -> dict:
    """SSLMem of every training point of a disjoint-halves pair, each point against the encoder that did not
    see it: ``m(x) = L_align(g, x) - L_align(f, x)`` on f's half and ``L_align(f, x) - L_align(g, x)`` on g's.

    Returns ``{"raw", "m", "raw_f", "raw_g", "offset"}``; ``m`` is normalised by the range over both halves.
    A constant gap between the encoders (one aligns *every* image better by c) adds +c to one half and -c
    to the other, so it cancels in the mean over both halves; f's half alone would report c as memorisation.
    ``offset`` = (mean raw_f - mean raw_g) / 2 is that gap. Use this mean to compare memorisation across
    recipes (lambda, epsilon); the removal ranking needs f's half only (``f_scores``)."""
    from memlab.metrics.sslmem import normalize_scores
    raw_f = f_scores(cache, fs, gs, data, f_idx, bank, n_pairs=n_pairs, rep=rep, device=device, force=force)["raw"]
    raw_g = f_scores(cache, gs, fs, data, g_idx, bank, n_pairs=n_pairs, rep=rep, device=device, force=force)["raw"]
    raw = torch.cat([raw_f, raw_g])
    return {"raw": raw, "m": normalize_scores(raw), "raw_f": raw_f, "raw_g": raw_g,
            "offset": float(raw_f.mean() - raw_g.mean()) / 2}


def probe_accuracy(cache, trained: Trained, tasks: dict, *, device, max_iter: int = 200, force: bool = False) -> dict:
    """Linear-probe test accuracy of ``trained``'s pooled representation on each downstream task
    ``{name: (x_train, y_train, x_test, y_test)}`` (uint8 images, normalised with the encoder's own training
    constants; ``probes.linear_probe`` with ``max_iter`` L-BFGS iterations). Cached per (encoder, task)."""
    from memlab.augmentation.augment import Augmentation
    from memlab.metrics.probes import extract, linear_probe
    norm = Augmentation("none", mean=trained.config.mean, std=trained.config.std).normalize
    out = {}
    for name, (xtr, ytr, xte, yte) in tasks.items():
        key = {"encoder": trained.key, "task": name, "data": fingerprint(xtr, ytr, xte, yte), "rep": "pooled",
               "max_iter": max_iter}

        def run(xtr=xtr, ytr=ytr, xte=xte, yte=yte):
            ftr = extract(trained.encoder, xtr, norm, device=device)
            fte = extract(trained.encoder, xte, norm, device=device)
            return {"accuracy": float(linear_probe(ftr, ytr, fte, yte, max_iter=max_iter, device=device))}

        out[name] = float(cache.get_or_compute("probe", key, run, force=force)["accuracy"])
    return out


# ----------------------------------------------------------------------------- summaries and claims
def mean_sd(df: pd.DataFrame, by: list, value: str) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for one seed) and count of ``value`` per group."""
    g = df.groupby(by, sort=False)[value]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def removal_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Per downstream task: probe accuracy averaged over k (> 0) and seeds for each strategy, and
    ``gap = random - memorised`` (positive: removing memorised points costs more)."""
    d = df[df.k > 0]
    t = d.groupby(["downstream", "strategy"]).accuracy.mean().unstack("strategy")
    missing = [s for s in STRATEGIES if s not in t]
    if missing:
        raise ValueError(f"removal results lack strategies {missing}")
    t["gap"] = t["random"] - t["memorised"]
    return t.reset_index()


def dp_unavailable() -> str | None:
    """``None`` when opacus can be imported; otherwise the message telling how to install it (the notebook
    prints it, skips its DP section and runs everything else)."""
    from memlab.engine.dp import require_opacus
    try:
        require_opacus()
    except ImportError as e:
        return f"{e}\nThe differential-privacy section is skipped; everything else runs."
    return None
