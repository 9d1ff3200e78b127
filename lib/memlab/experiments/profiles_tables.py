"""The tables, figures and claims of notebook 01, memorization profiles vs binomial noise (Sadrtdinov, Chirkova,
Lobacheva 2021; methods.md section 1), computed from the recognition records of the study ``study``
(``profiles_vs_binomial.ProfilesStudy``, trained).

One function per section of the notebook: it writes its tables (``tables/01_profiles_vs_binomial/<name>.csv``) and
figures, shows them, keeps the tables in ``study.tables`` for the claims, and returns the section's main table. p is a
recognition frequency in [0, 1]: ``metrics.profiles.p_averaged`` (over networks and augmentations) or ``p_fixed``
(over networks, one fixed augmentation; view 0 unless stated).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from memlab.augmentation.augment import Augmentation
from memlab.engine.train import build
from memlab.experiments.actmax import maximize_channels, to_display
from memlab.experiments.ensemble import load_network
from memlab.experiments.profiles_vs_binomial import PARADIGMS
from memlab.io import plots
from memlab.metrics.probes import extract, linear_probe
from memlab.metrics.profiles import binomial_noise, closest_epoch, p_averaged, p_fixed, profile_table, sorted_profile
from memlab.streams import ProfilesSeed

REFERENCE = {  # methods.md §1: thesis version, CIFAR-10, ResNet-18, N=30, M=10: (epoch, mean p, MAE averaged)
    "simclr": [(2, .289, .042), (5, .532, .055), (37, .751, .048)],
    "supervised": [(1, .363, .248), (4, .508, .267), (20, .751, .208)],
    "random_labels": [(5, .265, .037), (12, .515, .052), (17, .798, .031)],
    "random_labels_aug": [(277, .251, .093), (373, .504, .081), (421, .752, .038)],
}
REF_PROBE = {"simclr": .806, "supervised": .953, "random_labels": .325, "random_labels_aug": .428,
             "random init": .298, "raw pixels": .377}
KINDS = {"averaged over augmentations": p_averaged, "fixed augmentation": lambda r: p_fixed(r, 0)}


def _show(study, table: pd.DataFrame, name: str, digits: int = 4) -> pd.DataFrame:
    """Write ``table`` as ``name``, keep it in ``study.tables`` and show it rounded to ``digits``."""
    study.S.report.table(table, name)
    study.tables[name] = table
    display(table.round(digits))
    return table


def _at(study, p: str, epoch: int) -> int:
    """The index of recorded ``epoch`` in paradigm ``p``'s records."""
    return study.rec_epochs[p].index(epoch)


def profiles_over_epochs(study) -> None:
    """Fig. 1: per paradigm, the sorted p_t(x) (averaged over augmentations) of every recorded epoch."""
    P = study.P
    fig = plots.profiles_over_epochs({p: (study.rec_epochs[p], sorted_profile(p_averaged(study.records[p])))
                                      for p in P.paradigms},
                                     "Memorization profiles over epochs (averaged over augmentations)",
                                     study.S.report.caption(f"{P.arch}, N={P.n_networks}, M={P.n_aug}, "
                                                            f"|X|={len(study.X)}"))
    study.S.report.figure(fig, "fig1_profiles_over_epochs")


