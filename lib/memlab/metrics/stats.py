"""Per-subset statistics of memorization scores (SSLMem Fig. 2c, Tables 2 and 16).

- ``welch``: one-sided Welch t-test of H0: mean(a) <= mean(b) (``alternative="greater"``), with Cohen's d
  (pooled-sd effect size). The paper's "effect size" column is the t statistic; both are reported.
- ``one_sample``: t-test of the mean against 0 (greater / less / two-sided).
- ``agresti_caffo_se``, ``accuracy_greater_p``: the error of a difference of two accuracies, and the one-sided z
  test built on it (probe-accuracy claims).
- ``cohens_d_se``, ``welch_d_threshold``: the standard error of d, and the d a one-sided test at alpha needs
  (effect-versus-compute curves, ``metrics.trend``).
- ``subset_table``: the paper's hypotheses for S_C, S_S, S_I, S_E as one DataFrame.

Degenerate samples never come out significant: scipy's t on two identical constant samples is rounding noise
(``[0.1] * 139`` against ``[0.1] * 693`` gives t = 8.8). So a sample with fewer than 2 points, or samples
without spread, get a defined answer and a ``note``: no difference at all (identical constants, or a constant
0 against 0) is t = 0 with p = 0.5 one-sided (1 two-sided); anything else without spread is NaN (undefined).
NaN never passes ``p < alpha``. Non-finite scores raise ValueError.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st


ALTERNATIVES = ("greater", "less", "two-sided")
NAN = float("nan")


def _arr(x, name: str = "scores") -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).ravel()
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise ValueError(f"{name} hold {bad} non-finite value(s) (NaN or inf) of {len(a)}: a statistic of them "
                         "would be meaningless; find where they came from (a diverged encoder?)")
    return a


def _constant(a: np.ndarray) -> bool:
    return len(a) > 0 and a.max() == a.min()   # exact: scipy's rounding makes such a variance tiny, not 0


def _mean(a: np.ndarray) -> float:
    return NAN if not len(a) else float(a[0]) if _constant(a) else float(a.mean())


def _null(alternative: str) -> float:
    """The p-value of a difference of exactly 0."""
    return 1.0 if alternative == "two-sided" else 0.5


def cohens_d(a, b) -> float:
    """(mean a - mean b) / pooled sd; NaN when a sample has < 2 points or both lack spread."""
    a, b = _arr(a, "a"), _arr(b, "b")
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return NAN
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / sp) if sp > 0 and not (_constant(a) and _constant(b)) else NAN


def welch(a, b, alternative: str = "greater") -> dict:
    """Welch's t-test of mean(a) vs mean(b) (``alternative`` "greater": H1 mean a > mean b), with Cohen's d.
    a, b: 1-D float scores (any length). Returns {mean_a, mean_b, n_a, n_b, t, p, d, note}; ``note`` says why
    a degenerate input got t = 0 / p = 0.5 or NaN (see the module docstring). Raises ValueError for non-finite
    scores or an unknown alternative."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    a, b = _arr(a, "a"), _arr(b, "b")
    out = {"mean_a": _mean(a), "mean_b": _mean(b), "n_a": len(a),
           "n_b": len(b), "t": NAN, "p": NAN, "d": NAN, "note": ""}
    if len(a) < 2 or len(b) < 2:
        return {**out, "note": "fewer than 2 points in a sample: no test"}
    if _constant(a) and _constant(b):
        if a[0] == b[0]:
            return {**out, "t": 0.0, "p": _null(alternative), "note": "identical constant samples: no difference"}
        return {**out, "note": "both samples constant (no spread): the t statistic is undefined"}
    r = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return {**out, "t": float(r.statistic), "p": float(r.pvalue), "d": cohens_d(a, b)}


