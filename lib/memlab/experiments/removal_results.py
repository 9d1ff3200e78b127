"""Notebook 03's results (SSLMem paper §4.3-4.6): removal (Fig. 3), limiting alignment (Eq. 3, Fig. 4) and DP-SGD
(Table 5), their summaries and the paper's claims on them.

``RemovalRun`` runs the plan (``removal.plan``) stage by stage: f and g, then -- once f's points are scored --
the encoders retrained without the removed points. Every score is ``scoring.cached_sslmem`` and every probe
``scoring.probe_accuracy`` (cached per encoder and task). Across recipes (lambda, epsilon) memorisation is
compared over both halves of a disjoint pair (``both_halves``), so a constant alignment gap between f and g
cancels. Where a claim needs more compute than the run has, ``effect_vs_compute`` measures its statistic at the
encoders' snapshots (``removal_trends``) and the claim's detail gives the trend's verdict.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch

from memlab.augmentation.augment import ViewBank
from memlab.engine.dp import load_dp
from memlab.engine.train import load_encoder
from memlab.experiments import removal_trends as trends
from memlab.experiments.removal import RemovalData, RemovalParams, plan, ssl_job
from memlab.experiments.removal_sets import STRATEGIES, kept_set, removal_set, retained
from memlab.experiments.scoring import cached_sslmem, probe_accuracy
from memlab.io import plots
from memlab.metrics.sslmem import normalised_sslmem
from memlab.metrics.stats import accuracy_greater_p


def both_halves(raw_f: torch.Tensor, raw_g: torch.Tensor) -> dict:
    """SSLMem of every training point of a disjoint-halves pair, each point against the encoder that did not see
    it: ``raw_f`` = L_align(g, x) - L_align(f, x) on f's half, ``raw_g`` = L_align(f, x) - L_align(g, x) on g's.

    Returns ``{"raw", "m", "raw_f", "raw_g", "offset"}``: ``raw`` both halves (f's first), ``m`` normalised by the
    range over both. A constant gap between the encoders (one aligns *every* image better by c) adds +c to one
    half and -c to the other, so it cancels in the mean over both halves; f's half alone would report c as
    memorisation. ``offset`` = (mean raw_f - mean raw_g) / 2 is that gap. Use this mean to compare memorisation
    across recipes (lambda, epsilon); the removal ranking needs f's half only."""
    raw = torch.cat([raw_f, raw_g])
    return {"raw": raw, "m": normalised_sslmem(raw), "raw_f": raw_f, "raw_g": raw_g,
            "offset": float(raw_f.mean() - raw_g.mean()) / 2}


def mean_sd(df: pd.DataFrame, by: list, value: str) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for one seed) and count of ``value`` per group of ``by``."""
    out = df.groupby(by, sort=False)[value].agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def removal_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Per downstream task: probe accuracy averaged over k (> 0) and seeds for each strategy, and
    ``gap = random - memorised`` (positive: removing memorised points costs more). ValueError when a strategy
    is missing."""
    t = df[df.k > 0].groupby(["downstream", "strategy"]).accuracy.mean().unstack("strategy")
    missing = [s for s in STRATEGIES if s not in t]
    if missing:
        raise ValueError(f"removal results lack strategies {missing}")
    t["gap"] = t["random"] - t["memorised"]
    return t.reset_index()


KEEP_ALPHA = 0.01   # Table 17's "matches": not significantly below f at this level (one-sided)


def keep_claim(report, keep: pd.DataFrame, n_all: int, n_test: dict) -> bool:
    """Table 17's claim: training on the n most memorised points (the largest n of ``keep``, ``RemovalRun.keep``'s
    table) matches the encoder trained on all ``n_all`` points, i.e. on no task is its mean probe accuracy
    significantly below f's (one-sided z on the difference, Agresti-Caffo standard error over each task's
    ``n_test[task]`` test images, p >= ``KEEP_ALPHA``; a binomial error only: the spread over seeds is not in it). The detail gives n random points of the same size beside it: a kept set that
    matches f only as well as random points says nothing about memorisation."""
    acc = keep.groupby(["downstream", "strategy", "n"]).accuracy.mean()
    n = int(keep.n[keep.n < n_all].max())
    parts, ok = [], True
    for t in dict.fromkeys(keep.downstream):
        full, mem, rnd = acc[t, "memorised", n_all], acc[t, "memorised", n], acc[t, "random", n]
        nt = n_test[t]
        p = accuracy_greater_p(full, mem, nt)
        ok &= p >= KEEP_ALPHA
        parts.append(f"{t}: all {full:.4f}, most memorised {mem:.4f} (p of lying below all: {p:.2g}), random {rnd:.4f}")
    report.claim(f"training on the {n} most memorised of {n_all} points matches training on all of them (Table 17: "
                 f"not significantly below on any task, one-sided p >= {KEEP_ALPHA})", ok, "; ".join(parts))
    return ok