def binomial_comparison(study) -> pd.DataFrame:
    """Fig. 2 and its tables: per paradigm and recorded epoch the mean p, the MAE to sorted binomial noise averaged
    over augmentations and with a fixed augmentation (``profiles.profile_table``, ``n_draws`` noise draws), and
    the chi-square p-value (``binomial_comparison_all_epochs``); at the epochs aligned by mean p (``targets``),
    the same beside the paper's numbers (``binomial_comparison_aligned``, returned). ``study.aligned``: {paradigm:
    {target: epoch}}."""
    P, tables = study.P, {}
    study.aligned = {}
    for p in P.paradigms:
        t = pd.DataFrame(profile_table(study.records[p], study.rec_epochs[p], n_draws=P.n_draws, seed=P.data_seed))
        t.insert(0, "paradigm", p)
        tables[p] = t
        study.aligned[p] = {tg: closest_epoch(t.mean_p, t.epoch, tg) for tg in P.targets}
    study.S.report.table(pd.concat(tables.values(), ignore_index=True), "binomial_comparison_all_epochs")
    rows = []
    for p in P.paradigms:
        for i, tg in enumerate(P.targets):
            r = tables[p].set_index("epoch").loc[study.aligned[p][tg]]
            ref = REFERENCE[p][i] if i < len(REFERENCE[p]) and tg in (0.25, 0.5, 0.75) else (None, None, None)
            rows.append({"paradigm": p, "target p": tg, "epoch": study.aligned[p][tg], "mean p": r.mean_p,
                         "MAE averaged": r.mae_averaged, "MAE fixed (view 0)": r.mae_fixed,
                         "MAE fixed (mean over views)": r.mae_fixed_all_views, "chi2 p-value (fixed)": r.chi2_p_fixed,
                         "paper epoch": ref[0], "paper mean p": ref[1], "paper MAE averaged": ref[2]})
    aligned = _show(study, pd.DataFrame(rows), "binomial_comparison_aligned")
    rng = np.random.default_rng(P.data_seed)   # the noise drawn in the figure: one draw per panel, in this order
    panels = {}
    for p in P.paradigms:
        shown = sorted(set(study.aligned[p].values()))  # the aligned epochs, each once
        kinds = zip(KINDS, (p_averaged(study.records[p]), p_fixed(study.records[p], 0)))
        panels[p] = {kind: [(e, np.sort(v[_at(study, p, e)]),
                             binomial_noise(len(study.X), P.n_networks, v[_at(study, p, e)].mean(), rng))
                            for e in shown] for kind, v in kinds}
    fig = plots.profiles_vs_binomial(panels, "Memorization profiles vs sorted binomial noise",
                                     study.S.report.caption(f"N={P.n_networks}, M={P.n_aug}, |X|={len(study.X)}"))
    study.S.report.figure(fig, "fig2_profiles_vs_binomial")
    return aligned


def aligned_profiles(study) -> None:
    """Fig. 3: for each target p, the sorted profile of every paradigm at its aligned epoch; averaged over
    augmentations (top) and with a fixed augmentation (bottom)."""
    P = study.P
    at = study.aligned
    comp = {kind: {tg: {f"{p} (t={at[p][tg]})": np.sort(fn(study.records[p])[_at(study, p, at[p][tg])])
                        for p in P.paradigms} for tg in P.targets} for kind, fn in KINDS.items()}
    fig = plots.aligned_profiles(comp, "Memorization profiles of the paradigms at equal mean p",
                                 study.S.report.caption(f"N={P.n_networks}, M={P.n_aug}"))
    study.S.report.figure(fig, "fig3_paradigms_aligned")


def augmentation_spread(study) -> pd.DataFrame:
    """Fig. 4: at the epoch aligned at p = 0.5 (else the first target), p_t of each augmentation against p_t(x)
    for every ``scatter_every``-th image of X; the table gives the mean |p_t(x~) - p_t(x)| per paradigm."""
    P, scat = study.P, {}
    for p in P.paradigms:
        e = _at(study, p, study.aligned[p][0.5] if 0.5 in P.targets else study.aligned[p][P.targets[0]])
        pf, pa = p_fixed(study.records[p])[e], p_averaged(study.records[p])[e]
        pick = np.arange(0, len(study.X), P.scatter_every)
        order = pick[np.argsort(pa[pick], kind="stable")]
        scat[p] = (pa[order], pf[:, order].T, study.rec_epochs[p][e])
    fig = plots.augmentation_scatter(scat, "p_t of each augmentation vs p_t of the image",
                                     study.S.report.caption(f"every {P.scatter_every}th image of X, M={P.n_aug}"))
    study.S.report.figure(fig, "fig4_augmentation_scatter")
    spread = pd.DataFrame([{"paradigm": p, "epoch": v[2],
                            "mean |p_t(x~) - p_t(x)|": float(np.abs(v[1] - v[0][:, None]).mean())}
                           for p, v in scat.items()])
    return _show(study, spread, "augmentation_spread")