def one_sample(a, alternative: str = "greater") -> dict:
    """t-test of mean(a) against 0 (``alternative`` "greater": H1 mean > 0); d = mean / sd. Returns the keys of
    ``welch`` (mean_b = 0, n_b = 0). A constant sample: t = 0, p = 0.5 (one-sided) if it is all 0, else NaN."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    a = _arr(a, "a")
    out = {"mean_a": _mean(a), "mean_b": 0.0, "n_a": len(a), "n_b": 0, "t": NAN, "p": NAN,
           "d": NAN, "note": ""}
    if len(a) < 2:
        return {**out, "note": "fewer than 2 points: no test"}
    if _constant(a):
        if a[0] == 0:
            return {**out, "t": 0.0, "p": _null(alternative), "note": "constant 0: no difference from 0"}
        return {**out, "note": "constant sample (no spread): the t statistic is undefined"}
    r = st.ttest_1samp(a, 0.0, alternative=alternative)
    return {**out, "t": float(r.statistic), "p": float(r.pvalue), "d": float(a.mean() / a.std(ddof=1))}


def cohens_d_se(d: float, n_a: int, n_b: int) -> float:
    """Large-sample standard error of Cohen's d of two independent samples of n_a and n_b points (Hedges and
    Olkin, 1985): sqrt((n_a + n_b) / (n_a n_b) + d^2 / (2 (n_a + n_b))). Raises ValueError for n < 2."""
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Cohen's d needs at least 2 points per sample, got {n_a} and {n_b}")
    return float(np.sqrt((n_a + n_b) / (n_a * n_b) + d ** 2 / (2 * (n_a + n_b))))


def agresti_caffo_se(x1: float, n1: int, x2: float, n2: int) -> float:
    """Standard error of the difference of two proportions x1/n1 - x2/n2 (success counts, n >= 0), Agresti and
    Caffo (2000): each proportion smoothed to (x + 1) / (n + 2); positive even at 0% or 100%. Raises ValueError
    unless 0 <= x <= n."""
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"counts must satisfy 0 <= x <= n, got {x1}/{n1} and {x2}/{n2}")
    p1, p2 = (x1 + 1) / (n1 + 2), (x2 + 1) / (n2 + 2)
    return float(np.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2)))


def accuracy_greater_p(acc_a: float, acc_b: float, n: int) -> float:
    """One-sided p of "accuracy a exceeds accuracy b" (fractions in [0, 1], each measured on ``n`` test images): z
    = (acc_a - acc_b) / ``agresti_caffo_se``, p = P(Z > z). The error treats the two as independent samples; two
    probes tested on the same images have positively correlated errors, so there it is conservative. Raises
    ValueError as ``agresti_caffo_se``."""
    return float(st.norm.sf((acc_a - acc_b) / agresti_caffo_se(acc_a * n, n, acc_b * n, n)))


def welch_d_threshold(n_a: int, n_b: int, alpha: float) -> float:
    """The Cohen's d at which a one-sided Welch test of n_a and n_b points reaches p = ``alpha`` when the two
    samples have equal variances: t_{1-alpha, df} sqrt(1/n_a + 1/n_b), with Welch-Satterthwaite's df at equal
    variances, (1/n_a + 1/n_b)^2 / (1/(n_a^2 (n_a - 1)) + 1/(n_b^2 (n_b - 1))) (n_a + n_b - 2 when n_a = n_b). A
    claim "mean a > mean b at p < alpha" expressed as an effect size, e.g. 0.147 for 500 points each at alpha
    0.01. Raises ValueError for n < 2 or alpha outside (0, 1)."""
    if n_a < 2 or n_b < 2 or not 0 < alpha < 1:
        raise ValueError(f"need n >= 2 per sample and 0 < alpha < 1, got {n_a}, {n_b}, {alpha}")
    df = (1 / n_a + 1 / n_b) ** 2 / (1 / (n_a ** 2 * (n_a - 1)) + 1 / (n_b ** 2 * (n_b - 1)))
    return float(st.t.ppf(1 - alpha, df) * np.sqrt(1 / n_a + 1 / n_b))


# (label, a, b or None, alternative): the hypotheses of Tables 2 and 16 (H0 is the complement)
HYPOTHESES = [
    ("m(S_C) > m(S_S)", "S_C", "S_S", "greater"),
    ("m(S_C) > m(S_E)", "S_C", "S_E", "greater"),
    ("m(S_S) > m(S_I)", "S_S", "S_I", "greater"),
    ("m(S_E) > m(S_I)", "S_E", "S_I", "greater"),
    ("m(S_C) > 0", "S_C", None, "greater"),
    ("m(S_I) < 0", "S_I", None, "less"),
    ("m(S_S) != 0", "S_S", None, "two-sided"),
    ("m(S_E) > 0", "S_E", None, "greater"),
]


def subset_table(scores: dict, hypotheses=HYPOTHESES) -> pd.DataFrame:
    """Tables 2 and 16: one row per alternative hypothesis of ``hypotheses`` whose subsets are in ``scores``
    ({subset: 1-D scores}): "hypothesis (H1)" and the keys of ``welch`` (one_sample for a test against 0)."""
    rows = []
    for label, a, b, alt in hypotheses:
        if a not in scores or (b is not None and b not in scores):
            continue
        r = welch(scores[a], scores[b], alt) if b else one_sample(scores[a], alt)
        rows.append({"hypothesis (H1)": label, **r})
    return pd.DataFrame(rows)


def summary(scores: dict) -> pd.DataFrame:
    """Mean, sd (ddof=1), median and n of each subset's scores ({subset: 1-D scores}), one row per subset.
    Raises ValueError for non-finite scores."""
    return pd.DataFrame([{"subset": k, "mean": _arr(v).mean(), "sd": _arr(v).std(ddof=1),
                          "median": np.median(_arr(v)), "n": len(_arr(v))} for k, v in scores.items()])
