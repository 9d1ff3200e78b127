"""Notebook 02's cross-method tables (SSLMem paper Tables 1/15, 7-9, 11-13, Fig. 9): one f/g pair per cell.

``CrossMethod`` runs each selected table's cells (``grid.run_cell``: the encoders the plan trained, scored on
``grid_points`` candidates and shared points with ``grid_view_pairs`` view pairs, each measured with its own
training augmentation, normalised over the cell's S_C u S_S), writes each table and figure, and checks the claims
on them. Each table's cells are run once, when the table is first asked for.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
import torch

from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.data.splits import balanced_subset
from memlab.experiments.grid import CellResult, run_cell
from memlab.experiments.scoring import cached_sslmem
from memlab.experiments import sslmem_dejavu
from memlab.experiments.sslmem_strength import d_point, d_trend
from memlab.experiments.sslmem_scores import PairScores
from memlab.io import plots
from memlab.metrics.rankings import agreement, feldman, square
from memlab.metrics.sslmem import normalised_sslmem
from memlab.metrics.stats import welch
from memlab.streams import SplitSeed

ABLATION_COLUMNS = ("mean SSLMem(S_C)", "mean SSLMem(S_S)", "p(S_C > S_S)", "d", "mean raw SSLMem(S_C)",
                    "mean raw SSLMem(S_S)", "normalised over", "linear probe acc")


def cell_row(res: CellResult, **extra) -> dict:
    """A cell's row: ``extra``, its summary (``CellResult.summary``) and the one-sided Welch test of S_C > S_S
    on the normalised scores (p-value and Cohen's d)."""
    t = welch(res.m["S_C"], res.m["S_S"])
    return {**extra, **res.summary(), "p(S_C > S_S)": t["p"], "d": t["d"]}


def ranking_kind(name: str) -> str:
    """The kind of a ranking of Tables 12-13: "Feldman", "supervised" or "SSL"."""
    return "Feldman" if name.startswith("Feldman") else ("supervised" if name.startswith("supervised") else "SSL")


class CrossMethod:
    """The cross-method tables of notebook 02, over the main pair's scores ``main`` (``PairScores``)."""

    def __init__(self, main: PairScores):
        self.main, self.p, self.report = main, main.p, main.report
        self.S, self.data = main.pair.S, main.data
        self.tables = {}   # tables the claims read (Table 4)

    def run(self, spec: dict, data_key: tuple | None = None, snapshots: bool = True) -> CellResult:
        """``grid.run_cell`` of ``spec`` on the data of ``data_key`` (default: the cell's dataset, the pair's pool
        sizes). ``snapshots``: train with the main pair's snapshot list where the cell repeats its recipe."""
        p = self.p
        train, test, splits, scored = self.data.get(*(data_key or (spec["dataset"],)))
        sub = {k: scored[k][:p.grid_points] for k in ("S_C", "S_S")}
        probe_idx = self.probe_idx(test)
        return run_cell(spec, train, test, splits, sub, cache=self.S.cache, device=self.S.device,
                        view_pairs=p.grid_view_pairs, rep=p.representation, probe_idx=probe_idx, bank_seed=p.split_seed,
                        snapshot_epochs=p.snapshots(spec) if snapshots else (), force=p.force, progress=False)

    def probe_idx(self, test) -> torch.Tensor:
        """The ``probe_test`` class-balanced test images of a cell's probe (also Table 4's public set)."""
        p = self.p
        return balanced_subset(test.labels.numpy(), min(p.probe_test, len(test)), p.split_seed + SplitSeed.PROBE_TEST)

    @cached_property
    def grid(self) -> dict:
        """{label: CellResult} of Table 1's cells."""
        return {c["label"]: self.run(c) for c in self.p.grid_specs}

    @cached_property
    def supervised(self) -> dict:
        """{epochs: CellResult} of Table 11's supervised encoders."""
        return {spec["epochs"]: self.run(spec) for spec in self.p.supervised_specs}

    def table1(self) -> pd.DataFrame:
        """Table 1: one row per cell (``cell_row``), and the scatter of mean SSLMem(S_C) against probe accuracy."""
        if not self.grid:
            return pd.DataFrame()
        t = pd.DataFrame([cell_row(r) for r in self.grid.values()])
        self.report.table(t, "table1_methods")
        if len(t) > 1:
            p = self.p
            fig = plots.scatter(t["mean SSLMem(S_C)"], t["linear probe acc"],
                                "Memorisation vs downstream accuracy across methods", "mean SSLMem(S_C)",
                                "linear probe accuracy",
                                self.report.caption(f"{p.grid_view_pairs} view pairs, seeds {list(p.grid_seeds)}"),
                                note=", ".join(t["cell"]))
            for _, r in t.iterrows():
                fig.axes[0].annotate(r["cell"], (r["mean SSLMem(S_C)"], r["linear probe acc"]), fontsize=7)
            self.report.figure(fig, "table1_memorisation_vs_accuracy")
        return t

    @cached_property
    def trends(self) -> dict:
        """{label: (points, Trend)} for each Table 1 cell with 2 or more "snapshot_epochs": Cohen's d of
        m(S_C) > m(S_S) at each snapshot pair (the first ``grid_trend_points`` candidates and shared points, the
        cell's view bank) and at the trained cell (the claim's own measurement), fitted against epochs
        (``sslmem_strength.d_trend``). Writes the table ``table1_trends``."""
        p, out = self.p, {}
        for label, r in self.grid.items():
            epochs = sorted(r.spec["snapshot_epochs"])
            if len(epochs) < 2:
                continue
            train, test, _, scored = self.data.get(r.spec["dataset"])
            n = min(p.grid_trend_points, p.grid_points)
            sub = {k: scored[k][:n] for k in ("S_C", "S_S")}
            bank = ViewBank(r.fs[0].measuring(r.spec["measure_aug"]), 2 * p.grid_view_pairs, seed=p.split_seed)
            layer = r.fs[0].encoder.layer_names[-1]
            rows = []
            for e in epochs:
                res = cached_sslmem(self.S.cache, [t.at_epoch(e) for t in r.fs], [t.at_epoch(e) for t in r.gs], train,
                                    test, sub, bank, n_pairs=p.grid_view_pairs, rep=p.representation,
                                    device=self.S.device, force=p.force, progress=False)
                rows.append({"cell": label, "epoch": e, **d_point(res["S_C"][layer]["raw"], res["S_S"][layer]["raw"])})
            rows.append({"cell": label, "epoch": r.spec["epochs"],
                         **d_point(r.results["S_C"][layer]["raw"], r.results["S_S"][layer]["raw"])})
            pts = pd.DataFrame(rows)
            bad = pts.loc[~np.isfinite(pts["d"]) | ~np.isfinite(pts["se"]), "epoch"].tolist()
            if bad:  # every score equal (a collapsed encoder): d is undefined, so there is no curve to fit
                print(f"{label}: no effect-versus-compute curve, Cohen's d is undefined at epoch(s) {bad} "
                      f"(every scored point has the same SSLMem; a collapsed encoder?)")
                continue
            out[label] = (pts, d_trend(pts, p.alpha, welch(r.m["S_C"], r.m["S_S"])["p"] < p.alpha))
        if out:
            self.report.table(pd.concat([pts.assign(verdict=t.verdict, slope=t.slope, threshold=t.threshold)
                                         for pts, t in out.values()]), "table1_trends")
        return out

    def trend_figure(self) -> pd.DataFrame:
        """Effect versus compute for Table 1's claims: one panel per cell with a curve (``trends``); returns
        each cell's points with the fit's verdict."""
        if not self.trends:
            print("no Table 1 cell has 2 or more snapshot_epochs: no curve")
            return pd.DataFrame()
        p = self.p
        fig = plots.trend_panels({k: t for k, (_, t) in self.trends.items()},
                                 "Does each method's m(S_C) > m(S_S) emerge with training?", "Cohen's d, S_C vs S_S",
                                 self.report.caption(f"{p.grid_view_pairs} view pairs, {p.grid_trend_points} points "
                                                     f"per subset at snapshots, seeds {list(p.grid_seeds)}"))
        self.report.figure(fig, "table1_trends")
        return pd.concat([pts.assign(verdict=t.verdict) for pts, t in self.trends.values()])

    def table4(self) -> pd.DataFrame:
        """Table 4: SSLMem beside Déjà Vu memorisation per cell (``sslmem_dejavu.table4``), when selected."""
        if not self.p.wants("table4"):
            return pd.DataFrame()
        self.tables["table4"] = t = sslmem_dejavu.table4(self)
        return t

    def table11(self) -> pd.DataFrame:
        """Table 11: the supervised encoders' rows beside the SSL cells'."""
        if not self.supervised:
            return pd.DataFrame()
        t = pd.DataFrame([cell_row(r, kind="supervised") for r in self.supervised.values()] +
                         [cell_row(r, kind="SSL") for r in self.grid.values()])
        self.report.table(t, "table11_supervised_vs_ssl")
        return t

    @cached_property
    def agreement(self) -> pd.DataFrame | None:
        """Tables 12-13 (None when not selected): Kendall tau and top-k overlaps between the candidates' rankings
        of every cell on the pair's dataset, the longest-trained supervised encoder and Feldman's label
        memorisation of that supervised pair; written with the heatmaps and Fig. 9's galleries."""
        p, train = self.p, self.data.train
        if "rankings" not in p.tables or not self.grid:
            return None
        ranks = {k: r.m["S_C"] for k, r in self.grid.items() if r.spec["dataset"] == p.dataset}
        sup = self.supervised[max(self.supervised)]
        ranks[sup.spec["label"]] = sup.m["S_C"]
        c_idx = self.data.scored["S_C"][:p.grid_points]
        cfg = self.main.pair.cfg
        ranks["Feldman (supervised)"] = feldman(sup.fs, sup.gs, train.images[c_idx], train.labels[c_idx],
                                                Augmentation("none", mean=cfg.mean, std=cfg.std).normalize,
                                                device=self.S.device)
        agree = agreement(ranks, [k for k in p.topk if k <= len(c_idx)])
        agree["pair"] = [" - ".join(sorted((ranking_kind(a), ranking_kind(b)))) for a, b in zip(agree["a"], agree["b"])]
        self.report.table(agree, "table12_13_agreement")
        self._ranking_figures(agree, ranks, c_idx)
        return agree

    def rankings(self) -> tuple:
        """Tables 12-13 for display: the agreement of every pair of rankings, and its means per kind of pair
        (SSL - SSL, SSL - supervised, ...); nothing when the rankings are not selected."""
        a = self.agreement
        if a is None:
            return ()
        return a.round(3), a.groupby("pair")[["kendall_tau"] + [c for c in a if c.startswith("top")]].mean().round(3)

    def _ranking_figures(self, agree: pd.DataFrame, ranks: dict, c_idx) -> None:
        p, names, train = self.p, list(ranks), self.data.train
        fig = plots.heatmap(square(agree, "kendall_tau", names), "Kendall tau between memorisation rankings (S_C)",
                            self.report.caption(f"{len(c_idx)} candidates"), cbar="Kendall tau")
        self.report.figure(fig, "table12_kendall_tau")
        kbig = max(k for k in p.topk if k <= len(c_idx))
        fig = plots.heatmap(square(agree, f"top{kbig}", names), f"Top-{kbig} overlap of the most memorised candidates",
                            self.report.caption(f"chance level {kbig / len(c_idx):.2f}"), cbar="overlap fraction")
        self.report.figure(fig, "table13_topk_overlap")
        imgs, titles = [], []   # Fig. 9: the most memorised candidates of each ranking, one row each
        for n in names:
            top = torch.argsort(torch.as_tensor(ranks[n]).float(), descending=True)[:p.gallery_k]
            imgs.append(train.images[c_idx[top]])
            titles += [f"{n[:16]} #{i + 1}" for i in range(len(top))]
        fig = plots.gallery(torch.cat(imgs), titles, "Fig. 9: the most memorised candidates per method (one row each)",
                            self.report.caption(), ncols=p.gallery_k)
        self.report.figure(fig, "fig9_top_per_method")

    def ablations(self) -> pd.DataFrame:
        """Tables 7, 8, 9 as one table (``ABLATION_COLUMNS`` per variant) and one bar figure per table."""
        p, rows = self.p, []
        if "table8" in p.tables:  # the main pair (as many seeds as a cell has) measured with other augmentations
            main, n = self.main, len(p.grid_seeds)
            spec = {"label": f"{p.method}/{p.arch} (main pair)", "method": p.method, "arch": p.arch,
                    "dataset": p.dataset, "epochs": p.epochs}
            sub = {k: self.data.scored[k][:p.grid_points] for k in ("S_C", "S_S")}
            for a in p.measure_augs:
                bank = ViewBank(Augmentation(a, mean=main.pair.cfg.mean, std=main.pair.cfg.std), 2 * p.grid_view_pairs,
                                seed=p.split_seed)
                res = main.score(main.fs[:n], main.gs[:n], sub, p.grid_view_pairs, bank)
                cell = CellResult(spec, main.fs[:n], main.gs[:n], res, normalised_sslmem(res, layer=main.layer),
                                  float(np.mean(main.accs)), a)
                rows.append(self._ablation_row("8", f"measured with {a}", cell))
        for fr, spec, key in p.overlap_specs:
            rows.append(self._ablation_row("7", f"|S_S| = {fr:.0%} ({key[1]}/{key[2]}/{key[3]})",
                                           self.run(spec, key, snapshots=False)))
        for spec in p.table9_specs:
            rows.append(self._ablation_row("9", spec["label"], self.run(spec)))
        t = pd.DataFrame(rows)
        if not len(t):
            print("no ablation selected (add table7, table8 or table9 to `tables`)")
            return t
        self.report.table(t, "tables7_8_9_ablations")
        long = t.melt(id_vars=["table", "variant"], value_vars=["mean SSLMem(S_C)", "mean SSLMem(S_S)"],
                      var_name="subset", value_name="mean SSLMem")
        long["table"] = "Table " + long["table"]
        fig = plots.grouped_bars(long, "variant", "subset", "mean SSLMem", "Ablation", "mean SSLMem (normalised)",
                                 self.report.caption(f"K={p.grid_view_pairs} view pairs"), panels="table")
        for ax in fig.axes:
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        self.report.figure(fig, "tables7_8_9_ablations")
        return t

    @staticmethod
    def _ablation_row(table: str, variant: str, res: CellResult) -> dict:
        row = cell_row(res)
        return {"table": table, "variant": variant, **{k: row[k] for k in ABLATION_COLUMNS}}

    def claims(self) -> pd.DataFrame:
        """The main pair's claims (``PairScores.claims``), each Table 1 cell's S_C > S_S, and SSL methods agreeing
        more with each other than with the supervised encoder; returns (and writes) the claims table."""
        p, report = self.p, self.report
        self.main.claims()
        for k, r in self.grid.items():
            t = welch(r.m["S_C"], r.m["S_S"])
            tr = f"; {self.trends[k][1].verdict}: {self.trends[k][1].describe()}" if k in self.trends else ""
            report.claim(f"{k}: m(S_C) > m(S_S) (one-sided Welch, p < {p.alpha})", t["p"] < p.alpha,
                         f"means {t['mean_a']:+.4f} vs {t['mean_b']:+.4f}, p={t['p']:.2g}, d={t['d']:.3f}, "
                         f"probe {r.probe_acc:.3f}{tr}")
        if "table4" in self.tables:
            sslmem_dejavu.claim(report, self.tables["table4"])
        if self.agreement is not None:
            a = self.agreement
            ssl, sup = (a.loc[a["pair"] == g, "kendall_tau"] for g in ("SSL - SSL", "SSL - supervised"))
            if len(ssl) and len(sup):
                report.claim("Kendall tau between SSL methods exceeds tau between SSL and supervised",
                             ssl.mean() > sup.mean(), f"mean tau SSL-SSL {ssl.mean():.3f} (over {len(ssl)} pairs) vs "
                                                      f"SSL-supervised {sup.mean():.3f} (over {len(sup)})")
        return report.claims_table()
