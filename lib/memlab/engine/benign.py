"""Training f = g o h on a benign-memorization training set (Anagnostidis et al., ICLR 2023, sections 4-5;
methods.md section 5): the run's configuration, its job and its cached result.

Loss: cross-entropy or MSE on one-hot targets (sum over classes, mean over the batch, as Lsuper of appendix B);
optional mixup (Beta(alpha, alpha), Zhang et al. 2018). Training stops when the unaugmented training items are
fitted (accuracy >= ``fit_target``, Definition 4.1) or the epoch/step budget runs out; the final fit is recorded.
Training runs on ``engine.fit`` (its own step: labels and mixup, then ``engine.accumulate_step``, the loss in
float32 from the outputs; the fit check and an optional monitor are an epoch-end callback). Runs are cached
(config + data fingerprint + monitor), checkpointed every epoch and resumable.

The network is ``models.benign_net.BenignNet``; the training sets and labels are ``engine.benign_sets``; the
paper's measurements (invariance, MSE = Inv + Bias, the verdict) are ``metrics.benign``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from memlab.augmentation.augment import Augmentation
from memlab.engine import dryrun
from memlab.engine.benign_sets import TrainSet, batch_inputs, fit_inputs
from memlab.engine.loop import Cosine, accumulate_step, fit, grad_scaler, order_batches, plan_steps
from memlab.engine.train import config_key, resolve_device
from memlab.io.cache import Cache
from memlab.models.benign_net import BenignNet
from memlab.streams import BENIGN_ORDER, MIXUP_SEED_STRIDE

LOSSES = ("ce", "mse")
SCHEDULES = ("constant", "cosine")


# ----------------------------------------------------------------------------------------- configuration
@dataclass
class BenignConfig:
    """One benign-memorization run: network, loss, augmentation, optimiser and budget. Every field enters the
    run's cache key (``train.config_key``), so renaming or reordering one invalidates the cached runs. Raises
    ValueError for an unknown loss, schedule, optimiser or augmentation, or a number out of range."""
    model: str = "resnet9"
    model_kw: dict = field(default_factory=dict)
    hidden: int = 512                 # projector hidden width (Fig. 7)
    loss: str = "ce"                  # ce | mse (on one-hot targets)
    aug: str = "simclr"               # an augment.py preset ("none": no DA) or "randaugment"
    aug_kw: dict = field(default_factory=dict)   # randaugment: {"magnitude": M, "n_ops": N}
    mixup: float = 0.0                # Beta(alpha, alpha) mixup; 0 = off
    optimizer: str = "adam"           # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"        # constant | cosine (over the budget)
    batch_size: int = 128
    micro_batch: int = 0              # images per forward/backward pass, gradients accumulated (0: the whole batch)
    max_epochs: int = 100             # budget
    max_steps: int = 0                # budget in steps (0: epochs only)
    fit_target: float = 1.0           # stop once the unaugmented items are fitted this well
    eval_every: int = 5               # epochs between fit checks
    seed: int = 0
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.eval_every < 1 or self.hidden < 1:
            raise ValueError("max_epochs, batch_size, eval_every and hidden must be >= 1")
        if self.micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0 (0: the whole batch), got {self.micro_batch}")
        if self.mixup < 0 or self.max_steps < 0 or not 0 < self.fit_target <= 1:
            raise ValueError("mixup and max_steps must be >= 0 and fit_target in (0, 1]")
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        make_aug(self)  # reject an unknown augmentation before any compute


def make_aug(cfg: BenignConfig):
    """The training augmentation (an ``Augmentation`` or a ``RandAugment``) with cfg's normalisation."""
    if cfg.aug == "randaugment":
        from memlab.augmentation.randaugment import RandAugment
        return RandAugment(mean=cfg.mean, std=cfg.std, **cfg.aug_kw)
    return Augmentation(cfg.aug, mean=cfg.mean, std=cfg.std, **cfg.aug_kw)


def build_net(cfg: BenignConfig, num_classes: int) -> BenignNet:
    """The network of ``cfg`` with ``num_classes`` outputs, initialised from ``cfg.seed`` (the same seed gives the
    same initialisation: Table 2 compares every run with it)."""
    torch.manual_seed(cfg.seed)
    return BenignNet(cfg.model, cfg.model_kw, cfg.hidden, num_classes)


# ----------------------------------------------------------------------------------------- steps
@torch.no_grad()
def fit_accuracy(net, ts: TrainSet, aug, seed: int, device, batch_size: int = 512) -> float:
    """Accuracy in [0, 1] of f on the unaugmented training items (``fit_inputs``) with their training labels:
    the fit of Definition 4.1. A dry run checks a few items only."""
    net.eval()
    correct, n = 0, dryrun.cap(len(ts))  # a dry run checks a few items only
    for s in range(0, n, batch_size):
        items = torch.arange(s, min(n, s + batch_size))
        pred = net(fit_inputs(ts, items, aug, seed, device)).argmax(1).cpu()
        correct += int((pred == ts.labels[items]).sum())
    return correct / n


