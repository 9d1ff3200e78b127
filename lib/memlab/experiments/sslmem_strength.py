"""How strong is notebook 02's evidence? Each f/g seed alone, the offset-free design, and effect versus compute.

The claim m(S_C) > m(S_S) (SSLMem paper Table 2) is a one-sided Welch test over per-point scores whose noise
comes from the views drawn and from the seeds of f and g; averaging the alignment over seeds (the expectations
of Eq. 2) shrinks the second part. At laptop scale the effect is small (Cohen's d about 0.15), so

- ``seed_table`` tests the claim with each f/g seed pair alone and with the first k seeds averaged, from the
  per-seed alignments the scorer keeps (``metrics.sslmem.sslmem_scores``: no extra forward pass), and
  ``seeds_needed`` reads off how many seeds the profile needs;
- the same table tests Table 16's "f memorises S_C, g memorises S_I" in its offset-free form: each encoder's
  alignment advantage on its own training points, L_g - L_f on S_C and L_f - L_g on S_I, is on average > 0
  exactly when m(S_C) > m(S_I). A common f/g offset c shifts both subsets' raw scores by c, so the one-sided
  Welch test of S_C against S_I holds it out of the mean and of the variance (pooling the two halves into one
  sample and testing it against 0 would keep c out of the mean only: its variance grows by c^2);
- ``d_trend`` fits a cell's Cohen's d against training epochs (its snapshots; ``metrics.trend``), with the
  claim's own bar written as a d (``stats.welch_d_threshold``), for Table 1 cells that do not pass yet.

Raw scores are used throughout: the normalisation divides every score of a pair by one positive range, which
changes neither t nor d.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from memlab.metrics.stats import cohens_d, cohens_d_se, welch, welch_d_threshold
from memlab.metrics.trend import effect_trend


def raw_per_seed(results: dict, subset: str, layer: str) -> np.ndarray:
    """Raw SSLMem of ``subset``'s points under each f/g seed pair alone: float (S, N), row s =
    L_align(g_s) - L_align(f_s) (``cached_sslmem`` output; f and g seeds paired by position). Raises ValueError
    when f and g have different numbers of seeds."""
    r = results[subset][layer]
    af, ag = np.asarray(r["align_f_each"], dtype=float), np.asarray(r["align_g_each"], dtype=float)
    if af.shape != ag.shape:
        raise ValueError(f"per-seed SSLMem pairs f and g seeds by position; got {af.shape[0]} f and "
                         f"{ag.shape[0]} g seeds")
    return ag - af


def seed_table(results: dict, layer: str, seeds) -> pd.DataFrame:
    """One row per design: each f/g seed pair alone ("seed s alone"), then the first k seeds averaged
    (k = 2..S; k = S is the notebook's main claim). Columns: "f/g seeds", "n seeds", the Welch test of
    m(S_C) > m(S_S) ("d C>S", "t C>S", "p C>S") and, when S_I was scored, the own-point test, the Welch test of
    m(S_C) > m(S_I) ("d own", "t own", "p own"; module docstring). ``seeds``: the seed labels, in the scorer's
    order."""
    seeds = list(seeds)
    each = {k: raw_per_seed(results, k, layer) for k in ("S_C", "S_S", "S_I") if k in results}
    designs = [(f"seed {s} alone", [i]) for i, s in enumerate(seeds)]
    designs += [(f"seeds {', '.join(map(str, seeds[:k]))} averaged", list(range(k))) for k in range(2, len(seeds) + 1)]
    rows = []
    for name, rows_ in designs:
        m = {k: v[rows_].mean(0) for k, v in each.items()}
        w = welch(m["S_C"], m["S_S"])
        row = {"f/g seeds": name, "n seeds": len(rows_), "d C>S": w["d"], "t C>S": w["t"], "p C>S": w["p"]}
        if "S_I" in m:
            o = welch(m["S_C"], m["S_I"])
            row.update({"d own": o["d"], "t own": o["t"], "p own": o["p"]})
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_needed(table: pd.DataFrame, alpha: float, column: str = "p C>S") -> int | None:
    """The fewest seeds k such that every design of ``seed_table``'s output with k or more seeds passes
    (``column`` < alpha): 1 only when every seed passes alone; None when the design with all seeds fails."""
    passes = table[column] < alpha
    need = None
    for k in sorted(table["n seeds"].unique(), reverse=True):
        if not passes[table["n seeds"] >= k].all():
            break
        need = int(k)
    return need


def d_point(raw_c, raw_s) -> dict:
    """Cohen's d of m(S_C) > m(S_S) with its standard error and sample sizes: {"d", "se", "n_c", "n_s"}."""
    c, s = np.asarray(raw_c, dtype=float), np.asarray(raw_s, dtype=float)
    d = cohens_d(c, s)
    return {"d": d, "se": cohens_d_se(d, len(c), len(s)), "n_c": len(c), "n_s": len(s)}


def d_trend(points: pd.DataFrame, alpha: float, passed: bool):
    """``metrics.trend.Trend`` of Cohen's d of m(S_C) > m(S_S) against epochs.

    ``points``: one row per snapshot with "epoch", "d", "se", "n_c", "n_s" (``d_point``); the last row is the
    claim's own measurement. The threshold is the d that the claim's one-sided test at ``alpha`` needs with the
    last row's sample sizes (``welch_d_threshold``); ``passed``: whether the claim's test passed there."""
    last = points.iloc[-1]
    thr = welch_d_threshold(int(last["n_c"]), int(last["n_s"]), alpha)
    return effect_trend(points["epoch"], points["d"], points["se"], threshold=thr, passed_at_max=passed,
                        unit="epochs")
