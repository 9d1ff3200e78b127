"""The tables and claims of notebook 06, benign memorization (Anagnostidis et al., ICLR 2023; methods.md section
5), computed from the cached runs of the study ``study`` (``benign_memorization.BenignStudy``).

One function per section of the notebook: it writes its tables (``tables/06_benign_memorization/<name>.csv``) and,
through ``benign_figures``, its figures, shows them, keeps the tables in ``study.tables`` for the claims, and returns
the section's main table. Accuracies are fractions in [0, 1]; "K-NN" is the K-NN probe (K = ``knn_k``) of the
embedding with the clean training images as memory, evaluated on the test images.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from memlab.data.datasets import load_dataset
from memlab.data.splits import balanced_subset
from memlab.engine.benign import make_aug
from memlab.experiments import benign_figures as figures
from memlab.experiments.benign_datasets import dataset_run
from memlab.experiments.benign_runs import arch_run, capacity_name, iid_name
from memlab.experiments.toy import ToyConfig, grid as toy_grid
from memlab.metrics.benign import knn_noise, mse_decomposition, verdict
from memlab.metrics.probes import knn_accuracy, knn_loo_accuracy
from memlab.metrics.trend import effect_trend
from memlab.models.benign_net import extract_layers
from memlab.streams import BENIGN_MSE_VIEWS, BenignSeed


def _show(study, table: pd.DataFrame, name: str, shown=None) -> pd.DataFrame:
    """Write ``table`` as ``name``, keep it in ``study.tables`` and show ``shown`` (default the table), rounded."""
    study.S.report.table(table, name)
    study.tables[name] = table
    display((table if shown is None else shown).round(3))
    return table


INIT = "at initialisation"   # Table 2's row of an encoder at its initialisation


def _init_row(run: str, knn: float, linear: float) -> dict:
    """Table 2's row of an encoder at its initialisation."""
    return {"run": run, "setting": INIT, "labels": "-", "DA": "-", "epochs": 0, "stopped": "-", "fit": np.nan,
            "K-NN": knn, "K-NN peak": np.nan, "peak epoch": np.nan, "linear probe": linear, "verdict": "-"}


def _run_row(study, name: str, setting: str, r, knn_init: float, data=None, tol: float | None = None) -> dict:
    """Table 2's row of run ``name`` (``r``, a ``BenignRun``; ``setting``, one of ``MAIN_RUNS``), judged against
    its encoder's ``knn_init`` with the noise level ``tol`` (default ``study.tol``); probed on the main dataset or
    on ``data`` (a ``Table2Data``). The K-NN peak comes from the run's monitor (none: NaN)."""
    P = study.P
    k = study.knn(r.net, data=data)
    ep, ks = r.series("knn")
    clean = setting.startswith("clean")
    n_cls = P.num_classes if data is None else data.C
    return {"run": name, "setting": setting, "labels": "clean" if clean else f"random ({n_cls} classes)",
            "DA": "none" if "no DA" in setting else "simclr" + (f" + mixup {P.mixup}" if P.mixup else ""),
            "epochs": r.epochs, "stopped": r.stopped, "fit": r.fit, "K-NN": k,
            "K-NN peak": max(ks) if ks else np.nan, "peak epoch": ep[int(np.argmax(ks))] if ks else np.nan,
            "linear probe": study.linear(r.net, data),
            "verdict": "- (clean labels)" if clean else
            verdict(r.fit, k, knn_init, P.fit_target, study.tol if tol is None else tol)}


def _dataset_rows(study, ds: str) -> list:
    """Table 2's rows on ``ds`` of ``table2_datasets``: per encoder (``arch``, then ``table2_archs``) its
    initialisation (with the projector onto ds's classes; linear probe for the main encoder only, as on the main
    dataset) and its three runs, judged against that initialisation with the noise level of ds's test size."""
    P, d = study.P, study.table2_data[ds]
    rows = []
    for arch, runs in study.data_runs[ds].items():
        other = None if arch == P.arch else arch
        net0 = study.data_init(d, other)
        k0 = study.knn(net0, data=d)
        tol = knn_noise(k0, len(d.Yte))
        rows.append({**_init_row(dataset_run(INIT, ds, other), k0, np.nan if other else study.linear(net0, d)),
                     "encoder": arch})
        rows += [{**_run_row(study, dataset_run(name, ds, other), name, r, k0, d, tol), "encoder": arch}
                 for name, r in runs.items()]
    return [{**row, "dataset": ds, "test images": len(d.Yte)} for row in rows]