def representations(study) -> pd.DataFrame:
    """Appendix C: one network per paradigm (seed 0, last epoch; ``study.encoders``): the t-SNE of its pooled
    representation of X (first ``tsne_points``) coloured by true class, and the linear probe of the training
    images' true labels on the test images, beside a random initialisation and the raw pixels."""
    from sklearn.manifold import TSNE   # only this section needs scikit-learn, which is slow to import
    P, dev, train, test = study.P, study.S.device, study.trainset, study.testset
    norm = Augmentation("none", mean=study.mean, std=study.std).normalize
    study.encoders = {p: load_network(study.configs[p], study.nets_of[p][0],
                                      None if PARADIGMS[p][2] is None else train.num_classes, device=dev)[0]
                      for p in P.paradigms}
    tsne_pos = study.X[:P.tsne_points]
    emb = {}
    for p in P.paradigms:
        f = extract(study.encoders[p], train.images[tsne_pos], norm, device=dev).numpy()
        xy = TSNE(n_components=2, perplexity=min(30.0, (len(f) - 1) / 3), init="pca", random_state=0).fit_transform(f)
        emb[p] = (xy, train.labels[tsne_pos].numpy())
    fig = plots.embedding_grid(emb, train.class_names, "t-SNE of the final representations (true classes)",
                               study.S.report.caption(f"{len(tsne_pos)} images of X, network seed 0"))
    study.S.report.figure(fig, "appC_tsne")
    rows = []
    random_init = build(study.configs["supervised"], train.num_classes)[0].to(dev).eval()
    for name, enc in [*study.encoders.items(), ("random init", random_init)]:
        acc = linear_probe(extract(enc, train.images, norm, device=dev), train.labels,
                           extract(enc, test.images, norm, device=dev), test.labels, device=dev)
        rows.append({"representation": name, "linear probe accuracy": acc, "paper": REF_PROBE.get(name)})
    raw = lambda imgs: norm(imgs).flatten(1)  # noqa: E731
    rows.append({"representation": "raw pixels", "paper": REF_PROBE["raw pixels"],
                 "linear probe accuracy": linear_probe(raw(train.images), train.labels, raw(test.images), test.labels)})
    return _show(study, pd.DataFrame(rows), "linear_probe", 3)


def activation_maximisation(study) -> None:
    """Appendix C: for ``actmax_channels`` random channels of every block of each paradigm's network, the input
    that maximises the channel's mean activation (``actmax.maximize_channels``, ``actmax_steps`` steps)."""
    P, dev = study.P, study.S.device
    blocks = study.encoders[P.paradigms[0]].layer_names
    grid = {}
    for p in P.paradigms:
        grid[p] = {}
        for j, layer in enumerate(blocks):
            n_ch = study.encoders[p].forward_features(torch.zeros(1, 3, 32, 32, device=dev), [layer])[layer].shape[1]
            ch = np.random.default_rng(P.data_seed + ProfilesSeed.ACTMAX_CHANNELS + j).choice(
                n_ch, size=min(P.actmax_channels, n_ch), replace=False)
            grid[p][layer] = to_display(maximize_channels(study.encoders[p], layer, ch, steps=P.actmax_steps,
                                                          seed=P.data_seed, device=dev))
    fig = plots.image_grid(grid, "Activation maximisation of random channels (rows: paradigms, columns: blocks)",
                           study.S.report.caption(f"{P.actmax_steps} gradient-ascent steps, "
                                                  f"{P.actmax_channels} channels per block"))
    study.S.report.figure(fig, "appC_activation_maximisation")


