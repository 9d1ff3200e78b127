"""Benign memorization: training an encoder + projector on random labels (Anagnostidis et al., ICLR 2023;
methods.md section 5).

Network f = g o h: encoder h (``models.build_model``, the pooled output is the embedding; 512-d for the
CIFAR ResNet-18 of the paper) and projector g = Linear -> ReLU -> Linear with a ``hidden`` width.

Labels (``make_labels``): a label-noise fraction p replaces the clean labels of exactly round(p * n)
samples, chosen by the seed, by labels drawn uniformly over ``num_classes`` (p = 1: the random labels of
Zhang et al. 2017; a randomised label may coincide with the clean one). ``per_sample`` gives every sample
its own class (C = n, Fig. 8). Labels belong to a training *item*, drawn once: every augmentation of the
item, every epoch, keeps it.

Training sets (``TrainSet``) cover the paper's four regimes:
- ``plain``: item i is image i, augmented online (a fresh draw each epoch, ``aug``) or not (``aug="none"``);
- ``fixed``: item (i, k) is the k-th of B fixed, precomputed augmentations of image i (section 5.1, Fig. 5);
  its label is the image's (preserved) or its own (not preserved);
- ``iid``: item i is an anchor image with B same-class real examples; each epoch it is replaced by one of
  them ("i.i.d. augmentations", section 5, Table 4).

Loss: cross-entropy or MSE on one-hot targets (sum over classes, mean over the batch, as Lsuper of
appendix B); optional mixup (Beta(alpha, alpha), Zhang et al. 2018). Training stops when the unaugmented
training items are fitted (accuracy >= ``fit_target``) or the epoch/step budget runs out; the final fit is
recorded. Training runs on ``engine.fit`` (its own step: labels and mixup, then ``engine.accumulate_step``, the
loss in float32 from the outputs; the fit check and the monitor are an epoch-end callback). Runs are cached
(config + data fingerprint), checkpointed every epoch and resumable.

Measurements: K-NN / linear probes (``probes.py``), per-layer flattened outputs from stem to projector
output (``layer_names``, ``extract_layers``), the normalised invariance I(x; q, T) (section 5.2, Eq. 2),
the decomposition MSE = Inv + Bias (appendix B, Theorem B.2) and the benign/malign verdict (Definition 4.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from memlab.engine import dryrun
from memlab.augmentation.augment import Augmentation, hash_uniform
from memlab.io.cache import Cache
from memlab.engine.loop import Cosine, accumulate_step, fit, grad_scaler, order_batches, plan_steps
from memlab.models.networks import build_model
from memlab.streams import BENIGN_FIXED_VIEWS, BENIGN_IID, BENIGN_INVARIANCE, BENIGN_ORDER
from memlab.engine.train import config_key, fingerprint, resolve_device

HEAD_LAYERS = ("embedding", "P", "O")   # pooled encoder output, projector hidden (after ReLU), output
LOSSES = ("ce", "mse")
SCHEDULES = ("constant", "cosine")


# ----------------------------------------------------------------------------------------- labels
def make_labels(clean, noise: float, num_classes: int, seed: int, per_sample: bool = False) -> torch.Tensor:
    """Training labels: exactly round(noise * n) samples (a seeded random choice) get a label drawn
    uniformly from {0..num_classes-1}; the others keep ``clean``. ``per_sample``: label i -> a random
    permutation of 0..n-1 (one class per sample; requires noise = 1)."""
    clean = torch.as_tensor(clean).long()
    n = len(clean)
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"label noise must be in [0, 1], got {noise}")
    rng = np.random.default_rng(seed)
    if per_sample:
        if noise != 1.0:
            raise ValueError("per_sample labels replace every label: use noise = 1")
        return torch.from_numpy(rng.permutation(n)).long()
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if noise < 1.0 and n and int(clean.max()) >= num_classes:
        raise ValueError(f"clean labels go up to {int(clean.max())} but num_classes = {num_classes}")
    k = int(round(noise * n))
    noisy = rng.permutation(n)[:k]
    out = clean.clone()
    out[torch.from_numpy(noisy).long()] = torch.from_numpy(rng.integers(0, num_classes, size=k)).long()
    return out


def noisy_mask(n: int, noise: float, seed: int) -> torch.Tensor:
    """Which samples ``make_labels(..., noise, seed)`` randomised (same seeded choice)."""
    rng = np.random.default_rng(seed)
    m = torch.zeros(n, dtype=torch.bool)
    m[torch.from_numpy(rng.permutation(n)[:int(round(noise * n))]).long()] = True
    return m


# ----------------------------------------------------------------------------------------- network
class BenignNet(nn.Module):
    """Encoder h + projector g (Linear(m, hidden) -> ReLU -> Linear(hidden, C)); f(x) = g(h(x))."""

    def __init__(self, model: str, model_kw: dict, hidden: int, num_classes: int):
        super().__init__()
        if hidden < 1 or num_classes < 1:
            raise ValueError(f"hidden ({hidden}) and num_classes ({num_classes}) must be >= 1")
        self.encoder = build_model(model, **model_kw).to(memory_format=torch.channels_last)
        self.projector = nn.Sequential(nn.Linear(self.encoder.out_dim, hidden), nn.ReLU(),
                                       nn.Linear(hidden, num_classes))

    @property
    def layer_names(self) -> list:
        """Every probed layer, in network order: the encoder's, then embedding, P and O."""
        return list(self.encoder.layer_names) + list(HEAD_LAYERS)

    def forward(self, x):
        return self.projector(self.encoder.embed(x))

    def layer_outputs(self, x, layers=None) -> dict:
        """Flattened outputs (N, D) of ``layers`` (default all) from one pass, in network order."""
        layers = self.layer_names if layers is None else list(layers)
        bad = [l for l in layers if l not in self.layer_names]
        if bad:
            raise ValueError(f"unknown layer(s) {bad}; valid: {self.layer_names}")
        enc = [l for l in self.encoder.layer_names if l in layers]
        head = [l for l in HEAD_LAYERS if l in layers]
        last = self.encoder.layer_names[-1]
        feats = self.encoder.forward_features(x, enc + ([last] if head and last not in enc else []))
        out = {l: feats[l].flatten(1) for l in enc}
        if head:
            z = self.encoder._pool_final(feats[last])
            p = self.projector[1](self.projector[0](z))
            vals = {"embedding": z, "P": p, "O": self.projector[2](p) if "O" in head else None}
            out.update({l: vals[l] for l in head})
        return {l: out[l] for l in self.layer_names if l in out}