def table2_knn_linear(study) -> pd.DataFrame:
    """Table 2 and appendix A, in long format (a row per dataset, encoder and setting): per run (and at
    initialisation) the epochs, why it stopped, its fit of the random labels, the K-NN accuracy at the end and at
    its peak (the DA run's monitor), the linear probe, and the verdict of Definition 4.1 (a K-NN gain within the
    noise level of the dataset's test size counts as none). The main dataset first (its encoder, then
    ``table2_archs``), then each of ``table2_datasets`` (every encoder)."""
    P, runs = study.P, study.runs
    knn_init, lin_init = study.knn_init, study.linear(study.net0)
    rows = [{**_init_row(INIT, knn_init, lin_init), "encoder": P.arch}]
    rows += [{**_run_row(study, name, name, r, knn_init), "encoder": P.arch} for name, r in runs.items()]
    for arch, aruns in study.arch_runs.items():   # the paper's other encoder (VGG): the same rows, its own init
        k0 = study.arch_init_knn(arch)
        rows.append({**_init_row(f"{INIT} ({arch})", k0, np.nan), "encoder": arch})
        rows += [{**_run_row(study, arch_run(name, arch), name, r, k0), "encoder": arch} for name, r in aruns.items()]
    rows = [{**row, "dataset": P.dataset, "test images": len(study.Yte)} for row in rows]
    for ds in P.table2_datasets:   # the paper's CIFAR-100 and Tiny-ImageNet columns
        rows += _dataset_rows(study, ds)
    table = pd.DataFrame(rows)
    table = _show(study, table[["run", "dataset", "encoder", *(c for c in table if c not in ("run", "dataset",
                                                                                              "encoder"))]],
                  "table2_knn_linear")
    print(f"noise level of a K-NN difference (2 standard errors, {len(study.Yte)} test images): {study.tol:.3f}")
    others = [(arch_run(n, a), r) for a, rs in study.arch_runs.items() for n, r in rs.items()]
    others += [(dataset_run(n, ds, None if a == P.arch else a), r) for ds, encs in study.data_runs.items()
               for a, rs in encs.items() for n, r in rs.items()]
    for name, r in [*runs.items(), *others]:
        if not name.startswith("clean") and r.fit < P.fit_target:
            print(f"NOTE: '{name}' fits {r.fit:.1%} of its random labels after {r.epochs} epochs (budget "
                  f"{r.config.max_epochs}), short of the {P.fit_target:.0%} that Definition 4.1 requires: it is not "
                  f"a memorisation in the strict sense, and its verdict says so. Its K-NN accuracy is still reported.")
    figures.table2_knn(study, table)
    return table


def fig3_per_layer_knn(study) -> pd.DataFrame:
    """Fig. 3: per layer of the initialisation and of the runs without and with DA, the K-NN accuracy of the
    flattened outputs with clean labels (``layer_probe_train`` training images as memory, ``layer_probe_test``
    test images) and the leave-one-out K-NN of the training images with their random labels."""
    P, dev = study.P, study.S.device
    lp_tr = balanced_subset(study.Ytr.numpy(), P.layer_probe_train, P.data_seed + BenignSeed.LAYER_PROBE)
    lp_te = torch.arange(min(P.layer_probe_test, len(study.Yte)))
    rows = []
    nets = {"at initialisation": study.net0, **{k: study.runs[k].net for k in ("random labels, no DA",
                                                                              "random labels, DA")}}
    for name, net in nets.items():
        for layer in net.layer_names:
            ftr = extract_layers(net, study.Xtr[lp_tr], study.norm, [layer], device=dev)[layer]
            fte = extract_layers(net, study.Xte[lp_te], study.norm, [layer], device=dev)[layer]
            rows.append({"network": name, "layer": layer,
                         "clean K-NN": knn_accuracy(ftr, study.Ytr[lp_tr], fte, study.Yte[lp_te], k=P.knn_k),
                         "random-label K-NN (train, LOO)": knn_loo_accuracy(ftr, study.rand_labels[lp_tr], k=P.knn_k)})
    fig3 = pd.DataFrame(rows)
    _show(study, fig3, "fig3_per_layer_knn",
          fig3.pivot(index="layer", columns="network", values="clean K-NN").loc[study.net0.layer_names])
    figures.fig3_per_layer_knn(study, fig3)
    return fig3