def claims(study) -> pd.DataFrame:
    """The paper's claims, checked on this run (every paradigm has the same N, so their MAEs compare), and the
    MAE ratios at every aligned epoch (``mae_ratios``, returned)."""
    P, report = study.P, study.S.report
    at = study.tables["binomial_comparison_aligned"].set_index(["paradigm", "target p"])
    half = 0.5 if 0.5 in P.targets else P.targets[len(P.targets) // 2]
    study.reached = {p: float(p_averaged(study.records[p]).mean(1).max()) for p in P.paradigms}
    report.claim("every paradigm passes mean p = 0.75 within its epochs (needed to align the paradigms, Fig. 3)",
                 all(v >= 0.75 for v in study.reached.values()),
                 ", ".join(f"{p}: max {v:.3f}" for p, v in study.reached.items()))
    sup = at.loc[("supervised", half)]
    for p in P.paradigms:
        if p == "supervised":
            continue
        o = at.loc[(p, half)]
        report.claim(f"at mean p ~ {half}, the supervised MAE to binomial is >= {P.claim_ratio}x that of {p} (averaged "
                     f"over augmentations)", sup["MAE averaged"] >= P.claim_ratio * o["MAE averaged"],
                     f"supervised {sup['MAE averaged']:.4f} (epoch {int(sup.epoch)}, mean p {sup['mean p']:.3f}) "
                     f"vs {p} {o['MAE averaged']:.4f} (epoch {int(o.epoch)}, mean p {o['mean p']:.3f}): ratio "
                     f"{sup['MAE averaged'] / o['MAE averaged']:.2f}")
    if "simclr" in P.paradigms:
        s = at.loc[("simclr", half)]
        report.claim("with fixed augmentations, SimCLR's MAE to binomial exceeds its MAE averaged over augmentations",
                     s["MAE fixed (view 0)"] > s["MAE averaged"],
                     f"epoch {int(s.epoch)} (mean p {s['mean p']:.3f}): fixed {s['MAE fixed (view 0)']:.4f} (mean over "
                     f"views {s['MAE fixed (mean over views)']:.4f}) vs averaged {s['MAE averaged']:.4f}")
        report.claim(f"with fixed augmentations, SimCLR's profile is not binomial (chi-square p < {P.alpha})",
                     s["chi2 p-value (fixed)"] < P.alpha,
                     f"p = {s['chi2 p-value (fixed)']:.3g} at epoch {int(s.epoch)}")
    study.claims = report.claims_table()
    ratios = pd.DataFrame([{"target p": tg, **{f"{p} (mean p)": at.loc[(p, tg), "mean p"] for p in P.paradigms},
                            **{f"supervised MAE / {p} MAE": at.loc[("supervised", tg), "MAE averaged"]
                               / at.loc[(p, tg), "MAE averaged"] for p in P.paradigms if p != "supervised"}}
                           for tg in P.targets])
    study.S.report.table(ratios, "mae_ratios")
    study.tables["mae_ratios"] = ratios
    print("MAE ratios (averaged over augmentations) at every aligned epoch, with the mean p each paradigm actually "
          "reached:")
    display(ratios.round(3))
    return ratios


def closing(study) -> None:
    """The closing summary: settings, per paradigm its recipe, training time and the mean p it reached, the
    training speed, and the claims."""
    P = study.P
    print(f"profile {P.profile} | {P.dataset}: {P.n_train} training images, |X| = {len(study.X)} | {P.arch} "
          f"{P.channels if P.arch == 'cnn' else P.width} | N = {P.n_networks}, M = {P.n_aug} | "
          f"device {study.S.device} | wall time {study.S.elapsed():.0f}s")
    for p in P.paradigms:
        cfg = study.configs[p]
        print(f"  {p:18s} {cfg.optimizer} lr {cfg.lr:g}, batch {P.batch_size[p]}, {P.epochs[p]} epochs, "
              f"{study.train_time[p]:.1f}s training per network, mean p reached {study.reached[p]:.3f}"
              + (", from the cache" if all(n["from_cache"] for n in study.nets_of[p]) else ""))
    if study.speed:
        print(f"  {study.speed:.0f} networks/hour with recording, over the networks this run trained")
    study.S.report.print_claims()
    if (study.claims["result"] == "FAIL").any():
        print("Some claims FAIL at these settings (the best that fit this profile's time budget); the numbers above "
              "are what this run measured.")
