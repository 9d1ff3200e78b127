"""Downstream use of LayerMem (Wang et al., NeurIPS 2024, §5; methods.md §3): fine-tune only the most memorising
layers of f on a second dataset, or replace them by the layers of an encoder trained there, and probe the result.
Notebook 04's last section; the layers are chosen from a LayerMem table (``metrics.layermem.layer_table``).

``layer_keys`` maps a layer to the parameters and buffers that compute it, ``finetune`` trains only those (on
``engine.fit``, with ``train.view_step`` as its step and a seeded permutation as its batches), ``replace_layers``
swaps them between two encoders of one architecture. ``finetune_table`` and ``replacement_table`` are the
notebook's two tables; every probe, fine-tuning and replacement is a cache entry.
"""
from __future__ import annotations

import copy
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from memlab.augmentation.augment import Augmentation
from memlab.data.splits import balanced_subset
from memlab.engine.loop import Cosine, fit, grad_scaler
from memlab.engine.train import resolve_device, view_step
from memlab.io import plots
from memlab.metrics.probes import extract, knn_accuracy, linear_probe
from memlab.models.networks import CNN, ResNet, ResNet9, ViT
from memlab.streams import SplitSeed


# ----------------------------------------------------------------------------- which parameters compute a layer
def _prefixes(encoder) -> dict:
    """{layer: state-dict key prefixes of the modules that compute it (from the previous layer's output)}."""
    names = list(encoder.layer_names)
    if isinstance(encoder, ResNet9):
        return {n: [f"{n}." if n == "prep" or "." in n else f"{n}.conv."] for n in names}
    if isinstance(encoder, ResNet):
        return {n: [f"{n}."] for n in names}
    if isinstance(encoder, CNN):
        return {n: [f"blocks.{i}."] for i, n in enumerate(names)}
    if isinstance(encoder, ViT):
        out = {"patch_embed": ["vit.patch_embed.", "vit.cls_token", "vit.pos_embed", "vit.reg_token",
                               "vit.norm_pre."], "norm": ["vit.norm."]}
        for n in names:
            m = re.fullmatch(r"block(\d+)\.(attn|mlp)", n)
            if m:
                i, j = m.group(1), "1" if m.group(2) == "attn" else "2"
                out[n] = [f"vit.blocks.{i}.norm{j}.", f"vit.blocks.{i}.{m.group(2)}.", f"vit.blocks.{i}.ls{j}."]
        return out
    raise TypeError(f"no layer-to-parameter map for {type(encoder).__name__}")


def layer_keys(encoder, layers) -> list[str]:
    """The state-dict keys (parameters and buffers) of the modules that compute ``layers`` from the previous
    layer's output: what ``finetune`` trains and ``replace_layers`` swaps. Every key of a ResNet-9, CIFAR ResNet,
    CNN or ViT belongs to exactly one layer. Raises ValueError for a layer the encoder does not have, TypeError
    for an architecture without a layer-to-parameter map."""
    encoder._check_layers(layers)
    pre = _prefixes(encoder)
    want = [p for l in layers for p in pre[l]]
    return [k for k in encoder.state_dict() if any(k.startswith(p) for p in want)]


# ----------------------------------------------------------------------------- choose, fine-tune, replace
STRATEGIES = ("LayerMem", "Delta", "last", "random", "least LayerMem", "least Delta")