def fig6_invariance(study) -> pd.DataFrame:
    """Fig. 6: the K-NN accuracy and the normalised invariance of every layer that the DA run recorded."""
    hist = pd.DataFrame([h for h in study.runs["random labels, DA"].history if "knn" in h])
    inv_cols = [f"inv/{l}" for l in study.net0.layer_names]
    table = _show(study, hist[["epoch", "knn", *inv_cols]], "fig6_invariance")
    figures.fig6_invariance(study, hist, inv_cols)
    return table


def fig5_capacity(study) -> pd.DataFrame:
    """Fig. 5: per B and label kind, the items (``cap_n`` x B), steps, fit of the random labels and K-NN."""
    P, rows = study.P, []
    for b in P.cap_B:
        for preserved in (False, True):
            r = study.run(capacity_name(b, preserved))
            rows.append({"B": b, "labels": "preserved" if preserved else "not preserved", "items": P.cap_n * b,
                         "steps": r.steps, "train acc (random labels)": r.fit, "K-NN": study.knn(r.net)})
    cap = _show(study, pd.DataFrame(rows), "fig5_capacity")
    figures.fig5_capacity(study, cap)
    return cap


def table4_iid(study) -> pd.DataFrame:
    """Table 4: clean or random labels on ``iid_s`` anchors with 1 or ``iid_B`` i.i.d. examples each: the fit of
    the anchors, the K-NN and, for random labels, the verdict; last row the initialisation."""
    P, rows = study.P, []
    for labels_kind in ("clean", "random"):
        for b in (1, P.iid_B):
            r = study.run(iid_name(b, labels_kind))
            k = study.knn(r.net)
            rows.append({"labels": labels_kind, "s": P.iid_s, "B": b, "fit (anchors)": r.fit, "K-NN": k,
                         "verdict": "-" if labels_kind == "clean" else
                         verdict(r.fit, k, study.knn_init, P.fit_target, study.tol)})
    rows.append({"labels": "-", "s": 0, "B": 0, "fit (anchors)": np.nan, "K-NN": study.knn_init,
                 "verdict": "initialisation"})
    return _show(study, pd.DataFrame(rows), "table4_iid")


def sweeps(study) -> pd.DataFrame:
    """Figs. 7, 8, 12 and 11: per sweep point (figure, x, DA) the fit, the epochs and the K-NN."""
    rows = []
    for fig_name, x, name in study.sweep_points:
        r = study.run(name)
        rows.append({"figure": fig_name, "x": str(x), "DA": r.config.aug, "fit": r.fit, "epochs": r.epochs,
                     "K-NN": study.knn(r.net)})
    table = pd.DataFrame(rows)

    def knn_at(fig_name, da=None):
        d = table[(table["figure"] == fig_name) & ((table["DA"] == da) if da else True)]
        return dict(zip(d["x"], d["K-NN"]))

    _show(study, table, "sweeps")
    figures.sweeps(study, knn_at("fig7 width"), knn_at("fig8 classes"),
                   {aug: knn_at("fig12 noise", aug) for aug in ("simclr", "none")}, knn_at("fig11 RandAugment"))
    return table


