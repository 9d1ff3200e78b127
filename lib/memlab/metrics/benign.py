"""The benign-memorization paper's measurements (Anagnostidis et al., ICLR 2023; methods.md section 5).

- ``normalized_invariance`` / ``layer_invariance``: I(x; q, T) of a layer q under augmentations T (section 5.2,
  Eq. 2, Fig. 6): how far apart two augmentations of x land, relative to how far apart x and other images are.
- ``mse_decomposition``: the MSE under augmentation splits exactly into an invariance and a bias term (appendix B,
  Theorem B.2).
- ``verdict``: Definition 4.1, benign or malign memorisation, with ``knn_noise`` as the tolerance of a probe
  difference.

The probes themselves (K-NN, linear, leave-one-out K-NN) are ``metrics.probes``; the network, its training sets
and its training are ``models.benign_net``, ``engine.benign_sets`` and ``engine.benign``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from memlab.models.benign_net import BenignNet
from memlab.streams import BENIGN_INVARIANCE


def normalized_invariance(base: torch.Tensor, pairs) -> torch.Tensor:
    """Per-point I(x; q, T) (section 5.2, Eq. 2) from features ``base`` = q(x) of m points (m, D) and
    ``pairs`` = [(q(T1 x), q(T2 x)), ...] over independent augmentation pairs:

        I(x) = mean_pairs ||q(T1 x) - q(T2 x)||^2  /  mean_{x' != x} ||q(x) - q(x')||^2,

    the denominator over the other m - 1 points. NaN where the denominator is 0 (collapse)."""
    base = base.double().flatten(1)
    m = base.shape[0]
    if m < 2 or not pairs:
        raise ValueError("need at least 2 points and 1 augmentation pair")
    num = torch.stack([((a.double().flatten(1) - b.double().flatten(1)) ** 2).sum(1) for a, b in pairs]).mean(0)
    sq = (base ** 2).sum(1)
    den = (m * sq + sq.sum() - 2 * base @ base.sum(0)).clamp_min(0) / (m - 1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


@torch.no_grad()
def layer_invariance(net: BenignNet, images: torch.Tensor, aug, n_pairs: int, seed: int = 0, layers=None,
                     chunk: int = 256) -> dict:
    """``{layer: float}``: the mean over the images of I(x; q_layer, T) (``normalized_invariance``, section 5.2,
    Eq. 2) with T ~ ``aug``: pair p is drawn at the hash streams ``BENIGN_INVARIANCE + 2p`` and ``+ 2p + 1`` from
    ``seed``, so every epoch measures the same pairs. ``images``: uint8 (m, 3, H, W); ``layers`` default every
    layer of ``net``. NaN points (a collapsed layer) are left out of the mean. Raises ValueError for m < 2 or
    ``n_pairs`` < 1.

    Streams over chunks of ``chunk`` images, so memory holds one chunk's features of every layer, never all m
    images x 2 ``n_pairs`` + 1 passes (16 GiB in fp32 for 1,000 images, 11 passes and every layer of a
    ResNet-18). Two passes: the first accumulates the numerators, each point's squared norm and the sum of the
    features (float64); the second the dot products with that sum, which the denominator needs."""
    device = next(net.parameters()).device
    layers = net.layer_names if layers is None else layers
    m = len(images)
    if m < 2 or n_pairs < 1:
        raise ValueError("need at least 2 points and 1 augmentation pair")
    was = net.training
    net.eval()
    num = {l: torch.zeros(m, dtype=torch.float64) for l in layers}
    sq = {l: torch.zeros(m, dtype=torch.float64) for l in layers}
    total = {}
    for s in range(0, m, chunk):
        x = images[s:s + chunk].to(device)
        idx = np.arange(s, s + len(x))
        base = net.layer_outputs(aug.normalize(x), layers)
        for l in layers:
            b = base[l].double().flatten(1).cpu()
            sq[l][s:s + len(x)] = (b ** 2).sum(1)
            total[l] = b.sum(0) if l not in total else total[l] + b.sum(0)
        for p in range(n_pairs):
            va = net.layer_outputs(aug(x, idx, seed, BENIGN_INVARIANCE + 2 * p), layers)
            vb = net.layer_outputs(aug(x, idx, seed, BENIGN_INVARIANCE + 2 * p + 1), layers)
            for l in layers:
                num[l][s:s + len(x)] += ((va[l].double().flatten(1) - vb[l].double().flatten(1)) ** 2).sum(1).cpu()
    dots = {l: torch.zeros(m, dtype=torch.float64) for l in layers}
    for s in range(0, m, chunk):
        base = net.layer_outputs(aug.normalize(images[s:s + chunk].to(device)), layers)
        for l in layers:
            dots[l][s:s + len(base[l])] = base[l].double().flatten(1).cpu() @ total[l]
    net.train(was)
    out = {}
    for l in layers:
        den = (m * sq[l] + sq[l].sum() - 2 * dots[l]).clamp_min(0) / (m - 1)
        inv = torch.where(den > 0, (num[l] / n_pairs) / den.clamp_min(1e-300), torch.full_like(den, float("nan")))
        out[l] = float(torch.nanmean(inv))
    return out


def mse_decomposition(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Appendix B, Theorem B.2, for outputs f(T_a x_i) of shape (n, B, C) and targets y_i (n, C):

        Lsuper = 1/(nB) sum_i sum_a ||f(T_a x_i) - y_i||^2
        Inv    = 1/(2 n B^2) sum_i sum_{a,b} ||f(T_a x_i) - f(T_b x_i)||^2
        Bias   = 1/n sum_i ||y_i - 1/B sum_a f(T_a x_i)||^2,   and Lsuper = Inv + Bias exactly.

    Returns ``{"mse", "inv", "bias"}`` as floats, computed in float64 (the identity then holds to ~1e-15).
    Raises ValueError for other shapes."""
    if outputs.dim() != 3 or targets.shape != (outputs.shape[0], outputs.shape[2]):
        raise ValueError(f"outputs must be (n, B, C) and targets (n, C); got {tuple(outputs.shape)}, "
                         f"{tuple(targets.shape)}")
    o, y = outputs.double(), targets.double()
    B = o.shape[1]
    mse = ((o - y[:, None]) ** 2).sum(-1).mean()
    inv = ((o[:, :, None] - o[:, None, :]) ** 2).sum(-1).sum((1, 2)).mean() / (2 * B * B)
    bias = ((y - o.mean(1)) ** 2).sum(-1).mean()
    return {"mse": float(mse), "inv": float(inv), "bias": float(bias)}


def knn_noise(p: float, n: int) -> float:
    """Two standard errors of the difference of two accuracies ~p measured on n test points:
    2 sqrt(2 p (1 - p) / n). Differences below it are "within noise"."""
    return 2.0 * math.sqrt(2.0 * p * (1.0 - p) / max(1, n))


def verdict(fit: float, probe: float, probe_init: float, fit_threshold: float = 1.0, tol: float = 0.0) -> str:
    """Definition 4.1: a memorisation (random labels fitted, fit >= fit_threshold) is *benign* when
    probing beats probing at initialisation (by more than ``tol``) and *malign* otherwise. ``fit``, ``probe`` and
    ``probe_init`` are accuracies in [0, 1]; returns "benign", "malign" or "not a memorisation (fit ...)"."""
    if fit < fit_threshold:
        return f"not a memorisation (fit {fit:.1%} < {fit_threshold:.0%})"
    return "benign" if probe > probe_init + tol else "malign"
