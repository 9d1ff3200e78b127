"""Notebook 02's main f/g pair, scored: the per-point SSLMem table, the subset tests, Figs. 1, 2, 5, the planted
atypical points and the paper's claims on them (SSLMem paper §3-4, Tables 2 and 16, appendix A).

``PairScores`` scores the scored points of every subset once (``scoring.cached_sslmem``), normalises them over
the reference set of ``normalize_over`` (``metrics.sslmem.normalised_sslmem``), and turns them into each section's
table (written to the report and returned for display) and figure.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from memlab.augmentation.augment import ViewBank
from memlab.data.splits import balanced_subset
from memlab.experiments.scoring import cached_sslmem, probe_accuracy
from memlab.experiments.sslmem import TrainedPair
from memlab.experiments.sslmem_strength import seed_table, seeds_needed
from memlab.io import plots
from memlab.metrics.sslmem import REFERENCE, SUBSETS, normalised_sslmem, reference_label
from memlab.metrics.stats import subset_table, summary
from memlab.streams import SplitSeed

ATYPICAL_KINDS = ("all", "rare_variant", "corruption", "flipped_label")   # data.synthetic's planted kinds


def fraction_above(m: dict, thresholds) -> pd.DataFrame:
    """Fig. 5's table: a "threshold" column and, per subset of ``m`` ({subset: (N,) scores}), the fraction of its
    points whose score is strictly above each threshold."""
    return pd.DataFrame({"threshold": thresholds, **{k: [(v > t).float().mean().item() for t in thresholds]
                                                    for k, v in m.items()}})


def planted_auc(candidates: list, planted: dict, scores: np.ndarray) -> tuple[list, dict]:
    """How well ``scores`` (one per candidate) rank the planted atypical candidates above the typical ones.

    ``candidates``: the candidates' global indices; ``planted``: {global index: kind} of the planted points
    (``data.synthetic``). For "all" kinds, then each kind alone (the other kinds left out), the ROC AUC of the
    planted candidates against the typical ones; a kind with no planted, or only planted, candidates is skipped.
    Returns (rows {"atypical kind", "n atypical", "n typical", "ROC AUC"}, {kind: (fpr, tpr, auc)})."""
    rows, curves = [], {}
    for kind in ATYPICAL_KINDS:
        y = np.array([(i in planted) and (kind == "all" or planted[i] == kind) for i in candidates])
        keep = np.array([(i not in planted) or (kind == "all" or planted[i] == kind) for i in candidates])
        if y.sum() == 0 or y.sum() == keep.sum():
            continue
        auc = roc_auc_score(y[keep], scores[keep])
        fpr, tpr, _ = roc_curve(y[keep], scores[keep])
        curves[kind] = (fpr, tpr, auc)
        rows.append({"atypical kind": kind, "n atypical": int(y.sum()), "n typical": int((~y & keep).sum()),
                     "ROC AUC": auc})
    return rows, curves


class PairScores:
    """SSLMem of the main pair's scored points and everything computed from them."""

    def __init__(self, pair: TrainedPair):
        self.pair, self.p, self.report = pair, pair.p, pair.S.report
        self.data, self.fs, self.gs = pair.data, pair.fs, pair.gs
        self.layer = self.fs[0].encoder.layer_names[-1]
        self.measuring = self.fs[0].measuring(self.p.measure_aug)
        self.bank = ViewBank(self.measuring, 2 * self.p.view_pairs, seed=self.p.split_seed)
        self.ref_set = REFERENCE if self.p.normalize_over == "S_C+S_S" else self.p.normalize_over

    def score(self, fs, gs, subsets: dict, n_pairs: int, bank: ViewBank | None = None) -> dict:
        """``cached_sslmem`` of ``subsets`` under (fs, gs) with ``n_pairs`` view pairs of ``bank`` (default: the
        pair's own, of its measuring augmentation), in this notebook's representation."""
        return cached_sslmem(self.pair.S.cache, fs, gs, self.data.train, self.data.test, subsets, bank or self.bank,
                             n_pairs=n_pairs, rep=self.p.representation, device=self.pair.S.device, force=self.p.force)

    @cached_property
    def results(self) -> dict:
        """{subset: {layer: {align_f, align_g, raw}}} of every scored point, K = ``view_pairs``."""
        return self.score(self.fs, self.gs, self.data.scored, self.p.view_pairs)

    @cached_property
    def m(self) -> dict:
        """Normalised SSLMem per subset: {subset: (N_s,) float32}."""
        return normalised_sslmem(self.results, self.ref_set, layer=self.layer)

    @cached_property
    def reference(self) -> str:
        """The reference set of the normalisation, e.g. "S_C u S_S"."""
        return reference_label(self.results, self.ref_set)

    def raw(self, subset: str) -> torch.Tensor:
        """The raw SSLMem (alignment-loss units) of ``subset``'s scored points, float32 (N,)."""
        return self.results[subset][self.layer]["raw"]

    # ------------------------------------------------------------------------- per point and per subset
    def subset_summary(self) -> pd.DataFrame:
        """Writes ``scores`` (one row per scored point: alignment on f and g, raw and normalised SSLMem) and
        ``subset_summary`` (mean, sd, median, n per subset, normalised; the raw mean in alignment-loss units)."""
        d, rows = self.data, []
        for k in SUBSETS:
            r, labels = self.results[k][self.layer], (d.test if k == "S_E" else d.train).labels
            rows += [{"subset": k, "index": idx, "label": int(labels[idx]), "align_f": float(r["align_f"][i]),
                      "align_g": float(r["align_g"][i]), "sslmem_raw": float(r["raw"][i]),
                      "sslmem": float(self.m[k][i])} for i, idx in enumerate(d.scored[k].tolist())]
        self.report.table(pd.DataFrame(rows), "scores")
        stats = summary(self.m)
        stats["mean raw"] = [float(self.raw(k).mean()) for k in stats.subset]
        stats["normalised over"] = self.reference
        self.report.table(stats, "subset_summary")
        return stats

    @cached_property
    def probe_idx(self) -> torch.Tensor:
        """The class-balanced test images of the linear probe."""
        test = self.data.test
        return balanced_subset(test.labels.numpy(), min(self.p.probe_test, len(test)),
                               self.p.split_seed + SplitSeed.PROBE_TEST)

    def probe(self, trained) -> float:
        """Linear-probe accuracy of ``trained``: fitted on f's training images, tested on ``probe_idx``."""
        d, tr = self.data, self.data.splits.f_train
        task = (d.train.images[tr], d.train.labels[tr], d.test.images[self.probe_idx], d.test.labels[self.probe_idx])
        return probe_accuracy(trained, task, device=self.pair.S.device)

    @cached_property
    def accs(self) -> list:
        """Linear-probe accuracy of each f."""
        return [self.probe(t) for t in self.fs]

    def table1_row(self) -> pd.DataFrame:
        """Writes and returns ``table1_row``: mean normalised SSLMem of S_C beside f's probe accuracy."""
        p = self.p
        t = pd.DataFrame([{"dataset": p.dataset, "method": p.method, "arch": f"{p.arch} x{p.width}", "epochs": p.epochs,
                           "mean SSLMem(S_C)": float(self.m["S_C"].mean()), "sd": float(self.m["S_C"].std()),
                           "mean raw SSLMem(S_C)": float(self.raw("S_C").mean()), "normalised over": self.reference,
                           "linear probe acc": float(np.mean(self.accs)), "f seeds": len(self.fs)}])
        self.report.table(t, "table1_row")
        return t

    @cached_property
    def tests(self) -> pd.DataFrame:
        """The hypotheses of Tables 2 and 16 (``stats.subset_table``) on the normalised scores."""
        return subset_table(self.m).assign(**{"normalised over": self.reference})

    def subset_tests(self) -> pd.DataFrame:
        """Writes ``ttests`` and Fig. 2c (the score distribution of each subset); returns the tests."""
        p = self.p
        self.report.table(self.tests, "ttests")
        fig = plots.subset_distributions(self.m, f"SSLMem per subset ({p.method}, {p.arch} x{p.width}, {p.epochs} ep.)",
                                         self.report.caption(f"{p.representation} representation, K={p.view_pairs} "
                                                             f"view pairs; SSLMem divided by its range over "
                                                             f"{self.reference}"))
        self.report.figure(fig, "fig2c_subsets")
        return self.tests

    @cached_property
    def seeds(self) -> pd.DataFrame:
        """``sslmem_strength.seed_table`` of the scored points: each f/g seed pair alone, then averaged."""
        return seed_table(self.results, self.layer, self.p.seeds)

    def seed_strength(self) -> pd.DataFrame:
        """Writes and returns ``seeds_needed``: the main claim and the offset-free Table 16 test per seed design."""
        self.report.table(self.seeds, "seeds_needed")
        return self.seeds

    # ------------------------------------------------------------------------- figures
    def alignment_figure(self) -> None:
        """Fig. 2a: each candidate's alignment loss on f against that on g, coloured by its SSLMem."""
        rc, p = self.results["S_C"][self.layer], self.p
        fig = plots.alignment_scatter(rc["align_f"], rc["align_g"], self.m["S_C"], "Candidates: alignment on f vs g",
                                      self.report.caption(f"{p.method}, {p.arch} x{p.width}"))
        self.report.figure(fig, "fig2a_alignment")

    def dynamics(self) -> pd.DataFrame:
        """Fig. 2b: at each of ``dynamics_epochs`` that was snapshotted, f's training loss, its probe accuracy and
        the mean SSLMem of ``dynamics_points`` candidates and shared points (``dynamics_pairs`` view pairs; the
        range over those points). Writes the table ``fig2b_dynamics`` and the figure; returns the table."""
        p, rows = self.p, []
        sub = {k: self.data.scored[k][:p.dynamics_points] for k in ("S_C", "S_S")}
        for e in [e for e in p.dynamics_epochs if e in self.pair.cfg.snapshot_epochs]:
            fe, ge = [t.at_epoch(e) for t in self.fs], [t.at_epoch(e) for t in self.gs]
            me = normalised_sslmem(self.score(fe, ge, sub, min(p.dynamics_pairs, p.view_pairs)), layer=self.layer)
            rows.append({"epoch": e, "loss": self.fs[0].history[e - 1]["loss"], "probe acc": self.probe(fe[0]),
                         "mean SSLMem(S_C)": float(me["S_C"].mean()), "mean SSLMem(S_S)": float(me["S_S"].mean())})
        dyn = pd.DataFrame(rows)
        self.report.table(dyn, "fig2b_dynamics")
        if len(dyn):
            curves = {"training loss (f)": dyn["loss"], "linear probe accuracy": dyn["probe acc"],
                      "mean SSLMem": {"S_C": dyn["mean SSLMem(S_C)"], "S_S": dyn["mean SSLMem(S_S)"]}}
            fig = plots.training_curves(dyn["epoch"], curves, f"Training dynamics ({p.method}, {p.arch} x{p.width})",
                                        self.report.caption())
            self.report.figure(fig, "fig2b_dynamics")
        return dyn

    def galleries(self) -> None:
        """Fig. 1: the ``gallery_k`` most and least memorised candidates, with their class and score."""
        p, train, m = self.p, self.data.train, self.m["S_C"]
        order = torch.argsort(m, descending=True)
        for name, sel in (("most", order[:p.gallery_k]), ("least", order.flip(0)[:p.gallery_k])):
            idx = self.data.scored["S_C"][sel]
            titles = [f"{train.class_names[int(train.labels[i])][:14]}\nm={float(m[j]):+.2f}"
                      for i, j in zip(idx.tolist(), sel.tolist())]
            fig = plots.gallery(train.images[idx], titles, f"The {p.gallery_k} {name} memorised candidates",
                                self.report.caption(f"{p.method}, {p.arch} x{p.width}"), ncols=min(p.gallery_k, 10))
            self.report.figure(fig, f"fig1_{name}_memorised")

    def threshold_fractions(self) -> None:
        """Fig. 5: per subset, the fraction of points whose normalised score exceeds each of 40 thresholds from 0
        to the largest score (``fraction_above``). Writes the table and the figure."""
        thr = np.linspace(0, float(max(v.max() for v in self.m.values())), 40)
        self.report.table(fraction_above(self.m, thr), "fig5_fraction_above_threshold")
        fig = plots.threshold_fraction(self.m, thr, "Fraction of points memorised above a threshold",
                                       self.report.caption())
        self.report.figure(fig, "fig5_threshold")

    # ------------------------------------------------------------------------- planted atypical points
    @cached_property
    def _auc(self) -> tuple[list, dict]:
        train = self.data.train
        if train.atypical is None:
            return [], {}
        return planted_auc(self.data.scored["S_C"].tolist(), dict(zip(train.atypical.tolist(), train.atypical_kind)),
                           self.m["S_C"].numpy())

    def atypical_auc(self) -> pd.DataFrame:
        """ROC AUC of SSLMem separating the planted atypical candidates from the typical ones (synthetic data).
        Writes ``atypical_auc`` and the ROC figure; an empty table for data without planted points."""
        if self.data.train.atypical is None:
            print("no planted atypical points in this dataset")
            return pd.DataFrame()
        rows, curves = self._auc
        if curves:
            fig = plots.roc(curves, "Does SSLMem rank planted atypical candidates first?", self.report.caption())
            self.report.figure(fig, "atypical_roc")
        table = pd.DataFrame(rows)
        self.report.table(table, "atypical_auc")
        return table

    # ------------------------------------------------------------------------- claims
    def claims(self) -> None:
        """The main pair's claims: S_C above S_S and S_E above S_I (one-sided Welch, p < alpha), the ordering
        of the subset means, and (synthetic data) planted atypical candidates ranked above typical ones."""
        p, m, report = self.p, self.m, self.report
        t = self.tests.set_index("hypothesis (H1)")
        for h in ("m(S_C) > m(S_S)", "m(S_E) > m(S_I)"):
            r = t.loc[h]
            report.claim(f"{h} (one-sided Welch, p < {p.alpha})", r["p"] < p.alpha,
                         f"means {r['mean_a']:+.4f} vs {r['mean_b']:+.4f}, t={r['t']:.2f}, p={r['p']:.2g}, "
                         f"d={r['d']:.3f}, n={int(r['n_a'])}/{int(r['n_b'])}")
        self._seed_claims()
        mid = (m["S_S"].mean(), m["S_E"].mean())
        report.claim("ordering of subset means: S_C > {S_S, S_E} > S_I",
                     m["S_C"].mean() > max(mid) and m["S_I"].mean() < min(mid),
                     ", ".join(f"{k} {float(v.mean()):+.4f}" for k, v in m.items()))
        rows, _ = self._auc
        if rows:
            a = rows[0]
            report.claim("planted atypical candidates score higher than typical ones (ROC AUC > 0.5)",
                         a["ROC AUC"] > 0.5, f"AUC {a['ROC AUC']:.3f} over {a['n atypical']} atypical / "
                                             f"{a['n typical']} typical candidates")

    def _seed_claims(self) -> None:
        """m(S_C) > m(S_S) with each seed alone (and how many seeds the profile needs), and the offset-free test of
        Table 16, m(S_C) > m(S_I) (``sslmem_strength``), with all seeds."""
        p, t = self.p, self.seeds
        alone, every = t[t["n seeds"] == 1], t.iloc[-1]
        need = seeds_needed(t, p.alpha)
        verdict = ("one seed suffices" if need == 1 else f"this profile needs {need} seeds averaged" if need
                   else f"even {len(p.seeds)} seeds averaged do not pass")
        report = self.report
        if len(p.seeds) > 1:
            report.claim(f"m(S_C) > m(S_S) with each f/g seed alone (one-sided Welch, p < {p.alpha})",
                         bool((alone["p C>S"] < p.alpha).all()),
                         "; ".join(f"{r['f/g seeds']}: d={r['d C>S']:.3f}, p={r['p C>S']:.2g}"
                                   for _, r in alone.iterrows())
                         + f"; {every['f/g seeds']}: d={every['d C>S']:.3f}, p={every['p C>S']:.2g}; {verdict}")
        if "p own" in t:
            report.claim(f"each encoder aligns its own training points better: m(S_C) > m(S_I) (one-sided Welch, "
                         f"p < {p.alpha}; L_g - L_f on S_C and L_f - L_g on S_I, Table 16 without the f/g offset)",
                         bool(every["p own"] < p.alpha),
                         f"{every['f/g seeds']}: d={every['d own']:.3f}, t={every['t own']:.2f}, p={every['p own']:.2g}"
                         "; per seed: " + ", ".join(f"p={v:.2g}" for v in alone["p own"]))

    def closing(self) -> None:
        """Print the run's settings, its headline numbers and every claim, with the wall time."""
        p = self.p
        print(f"profile {p.profile} | {p.dataset} | {p.method} / {p.arch} x{p.width} | {p.epochs} epochs | seeds "
              f"{list(p.seeds)} | K={p.view_pairs} pairs | {p.representation} | device {self.pair.S.device}")
        print(f"mean SSLMem(S_C) = {float(self.m['S_C'].mean()):+.4f}, "
              f"linear probe accuracy = {np.mean(self.accs):.3f}")
        self.report.print_claims(f"; wall time {self.pair.S.elapsed():.0f}s")