def fig9_transfer(study) -> pd.DataFrame:
    """Fig. 9: the K-NN accuracy of the frozen encoders of Table 2 on each of ``transfer_datasets`` (its own
    ``second_n_train`` training images as memory, ``second_n_test`` test images as queries). A dataset that is not
    available is replaced by synthetic data, said so and named "synthetic (for <name>)" in the table."""
    P = study.P
    nets = {"at initialisation": study.net0, **{k: r.net for k, r in study.runs.items()}}
    rows = []
    for i, name in enumerate(P.transfer_datasets):
        seed = P.data_seed + BenignSeed.SECOND_DATASET + i
        try:
            if name == "synthetic":
                tr = load_dataset(name, "train", n=P.second_n_train, seed=seed)
                te = load_dataset(name, "test", n=P.second_n_test, seed=seed)
            else:   # class-balanced subsets (load_dataset's seed 0), or the whole of a smaller split
                tr, te = (d.subset(balanced_subset(d.labels.numpy(), min(n, len(d)), 0))
                          for d, n in ((load_dataset(name, "train"), P.second_n_train),
                                       (load_dataset(name, "test"), P.second_n_test)))
            shown = name
        except FileNotFoundError as e:
            print(f"{name} is not available ({str(e)[:160]}...); synthetic data stands in for it in Fig. 9")
            tr = load_dataset("synthetic", "train", n=P.second_n_train, seed=seed)
            te = load_dataset("synthetic", "test", n=P.second_n_test, seed=seed)
            shown = f"synthetic (for {name})"
        rows += [{"encoder": k, "dataset": shown, "K-NN": study.knn(n, tr.images, tr.labels, te.images, te.labels)}
                 for k, n in nets.items()]
    transfer = _show(study, pd.DataFrame(rows), "fig9_transfer")
    figures.fig9_transfer(study, transfer)
    return transfer


def fig13_toy(study) -> pd.DataFrame:
    """Appendix E, Fig. 13: the toy model's K-NN accuracy over the grid of n and B (cached)."""
    P = study.P
    cfg = ToyConfig(d=P.toy_d, d1=P.toy_d1, classes=P.toy_classes, sigma=P.toy_sigma, K=P.toy_K, steps=P.toy_steps,
                    seed=P.seed)
    t0 = time.time()
    key = {"cfg": cfg.describe(), "n": list(P.toy_n), "B": list(P.toy_B)}
    toy = pd.DataFrame(study.S.cache.get_or_compute("toy", key, lambda: toy_grid(cfg, P.toy_n, P.toy_B),
                                                    force=P.force))
    heat = toy.pivot(index="n", columns="B", values="knn")
    _show(study, toy, "fig13_toy", heat)
    print(f"toy grid: {time.time() - t0:.1f} s")
    figures.fig13_toy(study, heat)
    return toy


def appendix_b(study) -> pd.DataFrame:
    """Appendix B: MSE = Inv + Bias (Theorem B.2) on the DA network's outputs for ``mse_images`` images x
    ``mse_views`` training augmentations with one-hot random labels, and the gap of the identity."""
    P, dev = study.P, study.S.device
    aug = make_aug(study.recipe())
    net = study.runs["random labels, DA"].net.eval()
    mb = torch.arange(min(P.mse_images, P.n_train))
    with torch.no_grad():
        outs = torch.stack([net(aug(study.Xtr[mb].to(dev), mb.numpy(), P.seed, BENIGN_MSE_VIEWS + a)).float().cpu()
                            for a in range(P.mse_views)], 1)
    dec = mse_decomposition(outs, torch.nn.functional.one_hot(study.rand_labels[mb], P.num_classes).float())
    gap = abs(dec["mse"] - dec["inv"] - dec["bias"])
    table = pd.DataFrame([{**dec, "inv + bias": dec["inv"] + dec["bias"], "|mse - (inv + bias)|": gap}])
    study.S.report.table(table, "appendixB_mse_decomposition")
    study.tables["appendixB_mse_decomposition"] = table
    display(table)
    return table