@torch.no_grad()
def extract_layers(net: BenignNet, images: torch.Tensor, normalize, layers, *, batch_size: int = 256,
                   device=None) -> dict:
    """{layer: (N, D) float CPU} flattened outputs on un-augmented images (``normalize``: uint8 -> input)."""
    device = device or next(net.parameters()).device
    net.eval()
    out = {l: [] for l in layers}
    for s in range(0, len(images), batch_size):
        f = net.layer_outputs(normalize(images[s:s + batch_size].to(device)), layers)
        for l in layers:
            out[l].append(f[l].float().cpu())
    return {l: torch.cat(v) for l, v in out.items()}


# ----------------------------------------------------------------------------------------- training sets
@dataclass
class TrainSet:
    """Training items: ``images`` (uint8 pool), per item its source image ``src``, its label, and for
    ``fixed`` its view slot ``view`` (0..B-1), for ``iid`` its B candidate images ``groups`` (item, B)."""
    images: torch.Tensor
    src: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    kind: str = "plain"                   # plain | fixed | iid
    view: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    def __post_init__(self):
        if self.kind not in ("plain", "fixed", "iid"):
            raise ValueError(f"kind must be plain, fixed or iid, got {self.kind!r}")
        self.src, self.labels = torch.as_tensor(self.src).long(), torch.as_tensor(self.labels).long()
        if len(self.src) != len(self.labels) or len(self.src) == 0:
            raise ValueError(f"{len(self.src)} items but {len(self.labels)} labels")
        if int(self.labels.max()) >= self.num_classes or int(self.labels.min()) < 0:
            raise ValueError(f"labels outside 0..{self.num_classes - 1}")
        if self.kind == "fixed" and (self.view is None or len(self.view) != len(self.src)):
            raise ValueError("a fixed-view training set needs one view slot per item")
        if self.kind == "iid" and (self.groups is None or len(self.groups) != len(self.src)):
            raise ValueError("an i.i.d. training set needs a group of examples per item")

    def __len__(self):
        return len(self.src)

    def fingerprint(self) -> str:
        return fingerprint(self.images, self.src, self.labels, self.view, self.groups) + f"-{self.kind}"


def plain_set(images, labels, num_classes: int) -> TrainSet:
    return TrainSet(images, torch.arange(len(images)), labels, num_classes)


