"""Effect versus compute: is a claim that fails at laptop scale on its way to the paper's result?

A claim's statistic (Cohen's d of m(S_C) - m(S_S), a mean Delta-LayerMem, a UnitMem difference, ...) is measured
at three or more compute points inside the budget (epochs, training images or CPU-minutes), each with its standard
error. ``effect_trend`` fits the statistic linearly in log2(compute) by weighted least squares (weights 1/se^2),
gives the fit's 95% confidence band, and extrapolates where the fitted line reaches the claim's threshold.

The verdict, from the numbers:

- ``holds``: the claim's own test passes at the largest compute point (the caller's test, e.g. Welch p < alpha);
- ``trend agrees, not yet significant``: it does not pass yet, but the slope points the paper's way with
  one-sided p < ``alpha_trend`` (z = slope / se(slope));
- ``fails``: neither.

Points taken from one run's snapshots (UnitMem over epochs) share a network, so they are not independent and the
band is optimistic; separate trainings per point give an honest one. A student then sees the claim emerge (or
not) instead of a bare FAIL. Thresholds are the claim's own: this module
never moves them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

HOLDS, AGREES, FAILS = "holds", "trend agrees, not yet significant", "fails"
BAND_Z = 1.959963984540054   # 95% two-sided normal quantile of the fit's confidence band


@dataclass(frozen=True)
class Trend:
    """The fitted trend of one claim statistic against compute (see the module docstring).

    ``x`` (n,) compute points, ascending, in ``unit``; ``y`` (n,) the statistic; ``se`` (n,) its standard errors.
    ``slope`` is per doubling of compute. ``crossing`` is the compute at which the fitted line reaches
    ``threshold`` (may be extrapolated far beyond ``x``); None when the slope points away from the paper."""
    x: np.ndarray
    y: np.ndarray
    se: np.ndarray
    unit: str
    threshold: float
    direction: int
    intercept: float
    slope: float
    slope_se: float
    slope_p: float
    crossing: float | None
    verdict: str
    cov: np.ndarray   # (2, 2) covariance of (intercept, slope), for the band

    def fitted(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fit, lower, upper) of the 95% confidence band of the fitted line at compute ``x`` (array)."""
        t = np.log2(np.asarray(x, dtype=float))
        fit = self.intercept + self.slope * t
        var = self.cov[0, 0] + 2 * t * self.cov[0, 1] + t ** 2 * self.cov[1, 1]
        half = BAND_Z * np.sqrt(np.maximum(var, 0))
        return fit, fit - half, fit + half

    def describe(self) -> str:
        """One line for a claim's detail: the statistic per point, the slope and the crossing."""
        pts = ", ".join(f"{y:.3g} at {x:g}" for x, y in zip(self.x, self.y))
        side = ">" if self.direction > 0 else "<"
        if self.crossing is None:
            cross = "the trend points away from the paper"
        elif self.crossing < self.x[0]:   # the fit is past the threshold at every point: the claim's own test decides
            cross = f"the fit is past {self.threshold:.3g} over the whole range (crossing at {self.crossing:.3g} {self.unit})"
        elif self.crossing <= self.x[-1]:
            cross = f"the fit reaches {self.threshold:.3g} at {self.crossing:.3g} {self.unit}"
        elif self.crossing <= FAR * self.x[-1]:
            cross = (f"the fit reaches {self.threshold:.3g} at about {self.crossing:.3g} {self.unit} "
                     f"({self.crossing / self.x[-1]:.1f}x the largest point, extrapolated)")
        else:   # a nearly flat fit: its crossing says only "not within any budget"
            cross = f"the fit would reach {self.threshold:.3g} only beyond {FAR:g}x the largest point (nearly flat)"
        return (f"{pts} {self.unit}; slope {self.slope:+.3g} per doubling (one-sided p {self.slope_p:.3g}); "
                f"claim needs {side} {self.threshold:.3g}; {cross}")


FAR = 1000   # crossings beyond this multiple of the largest compute point are reported as out of reach


def _fit(x, y, se) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of y on [1, log2 x]: coefficients (2,) and their covariance (2, 2)."""
    X = np.stack([np.ones(len(x)), np.log2(x)], 1)
    w = 1.0 / np.asarray(se, dtype=float) ** 2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    return cov @ (X.T @ (w * y)), cov


def effect_trend(x, y, se, *, threshold: float, passed_at_max: bool, direction: int = 1,
                 alpha_trend: float = 0.05, unit: str = "epochs") -> Trend:
    """Fit a claim statistic against compute and give its verdict (module docstring).

    ``x``: compute points (n >= 3, distinct, > 0; sorted here). ``y``, ``se``: the statistic and its standard
    error at each (se > 0, finite). ``threshold``: the value the paper's claim needs (0 for a sign claim);
    ``direction`` +1 when the claim needs the statistic above it, -1 below. ``passed_at_max``: whether the claim's
    own test passes at the largest compute point. Raises ValueError for fewer than 3 points, repeated or
    non-positive compute, or a non-positive or non-finite standard error."""
    x, y, se = (np.asarray(v, dtype=float) for v in (x, y, se))
    if not (x.shape == y.shape == se.shape) or x.ndim != 1:
        raise ValueError(f"x, y and se must be 1-D of one length, got {x.shape}, {y.shape}, {se.shape}")
    if len(x) < 3:
        raise ValueError(f"a trend needs at least 3 compute points, got {len(x)}: add budget points")
    if np.any(x <= 0) or len(np.unique(x)) != len(x):
        raise ValueError(f"compute points must be distinct and > 0, got {x.tolist()}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError(f"the statistic and its standard errors must be finite with se > 0, got y={y}, se={se}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    order = np.argsort(x)
    x, y, se = x[order], y[order], se[order]
    (a, b), cov = _fit(x, y, se)
    b_se = float(np.sqrt(cov[1, 1]))
    p = float(stats.norm.sf(direction * b / b_se))
    crossing = None
    if direction * b > 0:
        crossing = float(2 ** ((threshold - a) / b))
    verdict = HOLDS if passed_at_max else AGREES if p < alpha_trend else FAILS
    return Trend(x, y, se, unit, float(threshold), direction, float(a), float(b), b_se, p, crossing, verdict, cov)