def fit_trend(study):
    """Effect versus compute for Definition 4.1 on the random-label DA run: its fit of the random labels (the
    fraction of its unaugmented training images predicted as their random label) at up to 8 checks evenly spread
    over the run's last doubling of epochs (the checks at epochs >= half the last), fitted against log2(epochs)
    with its 95% band and read against ``fit_target`` (``metrics.trend.effect_trend``; binomial standard error
    over the training images, each proportion smoothed to (x + 1) / (n + 2), scaled up by the square root of the
    reduced chi-square of the fit when the checks scatter more than that). Only the last doubling: the fit
    stays flat for long and then rises fast (the paper: no progress for about 3000 epochs), so a line in log
    epochs through the early plateau would put the crossing far too late. The checks share one training run, so
    the band is optimistic. None with fewer than 3 checks there. The run stops at ``fit_target``: then the claim
    holds and the curve shows how it got there."""
    P, r = study.P, study.runs["random labels, DA"]
    ep, fit = (np.asarray(v, dtype=float) for v in r.series("fit"))
    last = ep >= ep.max() / 2 if len(ep) else ep.astype(bool)
    ep, fit = ep[last], fit[last]
    pick = np.unique(np.linspace(0, len(ep) - 1, min(8, len(ep))).round().astype(int))
    ep, fit = ep[pick], fit[pick]
    if len(ep) < 3:
        return None
    n = len(study.Ytr)
    sm = (fit * n + 1) / (n + 2)
    se = np.sqrt(sm * (1 - sm) / (n + 2))
    args = dict(threshold=P.fit_target, passed_at_max=bool(r.fit >= P.fit_target), unit="epochs")
    t = effect_trend(ep, fit, se, **args)
    # the checks scatter about the line far more than a binomial error allows (one run's ups and downs): scale
    # the errors by the square root of the reduced chi-square when it exceeds 1, so the band and the slope's p
    # reflect the observed scatter
    resid = (fit - (t.intercept + t.slope * np.log2(ep))) / se
    over = float(np.sum(resid ** 2) / (len(ep) - 2)) if len(ep) > 2 else 1.0
    return effect_trend(ep, fit, se * np.sqrt(over), **args) if over > 1 else t


def claims(study) -> pd.DataFrame:
    """The paper's claims, checked on this run's tables (every section above must have run)."""
    P, report, knn_init, tol = study.P, study.S.report, study.knn_init, study.tol
    t2 = study.tables["table2_knn_linear"].set_index("run")
    da, noda = t2.loc["random labels, DA"], t2.loc["random labels, no DA"]
    k_da, k_noda = da["K-NN"], noda["K-NN"]
    report.claim("K-NN with random labels and DA exceeds K-NN at initialisation", k_da > knn_init,
                 f"{k_da:.3f} vs {knn_init:.3f} (fit {da['fit']:.3f}, {int(da['epochs'])} epochs; "
                 f"peak {da['K-NN peak']:.3f})")
    report.claim("K-NN at initialisation exceeds random labels without DA, or is within noise",
                 knn_init >= k_noda - tol, f"init {knn_init:.3f} vs no DA {k_noda:.3f} (noise {tol:.3f}; fit "
                 f"{noda['fit']:.3f} after {int(noda['epochs'])} epochs)")
    ft = fit_trend(study)   # Definition 4.1: the benign verdict presumes the random labels are memorised
    report.claim(f"the DA run memorises its random labels (Definition 4.1: training fit >= {P.fit_target:g})",
                 da["fit"] >= P.fit_target, f"fit {da['fit']:.3f} after {int(da['epochs'])} epochs"
                 + (f"; {ft.verdict}: {ft.describe()}" if ft is not None else ""))
    for arch in P.table2_archs:   # the same claim with the paper's other encoder
        a = t2.loc[arch_run("random labels, DA", arch)]
        k0 = t2.loc[f"at initialisation ({arch})", "K-NN"]
        report.claim(f"{arch}: K-NN with random labels and DA exceeds K-NN at initialisation", a["K-NN"] > k0,
                     f"{a['K-NN']:.3f} vs {k0:.3f} (fit {a['fit']:.3f}, {int(a['epochs'])} epochs)")
    for ds in P.table2_datasets:   # both claims on the paper's other datasets, against their own initialisation
        _dataset_claims(report, t2, ds, P.table2_archs)
    fig3 = study.tables["fig3_per_layer_knn"]
    da_layers = fig3[fig3["network"] == "random labels, DA"].set_index("layer")["clean K-NN"]
    report.claim("embedding layer's clean K-NN exceeds the projector output's (DA run)",
                 da_layers["embedding"] > da_layers["O"],
                 f"embedding {da_layers['embedding']:.3f}, P {da_layers['P']:.3f}, O {da_layers['O']:.3f}")
    n_fix = max(P.toy_n)
    row = study.tables["fig13_toy"].pivot(index="n", columns="B", values="knn").loc[n_fix]
    report.claim(f"toy model: K-NN accuracy rises with B at fixed n = {n_fix}", row.iloc[-1] > row.iloc[0],
                 ", ".join(f"B={b}: {v:.3f}" for b, v in row.items()))
    dec = study.tables["appendixB_mse_decomposition"].iloc[0]
    gap = dec["|mse - (inv + bias)|"]
    report.claim("appendix B: MSE under augmentation equals Inv + Bias on a batch", gap <= 1e-9 * max(1.0, dec["mse"]),
                 f"mse {dec['mse']:.6f} = inv {dec['inv']:.6f} + bias {dec['bias']:.6f} (gap {gap:.1e})")
    return report.claims_table()