def falls(values) -> bool:
    """Whether ``values`` fall strictly along the list (epsilon falls along the DP rows)."""
    return all(a > b for a, b in zip(values, values[1:]))


class RemovalRun:
    """Notebook 03's encoders and results: ``RemovalRun(p, S, data)`` declares the plan and trains f, g and the
    lambda and DP pairs; ``removal``, ``lambda_sweep`` and ``dp_table`` write each section's tables and figures."""

    def __init__(self, p: RemovalParams, S, data: RemovalData):
        self.p, self.S, self.d, self.report = p, S, data, S.report
        self.plan, self.jobs = plan(p, S, data)
        self.status = S.run(self.plan)
        self.tables, self.trends = {}, {}

    def loaded(self, job):
        """A job's encoder from the cache (DP jobs with their privacy accounting)."""
        load = load_dp if job.kind == "dp_encoder" else load_encoder
        return load(job, self.S.cache, self.S.device, from_cache=self.status[job.name] == "cached")

    def raw_half(self, fs, gs, data, idx, bank: ViewBank | None = None, n_pairs: int | None = None) -> dict:
        """``cached_sslmem`` of the points ``idx`` of ``data`` that ``fs`` trained on, against ``gs``, with the
        first ``n_pairs`` (default all K = ``view_pairs``) fixed view pairs of ``bank`` (default: of fs[0]'s training
        augmentation): ``{"raw", "m"}``, m normalised over these points."""
        p = self.p
        bank = bank or ViewBank(fs[0].measuring(), 2 * p.view_pairs, seed=p.split_seed)
        res = cached_sslmem(self.S.cache, fs, gs, data, data, {"S_C": torch.as_tensor(idx)}, bank,
                            n_pairs=n_pairs if n_pairs is not None else p.view_pairs, rep=p.representation,
                            device=self.S.device, force=p.force)
        layer = fs[0].encoder.layer_names[-1]
        return {"raw": res["S_C"][layer]["raw"], "m": normalised_sslmem(res, layer=layer)["S_C"]}

    def pair_sslmem(self, f, g, data, f_idx, g_idx, n_pairs: int | None = None) -> dict:
        """``both_halves`` of a disjoint pair: f's half against g, g's half against f (both with f's views; the
        first ``n_pairs`` of them, default all)."""
        bank = ViewBank(f.measuring(), 2 * self.p.view_pairs, seed=self.p.split_seed)
        return both_halves(self.raw_half([f], [g], data, f_idx, bank, n_pairs)["raw"],
                           self.raw_half([g], [f], data, g_idx, bank, n_pairs)["raw"])

    def probe(self, trained, tasks: dict) -> dict:
        """{task: linear-probe accuracy} of ``trained`` (cached)."""
        p = self.p
        return {name: probe_accuracy(trained, t, device=self.S.device, max_iter=p.probe_iters, cache=self.S.cache,
                                     name=name, force=p.force) for name, t in tasks.items()}

    def removal(self) -> tuple:
        """Fig. 3: SSLMem of f's points (figure), then per k, strategy and seed the removal set, the retrained
        encoder (the plan's second stage) and its probe accuracy on every downstream task (k = 0: f itself).
        Writes ``removal_accuracy``, ``removed_points``, ``removal_summary`` and the figure; returns, for display,
        the mean of the removed points per k and strategy, and the mean accuracy per k and task and strategy."""
        p, d, report = self.p, self.d, self.report
        fs, gs = [self.loaded(j) for j in self.jobs["f"]], [self.loaded(j) for j in self.jobs["g"]]
        sc = self.raw_half(fs, gs, d.train, d.f_pool)
        m = sc["m"]
        print(f"SSLMem of f's {len(d.f_pool)} points: mean {m.mean():.3f} (raw {sc['raw'].mean():.4f}), "
              f"{(m > 0).float().mean():.0%} positive")
        fig = plots.subset_distributions({"f's training points": m}, "SSLMem of f's training points (f and g on "
                                         "disjoint halves)", report.caption(f"{p.method}/{p.arch}, {len(p.seeds)} "
                                                                           f"seed(s), K={p.view_pairs}"))
        report.figure(fig, "sslmem_f_points")
        rows, removed, retrain = [], [], {}
        for s, f in zip(p.seeds, fs):  # k = 0: f itself, the start of both curves
            rows += [{"k": 0, "strategy": st, "seed": s, "downstream": t, "accuracy": a}
                     for st in STRATEGIES for t, a in self.probe(f, d.tasks).items()]
        for k in p.ks:  # the second stage of the plan: retrain without the removed points
            for st in STRATEGIES:
                for s in p.seeds:
                    out = removal_set(d.f_pool, m, k, st, seed=p.removal_seed + s)
                    planted = ({"planted atypical removed": int(torch.isin(out, d.train.atypical).sum())}
                               if d.train.atypical is not None else {})
                    removed.append({"k": k, "strategy": st, "seed": s,
                                    "mean SSLMem removed": float(m[torch.isin(d.f_pool, out)].mean()), **planted})
                    retrain[k, st, s] = self.plan.add(ssl_job(f"remove {k} {st} seed {s}", replace(d.cfg, seed=s),
                                                              d.train, retained(d.f_pool, out), cache=self.S.cache,
                                                              force=p.force))
        self.keep_jobs = {}   # Table 17 (keep_ns): trained in the same stage, tabulated by ``keep``
        for n in p.ns:
            for st in STRATEGIES:
                for s in p.seeds:
                    idx = kept_set(d.f_pool, m, n, st, seed=p.removal_seed + s)
                    self.keep_jobs[n, st, s] = self.plan.add(ssl_job(f"keep {n} {st} seed {s}", replace(d.cfg, seed=s),
                                                                     d.train, idx, cache=self.S.cache, force=p.force))
        self.status = self.S.run(self.plan)
        for (k, st, s), job in retrain.items():
            rows += [{"k": k, "strategy": st, "seed": s, "downstream": t, "accuracy": a}
                     for t, a in self.probe(self.loaded(job), d.tasks).items()]
        self.tables["removal"] = removal = pd.DataFrame(rows)
        report.table(removal, "removal_accuracy")
        report.table(pd.DataFrame(removed), "removed_points")
        rsum = mean_sd(removal, ["downstream", "strategy", "k"], "accuracy")
        report.table(rsum, "removal_summary")
        fig = plots.errorbar_panels(rsum, "k", "mean", "std", "strategy", "downstream", "Probe accuracy after removal",
                                    "points removed from f's training data (k)", "linear probe accuracy",
                                    report.caption(f"pre-trained on {p.dataset} ({p.n_half} points), {p.method}/"
                                                   f"{p.arch}, mean +- sd over {len(p.seeds)} seed(s)"),
                                    styles={"memorised": {"color": "#d62728"},
                                            "random": {"color": "#1f77b4", "ls": "--"}})
        report.figure(fig, "removal_accuracy")
        removed_means = pd.DataFrame(removed).groupby(["k", "strategy"]).mean(numeric_only=True).drop(columns="seed")
        accuracy = rsum.pivot_table(index="k", columns=["downstream", "strategy"], values="mean")
        return removed_means.round(3), accuracy.round(4)

    def keep(self) -> pd.DataFrame:
        """Table 17, after ``removal``: probe accuracy of the encoders retrained on only the n most memorised of f's
        points, or n random ones, for each n of ``keep_ns`` and seed, beside f itself (n = n_half). Writes
        ``keep_accuracy``, ``keep_summary`` and the figure; returns the mean accuracy per n, task and strategy (empty
        when ``keep_ns`` is [])."""
        p, d, report = self.p, self.d, self.report
        if not p.ns:
            return pd.DataFrame()
        fs = [self.loaded(j) for j in self.jobs["f"]]
        rows = [{"n": len(d.f_pool), "strategy": st, "seed": s, "downstream": t, "accuracy": a}
                for s, f in zip(p.seeds, fs) for t, a in self.probe(f, d.tasks).items() for st in STRATEGIES]
        for (n, st, s), job in self.keep_jobs.items():
            rows += [{"n": n, "strategy": st, "seed": s, "downstream": t, "accuracy": a}
                     for t, a in self.probe(self.loaded(job), d.tasks).items()]
        self.tables["keep"] = keep = pd.DataFrame(rows)
        report.table(keep, "keep_accuracy")
        ksum = mean_sd(keep, ["downstream", "strategy", "n"], "accuracy")
        report.table(ksum, "keep_summary")
        fig = plots.errorbar_panels(ksum, "n", "mean", "std", "strategy", "downstream",
                                    "Probe accuracy when training on n of f's points (Table 17)",
                                    "points f retrains on (n; the largest is f itself)", "linear probe accuracy",
                                    report.caption(f"pre-trained on {p.dataset} ({p.n_half} points), {p.method}/"
                                                   f"{p.arch}, the n most memorised or n random, mean +- sd over "
                                                   f"{len(p.seeds)} seed(s)"),
                                    styles={"memorised": {"color": "#d62728"},
                                            "random": {"color": "#1f77b4", "ls": "--"}})
        report.figure(fig, "keep_accuracy")
        return ksum.pivot_table(index="n", columns=["downstream", "strategy"], values="mean").sort_index(
            ascending=False).round(4)

    def lambda_sweep(self) -> pd.DataFrame:
        """Fig. 4: per dataset, lambda and seed, the mean SSLMem over both halves (``pair_sslmem``), its raw mean,
        the f-g offset and f's probe accuracy. Writes ``lambda_sweep``, ``lambda_summary`` and the figure; returns
        the mean of SSLMem and accuracy per lambda (rows) and metric and dataset (columns)."""
        p, rows = self.p, []
        for name, (tr, fp, gp, task) in self.d.lam_data.items():
            for lam in p.lambdas:
                for s in p.lambda_seeds:
                    f, g = (self.loaded(j) for j in self.jobs["lambda"][name, lam, s])
                    sc = self.pair_sslmem(f, g, tr, fp, gp)
                    rows.append({"dataset": name, "lambda": lam, "seed": s, "mean SSLMem": float(sc["m"].mean()),
                                 "mean raw SSLMem": float(sc["raw"].mean()), "f-g offset": sc["offset"],
                                 "accuracy": self.probe(f, {name: task})[name]})
        self.tables["lambda"] = lam_df = pd.DataFrame(rows)
        self.report.table(lam_df, "lambda_sweep")
        lsum = pd.concat([mean_sd(lam_df, ["dataset", "lambda"], v).assign(metric=v)
                          for v in ("mean SSLMem", "accuracy")])
        self.report.table(lsum, "lambda_summary")
        fig = plots.errorbar_panels(lsum, "lambda", "mean", "std", "dataset", "metric", "Limiting alignment (Eq. 3)",
                                    "lambda", "mean SSLMem / probe accuracy",
                                    self.report.caption(f"{p.method}/{p.arch}, halves of {p.lambda_n_half}, "
                                                        f"{p.lambda_epochs} epochs, mean +- sd over "
                                                        f"{len(p.lambda_seeds)} seed(s)"))
        fig.axes[0].set_ylabel("mean SSLMem (normalised)")
        fig.axes[1].set_ylabel("linear probe accuracy")
        self.report.figure(fig, "lambda_sweep")
        return lsum.pivot_table(index="lambda", columns=["metric", "dataset"], values="mean")

    def dp_table(self) -> pd.DataFrame:
        """Table 5: per epsilon (inf first), the epsilon f spent, SSLMem over both halves of the DP pair and f's
        probe accuracy on every downstream task. Writes ``dp_table5`` and the figure; an empty table when the
        DP section is off."""
        p, d, rows = self.p, self.d, []
        for eps in d.dp_epsilons:
            f, g = self.loaded(self.jobs["dp"][eps, "f"]), self.loaded(self.jobs["dp"][eps, "g"])
            sc = self.pair_sslmem(f, g, d.train, d.dp_f, d.dp_g)
            rows.append({"epsilon": eps, "epsilon spent (f)": math.inf if math.isinf(eps) else f.dp["epsilon"],
                         "mean SSLMem": float(sc["m"].mean()), "mean raw SSLMem": float(sc["raw"].mean()),
                         "f-g offset": sc["offset"], **{f"acc {k}": v for k, v in self.probe(f, d.tasks).items()}})
        self.tables["dp"] = dp = pd.DataFrame(rows)
        if len(dp):
            self.report.table(dp, "dp_table5")
            fig = plots.bars({f"eps={e:g}": v for e, v in zip(dp.epsilon, dp["mean raw SSLMem"])},
                             "Raw SSLMem under DP-SGD (Table 5)", "mean raw SSLMem of f's points",
                             self.report.caption(f"SimSiam, GroupNorm {p.dp_arch} x{p.dp_width}, {p.dp_points} "
                                                 f"points, {p.dp_epochs} epochs"))
            self.report.figure(fig, "dp_sslmem")
        return dp

    def passed(self) -> dict:
        """The claims' own tests on this run, keyed as ``removal_trends``' curves ({(claim, dataset): bool}): per
        dataset of the sweep, mean SSLMem and f's probe accuracy (means over seeds) at the largest lambda below
        those at the smallest; with DP, mean SSLMem
        and the first task's probe accuracy falling strictly along epsilon (``falls``)."""
        p, out = self.p, {}
        lm = self.tables["lambda"].groupby(["dataset", "lambda"])[["mean SSLMem", "accuracy"]].mean()
        lo, hi = min(p.lambdas), max(p.lambdas)
        for n in self.d.lam_data:
            out[trends.LAMBDA, n] = bool(lm.loc[(n, hi), "mean SSLMem"] < lm.loc[(n, lo), "mean SSLMem"])
            out[trends.LAMBDA_ACCURACY, n] = bool(lm.loc[(n, hi), "accuracy"] < lm.loc[(n, lo), "accuracy"])
        dp = self.tables["dp"]
        if len(dp):
            first = next(iter(self.d.tasks))
            out[trends.DP_SSLMEM, p.dataset] = falls(list(dp["mean SSLMem"]))
            out[trends.DP_ACCURACY, first] = falls(list(dp[f"acc {first}"]))
        return out

    def effect_vs_compute(self) -> pd.DataFrame:
        """Issue 19's effect-versus-compute curves, after ``lambda_sweep`` and ``dp_table``: each statistic at every
        snapshot epoch (``removal_trends.effect_vs_compute``), fitted against log2(epochs) with the claim's own test
        at the last epoch (``passed``); ``claims`` appends the verdicts. Writes ``effect_vs_compute`` and one figure
        per claim; returns the table (empty without snapshots)."""
        self.tables["trend"] = t = trends.effect_vs_compute(self)
        self.trends = trends.fit_trends(t, self.passed())
        if len(t):
            self.report.table(t, "effect_vs_compute")
            trends.figures(self, self.trends)
        return t

    def claims(self) -> pd.DataFrame:
        """The paper's claims on this run: removal gap > 0 on every task, lower SSLMem and lower accuracy at the
        largest lambda, both together, and (with DP) SSLMem and accuracy falling with epsilon. A claim with an
        effect-versus-compute curve (``effect_vs_compute``) gets its verdict appended to its detail. Returns (and
        writes) the claims table."""
        p, report, lam_data, ok = self.p, self.report, self.d.lam_data, self.passed()
        curves = lambda claim: {ds: t for (c, ds), t in self.trends.items() if c == claim}  # noqa: E731
        gap = removal_gap(self.tables["removal"]).set_index("downstream")
        # the claim is the paper's sign (Table 3); the detail adds how far the gap is from chance: one-sided z with
        # the Agresti-Caffo error, each strategy's accuracy pooled over its k x seeds probes of the task's test
        # images (the same images each time, so not independent: the p is a rough guide, not part of the verdict)
        n_probes = len(p.ks) * len(p.seeds)
        n_img = {t: len(task[3]) * n_probes for t, task in self.d.tasks.items()}
        gap_p = {t: accuracy_greater_p(r["random"], r["memorised"], n_img[t]) for t, r in gap.iterrows()}
        c_removal = report.claim(
            "averaged over k, removing the most memorised points costs more probe accuracy than removing random ones, "
            "on every downstream dataset", bool((gap["gap"] > 0).all()),
            "; ".join(f"{t}: memorised {r['memorised']:.4f} vs random {r['random']:.4f} (gap {r['gap']:+.4f}, "
                      f"one-sided p {gap_p[t]:.2g}, not part of the verdict)" for t, r in gap.iterrows()))
        lm = self.tables["lambda"].groupby(["dataset", "lambda"])[["mean SSLMem", "mean raw SSLMem", "accuracy"]].mean()
        lo, hi = min(p.lambdas), max(p.lambdas)
        c_lambda = report.claim(
            f"the larger lambda gives the lower SSLMem (lambda = {hi:g} vs {lo:g}), on every dataset of the sweep",
            all(ok[trends.LAMBDA, n] for n in lam_data),
            "; ".join(f"{n}: " + ", ".join(f"lambda={v:g}: {lm.loc[(n, v), 'mean SSLMem']:.4f} "
                                           f"(raw {lm.loc[(n, v), 'mean raw SSLMem']:.4f})" for v in p.lambdas)
                      for n in lam_data) + trends.trend_detail(curves(trends.LAMBDA)))
        c_cost = report.claim(
            f"limiting alignment costs probe accuracy (lambda = {hi:g} vs {lo:g}), on every dataset of the sweep",
            all(ok[trends.LAMBDA_ACCURACY, n] for n in lam_data),
            "; ".join(f"{n}: " + ", ".join(f"lambda={v:g}: {lm.loc[(n, v), 'accuracy']:.4f}" for v in p.lambdas)
                      for n in lam_data) + trends.trend_detail(curves(trends.LAMBDA_ACCURACY)))
        # limiting alignment supports "memorisation helps" only when it lowers SSLMem *and* costs accuracy
        report.claim("removal and limiting alignment both support 'memorisation helps' (the three claims above)",
                     c_removal and c_lambda and c_cost,
                     f"removal {'holds' if c_removal else 'fails'}; lambda lowers SSLMem: "
                     f"{'holds' if c_lambda else 'fails'}; lambda costs accuracy: {'holds' if c_cost else 'fails'}")
        if "keep" in self.tables:
            keep_claim(report, self.tables["keep"], len(self.d.f_pool),
                       {t: len(task[3]) for t, task in self.d.tasks.items()})   # each task's own test images
        dp = self.tables["dp"]
        if len(dp):
            first = next(iter(self.d.tasks))
            report.claim("DP-SGD lowers SSLMem as epsilon falls (inf > " + " > ".join(f"{e:g}" for e in p.dp_epsilons)
                         + ")", ok[trends.DP_SSLMEM, p.dataset],
                         ", ".join(f"eps={e:g}: {v:.4f} (raw {r:.4f})" for e, v, r in
                                   zip(dp.epsilon, dp["mean SSLMem"], dp["mean raw SSLMem"]))
                         + trends.trend_detail(curves(trends.DP_SSLMEM)))
            report.claim(f"DP-SGD lowers probe accuracy on {first} as epsilon falls", ok[trends.DP_ACCURACY, first],
                         ", ".join(f"eps={e:g}: {v:.4f}" for e, v in zip(dp.epsilon, dp[f"acc {first}"]))
                         + trends.trend_detail(curves(trends.DP_ACCURACY)))
        return report.claims_table()

    def closing(self) -> None:
        """Write the plan as a table (``plan``), then print the run's settings and every claim, with the wall
        time."""
        p = self.p
        self.report.table(self.plan.table(), "plan")
        print(f"plan: {len(self.plan.jobs)} encoders, {sum(v == 'trained' for v in self.status.values())} trained by "
              f"the last stage")
        print(f"profile {p.profile} | pre-training {p.dataset} | {p.method}/{p.arch}, {p.epochs} epochs | halves of "
              f"{p.n_half} | k = {p.ks} | device {self.S.device} | wall time {self.S.elapsed():.0f}s")
        self.report.print_claims()
