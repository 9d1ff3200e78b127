"""Notebook 02's intuition toys (SSLMem paper, Wang et al. ICLR 2024, appendix D.3, Figs. 10 and 11).

Two tiny contrastive problems, each trained in seconds on a CPU, that show why m(x) = E_g L_align(g, x) -
E_f L_align(f, x) (methods.md section 2) is large for outliers: f trains on S u {x}, g on S without x. Where the
augmentation set Aug(x) overlaps those of other training points, g is held aligned there anyway and m(x) ~ 0;
where it overlaps none, only f is asked to map Aug(x) to one representation and m(x) > 0.

- Fig. 10 (``figure10``): 1-D inputs, two clusters of evenly spaced points; x is an inlier inside a cluster (a)
  or an outlier in the gap between the clusters (b). Plots f's and g's representation over the input.
- Fig. 11 (``figure11``): 2-D inputs, two latent classes, each a Gaussian cluster plus one outlier; f with the
  outliers, g without. Heatmaps of L_align(f, .), L_align(g, .) and their difference over the plane.

Encoders are MLPs R^d -> R^1 (two tanh layers of ``HIDDEN`` units) whose output is an angle theta (radians): the
one-dimensional representation lives on the unit circle, u(theta) = (cos theta, sin theta), because SSLMem and
NT-Xent both L2-normalise the representation and a normalised R^1 would only keep its sign. They train with the
library's InfoNCE (``objectives.simclr.nt_xent``, temperature ``TEMPERATURE``) on two Gaussian-jitter views of every
training point per step (full batch, Adam), all 2E or 3E encoders of a figure in one batched pass. The alignment
distance d = ||u(theta') - u(theta'')|| = 2 |sin((theta' - theta'') / 2)| is the SSLMem distance of unit vectors
(0 to 2); L_align averages it over K fixed view pairs, the same for f and g. f_i and g_i share initial weights
and training jitter (common random numbers, as ``pair_seeds`` in the main pair); the expectations over A average
over i = 1..E. Everything is drawn from ``toy_seed`` (``streams.SSLMemToySeed``): same seed, identical numbers.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch

from memlab.io import plots
from memlab.io.params import ParameterError
from memlab.objectives.simclr import nt_xent
from memlab.streams import SSLMemToySeed

# Encoder width, Adam learning rate, NT-Xent temperature: a high temperature weighs alignment over uniformity, the
# regime of appendix D.3 (each cluster, whose augmentation sets overlap, is mapped to about one representation).
# At 0.5 the uniformity term spreads every cluster's points over the circle instead and the 1-D toy's gap stays
# flat for g (toy_seed 0-2, 400 steps, 3 pairs: the 1-D outlier's m is -0.005 to 0.053 at temperature 0.5 and
# 0.32 to 0.38 at 2.0). The 1-D outlier sits in the gap, where g must cross from one cluster's representation to
# the other's. Appendix D.3 only says g is unconstrained at x: at x = 3.7, beyond a cluster, g saturates flat
# (L_align 0.002-0.008) while f bends to separate x from the cluster, and m(x) is about -0.19 (same seeds).
HIDDEN, LR, TEMPERATURE = 32, 0.01, 2.0
# Fig. 10: two clusters of 16 points 1/15 apart (input units), jitter sd 0.3: the augmentation sets overlap within a
# cluster, and the outlier's (0 +- 2 sd) overlaps no other; the inlier sits between two cluster points.
LINE_CLUSTERS = (torch.linspace(-2.5, -1.5, 16), torch.linspace(1.5, 2.5, 16))
LINE_INLIER, LINE_OUTLIER, LINE_JITTER = -1.97, 0.0, 0.3
# Fig. 11: two Gaussian clusters (sd PLANE_SPREAD, PLANE_N points each) and one outlier per class; heatmaps on a
# PLANE_GRID x PLANE_GRID grid over [-PLANE_LIM, PLANE_LIM]^2 (input units)
PLANE_CENTRES = ((-1.2, 0.0), (1.2, 0.0))
PLANE_OUTLIERS = ((-0.2, 1.5), (0.2, -1.5))
PLANE_N, PLANE_SPREAD, PLANE_JITTER, PLANE_LIM, PLANE_GRID = 30, 0.3, 0.3, 2.6, 53


@dataclass(frozen=True)
class ToyConfig:
    """The toys' parameters (notebook 02: ``toy_steps``, ``toy_seed``, ``toy_encoders``, ``toy_view_pairs``).
    Raises ParameterError, before any compute, for steps, encoders or view_pairs < 1 or a seed < 0."""
    steps: int = 400        # full-batch Adam steps of every encoder
    seed: int = 0           # data, weights, training jitter and measuring views (streams.SSLMemToySeed)
    encoders: int = 3       # E: f_i and g_i, i = 1..E, averaged in m(x) (the expectations over A)
    view_pairs: int = 32    # K: fixed view pairs of each L_align

    def __post_init__(self):
        for name in ("steps", "encoders", "view_pairs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"parameter 'toy_{name}' must be an integer >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError(f"parameter 'toy_seed' must be an integer >= 0, got {self.seed!r}")


# ----------------------------------------------------------------------------- encoders, training, L_align
@contextmanager
def one_thread():
    """Run on one CPU thread, then restore the caller's setting: the toys' matrices are tiny, so more threads only
    wait on each other (tens of times slower on a busy machine), and the numbers do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Encoders:
    """M independent MLPs R^d -> R^1 evaluated in one batched pass; weights (M, in, out), drawn as torch's
    nn.Linear default (uniform, +-1/sqrt(fan_in)) from ``generator``. Rows i and i + E (and i + 2E) share them."""

    def __init__(self, d: int, groups: int, e: int, generator: torch.Generator):
        self.params = []
        for fan_in, fan_out in ((d, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)):
            for shape in ((e, fan_in, fan_out), (e, 1, fan_out)):
                w = (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)
                self.params.append(w.repeat(groups, 1, 1).requires_grad_())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (M, P, d) or (P, d) inputs -> (M, P) angles theta (radians)."""
        p = self.params
        x = x.expand(p[0].shape[0], *x.shape[-2:]) if x.dim() == 2 else x
        h = torch.tanh(torch.baddbmm(p[1], x, p[0]))
        h = torch.tanh(torch.baddbmm(p[3], h, p[2]))
        return torch.baddbmm(p[5], h, p[4]).squeeze(-1)


def circle(theta: torch.Tensor) -> torch.Tensor:
    """Angles (...,) -> unit vectors (..., 2): the normalised one-dimensional representation."""
    return torch.stack([theta.cos(), theta.sin()], -1)


def train(x: torch.Tensor, masks: torch.Tensor, cfg: ToyConfig, jitter: float) -> Encoders:
    """Trains one encoder per row of ``masks`` ((M, N) bool: the points of ``x`` (N, d) it trains on) with NT-Xent
    on two jittered views (x + N(0, jitter^2 I)) of its points per step. M = groups x E; row g*E + i is the i-th
    encoder of group g, and all groups' i-th encoders share initial weights and jitter draws."""
    m, e = masks.shape[0], cfg.encoders
    gen = torch.Generator().manual_seed(cfg.seed + SSLMemToySeed.ENCODERS)
    enc = Encoders(x.shape[1], m // e, e, gen)
    opt = torch.optim.Adam(enc.params, lr=LR)
    for _ in range(cfg.steps):
        noise = (torch.randn((2, e) + tuple(x.shape), generator=gen) * jitter).repeat(1, m // e, 1, 1)
        theta = enc(torch.cat([x + noise[0], x + noise[1]], 1))               # (M, 2N)
        a, b = circle(theta[:, :len(x)]), circle(theta[:, len(x):])
        loss = sum(nt_xent(a[i][masks[i]], b[i][masks[i]], TEMPERATURE) for i in range(m))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc


@torch.no_grad()
def alignment(enc: Encoders, points: torch.Tensor, cfg: ToyConfig, jitter: float, chunk: int = 1024) -> torch.Tensor:
    """L_align(h, p) of every encoder h at every point p ((P, d)): the mean over K fixed view pairs (the same
    offsets for every point and encoder) of 2 |sin((theta' - theta'') / 2)|. Returns (M, P), in [0, 2]."""
    gen = torch.Generator().manual_seed(cfg.seed + SSLMemToySeed.VIEWS)
    off = torch.randn(2, cfg.view_pairs, points.shape[1], generator=gen) * jitter
    out = []
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        t1, t2 = (enc((p[:, None] + o[None]).reshape(-1, p.shape[1])).reshape(-1, len(p), cfg.view_pairs)
                  for o in off)
        out.append((2 * ((t1 - t2) / 2).sin().abs()).mean(-1))
    return torch.cat(out, 1)


# ----------------------------------------------------------------------------- Fig. 10: 1-D, inlier vs outlier
@dataclass
class LineToy:
    """Fig. 10's run. ``x`` (N,): S then the inlier, then the outlier; ``inputs`` (T,) and ``theta`` (3, E, T):
    the representations (radians) of f_inlier, f_outlier and g over ``inputs``; ``align`` (3, E, N); ``seconds``."""
    cfg: ToyConfig
    x: torch.Tensor
    inputs: torch.Tensor
    theta: torch.Tensor
    align: torch.Tensor
    seconds: float

    def table(self) -> pd.DataFrame:
        """Per case (inlier, outlier): x, L_align(f, x), L_align(g, x) and m(x), averaged over the E seeds."""
        rows = []
        for k, case in enumerate(("inlier", "outlier")):
            i = len(self.x) - 2 + k
            lf, lg = self.align[k, :, i].mean().item(), self.align[2, :, i].mean().item()
            rows.append({"case": case, "x": self.x[i].item(), "L_align(f, x)": lf, "L_align(g, x)": lg,
                         "SSLMem m(x)": lg - lf})
        return pd.DataFrame(rows)


@one_thread()
def line_toy(cfg: ToyConfig) -> LineToy:
    """Fig. 10: f_inlier trains on S u {inlier}, f_outlier on S u {outlier}, g on S (g = S \\ x in both cases)."""
    t0 = time.perf_counter()
    x = torch.cat([*LINE_CLUSTERS, torch.tensor([LINE_INLIER, LINE_OUTLIER])])[:, None]
    n = len(x)
    masks = torch.ones(3, n, dtype=torch.bool)
    masks[0, -1] = masks[1, -2] = False
    masks[2, -2:] = False
    e = cfg.encoders
    enc = train(x, masks.repeat_interleave(e, 0), cfg, LINE_JITTER)
    inputs = torch.linspace(-3.2, 3.2, 321)
    with torch.no_grad():
        theta = enc(inputs[:, None]).reshape(3, e, -1)
    align = alignment(enc, x, cfg, LINE_JITTER).reshape(3, e, n)
    return LineToy(cfg, x[:, 0], inputs, theta, align, time.perf_counter() - t0)


def _aligned(theta: torch.Tensor, ref: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """``theta`` turned (sign, then offset) to best match ``ref`` at the input indices ``at``: for display only,
    since NT-Xent and L_align are invariant to rotations and reflections of the circle."""
    sign = 1.0 if ((theta[at] - theta[at].mean()) * (ref[at] - ref[at].mean())).sum() >= 0 else -1.0
    return sign * theta - (sign * theta[at] - ref[at]).mean()


def figure10(cfg: ToyConfig, report) -> pd.DataFrame:
    """Fig. 10: trains the 1-D toy, draws f and g around an inlier (a) and an outlier (b), records the claim
    m(outlier) > m(inlier) and returns ``LineToy.table`` (also written as ``toy_fig10``)."""
    r = line_toy(cfg)
    t = r.table()
    report.table(t, "toy_fig10")
    at = torch.searchsorted(r.inputs, r.x[:-2])
    panels = []
    for k, case in enumerate(("inlier", "outlier")):
        f, g = r.theta[k, 0], _aligned(r.theta[2, 0], r.theta[k, 0], at)
        panels.append((f"({'ab'[k]}) x is an {case}", f, g, t.iloc[k].to_dict()))
    fig = plots.toy_line(r.inputs, panels, r.x[:-2], LINE_JITTER,
                         "Fig. 10: f (trained with x) and g (without x) around x, 1-D toy",
                         report.caption(f"toy data, not the dataset: 1-D, 2 clusters of 16 points, jitter sd "
                                        f"{LINE_JITTER}; curves: the first f/g pair of toy_seed {cfg.seed}; "
                                        f"values: mean of {cfg.encoders} f/g pairs, K={cfg.view_pairs}, "
                                        f"{cfg.steps} steps"))
    report.figure(fig, "toy_fig10_line")
    m_in, m_out = t["SSLMem m(x)"]
    report.claim("Fig. 10: an outlier x has higher SSLMem than an inlier x (1-D toy)", m_out > m_in,
                 f"m(outlier) = {m_out:.3f} vs m(inlier) = {m_in:.3f} (raw, chord units; {cfg.encoders} f/g "
                 f"pairs, {r.seconds:.1f} s)")
    return t


# ----------------------------------------------------------------------------- Fig. 11: 2-D, two classes + outliers
@dataclass
class PlaneToy:
    """Fig. 11's run. ``x`` (N, 2): the clusters' points then the 2 outliers; ``outlier`` (N,) bool; ``grid`` (G,):
    the axis of the G x G heatmaps; ``maps`` (2, G, G): L_align of f and g over the plane (row = y, column = x),
    averaged over the E seeds; ``align`` (2, E, N): L_align(f, x), L_align(g, x) per seed; ``seconds``."""
    cfg: ToyConfig
    x: torch.Tensor
    outlier: torch.Tensor
    grid: torch.Tensor
    maps: torch.Tensor
    align: torch.Tensor
    seconds: float

    @property
    def m(self) -> torch.Tensor:
        """SSLMem of every training point of f, (N,): E_g L_align(g, x) - E_f L_align(f, x) (raw, 0-2 units)."""
        return self.align[1].mean(0) - self.align[0].mean(0)

    def table(self) -> pd.DataFrame:
        """Mean L_align(f), L_align(g), m over the cluster points and over the outliers, and the smallest outlier m."""
        rows = []
        for name, sel in (("cluster points", ~self.outlier), ("outliers", self.outlier)):
            lf, lg = self.align[0].mean(0)[sel], self.align[1].mean(0)[sel]
            rows.append({"points": name, "n": int(sel.sum()), "L_align(f)": lf.mean().item(),
                         "L_align(g)": lg.mean().item(), "mean SSLMem m": self.m[sel].mean().item(),
                         "min SSLMem m": self.m[sel].min().item()})
        return pd.DataFrame(rows)


@one_thread()
def plane_toy(cfg: ToyConfig) -> PlaneToy:
    """Fig. 11: f trains on both clusters and the outliers, g on the clusters only; E seeds each."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed + SSLMemToySeed.DATA)
    pts = [torch.tensor(c) + PLANE_SPREAD * torch.randn(PLANE_N, 2, generator=gen) for c in PLANE_CENTRES]
    x = torch.cat([*pts, torch.tensor(PLANE_OUTLIERS)])
    outlier = torch.arange(len(x)) >= 2 * PLANE_N
    masks = torch.stack([torch.ones_like(outlier), ~outlier]).repeat_interleave(cfg.encoders, 0)
    enc = train(x, masks, cfg, PLANE_JITTER)
    grid = torch.linspace(-PLANE_LIM, PLANE_LIM, PLANE_GRID)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    plane = alignment(enc, torch.stack([gx, gy], -1).reshape(-1, 2), cfg, PLANE_JITTER)
    maps = plane.reshape(2, cfg.encoders, PLANE_GRID, PLANE_GRID).mean(1)
    align = alignment(enc, x, cfg, PLANE_JITTER).reshape(2, cfg.encoders, len(x))
    return PlaneToy(cfg, x, outlier, grid, maps, align, time.perf_counter() - t0)


def figure11(cfg: ToyConfig, report) -> pd.DataFrame:
    """Fig. 11: trains the 2-D toy, draws the alignment loss of f and g over the plane, records the claims (f aligns
    the outliers better than g; their SSLMem exceeds the cluster points') and returns ``PlaneToy.table``."""
    r = plane_toy(cfg)
    t = r.table()
    report.table(t, "toy_fig11")
    fig = plots.toy_plane(r.grid, r.maps, r.x, r.outlier, r.m,
                          "Fig. 11: training with outliers lowers the alignment loss where they are (2-D toy)",
                          report.caption(f"toy data, not the dataset: 2-D, 2 clusters of {PLANE_N} + 1 outlier each, "
                                         f"jitter sd {PLANE_JITTER}; mean of {cfg.encoders} f/g pairs, "
                                         f"K={cfg.view_pairs}, {cfg.steps} steps, seed {cfg.seed}"))
    report.figure(fig, "toy_fig11_plane")
    lf, lg = r.align[0].mean(0)[r.outlier], r.align[1].mean(0)[r.outlier]
    report.claim("Fig. 11: at each outlier, f (trained with it) has a lower alignment loss than g",
                 bool((lf < lg).all()),
                 "L_align f / g: " + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(lf.tolist(), lg.tolist())))
    m_out, m_in = r.m[r.outlier], r.m[~r.outlier].mean().item()
    report.claim("Fig. 11: the outliers' SSLMem is > 0 and above the cluster points' mean",
                 bool((m_out > 0).all() and (m_out > m_in).all()),
                 f"m(outliers) = {', '.join(f'{v:.3f}' for v in m_out.tolist())} vs cluster mean {m_in:+.3f} "
                 f"(raw, chord units; {r.seconds:.1f} s)")
    return t
