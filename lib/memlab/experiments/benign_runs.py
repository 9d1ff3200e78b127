"""What notebook 06 trains (Anagnostidis et al., ICLR 2023; methods.md section 5): the plan of its runs, and the
``Monitor`` its DA run records while it trains.

Every run is a job (``engine.benign.benign_job``) named as the notebook's tables name it; the study
(``benign_memorization.BenignStudy``) reads them back by name. Seeds: ``data_seed`` + ``streams.BenignSeed`` for
the subsets, the training ``seed`` + ``BenignSeed`` for labels and views.
"""
from __future__ import annotations

import numpy as np
import torch

from memlab.data.splits import balanced_subset
from memlab.engine import dryrun
from memlab.engine.benign import benign_job, make_aug
from memlab.engine.benign_sets import fixed_views_set, iid_set, make_labels, plain_set
from memlab.engine.train import fingerprint
from memlab.experiments.benign_datasets import dataset_run
from memlab.metrics.benign import layer_invariance
from memlab.metrics.probes import knn_accuracy
from memlab.models.benign_net import extract_layers
from memlab.streams import BenignSeed

MAIN_RUNS = ("random labels, no DA", "random labels, DA", "clean labels, DA")   # Table 2


def arch_run(name: str, arch: str) -> str:
    """A Table 2 run (one of ``MAIN_RUNS``) repeated with another encoder, ``table2_archs`` (e.g. VGG)."""
    return f"{name} ({arch})"


def capacity_name(B: int, preserved: bool) -> str:
    """The run of Fig. 5 with ``study`` fixed views per image and labels preserved or one per view."""
    return f"capacity B={B}, labels {'preserved' if preserved else 'per view'}"


def iid_name(B: int, labels_kind: str) -> str:
    """The run of Table 4 with ``study`` i.i.d. examples per anchor and ``labels_kind`` "clean" or "random" labels."""
    return f"i.i.d. B={B}, {labels_kind} labels"


class Monitor:
    """What the DA run of Table 2 records during training (Figs. 6 and the K-NN curve): the K-NN accuracy of the
    embedding (``probe_train`` uint8 images with clean ``probe_labels`` as memory, ``probe_test`` as queries)
    and, per layer, the mean normalised invariance (``metrics.benign.layer_invariance``) of ``inv_images`` under
    ``inv_pairs`` pairs of ``inv_aug``. ``describe()`` enters the run's cache key; a dry run looks at a few
    images only."""

    def __init__(self, probe_train, probe_labels, probe_test, probe_test_labels, normalize, *, every: int,
                 inv_images=None, inv_aug=None, inv_pairs: int = 2, seed: int = 0, k: int = 20):
        self.tr, self.trl, self.te, self.tel = probe_train, probe_labels, probe_test, probe_test_labels
        self.normalize, self.every, self.k, self.seed = normalize, int(every), k, seed
        self.inv_images, self.inv_aug, self.inv_pairs = inv_images, inv_aug, inv_pairs
        if self.every < 1:
            raise ValueError("monitor every must be >= 1")

    def describe(self) -> dict:
        return {"probe": fingerprint(self.tr, self.trl, self.te, self.tel), "every": self.every, "k": self.k,
                "inv": None if self.inv_images is None else [fingerprint(self.inv_images), self.inv_aug.describe(),
                                                             self.inv_pairs, self.seed]}

    @torch.no_grad()
    def __call__(self, net, epoch) -> dict:
        """``{"knn": accuracy, "inv/<layer>": I, ...}`` of ``net`` now (``epoch`` is not used)."""
        was = net.training
        net.eval()
        f = lambda imgs: extract_layers(net, imgs, self.normalize, ["embedding"])["embedding"]  # noqa: E731
        c = dryrun.cap
        tr, te = slice(c(len(self.tr))), slice(c(len(self.te)))
        out = {"knn": knn_accuracy(f(self.tr[tr]), self.trl[tr], f(self.te[te]), self.tel[te], k=self.k)}
        if self.inv_images is not None:
            inv = self.inv_images[:c(len(self.inv_images))]
            out.update({f"inv/{l}": v for l, v in layer_invariance(net, inv, self.inv_aug, self.inv_pairs,
                                                                   self.seed).items()})
        net.train(was)
        return out