def mixup(x, targets, alpha: float, seed: int):
    """Mixup (Zhang et al. 2018) of a batch ``x`` (float (b, ...)) and its one-hot ``targets`` (float (b, C)):
    x' = lam x + (1 - lam) x[perm], y' = lam y + (1 - lam) y[perm], lam ~ Beta(alpha, alpha) per sample, perm a
    random permutation of the batch; all drawn from ``seed`` (no global RNG, so a resumed run draws the same)."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=n)).float()
    perm = torch.from_numpy(rng.permutation(n)).long()
    lx = lam.view(-1, *([1] * (x.dim() - 1))).to(x.device)
    ly = lam.view(-1, 1).to(targets.device)
    return lx * x + (1 - lx) * x[perm.to(x.device)], ly * targets + (1 - ly) * targets[perm.to(targets.device)]


def loss_fn(kind: str, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss (a float32 scalar) of logits ``out`` (b, C) against soft targets (b, C): ce:
    -sum_c t_c log softmax(out)_c; mse: ||out - t||^2 (sum over classes, Lsuper of appendix B); both batch
    means, so micro-batches accumulate the whole batch's gradient."""
    out = out.float()
    if kind == "ce":
        return -(targets * F.log_softmax(out, 1)).sum(1).mean()
    return ((out - targets) ** 2).sum(1).mean()


# ----------------------------------------------------------------------------------------- training
@dataclass
class BenignRun:
    """A trained (or cached) run: the network in eval mode and what its training recorded."""
    net: BenignNet
    history: list          # per epoch: loss, lr, time, (fit), (monitor values)
    fit: float             # final accuracy on the unaugmented training items
    epochs: int
    steps: int
    seconds: float
    stopped: str           # "fitted" | "budget"
    config: BenignConfig
    key: str
    from_cache: bool = False

    def series(self, name: str):
        """(epochs, values) of a recorded quantity."""
        rows = [h for h in self.history if name in h]
        return [h["epoch"] for h in rows], [h[name] for h in rows]


def _benign_files(cfg: BenignConfig, images, items: dict, monitor, amp: bool, desc: str, *, ckpt_dir, device,
                  progress: bool, epoch_callback) -> dict:
    """The work of a benign job: train f = g o h on the training set (resuming from ``ckpt_dir``)."""
    ts = TrainSet(images, **items)
    net = build_net(cfg, ts.num_classes).to(device)
    aug = make_aug(cfg)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    scaler = grad_scaler(device, amp)
    bs, spe, _, _ = plan_steps(len(ts), cfg.batch_size, cfg.max_epochs)
    total = cfg.max_epochs * spe if not cfg.max_steps else min(cfg.max_steps, cfg.max_epochs * spe)
    labels_dev = ts.labels.to(device)

    def step(items, epoch, i):
        x = batch_inputs(ts, items, aug, cfg.seed, epoch, device)
        # one-hot rows for this batch only: one class per sample (Fig. 8) has n classes, and an n x n identity
        # would take 9.3 GiB at n = 50,000
        t = torch.nn.functional.one_hot(labels_dev[items.to(device)], ts.num_classes).float()
        if cfg.mixup > 0:  # on the whole batch, before any split: pairs are drawn across the batch
            x, t = mixup(x, t, cfg.mixup, cfg.seed * MIXUP_SEED_STRIDE + i)
        x = x.contiguous(memory_format=torch.channels_last)
        # both losses are batch means, so micro-batches (cfg.micro_batch) accumulate the whole batch's gradient
        return accumulate_step(lambda part: loss_fn(cfg.loss, net(x[part]), t[part]), len(x), cfg.micro_batch,
                               opt, scaler, device, amp)

    check = _FitCheck(net, ts, aug, cfg, total, device, monitor)
    res = fit(step, order_batches(torch.arange(len(ts)), cfg.seed, bs, spe, stream=BENIGN_ORDER),
              epochs=cfg.max_epochs, optimizer=opt,
              schedule=Cosine(cfg.lr, total) if cfg.schedule == "cosine" else None,
              max_steps=total, modules=(net,), state={"net": net, "optimizer": opt, "scaler": scaler},
              callbacks=(check,), ckpt_dir=ckpt_dir,
              first_records=None if monitor is None else (lambda: [{"epoch": 0, **monitor(net, 0)}]),
              label=f"benign training ({cfg.aug}/{cfg.loss})", desc=desc or f"benign {cfg.aug}/{cfg.loss}",
              progress=progress, show=("fit",), after_epoch=epoch_callback)
    fit_acc, history = check.fit, res.history
    if not math.isfinite(fit_acc):
        fit_acc = fit_accuracy(net, ts, aug, cfg.seed, device)
    stopped = "fitted" if res.stopped else "budget"
    epochs_run = history[-1]["epoch"] if history else 0
    state = {"net": {k: v.cpu() for k, v in net.state_dict().items()}, "history": history, "fit": fit_acc,
             "epochs": epochs_run, "steps": res.steps, "seconds": res.seconds, "stopped": stopped}
    return {"run.pt": state}