def fixed_views_set(images, B: int, num_classes: int, seed: int, image_labels=None) -> TrainSet:
    """n * B items (i, k), k < B: the k-th fixed augmentation of image i (Fig. 5). ``image_labels``
    given: labels preserved (item (i, k) -> image_labels[i]); else every item gets its own random label."""
    n = len(images)
    if B < 1:
        raise ValueError(f"B must be >= 1, got {B}")
    src = torch.arange(n).repeat(B)
    view = torch.arange(B).repeat_interleave(n)
    labels = (torch.as_tensor(image_labels).long()[src] if image_labels is not None
              else make_labels(torch.zeros(n * B, dtype=torch.long), 1.0, num_classes, seed))
    return TrainSet(images, src, labels, num_classes, "fixed", view=view)


def iid_set(pool_images, pool_labels, anchors, B: int, labels, num_classes: int, seed: int) -> TrainSet:
    """Anchors (indices into the pool) each with B same-class examples from the rest of the pool, drawn
    without replacement: member 0 is the anchor itself, members 1..B-1 are other images ("i.i.d.
    augmentations", Table 4). ``labels``: one per anchor."""
    anchors = torch.as_tensor(anchors).long()
    pool_labels = torch.as_tensor(pool_labels).long()
    rng = np.random.default_rng(seed)
    free = np.ones(len(pool_labels), bool)
    free[anchors.numpy()] = False
    groups = []
    for a in anchors.tolist():
        cand = np.flatnonzero(free & (pool_labels.numpy() == int(pool_labels[a])))
        if len(cand) < B - 1:
            raise ValueError(f"not enough class-{int(pool_labels[a])} images for B = {B} i.i.d. examples")
        pick = rng.choice(cand, B - 1, replace=False)
        free[pick] = False
        groups.append([a, *pick.tolist()])
    return TrainSet(pool_images, anchors, labels, num_classes, "iid", groups=torch.tensor(groups).long())


# ----------------------------------------------------------------------------------------- configuration
@dataclass
class BenignConfig:
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
    torch.manual_seed(cfg.seed)
    return BenignNet(cfg.model, cfg.model_kw, cfg.hidden, num_classes)


# ----------------------------------------------------------------------------------------- batches
def batch_inputs(ts: TrainSet, items: torch.Tensor, aug, seed: int, epoch: int, device) -> torch.Tensor:
    """Model inputs of ``items`` in ``epoch``: online augmentation (plain), the fixed views (fixed) or
    an i.i.d. example (iid, then ``aug`` on top unless it is ``none``)."""
    items = torch.as_tensor(items).long()
    if ts.kind == "iid":
        u = hash_uniform(seed, BENIGN_IID + epoch, items.numpy(), 1)[:, 0]
        pick = torch.from_numpy(np.minimum((u * ts.groups.shape[1]).astype(np.int64), ts.groups.shape[1] - 1))
        src = ts.groups[items, pick]
    else:
        src = ts.src[items]
    x = ts.images[src].to(device)
    if ts.kind == "fixed":
        return aug(x, (src + ts.view[items] * len(ts.images)).numpy(), seed, BENIGN_FIXED_VIEWS)
    if getattr(aug, "name", "") == "none":
        return aug.normalize(x)
    return aug(x, src.numpy(), seed, epoch)


def fit_inputs(ts: TrainSet, items: torch.Tensor, aug, seed: int, device) -> torch.Tensor:
    """The *unaugmented* training items: the images themselves, or the fixed views for ``fixed``."""
    items = torch.as_tensor(items).long()
    x = ts.images[ts.src[items]].to(device)
    if ts.kind == "fixed":
        return aug(x, (ts.src[items] + ts.view[items] * len(ts.images)).numpy(), seed, BENIGN_FIXED_VIEWS)
    return aug.normalize(x)


@torch.no_grad()
def fit_accuracy(net, ts: TrainSet, aug, seed: int, device, batch_size: int = 512) -> float:
    """Accuracy of f on the unaugmented training items with their training labels."""
    net.eval()
    correct, n = 0, dryrun.cap(len(ts))  # a dry run checks a few items only
    for s in range(0, n, batch_size):
        items = torch.arange(s, min(n, s + batch_size))
        pred = net(fit_inputs(ts, items, aug, seed, device)).argmax(1).cpu()
        correct += int((pred == ts.labels[items]).sum())
    return correct / n