def _dataset_claims(report, t2: pd.DataFrame, ds: str, archs) -> None:
    """Table 2's claims on ``ds`` of ``table2_datasets`` from Table 2 (``t2``, indexed by run): with the main
    encoder, the DA run beats the initialisation (benign) and the initialisation beats the run without DA or is
    within the noise level of ds's test size (malign); with each encoder of ``archs``, the benign claim, as on the
    main dataset."""
    init = t2.loc[dataset_run(INIT, ds)]
    k0, tol = init["K-NN"], knn_noise(init["K-NN"], int(init["test images"]))
    da, noda = t2.loc[dataset_run("random labels, DA", ds)], t2.loc[dataset_run("random labels, no DA", ds)]
    report.claim(f"{ds}: K-NN with random labels and DA exceeds K-NN at initialisation", da["K-NN"] > k0,
                 f"{da['K-NN']:.3f} vs {k0:.3f} (fit {da['fit']:.3f}, {int(da['epochs'])} epochs)")
    report.claim(f"{ds}: K-NN at initialisation exceeds random labels without DA, or is within noise",
                 k0 >= noda["K-NN"] - tol, f"init {k0:.3f} vs no DA {noda['K-NN']:.3f} (noise {tol:.3f}; fit "
                 f"{noda['fit']:.3f} after {int(noda['epochs'])} epochs)")
    for arch in archs:
        a, a0 = t2.loc[dataset_run("random labels, DA", ds, arch)], t2.loc[dataset_run(INIT, ds, arch), "K-NN"]
        report.claim(f"{arch} on {ds}: K-NN with random labels and DA exceeds K-NN at initialisation",
                     a["K-NN"] > a0, f"{a['K-NN']:.3f} vs {a0:.3f} (fit {a['fit']:.3f}, {int(a['epochs'])} epochs)")


def closing(study) -> None:
    """The closing summary: settings, the verdicts, Table 4, the sweeps, the transfer and the claims."""
    P, t = study.P, study.tables
    print(f"profile {P.profile} | {P.dataset} | {P.arch} x{P.width} + projector {P.hidden} -> {P.num_classes} | "
          f"{P.loss}, {P.optimizer} {P.lr} | {P.n_train} images | device {study.S.device}")
    print("Table 2 verdicts (Definition 4.1): " + "; ".join(f"{r['run']}: {r['verdict']}"
                                                            for r in t["table2_knn_linear"].to_dict("records")[1:]))
    print("Table 4 (i.i.d. augmentations): " + "; ".join(f"{r['labels']} B={r['B']}: K-NN {r['K-NN']:.3f}, fit "
                                                       f"{r['fit (anchors)']:.2f}"
                                                       for r in t["table4_iid"].to_dict("records")[:-1]))
    for fig_name, d in t["sweeps"].groupby("figure", sort=False):
        print(f"{fig_name}: " + ", ".join(f"{x} ({da}) {k:.3f}" for x, da, k in zip(d["x"], d["DA"], d["K-NN"]))
              + f"  [init {study.knn_init:.3f}]")
    for ds, tr in t["fig9_transfer"].groupby("dataset", sort=False):
        print(f"transfer to {ds}: " + ", ".join(f"{e} {k:.3f}" for e, k in zip(tr["encoder"], tr["K-NN"])))
    study.S.report.print_claims(f"; wall time {study.S.elapsed():.0f}s")