def _declare(study, plan, name: str, cfg, ts, monitor=None) -> None:
    job = benign_job(cfg, ts, cache=study.S.cache, monitor=monitor, name=name, force=study.P.force)
    study.jobs[name] = plan.add(job)   # a run equal to an earlier one (same key) gets the earlier job


def declare_runs(study, plan) -> None:
    """Add every run of study ``study`` (``BenignStudy`` with its data loaded) to ``plan``; ``study.jobs`` maps each run
    name to its job, ``study.sweep_points`` lists (figure, x, run name) in the order of the sweeps table.

    Table 2: random labels without and with DA (the DA run records the ``Monitor`` every ``probe_every``
    epochs), clean labels with DA; the same three with each encoder of ``table2_archs`` (``arch_run``), and with
    every encoder on each dataset of ``table2_datasets`` (``benign_datasets.dataset_run``: its own images,
    classes, normalisation and stem; no monitor). Fig. 5: B fixed views of each of ``cap_n`` images, a random
    label per view or per image, ``cap_steps`` steps. Table 4: ``iid_s`` anchors, each replaced every epoch by one of ``iid_B``
    real images of its class (the rest of the training split supplies them), clean or random labels,
    ``iid_steps`` steps without DA. Sweeps: ``sweep_epochs`` on ``sweep_n`` images."""
    P, Xtr, Ytr, C = study.P, study.Xtr, study.Ytr, study.P.num_classes
    inv_idx = balanced_subset(Ytr.numpy(), P.inv_images, P.data_seed + BenignSeed.INVARIANCE)
    monitor = Monitor(Xtr, Ytr, study.Xte, study.Yte, study.norm, every=P.probe_every, inv_images=Xtr[inv_idx],
                      inv_aug=make_aug(study.recipe()), inv_pairs=P.inv_pairs, seed=P.seed, k=P.knn_k)
    ts_rand = plain_set(Xtr, study.rand_labels, C)
    _declare(study, plan, MAIN_RUNS[0], study.recipe("none", P.epochs_noaug), ts_rand)
    _declare(study, plan, MAIN_RUNS[1], study.recipe("simclr", P.epochs_aug), ts_rand, monitor)
    _declare(study, plan, MAIN_RUNS[2], study.recipe("simclr", P.epochs_clean), plain_set(Xtr, Ytr, study.C_true))
    for arch in P.table2_archs:   # Table 2's other encoders: the same three runs, no monitor
        kw = study.arch_kw(arch)
        _declare(study, plan, arch_run(MAIN_RUNS[0], arch), study.recipe("none", P.epochs_noaug, **kw), ts_rand)
        _declare(study, plan, arch_run(MAIN_RUNS[1], arch), study.recipe("simclr", P.epochs_aug, **kw), ts_rand)
        _declare(study, plan, arch_run(MAIN_RUNS[2], arch), study.recipe("simclr", P.epochs_clean, **kw),
                 plain_set(Xtr, Ytr, study.C_true))
    for ds, d in study.table2_data.items():   # Table 2's other datasets: every encoder, random labels over d.C
        d_rand = plain_set(d.Xtr, d.rand_labels, d.C)
        for arch in (None, *P.table2_archs):
            kw = study.data_kw(d, arch)
            for run, aug, epochs, ts in ((MAIN_RUNS[0], "none", P.epochs_noaug, d_rand),
                                         (MAIN_RUNS[1], "simclr", P.epochs_aug, d_rand),
                                         (MAIN_RUNS[2], "simclr", P.epochs_clean, plain_set(d.Xtr, d.Ytr, d.C))):
                _declare(study, plan, dataset_run(run, ds, arch), study.recipe(aug, epochs, **kw), ts)

    cap_imgs = Xtr[balanced_subset(Ytr.numpy(), P.cap_n, P.data_seed + BenignSeed.CAPACITY)]
    cap_labels = make_labels(torch.zeros(P.cap_n, dtype=torch.long), 1.0, C, P.seed + BenignSeed.CAPACITY_LABELS)
    for b in P.cap_B:
        for preserved in (False, True):
            ts = fixed_views_set(cap_imgs, b, C, P.seed + BenignSeed.CAPACITY_VIEWS, cap_labels if preserved else None)
            _declare(study, plan, capacity_name(b, preserved),
                     study.recipe("simclr", study.epochs_for(P.cap_steps, len(ts)), P.cap_steps), ts)

    rest = torch.from_numpy(np.setdiff1d(np.arange(len(study.train_full)), study.main_idx.numpy()))
    pool_imgs = torch.cat([Xtr, study.train_full.images[rest]])
    pool_lab = torch.cat([Ytr, study.train_full.labels[rest]])
    anchors = balanced_subset(Ytr.numpy(), P.iid_s, P.data_seed + BenignSeed.ANCHORS)
    anchor_rand = make_labels(Ytr[anchors], 1.0, C, P.seed + BenignSeed.ANCHOR_LABELS)
    for labels_kind, lab, n_cls in (("clean", Ytr[anchors], study.C_true), ("random", anchor_rand, C)):
        for b in (1, P.iid_B):
            ts = (plain_set(Xtr[anchors], lab, n_cls) if b == 1 else
                  iid_set(pool_imgs, pool_lab, anchors, b, lab, n_cls, P.seed + BenignSeed.IID_SETS))
            _declare(study, plan, iid_name(b, labels_kind),
                     study.recipe("none", study.epochs_for(P.iid_steps, len(ts)), P.iid_steps), ts)
    _declare_sweeps(study, plan)


