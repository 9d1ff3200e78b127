"""Notebook 05's second labelled dataset (Wang et al., NeurIPS 2024, "Localizing Memorization in SSL Vision
Encoders"; methods.md §4): an SSL and a supervised encoder of the pair's architecture, both trained on
``classmem_dataset`` (the paper: CIFAR-100), compared twice.

* **ClassMem against UnitMem** on that dataset (the paper's CIFAR-100 figures): the claims of the CIFAR-10
  figure (``unitmem_findings.classmem_claims``), on the encoders' own training images.
* **Transfer** (the paper's SSL-versus-supervised table): linear-probe accuracy of both frozen encoders on their
  own dataset, on the pair's dataset and on each of ``other_datasets``. The paper, pre-training on CIFAR-100:
  the supervised encoder probes better on CIFAR-100 and CIFAR-10, the SSL encoder on STL-10 and SVHN -- the
  supervised encoder's class memorisation helps near its labels and hurts far from them.

The SSL encoder is the pair's recipe (``second_epochs`` epochs, as the other datasets' encoders), the supervised
one notebook 05's supervised recipe (``supervised_epochs``, ``supervised_lr``, weak augmentation).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from memlab.experiments.unitmem_classmem import unit_stats_of
from memlab.experiments.unitmem_findings import classmem_claims
from memlab.experiments.unitmem_interventions import data_task, probe_all, probe_tasks
from memlab.io import plots
from memlab.metrics.stats import accuracy_greater_p
from memlab.metrics.unitmem import layer_summary, layer_table

# the paper's transfer table (encoders pre-trained on CIFAR-100): the encoder that probes better on each dataset
PAPER_TRANSFER = {"cifar100": "supervised", "cifar10": "supervised", "stl10": "SSL", "svhn": "SSL"}


@dataclass
class SecondEncoders:
    """The SSL and supervised encoders of ``classmem_dataset`` (``train.Trained``) and their unit tables
    (``metrics.unitmem.layer_table``, one row per layer and unit) on all of its training images. ``shown``: the
    dataset's shown name ("synthetic (for <name>)" for a stand-in)."""
    shown: str
    ssl: object
    supervised: object
    ssl_table: pd.DataFrame
    sup_table: pd.DataFrame


def second_encoders(R) -> SecondEncoders | None:
    """Loads the two encoders of ``classmem_dataset`` (None when it is "") and measures UnitMem and ClassMem of
    every unit on all of their training images, seen through ``unit_views`` views each."""
    if not R.classmem:
        return None
    shown, train, _ = R.classmem
    ssl, sup = R.load(R.jobs["classmem_ssl"]), R.load(R.jobs["classmem_supervised"])
    for name, t in (("SSL", ssl), ("supervised", sup)):
        print(f"{name} encoder on {shown}: {'cache' if t.from_cache else 'trained'}, final loss "
              f"{t.history[-1]['loss']:.3f}")
    idx = torch.arange(len(train))
    tables = [layer_table(unit_stats_of(R, t, train, idx), R.P.unit_rest) for t in (ssl, sup)]
    return SecondEncoders(shown, ssl, sup, *tables)


def classmem_summary(E: SecondEncoders) -> pd.DataFrame:
    """Per layer: ``layer_summary`` of the SSL and the supervised unit tables side by side (suffixes _ssl, _sup)."""
    return layer_summary(E.ssl_table).merge(layer_summary(E.sup_table), on="layer", suffixes=("_ssl", "_sup"))


def classmem_figure(R, E: SecondEncoders):
    """ClassMem against UnitMem per layer, SSL (top row) and supervised (bottom row), on ``classmem_dataset``."""
    pair = R.P.pair
    return plots.unit_scatter_grid({"SSL": E.ssl_table, "supervised": E.sup_table}, R.layers,
                                   f"ClassMem vs UnitMem per layer, encoders trained on {E.shown}",
                                   R.S.report.caption(f"{pair.arch} x{pair.width}, {len(R.classmem[1])} {E.shown} "
                                                      f"training images"))


