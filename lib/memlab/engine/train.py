"""Training with a ``TrainConfig`` (SSL objectives, supervised, random labels) on ``engine.fit``.

- ``device`` is a parameter; AMP (bf16, else fp16 with a GradScaler) on CUDA (``engine.autocast``).
- Linear warm-up then cosine decay to zero, computed from the global step (``engine.lr_at``; nothing to restore).
- Seeded and deterministic: weights from ``seed``; data order from (seed, epoch) (``engine.epoch_order``);
  augmentations from the counter-based hash (seed, epoch * n_views + v, example index), see ``augment.py``.
  A run interrupted after any epoch and resumed gives the same weights as an uninterrupted one.
- A checkpoint every epoch (atomic, written by ``engine.fit``), per-epoch history (loss, lr, time, optional
  probes), snapshots of the encoder at chosen epochs (Fig. 2b of SSLMem, UnitMem over training).

``view_step`` is the step hook every ``TrainConfig`` trainer shares (``train``, ``ensemble``, ``layermem``).
``encoder_job`` wraps ``train`` with the result cache: the key is the full config plus a fingerprint of the
training images and labels (``config.py``), so f and g (and every notebook that needs the same encoder) share it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memlab.augmentation.augment import Augmentation
from memlab.engine.checkpoints import Snapshots
from memlab.engine.config import TrainConfig, config_key, fingerprint
from memlab.engine.loop import Cosine, accumulate_step, fit, grad_scaler, order_batches, plan_steps
from memlab.io.cache import Cache
from memlab.models.networks import build_model
from memlab.objectives.losses import build_objective


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as a ``torch.device``. ValueError for
    ``"cuda"`` on a machine without CUDA."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def build(cfg: TrainConfig, num_classes: int | None = None):
    """Seeded model + objective (heads) for a config."""
    torch.manual_seed(cfg.seed)
    encoder = build_model(cfg.model, **cfg.model_kw).to(memory_format=torch.channels_last)  # ~3x faster convs
    kw = dict(cfg.objective_kw)
    if num_classes is not None and cfg.objective == "supervised":
        kw.setdefault("num_classes", num_classes)
    objective = build_objective(cfg.objective, encoder.out_dim, **kw)
    objective.bind(encoder, cfg.seed)
    return encoder, objective


def make_augmentation(cfg: TrainConfig, objective, preset: str | None = None) -> Augmentation:
    """The training augmentation of ``cfg`` (or another ``preset`` with the same normalisation)."""
    return Augmentation(preset or cfg.aug or objective.aug, mean=cfg.mean, std=cfg.std,
                        **(cfg.aug_kw if preset is None else {}))


class TrainingViews:
    """The views of one training step: ``objective.n_views`` global views from the training augmentation,
    then ``objective.n_local`` small multi-crop views (random-resized crops of ``local_scale``, resized to
    ``local_size``). View v of epoch e is drawn with counter ``e * (n_views + n_local) + v``, so every
    trainer (``train``, ``ensemble``, ``layermem_downstream.finetune``) sees the same views for the same seed."""

    def __init__(self, cfg: TrainConfig, objective, aug: Augmentation | None = None):
        self.aug = aug or make_augmentation(cfg, objective)
        self.n_views, self.n_local, self.local_size = objective.n_views, objective.n_local, objective.local_size
        self.local_aug = Augmentation(self.aug.cfg, mean=cfg.mean, std=cfg.std, crop="rrc",
                                      crop_scale=tuple(objective.local_scale)) if self.n_local else None

    def __call__(self, x: torch.Tensor, idx, seed: int, epoch: int) -> list:
        n_all = self.n_views + self.n_local
        views = [self.aug(x, idx, seed, epoch * n_all + v) for v in range(self.n_views)]
        for v in range(self.n_views, n_all):
            views.append(torch.nn.functional.interpolate(self.local_aug(x, idx, seed, epoch * n_all + v),
                                                         size=self.local_size, mode="bilinear",
                                                         align_corners=False, antialias=True))
        return views


def make_optimizer(cfg: TrainConfig, params):
    """The optimiser of ``cfg`` over ``params``: sgd (Nesterov momentum when momentum > 0), adam, adamw, or LARS
    (timm's ``Lars``: SGD with momentum and a layer-wise trust ratio, You et al. 2017; the SimCLR recipe of the
    SSLMem paper's Table 6, lr 4.8 at batch 4096)."""
    if cfg.optimizer == "lars":
        from timm.optim import Lars
        return Lars(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def optimizer_step(encoder, objective, views, labels, opt, scaler, device, amp: bool,
                   micro_batch: int = 0, forward=None) -> torch.Tensor:
    """One step (``engine.amp_step``): the objective's loss under autocast, scaled backward, optimiser step,
    then the objective's after-step hook (EMA teachers). Returns the detached loss.

    ``micro_batch`` > 0 and smaller than the batch (objectives in ``config.SPLITTABLE`` only): gradients accumulated
    over parts of at most ``micro_batch`` images, then one step (``engine.accumulate_step``; the cache key
    records ``micro_batch``).
    ``forward(views, labels) -> loss``: the loss through a wrapper (DDP's module); default ``objective.loss``."""
    forward = forward or (lambda v, y: objective.loss(encoder, v, y))
    return accumulate_step(lambda part: forward([v[part] for v in views], None if labels is None else labels[part]),
                           views[0].shape[0], micro_batch, opt, scaler, device, amp,
                           after_step=lambda: objective.after_step(encoder))


def view_step(cfg: TrainConfig, encoder, objective, images: torch.Tensor, labels, index: torch.Tensor, opt, scaler,
              device: torch.device, amp: bool, model=None):
    """The ``step`` hook of ``engine.fit`` for ``TrainConfig`` training: batch positions ``b`` (long) -> the
    ``TrainingViews`` of ``images[b]`` (uint8 N,3,H,W; moved to a CUDA device once) for (cfg.seed, epoch),
    keyed by the global indices ``index[b]`` -> ``optimizer_step`` with ``labels[b]`` (or None).
    ``model``: the DDP module of a process group (``ddp.distribute``); this process then takes its shard of
    every global batch (``ddp.shard``), whose views are the ones a single process draws for those images."""
    from memlab.engine import ddp
    make_views = TrainingViews(cfg, objective)
    images_dev = images.to(device) if device.type == "cuda" else images
    labels_dev = None if labels is None else labels.to(device)
    forward = None if model is None else (lambda v, y: model(v, y))

    def step(b: torch.Tensor, epoch: int, _step: int) -> torch.Tensor:
        b = ddp.shard(b)  # the whole batch in one process
        x = images_dev[b.to(images_dev.device)].to(device, non_blocking=True)
        views = make_views(x, index[b].numpy(), cfg.seed, epoch)
        y = None if labels_dev is None else labels_dev[b.to(device)]
        loss = optimizer_step(encoder, objective, views, y, opt, scaler, device, amp, cfg.micro_batch, forward)
        return loss if model is None else ddp.average(loss)  # the global batch's loss, whatever the objective
    return step


def train(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor | None = None,
          *, num_classes: int | None = None, device="auto", amp: bool = True,
          ckpt_dir=None, probe=None, probe_epochs=(), progress: bool = True, epoch_callback=None) -> dict:
    """Train on ``images`` (uint8 N,3,H,W, kept on CPU or device) and return
    ``{encoder, objective, history, snapshots}``.

    ``index``: global example indices of ``images`` (they key the augmentation draws, so a shared point
    gets the same augmentations in f's and g's training); default ``arange(N)``.
    ``probe(encoder, epoch) -> dict`` is called after the epochs in ``probe_epochs``.
    ``ckpt_dir``: resume from / write ``last.pt`` there every epoch (``engine.fit``; a damaged one is
    warned about, deleted, and training restarts from scratch).
    ``epoch_callback(epoch)`` runs after each checkpoint (tests use it to simulate an interruption).

    Inside a process group (``ddp.setup``; ``ddp.launch`` starts one) each process trains its shard of every
    batch through DistributedDataParallel; the loss and the step are the whole batch's (``ddp``), rank 0
    writes checkpoints and snapshots, and every rank resumes from them.
    """
    from memlab.engine import ddp
    device = resolve_device(device)
    n = images.shape[0]
    index = torch.arange(n) if index is None else torch.as_tensor(index)
    encoder, objective = build(cfg, num_classes)
    if objective.needs_labels and labels is None:
        raise ValueError(f"objective {cfg.objective!r} needs labels")
    encoder.to(device), objective.to(device)
    params = [p for p in list(encoder.parameters()) + list(objective.parameters()) if p.requires_grad]
    opt = make_optimizer(cfg, params)
    scaler = grad_scaler(device, amp)
    bs, spe, total, warmup = plan_steps(n, cfg.batch_size, cfg.epochs, cfg.warmup_epochs)
    rank, world = ddp.world()
    model = ddp.distribute(encoder, objective, device) if world > 1 else None
    step = view_step(cfg, encoder, objective, images, labels, index, opt, scaler, device, amp, model)
    probe_at = set(probe_epochs) if probe is not None else set()

    def run_probe(epoch, rec, _step):
        if epoch in probe_at:
            encoder.eval()
            rec.update(probe(encoder, epoch))

    snapshots = Snapshots(encoder, cfg.snapshot_epochs, folder=ckpt_dir, write=rank == 0)
    res = fit(step, order_batches(index, cfg.seed, bs, spe), epochs=cfg.epochs, optimizer=opt,
              schedule=Cosine(cfg.lr, total, warmup), modules=(encoder, objective),
              state={"encoder": encoder, "objective": objective, "optimizer": opt, "scaler": scaler},
              callbacks=(run_probe, snapshots), ckpt_dir=ckpt_dir, label=f"training {cfg.objective}/{cfg.model}",
              desc=f"train {cfg.objective}/{cfg.model} seed {cfg.seed}", progress=progress and rank == 0,
              after_epoch=epoch_callback, write=rank == 0)
    if world > 1:
        vars(objective).pop("gather", None)  # back to the class's single-process identity
    return {"encoder": encoder, "objective": objective, "history": res.history, "snapshots": snapshots.saved}


@dataclass
class Trained:
    """A trained encoder (eval mode) with its heads, history and snapshots, as served by the cache."""
    encoder: torch.nn.Module
    objective: torch.nn.Module
    history: list
    snapshots: dict
    config: TrainConfig
    key: str
    num_classes: int | None = None
    from_cache: bool = False

    @classmethod
    def from_state(cls, cfg: TrainConfig, state: dict, key: str, device, num_classes: int | None = None,
                   from_cache: bool = True) -> "Trained":
        """Rebuild ``cfg``'s encoder and heads from a cache entry's ``state`` ({encoder, objective (state dicts),
        history, snapshots (optional)}), in eval mode on ``device``."""
        encoder, objective = build(cfg, num_classes)
        encoder.load_state_dict(state["encoder"]), objective.load_state_dict(state["objective"])
        device = resolve_device(device)
        encoder.to(device).eval(), objective.to(device).eval()
        return cls(encoder, objective, state["history"], state.get("snapshots", {}), cfg, key, num_classes,
                   from_cache=from_cache)

    def measuring(self, preset: str = "") -> Augmentation:
        """The augmentation that measures this encoder (SSLMem view banks, UnitMem views): ``preset`` when given,
        else the encoder's own training augmentation (its config's, or its objective's default), with the
        encoder's normalisation. The one place of the rule "measure with the training augmentation"."""
        return Augmentation(preset or self.config.aug or self.objective.aug, mean=self.config.mean, std=self.config.std,
                            **({} if preset else self.config.aug_kw))

    def after(self, epoch: int) -> "Trained":
        """The encoder after ``epoch``: itself after its last epoch (so its cached scores and probes serve), else
        its snapshot (``at_epoch``)."""
        return self if epoch == self.config.epochs else self.at_epoch(epoch)

    def at_epoch(self, epoch: int) -> "Trained":
        """The encoder as snapshotted after ``epoch`` (its cache key gets an ``@epoch`` suffix)."""
        if epoch not in self.snapshots:
            raise KeyError(f"no snapshot after epoch {epoch}; snapshots: {sorted(self.snapshots)}")
        enc, _ = build(self.config, self.num_classes)
        enc.load_state_dict(self.snapshots[epoch])
        enc.to(next(self.encoder.parameters()).device).eval()
        return Trained(enc, self.objective, self.history[:epoch], {}, self.config, f"{self.key}@{epoch}",
                       self.num_classes, self.from_cache)


def views_per_image(cfg: TrainConfig) -> int:
    """Views of each image per training step: the objective's global views plus its multi-crop views."""
    try:  # the heads alone (cheap); an objective that needs its encoder is built with it
        obj = build_objective(cfg.objective, 8, **cfg.objective_kw)
    except Exception:
        obj = build(cfg, 10)[1]
    return obj.n_views + obj.n_local


def training_cost(cfg: TrainConfig, n: int, size: int = 32):
    """The cost (``costs.Cost``) of training ``cfg`` on ``n`` images of ``size`` x ``size`` pixels: every job of a
    ``TrainConfig`` is costed here, and so is a retraining declared before its points are known (``Plan.defer``)."""
    from memlab.engine.costs import Cost
    bs, spe = plan_steps(n, cfg.batch_size, cfg.epochs)[:2]
    return Cost.of(cfg.model, cfg.model_kw, epochs=cfg.epochs, steps_per_epoch=spe, batch=bs,
                   views=views_per_image(cfg), size=size, memory_batch=min(bs, cfg.micro_batch or bs))


def _encoder_files(cfg: TrainConfig, images, labels, index, num_classes, *, amp: bool = True, ckpt_dir, device,
                   progress: bool, epoch_callback, processes: int = 1) -> dict:
    """The work of an encoder job: ``train`` (resuming from ``ckpt_dir``), returned as the cache entry's files.
    ``processes`` > 1: one encoder over that many processes (``ddp.launch``: one per GPU, or gloo on the CPU)."""
    if processes > 1:
        from memlab.engine import ddp
        return ddp.launch(_encoder_files, processes, ckpt_dir, device,
                          dict(cfg=cfg, images=images, labels=labels, index=index, num_classes=num_classes, amp=amp,
                               ckpt_dir=ckpt_dir, progress=progress, epoch_callback=None))
    out = train(cfg, images, labels, index, num_classes=num_classes, device=device, amp=amp, ckpt_dir=ckpt_dir,
                progress=progress, epoch_callback=epoch_callback)
    return {"model.pt": {"encoder": {k: v.cpu() for k, v in out["encoder"].state_dict().items()},
                         "objective": {k: v.cpu() for k, v in out["objective"].state_dict().items()},
                         "history": out["history"], "snapshots": out["snapshots"]}}


def encoder_job(cfg: TrainConfig, images: torch.Tensor, labels=None, index=None, *, cache: Cache, data_id: str = "",
                name: str = "", amp: bool = True, force: bool = False):
    """The job (``jobs.Job``, kind "encoder") that trains ``cfg`` on ``images`` (uint8 N,3,H,W; ``labels`` int64
    (N,) or None; ``index``: the images' global indices, default arange(N)). Its cache key is the full config,
    a fingerprint of images, labels and index, and ``data_id``, so every notebook that needs the same encoder
    shares the entry. ``force`` retrains and replaces it."""
    from memlab.engine.jobs import Job, Stored
    images = torch.as_tensor(images)
    fp = fingerprint(images, labels, index)  # before index gets its default: the key train_encoder always had
    index = torch.arange(images.shape[0]) if index is None else torch.as_tensor(index)
    num_classes = None if labels is None else int(labels.max()) + 1
    key = {"train": config_key(cfg), "data": fp, "data_id": data_id,
           "num_classes": num_classes, "probe_epochs": []}
    cost = training_cost(cfg, images.shape[0], images.shape[-1])
    st = lambda t: None if t is None else Stored(torch.as_tensor(t), cache.root)  # noqa: E731
    args = {"cfg": cfg, "images": st(images), "labels": st(labels), "index": st(index), "num_classes": num_classes,
            "amp": amp}
    return Job(name or f"{cfg.objective}/{cfg.model} seed {cfg.seed}", "encoder", key, _encoder_files, args, cost,
               force)


def load_encoder(job, cache: Cache, device="auto", from_cache: bool = True) -> Trained:
    """The ``Trained`` encoder of an encoder job, read from the cache (eval mode, on ``device``).
    Raises ``cache.CorruptEntry``/FileNotFoundError when the job has not run."""
    return Trained.from_state(job.args["cfg"], cache.load(job.kind, job.key, "model.pt"), job.cache_key(cache),
                              device, job.args["num_classes"], from_cache)


def train_encoder(cfg: TrainConfig, images, labels=None, index=None, *, cache: Cache | None = None,
                  data_id: str = "", device="auto", amp: bool = True, force: bool = False, progress: bool = True,
                  epoch_callback=None) -> Trained:
    """Train (or load from the cache) one encoder here and now: ``encoder_job`` run inline (under the key's
    lock; an interrupted training resumes from its last epoch), then ``load_encoder``. Notebooks declare
    ``encoder_job`` in their plan instead."""
    from memlab.engine.jobs import run_job
    cache = cache or Cache()
    device = resolve_device(device)
    job = encoder_job(cfg, images, labels, index, cache=cache, data_id=data_id, amp=amp, force=force)
    status = run_job(job, cache.root, device=device, progress=progress, epoch_callback=epoch_callback)
    return load_encoder(job, cache, device, from_cache=status == "cached")