def pick_layers(table: pd.DataFrame, k: int, strategy: str, *, column: str = "random", seed: int = 0) -> list:
    """The k layers the paper's §5 fine-tunes or replaces, from ``table`` (``metrics.layermem.layer_table``):
    the highest mean LayerMem or Delta-LayerMem of group ``column`` ("LayerMem", "Delta"), the lowest ("least
    LayerMem", "least Delta"), the last k ("last"), or k random layers fixed by ``seed`` ("random"). Returned in
    network order. Raises ValueError for an unknown strategy or k outside 1..number of layers."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    layers = list(table.layer)
    if not 1 <= k <= len(layers):
        raise ValueError(f"k={k} must lie in 1..{len(layers)}")
    if strategy == "last":
        chosen = layers[-k:]
    elif strategy == "random":
        chosen = list(np.random.default_rng(seed).choice(layers, k, replace=False))
    else:
        col = f"{'Delta' if 'Delta' in strategy else 'LayerMem'} {column}"
        v = table.set_index("layer")[col]
        chosen = list((v.nsmallest(k) if strategy.startswith("least") else v.nlargest(k)).index)
    return [l for l in layers if l in set(chosen)]


def _freeze_bn(module: nn.Module) -> None:
    """Frozen normalisation layers must not update their running statistics either."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def finetune(trained, layers, images, index=None, *, epochs: int, lr: float, batch_size: int = 256, seed: int = 0,
             device="auto", amp: bool = True, progress: bool = True):
    """Fine-tune only ``layers`` of ``trained`` (a ``train.Trained``) with its own SSL objective and training
    augmentation on ``images`` (uint8, N,3,H,W; ``index``: their view ids, default 0..N-1); every other
    parameter and BatchNorm statistic stays frozen. SGD (momentum 0.9, weight decay 5e-4), cosine schedule, AMP
    on CUDA, ``N // batch_size`` steps per epoch, batches and views fixed by ``seed``. Returns ``(encoder,
    history)``, the encoder a copy in eval mode, history one {"loss", ...} per epoch; ``trained`` is untouched.
    Raises ValueError for epochs < 1, lr <= 0 or a supervised encoder."""
    if epochs < 1 or lr <= 0:
        raise ValueError(f"epochs must be >= 1 and lr > 0, got {epochs}, {lr}")
    if trained.objective.needs_labels:
        raise ValueError("finetune uses the encoder's SSL objective; got a supervised encoder")
    dev = resolve_device(device)
    keys = set(layer_keys(trained.encoder, layers))
    enc, obj = copy.deepcopy(trained.encoder).to(dev), copy.deepcopy(trained.objective).to(dev)
    for n, p in enc.named_parameters():
        p.requires_grad_(n in keys)
    params = [p for p in [*enc.parameters(), *obj.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    n = len(images)
    index = torch.arange(n) if index is None else torch.as_tensor(index)
    bs = min(batch_size, n)
    steps = max(1, n // bs)
    gen = torch.Generator().manual_seed(seed)
    scaler = grad_scaler(dev, amp)
    cfg = replace(trained.config, seed=seed)  # view_step draws the views of (seed, epoch)

    def batches(epoch):
        perm = torch.randperm(n, generator=gen)
        return [perm[i * bs:(i + 1) * bs] for i in range(steps)]

    res = fit(view_step(cfg, enc, obj, images, None, index, opt, scaler, dev, amp), batches, epochs=epochs,
              optimizer=opt, state={}, schedule=Cosine(lr, epochs * steps), modules=(enc, obj),
              epoch_start=lambda epoch: _freeze_bn(enc), epoch_loss=lambda ls: float(np.mean([float(v) for v in ls])),
              label=f"fine-tuning {','.join(layers)}", desc=f"fine-tune {','.join(layers)}", progress=progress)
    for p in enc.parameters():
        p.requires_grad_(True)
    return enc.eval(), res.history


def replace_layers(target, source, layers):
    """A copy of encoder ``target`` (eval mode) whose ``layers`` (parameters and buffers, ``layer_keys``) come
    from ``source``, an encoder of the same architecture (§5: trained on another dataset). Neither input is
    modified. Raises ValueError when the two state dicts differ in keys or shapes."""
    keys = layer_keys(target, layers)
    ts, ss = target.state_dict(), source.state_dict()
    bad = [k for k in ts if k not in ss or ss[k].shape != ts[k].shape]
    if bad:
        raise ValueError(f"source and target encoders differ in architecture (e.g. {bad[:3]})")
    out = copy.deepcopy(target)
    out.load_state_dict({**ts, **{k: ss[k].to(ts[k].device) for k in keys}})
    return out.eval()


# ----------------------------------------------------------------------------- notebook 04's downstream tables
def probe_tasks(R) -> dict:
    """{task: (train images, train labels, test images, test labels)} of notebook 04's probes: the pair's dataset
    (f's training points; ``probe_test`` balanced test images) and the second dataset, keyed "<name> (2nd)".
    ``R``: an ``experiments.layermem.LayerMemRun``."""
    P, pair = R.P, R.P.pair
    test = R.test_data
    probe_idx = balanced_subset(test.labels.numpy(), min(P.probe_test, len(test)),
                                pair.split_seed + SplitSeed.PROBE_TEST)
    f_train = R.splits.f_train
    return {pair.dataset: (R.train_data.images[f_train], R.train_data.labels[f_train], test.images[probe_idx],
                           test.labels[probe_idx]),
            f"{R.second_train.name} (2nd)": (R.second_train.images, R.second_train.labels, R.second_test.images,
                                              R.second_test.labels)}


def probe(R, tasks: dict, encoder, task: str) -> float:
    """Accuracy in [0, 1] of ``P.probe_kind`` ("linear", or "knn": 20-NN) on ``encoder``'s features of ``task``;
    inputs are normalised with f's training statistics."""
    xtr, ytr, xte, yte = tasks[task]
    norm = Augmentation("none", mean=R.cfg.mean, std=R.cfg.std).normalize
    a, b = extract(encoder, xtr, norm, device=R.S.device), extract(encoder, xte, norm, device=R.S.device)
    if R.P.probe_kind == "linear":
        return linear_probe(a, ytr, b, yte, device=R.S.device)
    return knn_accuracy(a, ytr, b, yte)


def finetune_table(R, table: pd.DataFrame) -> pd.DataFrame:
    """Fine-tune ``k_layers`` layers of f (its first seed) on the second dataset, chosen by LayerMem, by Delta-
    LayerMem, the last ones, or at random (``random_draws`` draws), and probe it there. One row per choice
    (strategy, layers, accuracy, final loss, group: the strategy without the draw number), after the frozen f."""
    P, S, pair = R.P, R.S, R.P.pair
    f0, tasks = R.f[0], probe_tasks(R)
    second = list(tasks)[1]
    choices = {s: pick_layers(table, P.k_layers, s) for s in ("LayerMem", "Delta", "last")}
    for d in range(P.random_draws):
        choices[f"random #{d + 1}"] = pick_layers(table, P.k_layers, "random",
                                                  seed=pair.split_seed + SplitSeed.RANDOM_LAYERS + d)
    n = [P.second_n_train, P.second_n_test, pair.split_seed]
    rows = [{"strategy": "none (frozen f)", "layers": "", "accuracy": S.cache.get_or_compute(
        "layer_probe", {"enc": f0.key, "task": second, "n": n, "probe": P.probe_kind},
        lambda: probe(R, tasks, f0.encoder, second), force=P.force)}]
    for s, ls in choices.items():
        key = {"enc": f0.key, "layers": ls, "epochs": P.finetune_epochs, "lr": P.finetune_lr,
               "data": R.second_train.name, "n": n, "seed": pair.split_seed, "probe": P.probe_kind}

        def run(ls=ls):  # a few epochs of a few layers: fine-tuned here, not a job of the plan
            enc, hist = finetune(f0, ls, R.second_train.images, epochs=P.finetune_epochs, lr=P.finetune_lr,
                                 batch_size=pair.batch_size, seed=pair.split_seed, device=S.device)
            return {"acc": probe(R, tasks, enc, second), "loss": hist[-1]["loss"]}

        r = S.cache.get_or_compute("layer_finetune", key, run, force=P.force)
        rows.append({"strategy": s, "layers": ", ".join(ls), "accuracy": r["acc"], "final loss": r["loss"]})
    ft = pd.DataFrame(rows)
    ft["group"] = ft.strategy.str.replace(r" #\d+$", "", regex=True)
    return ft


def replacement_table(R, table: pd.DataFrame) -> pd.DataFrame:
    """Replace layers of f (first seed) by those of the encoder trained on the second dataset -- the most / least
    memorising by LayerMem or Delta-LayerMem, or random ones -- and probe both datasets, for each count of
    ``replace_counts`` (the paper: 1, 2 and 3 layers; its main table: 2). One row per (count, choice, dataset)
    with "k layers"; "none (f)" (k 0) and "all (second-dataset encoder)" (k = every layer) bracket them."""
    P, S, pair = R.P, R.S, R.P.pair
    f0, m2, tasks, layers = R.f[0], R.load(R.jobs["second"]), probe_tasks(R), list(table.layer)
    print(f"second-dataset encoder: {'cache' if m2.from_cache else 'trained'}, final loss {m2.history[-1]['loss']:.3f}")
    runs = [("none (f)", 0, [])]
    for k in P.replace_counts:
        choices = {"most (LayerMem)": pick_layers(table, k, "LayerMem"), "most (Delta)": pick_layers(table, k, "Delta"),
                   "least (LayerMem)": pick_layers(table, k, "least LayerMem"),
                   "least (Delta)": pick_layers(table, k, "least Delta")}
        for d in range(P.random_draws):   # the same draw seeds at every count
            choices[f"random #{d + 1}"] = pick_layers(table, k, "random",
                                                      seed=pair.split_seed + SplitSeed.RANDOM_REPLACED + d)
        runs += [(s, k, ls) for s, ls in choices.items()]
    runs.append(("all (second-dataset encoder)", len(layers), layers))
    rows = []
    for s, k, ls in runs:
        key = {"target": f0.key, "source": m2.key, "layers": list(ls),
               "probe": [P.probe_kind, P.probe_test, P.second_n_train, P.second_n_test, pair.split_seed]}

        def run(ls=ls):
            enc = replace_layers(f0.encoder, m2.encoder, ls) if ls else f0.encoder
            return {t: probe(R, tasks, enc, t) for t in tasks}

        accs = S.cache.get_or_compute("layer_replace", key, run, force=P.force)
        rows += [{"k layers": k, "strategy": s, "layers": ", ".join(ls) if ls != layers else "all", "dataset": t,
                  "accuracy": v} for t, v in accs.items()]
    rep = pd.DataFrame(rows)
    rep["group"] = rep.strategy.str.replace(r" #\d+$", "", regex=True)
    return rep


def replaced(rep: pd.DataFrame, k: int) -> pd.DataFrame:
    """The rows of ``replacement_table`` for k replaced layers, with the brackets "none (f)" and "all"."""
    return rep[(rep["k layers"] == k) | rep.strategy.isin(["none (f)", "all (second-dataset encoder)"])]


def finetune_figure(R, ft: pd.DataFrame):
    """Probe accuracy on the second dataset per fine-tuning strategy (bars; random: the mean over draws)."""
    P, second = R.P, R.second_train.name
    acc = ft.groupby("group", sort=False).accuracy.mean()
    fig = plots.bars(acc.to_dict(), f"Fine-tuning {P.k_layers} chosen layers on {second}",
                     f"{P.probe_kind} probe accuracy ({second})",
                     R.S.report.caption(f"{P.finetune_epochs} epochs, lr {P.finetune_lr}, random: mean of "
                                        f"{P.random_draws} draws"))
    fig.axes[0].set_ylim(max(0, acc.min() - 0.05), None)
    return fig


def replacement_figure(R, rep: pd.DataFrame):
    """Probe accuracy on both datasets per replacement strategy (grouped bars; random: the mean over draws), one
    panel per count of replaced layers (``replace_counts``; f and the second encoder in every panel)."""
    parts = [replaced(rep, k).assign(panel=f"{k} layer{'s' if k > 1 else ''}") for k in R.P.replace_counts]
    df = pd.concat(parts).groupby(["panel", "dataset", "group"], sort=False).accuracy.mean().reset_index()
    fig = plots.grouped_bars(df, "group", "dataset", "accuracy",
                             f"Replacing layers of f with the {R.second_train.name} encoder's",
                             f"{R.P.probe_kind} probe accuracy", R.S.report.caption("random: mean over draws"),
                             panels="panel")
    for ax in fig.axes:
        ax.tick_params(axis="x", labelrotation=25, labelsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the rotated labels and the caption
    return fig