def _key(cfg: BenignConfig, ts: TrainSet, monitor) -> dict:
    return {"benign": config_key(cfg), "data": ts.fingerprint(), "num_classes": ts.num_classes,
            "monitor": monitor.describe() if monitor is not None else None}


def benign_job(cfg: BenignConfig, ts: TrainSet, *, cache: Cache, monitor=None, name: str = "", amp: bool = True,
               force: bool = False):
    """The job (``jobs.Job``, kind "benign") that trains f = g o h on ``ts`` until it fits ``cfg.fit_target`` of
    its items or runs out of budget (``max_epochs``/``max_steps``; the cost counts the whole budget).
    ``monitor(net, epoch) -> dict`` (with ``monitor.describe()`` and ``monitor.every``) is recorded at epoch 0
    (initialisation), every ``monitor.every`` epochs and at the last epoch; it is part of the cache key."""
    from memlab.engine.jobs import Cost, Job, Stored
    bs, spe, _, _ = plan_steps(len(ts), cfg.batch_size, cfg.max_epochs)
    steps = cfg.max_epochs * spe if not cfg.max_steps else min(cfg.max_steps, cfg.max_epochs * spe)
    cost = Cost.of(cfg.model, cfg.model_kw, epochs=-(-steps // spe), steps_per_epoch=spe, batch=bs, views=1,
                   size=ts.images.shape[-1], memory_batch=min(bs, cfg.micro_batch or bs))
    items = {"src": ts.src, "labels": ts.labels, "num_classes": ts.num_classes, "kind": ts.kind, "view": ts.view,
             "groups": ts.groups}
    desc = name or f"benign {cfg.aug}/{cfg.loss}"
    return Job(desc, "benign", _key(cfg, ts, monitor), _benign_files,
               {"cfg": cfg, "images": Stored(ts.images, cache.root), "items": items, "monitor": monitor, "amp": amp,
                "desc": desc}, cost, force)


def load_benign(job, cache: Cache, device="auto", from_cache: bool = True) -> BenignRun:
    """The ``BenignRun`` of a benign job, read from the cache (the network in eval mode on ``device``)."""
    st = cache.load(job.kind, job.key, "run.pt")
    cfg = job.args["cfg"]
    net = build_net(cfg, job.args["items"]["num_classes"])
    net.load_state_dict(st["net"])
    net.to(resolve_device(device)).eval()
    return BenignRun(net, st["history"], st["fit"], st["epochs"], st["steps"], st["seconds"], st["stopped"], cfg,
                     job.cache_key(cache), from_cache=from_cache)


def train_benign(cfg: BenignConfig, ts: TrainSet, *, cache: Cache | None = None, device="auto", amp: bool = True,
                 force: bool = False, monitor=None, progress: bool = True, desc: str = "",
                 epoch_callback=None) -> BenignRun:
    """Train (or load) ``benign_job`` here and now (inline; an interrupted training resumes from its last
    epoch). Notebooks declare ``benign_job`` in their plan instead."""
    from memlab.engine.jobs import run_job
    cache = cache or Cache()
    device = resolve_device(device)
    job = benign_job(cfg, ts, cache=cache, monitor=monitor, name=desc, amp=amp, force=force)
    status = run_job(job, cache.root, device=device, progress=progress, epoch_callback=epoch_callback)
    return load_benign(job, cache, device, from_cache=status == "cached")


class _FitCheck:
    """Epoch-end callback of ``train_benign``: records ``steps``; every ``eval_every`` epochs and at the last
    one the fit on the unaugmented items (``fit``; reaching ``fit_target`` stops training); the monitor every
    ``monitor.every`` epochs and at the last one. The latest fit is checkpointed."""

    def __init__(self, net, ts, aug, cfg, total, device, monitor):
        self.net, self.ts, self.aug, self.cfg, self.total, self.device = net, ts, aug, cfg, total, device
        self.monitor, self.fit = monitor, float("nan")

    def __call__(self, epoch, rec, step):
        cfg, stop = self.cfg, False
        rec["steps"] = step
        last = step >= self.total or epoch == cfg.max_epochs
        if epoch % cfg.eval_every == 0 or last:
            self.fit = rec["fit"] = fit_accuracy(self.net, self.ts, self.aug, cfg.seed, self.device)
            if self.fit >= cfg.fit_target:
                stop = last = True
        if self.monitor is not None and (epoch % self.monitor.every == 0 or last):
            rec.update(self.monitor(self.net, epoch))
        return stop

    def state_dict(self):
        return {"fit": self.fit}

    def load_state_dict(self, state):
        self.fit = float(state["fit"])