def classmem_on_second(R, E: SecondEncoders) -> None:
    """The claims of the CIFAR-10 ClassMem figure, checked on ``classmem_dataset``'s encoders."""
    classmem_claims(R.S.report, R.layers[-R.P.deep_layers:], layer_summary(E.ssl_table), layer_summary(E.sup_table),
                    E.ssl_table, E.sup_table, where=f" ({E.shown})")


def transfer_table(R, E: SecondEncoders) -> pd.DataFrame:
    """Linear-probe test accuracy (in [0, 1]) of the frozen SSL and supervised encoders of ``classmem_dataset``
    on it, on the pair's dataset and on each other dataset (``unitmem_interventions.probe_tasks``; each task
    normalised with its own training images' statistics). Columns: dataset, encoder ("SSL" or "supervised"),
    accuracy, n_test (the task's test images), pretrained on."""
    _, train, test = R.classmem
    tasks = {E.shown: data_task(train, test), **{k: v for k, v in probe_tasks(R).items() if k != E.shown}}
    rows = []
    for name, t in (("SSL", E.ssl), ("supervised", E.supervised)):
        acc = probe_all(R, tasks, t.encoder)
        rows += [{"dataset": k, "encoder": name, "accuracy": a, "n_test": len(tasks[k][3]), "pretrained on": E.shown}
                 for k, a in acc.items()]
    return pd.DataFrame(rows)


def transfer_figure(R, table: pd.DataFrame):
    """Probe accuracy per dataset, SSL beside supervised."""
    shown = table["pretrained on"].iloc[0]
    return plots.grouped_bars(table, "dataset", "encoder", "accuracy",
                              f"SSL vs supervised encoders pre-trained on {shown}: linear probes",
                              "linear probe accuracy", R.S.report.caption(f"{R.P.pair.arch} x{R.P.pair.width}"))


def better(table: pd.DataFrame, dataset: str, winner: str) -> tuple[float, str]:
    """Whether ``winner`` ("SSL" or "supervised") probes significantly better than the other encoder on
    ``dataset``: one-sided z on the accuracy difference with the Agresti-Caffo standard error over the task's
    n_test images, p < alpha decided by the caller. Returns ``(p, detail)``. The two probes share their test
    images, so this unpaired error is conservative."""
    t = table[table.dataset == dataset].set_index("encoder")
    loser = "SSL" if winner == "supervised" else "supervised"
    a, b, n = float(t.accuracy[winner]), float(t.accuracy[loser]), int(t.n_test[winner])
    p = accuracy_greater_p(a, b, n)
    return p, f"{winner} {a:.4f} vs {loser} {b:.4f} on {n} test images, p = {p:.2g}"


def transfer_claims(R, table: pd.DataFrame) -> None:
    """The transfer table's claims: the supervised encoder probes better on its own training dataset; and, when
    that dataset is CIFAR-100 as in the paper, the winner the paper reports (``PAPER_TRANSFER``) on each other
    probed dataset it lists. Each needs one-sided p < ``alpha`` (``better``)."""
    report, alpha = R.S.report, R.P.alpha
    shown = table["pretrained on"].iloc[0]
    checks = [(shown, "supervised")]
    if shown == "cifar100":
        checks += [(d, PAPER_TRANSFER[d]) for d in dict.fromkeys(table.dataset) if d != shown and d in PAPER_TRANSFER]
    for d, winner in checks:
        p, detail = better(table, d, winner)
        what = "its own dataset (test split)" if d == shown else f"{d} (the paper's transfer table)"
        report.claim(f"pre-trained on {shown}, the {winner} encoder probes better than the "
                     f"{'SSL' if winner == 'supervised' else 'supervised'} one on {what} (p < {alpha})",
                     p < alpha, detail)
