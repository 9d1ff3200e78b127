"""Per-subset statistics of memorization scores (SSLMem Fig. 2c, Tables 2 and 16).

- ``welch``: one-sided Welch t-test of H0: mean(a) <= mean(b) (``alternative="greater"``), with Cohen's d
  (pooled-sd effect size). The paper's "effect size" column is the t statistic; both are reported.
- ``one_sample``: t-test of the mean against 0 (greater / less / two-sided).
- ``subset_table``: the paper's hypotheses for S_C, S_S, S_I, S_E as one DataFrame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st


def _arr(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)


def cohens_d(a, b) -> float:
    a, b = _arr(a), _arr(b)
    na, nb = len(a), len(b)
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / sp) if sp > 0 else float("nan")


def welch(a, b, alternative: str = "greater") -> dict:
    a, b = _arr(a), _arr(b)
    r = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return {"mean_a": a.mean(), "mean_b": b.mean(), "n_a": len(a), "n_b": len(b), "t": float(r.statistic),
            "p": float(r.pvalue), "d": cohens_d(a, b)}


def one_sample(a, alternative: str = "greater") -> dict:
    a = _arr(a)
    r = st.ttest_1samp(a, 0.0, alternative=alternative)
    sd = a.std(ddof=1)
    return {"mean_a": a.mean(), "mean_b": 0.0, "n_a": len(a), "n_b": 0, "t": float(r.statistic),
            "p": float(r.pvalue), "d": float(a.mean() / sd) if sd > 0 else float("nan")}


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
    """One row per alternative hypothesis: means, n, Welch t, one-sided p-value, Cohen's d."""
    rows = []
    for label, a, b, alt in hypotheses:
        if a not in scores or (b is not None and b not in scores):
            continue
        r = welch(scores[a], scores[b], alt) if b else one_sample(scores[a], alt)
        rows.append({"hypothesis (H1)": label, **r})
    return pd.DataFrame(rows)


def summary(scores: dict) -> pd.DataFrame:
    """Mean, sd, median and n of each subset's scores."""
    return pd.DataFrame([{"subset": k, "mean": _arr(v).mean(), "sd": _arr(v).std(ddof=1),
                          "median": np.median(_arr(v)), "n": len(_arr(v))} for k, v in scores.items()])