def mixup(x, targets, alpha: float, seed: int):
    """x' = lam x + (1 - lam) x[perm], y' = lam y + (1 - lam) y[perm], lam ~ Beta(alpha, alpha) per sample,
    perm a random permutation of the batch; all drawn from ``seed`` (no global RNG)."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=n)).float()
    perm = torch.from_numpy(rng.permutation(n)).long()
    lx = lam.view(-1, *([1] * (x.dim() - 1))).to(x.device)
    ly = lam.view(-1, 1).to(targets.device)
    return lx * x + (1 - lx) * x[perm.to(x.device)], ly * targets + (1 - ly) * targets[perm.to(targets.device)]


def loss_fn(kind: str, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ce: -sum_c t_c log softmax(out)_c; mse: ||out - t||^2 (sum over classes); both batch means."""
    out = out.float()
    if kind == "ce":
        return -(targets * F.log_softmax(out, 1)).sum(1).mean()
    return ((out - targets) ** 2).sum(1).mean()


# ----------------------------------------------------------------------------------------- training
@dataclass
class BenignRun:
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
            x, t = mixup(x, t, cfg.mixup, cfg.seed * 1_000_003 + i)
        x = x.contiguous(memory_format=torch.channels_last)
        # both losses are batch means, so micro-batches (cfg.micro_batch) accumulate the whole batch's gradient
        return accumulate_step(lambda part: loss_fn(cfg.loss, net(x[part]), t[part]), len(x), cfg.micro_batch,
                               opt, scaler, device, amp)

    check = _FitCheck(net, ts, aug, cfg, total, device, monitor)
    res = fit(step, order_batches(torch.arange(len(ts)), cfg.seed, bs, spe, stream=BENIGN_ORDER),
              epochs=cfg.max_epochs, optimizer=opt, schedule=Cosine(cfg.lr, total) if cfg.schedule == "cosine" else None,
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


# ----------------------------------------------------------------------------------------- measurements
def normalized_invariance(base: torch.Tensor, pairs) -> torch.Tensor:
    """Per-point I(x; q, T) (section 5.2, Eq. 2) from features ``base`` = q(x) of m points (m, D) and
    ``pairs`` = [(q(T1 x), q(T2 x)), ...] over independent augmentation pairs:

        I(x) = mean_pairs ||q(T1 x) - q(T2 x)||^2  /  mean_{x' != x} ||q(x) - q(x')||^2,

    the denominator over the other m - 1 points. NaN where the denominator is 0 (collapse)."""
    base = base.double().flatten(1)
    m = base.shape[0]
    if m < 2 or not pairs:
        raise ValueError("need at least 2 points and 1 augmentation pair")
    num = torch.stack([((a.double().flatten(1) - b.double().flatten(1)) ** 2).sum(1) for a, b in pairs]).mean(0)
    sq = (base ** 2).sum(1)
    den = (m * sq + sq.sum() - 2 * base @ base.sum(0)).clamp_min(0) / (m - 1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


class Monitor:
    """Recorded during training: K-NN accuracy of the embedding (clean probe bank -> test) and the mean
    normalised invariance of every layer over ``inv_images`` with ``inv_pairs`` pairs of ``inv_aug``."""

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
        from memlab.metrics.probes import knn_accuracy
        was = net.training
        net.eval()
        f = lambda imgs: extract_layers(net, imgs, self.normalize, ["embedding"])["embedding"]  # noqa: E731
        c = dryrun.cap  # a dry run looks at a few images only
        tr, te = slice(c(len(self.tr))), slice(c(len(self.te)))
        out = {"knn": knn_accuracy(f(self.tr[tr]), self.trl[tr], f(self.te[te]), self.tel[te], k=self.k)}
        if self.inv_images is not None:
            inv = self.inv_images[:c(len(self.inv_images))]
            out.update({f"inv/{l}": v for l, v in layer_invariance(net, inv, self.inv_aug, self.inv_pairs,
                                                                   self.seed).items()})
        net.train(was)
        return out


@torch.no_grad()
def layer_invariance(net: BenignNet, images: torch.Tensor, aug, n_pairs: int, seed: int = 0, layers=None,
                     chunk: int = 256) -> dict:
    """{layer: mean over the images of I(x; q_layer, T)} (``normalized_invariance``) with T ~ ``aug`` (fixed
    counter-based pairs). ``images``: uint8 (m, 3, H, W).

    Streams over chunks of ``chunk`` images, so memory holds one chunk's features of every layer, never all m
    images x 2 ``n_pairs`` + 1 passes (16 GiB in fp32 for 1,000 images, 11 passes and every layer of a
    ResNet-18). Two passes: the first accumulates the numerators, each point's squared norm and the sum of the
    features (float64); the second the dot products with that sum, which the denominator needs."""
    device = next(net.parameters()).device
    layers = net.layer_names if layers is None else layers
    m = len(images)
    if m < 2 or n_pairs < 1:
        raise ValueError("need at least 2 points and 1 augmentation pair")
    was = net.training
    net.eval()
    num = {l: torch.zeros(m, dtype=torch.float64) for l in layers}
    sq = {l: torch.zeros(m, dtype=torch.float64) for l in layers}
    total = {}
    for s in range(0, m, chunk):
        x = images[s:s + chunk].to(device)
        idx = np.arange(s, s + len(x))
        base = net.layer_outputs(aug.normalize(x), layers)
        for l in layers:
            b = base[l].double().flatten(1).cpu()
            sq[l][s:s + len(x)] = (b ** 2).sum(1)
            total[l] = b.sum(0) if l not in total else total[l] + b.sum(0)
        for p in range(n_pairs):
            va = net.layer_outputs(aug(x, idx, seed, BENIGN_INVARIANCE + 2 * p), layers)
            vb = net.layer_outputs(aug(x, idx, seed, BENIGN_INVARIANCE + 2 * p + 1), layers)
            for l in layers:
                num[l][s:s + len(x)] += ((va[l].double().flatten(1) - vb[l].double().flatten(1)) ** 2).sum(1).cpu()
    dots = {l: torch.zeros(m, dtype=torch.float64) for l in layers}
    for s in range(0, m, chunk):
        base = net.layer_outputs(aug.normalize(images[s:s + chunk].to(device)), layers)
        for l in layers:
            dots[l][s:s + len(base[l])] = base[l].double().flatten(1).cpu() @ total[l]
    net.train(was)
    out = {}
    for l in layers:
        den = (m * sq[l] + sq[l].sum() - 2 * dots[l]).clamp_min(0) / (m - 1)
        inv = torch.where(den > 0, (num[l] / n_pairs) / den.clamp_min(1e-300), torch.full_like(den, float("nan")))
        out[l] = float(torch.nanmean(inv))
    return out


def mse_decomposition(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Appendix B, Theorem B.2, for outputs f(T_a x_i) of shape (n, B, C) and targets y_i (n, C):

        Lsuper = 1/(nB) sum_i sum_a ||f(T_a x_i) - y_i||^2
        Inv    = 1/(2 n B^2) sum_i sum_{a,b} ||f(T_a x_i) - f(T_b x_i)||^2
        Bias   = 1/n sum_i ||y_i - 1/B sum_a f(T_a x_i)||^2,   and Lsuper = Inv + Bias exactly."""
    if outputs.dim() != 3 or targets.shape != (outputs.shape[0], outputs.shape[2]):
        raise ValueError(f"outputs must be (n, B, C) and targets (n, C); got {tuple(outputs.shape)}, "
                         f"{tuple(targets.shape)}")
    o, y = outputs.double(), targets.double()
    B = o.shape[1]
    mse = ((o - y[:, None]) ** 2).sum(-1).mean()
    inv = ((o[:, :, None] - o[:, None, :]) ** 2).sum(-1).sum((1, 2)).mean() / (2 * B * B)
    bias = ((y - o.mean(1)) ** 2).sum(-1).mean()
    return {"mse": float(mse), "inv": float(inv), "bias": float(bias)}


def knn_noise(p: float, n: int) -> float:
    """Two standard errors of the difference of two accuracies ~p measured on n test points:
    2 sqrt(2 p (1 - p) / n). Differences below it are "within noise"."""
    return 2.0 * math.sqrt(2.0 * p * (1.0 - p) / max(1, n))


def verdict(fit: float, probe: float, probe_init: float, fit_threshold: float = 1.0, tol: float = 0.0) -> str:
    """Definition 4.1: a memorisation (random labels fitted, fit >= fit_threshold) is *benign* when
    probing beats probing at initialisation (by more than ``tol``) and *malign* otherwise."""
    if fit < fit_threshold:
        return f"not a memorisation (fit {fit:.1%} < {fit_threshold:.0%})"
    return "benign" if probe > probe_init + tol else "malign"