def _declare_sweeps(study, plan) -> None:
    """The sweeps of Figs. 7, 8, 12 and 11 on ``sweep_n`` images (random labels with DA unless stated)."""
    P, C = study.P, study.P.num_classes
    sw_idx = balanced_subset(study.Ytr.numpy(), P.sweep_n, P.data_seed + BenignSeed.SWEEP)
    sw_x, sw_y = study.Xtr[sw_idx], study.Ytr[sw_idx]

    def point(fig_name, x, n_cls, labels, cfg, name):
        _declare(study, plan, name, cfg, plain_set(sw_x, labels, n_cls))
        study.sweep_points.append((fig_name, x, name))

    def labels(n_cls, per=False, noise=1.0):
        return make_labels(sw_y, noise, n_cls, P.seed + BenignSeed.SWEEP_LABELS, per_sample=per)

    for w in P.sweep_widths:
        point("fig7 width", w, C, labels(C), study.recipe("simclr", P.sweep_epochs, hidden=w), f"width {w}")
    for c in P.sweep_classes:
        n_cls = P.sweep_n if c == "per_sample" else c
        point("fig8 classes", c, n_cls, labels(n_cls, c == "per_sample"), study.recipe("simclr", P.sweep_epochs),
              f"classes {c}")
    for aug in ("simclr", "none"):
        for p in P.sweep_noise:
            point("fig12 noise", p, study.C_true, labels(study.C_true, noise=p), study.recipe(aug, P.sweep_epochs),
                  f"noise {p:.2f}, DA {aug}")
    for m in P.sweep_magnitudes:
        point("fig11 RandAugment", m, C, labels(C), study.recipe("randaugment", P.sweep_epochs,
                                                             aug_kw={"n_ops": 2, "magnitude": m}), f"RandAugment M={m}")
