"""Train N networks of one paradigm from different seeds and record, at chosen epochs, the recognition
indicator of every (image, fixed augmentation) of a subset X (Sadrtdinov et al. 2021, §3; methods.md §1).

- Network n uses ``replace(cfg, seed=seeds[n])``: its own initialisation, data order and training
  augmentations. The evaluation views come from one ``ViewBank`` shared by every network and epoch.
- Records are bool ``(E, M, |X|)`` per network, stored as bitsets (``profiles.pack_bits``) in the cache, one
  entry per network (kind ``profile_net``) with the final weights and the training history.
- Training runs on ``engine.fit`` (schedule, AMP, divergence check, checkpoints); the recognition records
  are its epoch-end callback (``_Records``).
- Resumable: the work in progress of a network (weights, optimiser, records so far) is checkpointed
  atomically after every epoch; a killed run resumes at the last finished network and epoch and gives the
  same numbers as an uninterrupted one.
- Every network is a job (``network_jobs``, ``jobs.py``), so a notebook's plan lists them and an executor
  trains them: one after another, one single-threaded worker per CPU core (small networks barely use a
  second thread, so whole networks in parallel are the cheap speed-up), one per GPU, or a SLURM array.
  ``ensemble_backend`` chooses between those jobs and training all pending networks at once with
  ``torch.func`` (stacked weights, ``vmap`` over networks), which pays off on a GPU for small models.
  ``benchmarks/bench_ensemble.py`` measures them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import replace

import numpy as np
import torch

from memlab.engine import dryrun
from memlab.augmentation.augment import ViewBank
from memlab.io.cache import Cache
from memlab.engine.loop import Cosine, amp_step, autocast, fit, grad_scaler, order_batches, plan_steps
from memlab.metrics.profiles import eval_chunks, pack_bits, recognized_classification, recognized_in_batch, unpack_bits
from memlab.engine.train import (TrainConfig, TrainingViews, build, config_key, fingerprint, make_optimizer, resolve_device,
                    training_cost, view_step)

RECOGNITION = {"supervised": "classification", "simclr": "in_batch"}
VMAP_MAX_PARAMS = 5_000_000  # per network; larger models train in a loop (memory, and little to gain)


def recognition_kind(cfg: TrainConfig) -> str:
    if cfg.objective not in RECOGNITION:
        raise ValueError(f"no recognition indicator for objective {cfg.objective!r}; choose from {sorted(RECOGNITION)}")
    return RECOGNITION[cfg.objective]


def views_needed(cfg: TrainConfig, n_aug: int) -> int:
    """Views the bank must hold for M augmentations: M (classification) or 2M (SimCLR view pairs)."""
    return n_aug * (2 if recognition_kind(cfg) == "in_batch" else 1)


def ensemble_backend(device, cfg: TrainConfig, backend: str = "auto", n_networks: int = 2) -> str:
    """How to train the N networks: ``"jobs"`` (one job per network, run by an executor: one after another,
    or one single-threaded worker per CPU core / one per GPU with ``executor="local"``) or ``"vmap"``
    (torch.func, all pending networks at once in this process). ``auto``: vmap on CUDA for models under
    ``VMAP_MAX_PARAMS`` parameters and >= 2 networks, else jobs (see benchmarks/bench_ensemble.py)."""
    if backend == "procs":
        raise ValueError("backend 'procs' is now the local executor: use backend='jobs' (or 'auto') with "
                         "executor='local'")
    if backend not in ("auto", "jobs", "vmap"):
        raise ValueError(f"backend must be 'auto', 'jobs' or 'vmap', got {backend!r}")
    if backend == "vmap" and 0 < cfg.micro_batch < cfg.batch_size:
        raise ValueError(f"micro_batch = {cfg.micro_batch}: the vmap backend steps every network on its whole "
                         f"batch; use backend 'jobs' (or 'auto'), which accumulates the micro-batches")
    if backend != "auto":
        return backend
    if resolve_device(device).type != "cuda" or n_networks < 2 or 0 < cfg.micro_batch < cfg.batch_size:
        return "jobs"
    enc, obj = build(cfg, 10)
    n = sum(p.numel() for p in list(enc.parameters()) + list(obj.parameters()))
    return "vmap" if n <= VMAP_MAX_PARAMS else "jobs"


@torch.no_grad()
def record(encoder, objective, cfg: TrainConfig, images: torch.Tensor, labels, index, bank: ViewBank,
           n_aug: int, eval_batch: int = 256, device="cpu", amp: bool = True) -> np.ndarray:
    """Recognition indicators, bool (M, |X|), of one network on X (``images`` uint8 = data[index]).

    Classification: I = [argmax logits(view m of x) == label(x)]. SimCLR: view pair m = bank views (2m, 2m+1),
    scored inside the fixed evaluation batches ``eval_chunks(|X|, eval_batch)``, anchor = first view."""
    kind = recognition_kind(cfg)
    if bank.n_views < views_needed(cfg, n_aug):
        raise ValueError(f"the view bank holds {bank.n_views} views; {views_needed(cfg, n_aug)} are needed")
    encoder.eval(), objective.eval()
    device = torch.device(device)
    out = np.zeros((n_aug, len(index)), dtype=bool)
    index = torch.as_tensor(index)
    ctx = lambda: autocast(device, amp)[0]  # noqa: E731
    for chunk in eval_chunks(len(index), eval_batch):
        x, gidx = images[chunk].to(device), index[chunk].numpy()
        for m in range(n_aug):
            with ctx():
                if kind == "classification":
                    logits = objective.logits(encoder, bank.view(x, gidx, m))
                    hit = recognized_classification(logits.float(), torch.as_tensor(labels)[chunk])
                else:
                    v = torch.cat([bank.view(x, gidx, 2 * m), bank.view(x, gidx, 2 * m + 1)])
                    z = objective.projector(encoder.embed(v, rep="pooled")).float()
                    hit = recognized_in_batch(*z.chunk(2))
            out[m, chunk] = hit.cpu().numpy()
    return out


# ----------------------------------------------------------------------------- shared bits
def _net_key(cfg, seed, data_fp, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes):
    return {"train": config_key(replace(cfg, seed=int(seed))), "data": data_fp, "X": [int(i) for i in x_pos],
            "bank": bank.describe(), "n_aug": int(n_aug), "record_epochs": [int(e) for e in record_epochs],
            "recognition": recognition_kind(cfg), "eval_batch": int(eval_batch), "num_classes": num_classes}


def _check(cfg, record_epochs, x_pos, n_images):
    bad = [e for e in record_epochs if not 1 <= e <= cfg.epochs]
    if bad or not record_epochs:
        raise ValueError(f"record_epochs must be a non-empty list within 1..{cfg.epochs}; bad: {bad}")
    x_pos = np.asarray(x_pos)
    if x_pos.size == 0 or x_pos.min() < 0 or x_pos.max() >= n_images or len(np.unique(x_pos)) != x_pos.size:
        raise ValueError(f"X must be distinct positions in the training set (0..{n_images - 1})")


def _result(records, n_points, history, encoder, objective):
    return {"records": pack_bits(np.stack(records)), "n_points": n_points, "history": history,
            "encoder": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
            "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()}}


class _Records:
    """Epoch-end callback of ``engine.fit``: after each epoch in ``record_epochs``, the recognition records
    (bool (M, |X|), ``record``) of every network of ``nets() -> iterable of (encoder, objective, cfg)``;
    ``rec["mean_p"]`` gets their means (a float for one network, else a list). Checkpointed as bitsets."""

    def __init__(self, nets, n_nets, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, device,
                 amp):
        x_pos = x_pos[:dryrun.cap(len(x_pos))]  # a dry run records a few points only
        self.nets, self.n_points, self.want = nets, len(x_pos), set(record_epochs)
        self.x = (images[x_pos], None if labels is None else labels[x_pos], index[x_pos], bank, n_aug, eval_batch,
                  device, amp)
        self.records = [[] for _ in range(n_nets)]

    def __call__(self, epoch, rec, _step):
        if epoch not in self.want:
            return
        t1, p = time.time(), []
        for j, (encoder, objective, cfg) in enumerate(self.nets()):
            self.records[j].append(record(encoder, objective, cfg, *self.x))
            p.append(float(self.records[j][-1].mean()))
        rec["mean_p"], rec["record_time"] = p[0] if len(p) == 1 else p, time.time() - t1

    def state_dict(self):
        return {"records": [pack_bits(np.stack(r)) if r else torch.zeros(0, dtype=torch.uint8) for r in self.records]}

    def load_state_dict(self, state):
        self.records = [list(unpack_bits(r, self.n_points)) if r.numel() else [] for r in state["records"]]


# ----------------------------------------------------------------------------- loop backend
def _train_one(cfg, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes, device,
               amp, ckpt, progress, epoch_callback):
    encoder, objective = build(cfg, num_classes)
    encoder.to(device), objective.to(device)
    params = [p for p in list(encoder.parameters()) + list(objective.parameters()) if p.requires_grad]
    opt = make_optimizer(cfg, params)
    scaler = grad_scaler(device, amp)
    bs, spe, total, warmup = plan_steps(images.shape[0], cfg.batch_size, cfg.epochs, cfg.warmup_epochs)
    records = _Records(lambda: [(encoder, objective, cfg)], 1, images, labels, index, x_pos, bank, n_aug,
                       record_epochs, eval_batch, device, amp)
    res = fit(view_step(cfg, encoder, objective, images, labels, index, opt, scaler, device, amp),
              order_batches(index, cfg.seed, bs, spe), epochs=cfg.epochs, optimizer=opt,
              schedule=Cosine(cfg.lr, total, warmup), modules=(encoder, objective),
              state={"encoder": encoder, "objective": objective, "optimizer": opt, "scaler": scaler},
              callbacks=(records,), ckpt_dir=ckpt, label=f"{cfg.objective} seed {cfg.seed}",
              desc=f"  {cfg.objective} seed {cfg.seed}", progress=progress, show=("mean_p",),
              after_epoch=None if epoch_callback is None else (lambda e: epoch_callback(cfg.seed, e)))
    return _result(records.records[0], records.n_points, res.history, encoder, objective)


# ----------------------------------------------------------------------------- vmap backend
class _Net(torch.nn.Module):
    """encoder + objective as one module, so torch.func can stack and call them."""

    def __init__(self, encoder, objective):
        super().__init__()
        self.encoder, self.objective = encoder, objective

    def forward(self, views, labels):
        return self.objective.loss(self.encoder, list(views), labels)


class _Leaves:
    """A dict of stacked tensors (the vmap backend's weights or buffers) as a checkpointable state."""

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def state_dict(self):
        return {k: v.detach() for k, v in self.tensors.items()}

    @torch.no_grad()
    def load_state_dict(self, state):
        for k, v in self.tensors.items():
            v.copy_(state[k])


def _train_vmap(cfgs, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes, device,
                amp, ckpt, progress, epoch_callback):
    """All networks of ``cfgs`` (same config, different seeds) at once: weights and BatchNorm buffers stacked
    along a new first dimension, ``vmap(functional_call)`` over networks, one optimiser over the stacked
    leaves (SGD/Adam act elementwise, so this equals N independent optimisers). Runs on ``engine.fit`` with
    per-network losses (N,) and the sum of them as the backward objective."""
    from torch.func import functional_call, stack_module_state, vmap
    nets = [_Net(*build(c, num_classes)) for c in cfgs]
    for net in nets:
        net.to(device)
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    cfg = cfgs[0]
    make_views = TrainingViews(cfg, nets[0].objective)
    if make_views.n_local:
        raise ValueError("the vmap ensemble backend stacks equal-sized views; multi-crop (n_local > 0) needs the "
                         "loop backend")
    opt = make_optimizer(cfg, list(params.values()))
    scaler = grad_scaler(device, amp)
    bs, spe, total, warmup = plan_steps(images.shape[0], cfg.batch_size, cfg.epochs, cfg.warmup_epochs)
    N = len(cfgs)
    dev_images = images.to(device)
    labels_dev = None if labels is None else labels.to(device)

    def loss_fn(p, b, v, y):
        return functional_call(base, (p, b), (v, y))

    batched = vmap(loss_fn, in_dims=(0, 0, 0, None if labels is None else 0), randomness="different")

    def unstacked(i):
        net = nets[i]
        net.load_state_dict({**{k: v[i].detach() for k, v in params.items()},
                             **{k: v[i] for k, v in buffers.items()}})
        return net

    orders = [order_batches(index, c.seed, bs, spe) for c in cfgs]

    def batches(epoch):  # step i: one batch of positions per network
        return zip(*[o(epoch) for o in orders])

    def step(batch, epoch, _step):
        vs, ys = [], []
        for c, b in zip(cfgs, batch):
            x = dev_images[b.to(device)]
            vs.append(torch.stack(make_views(x, index[b].numpy(), c.seed, epoch)))
            ys.append(None if labels_dev is None else labels_dev[b.to(device)])
        y = None if labels is None else torch.stack(ys)
        return amp_step(lambda: batched(params, buffers, torch.stack(vs), y), opt, scaler, device, amp).float()

    def current_nets():  # unstacked one at a time, when the records need them
        for j in range(N):
            net = unstacked(j)
            yield net.encoder, net.objective, cfgs[j]

    records = _Records(current_nets, N, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, device, amp)
    res = fit(step, batches, epochs=cfg.epochs, optimizer=opt, schedule=Cosine(cfg.lr, total, warmup),
              state={"params": _Leaves(params), "buffers": _Leaves(buffers), "optimizer": opt, "scaler": scaler},
              callbacks=(records,), ckpt_dir=ckpt, epoch_loss=lambda ls: torch.stack(ls).mean(0).tolist(),
              label=[f"{cfg.objective} seed {c.seed}" for c in cfgs], desc=f"  {cfg.objective} x{N} (vmap)",
              progress=progress, after_epoch=None if epoch_callback is None else (lambda e: epoch_callback(None, e)))
    out = []
    for j in range(N):  # per-network histories from the stacked records (loss and mean_p lists of N)
        hist = [{**r, "loss": r["loss"][j], "time": r["time"] / N} for r in res.history]
        for h in hist:
            if isinstance(h.get("mean_p"), list):
                h["mean_p"] = h["mean_p"][j]
        net = unstacked(j)
        out.append(_result(records.records[j], records.n_points, hist, net.encoder, net.objective))
    return out


# ----------------------------------------------------------------------------- public entry point
def _network_files(cfg, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes, amp, *,
                   ckpt_dir, device, progress, epoch_callback) -> dict:
    """The work of one network job: ``_train_one`` (resuming from ``ckpt_dir``) as the cache entry's files."""
    return {"net.pt": _train_one(cfg, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch,
                                 num_classes, device, amp, ckpt_dir, progress, epoch_callback)}


def network_jobs(cfg: TrainConfig, seeds, images: torch.Tensor, labels, index, x_pos, bank: ViewBank, n_aug: int,
                 record_epochs, *, eval_batch: int = 256, cache: Cache, data_id: str = "", name: str = "",
                 amp: bool = True, force: bool = False) -> list:
    """One job (``jobs.Job``, kind "profile_net") per seed: network ``replace(cfg, seed=s)`` trained on
    ``images`` (uint8 N,3,H,W) with ``labels`` (int64 (N,): true or random; None for SimCLR), recording the
    recognition indicators of X (``x_pos``: positions in the training set) through ``bank`` after each of
    ``record_epochs`` (1-based). ``index``: the images' global indices (they key the augmentation draws).
    Raises ValueError for bad seeds, epochs, X or bank size, before any compute."""
    from memlab.engine.jobs import Job, Stored
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    if n_aug < 1:
        raise ValueError(f"n_aug must be >= 1, got {n_aug}")
    index = torch.arange(images.shape[0]) if index is None else torch.as_tensor(index)
    record_epochs = sorted(int(e) for e in record_epochs)
    _check(cfg, record_epochs, x_pos, images.shape[0])
    if recognition_kind(cfg) == "classification" and labels is None:
        raise ValueError(f"objective {cfg.objective!r} needs labels")
    if bank.n_views < views_needed(cfg, n_aug):
        raise ValueError(f"the view bank holds {bank.n_views} views; {views_needed(cfg, n_aug)} are needed")
    num_classes = None if labels is None else int(labels.max()) + 1
    x_pos = torch.as_tensor(np.asarray(x_pos), dtype=torch.long)
    fp = fingerprint(images, labels, index) + data_id
    cost = training_cost(cfg, images.shape[0], images.shape[-1])
    data = {"images": Stored(images, cache.root), "labels": None if labels is None else Stored(labels, cache.root),
            "index": Stored(index, cache.root)}
    return [Job(f"{name or cfg.objective} seed {s}", "profile_net",
                _net_key(cfg, s, fp, x_pos.tolist(), bank, n_aug, record_epochs, eval_batch, num_classes),
                _network_files, {"cfg": replace(cfg, seed=s), **data, "x_pos": x_pos, "bank": bank, "n_aug": n_aug,
                                 "record_epochs": record_epochs, "eval_batch": eval_batch,
                                 "num_classes": num_classes, "amp": amp}, cost, force) for s in seeds]


def load_networks(jobs: list, cache: Cache, trained=()) -> list[dict]:
    """The networks of ``network_jobs`` from the cache: per network ``{"records": bool (E, M, |X|), "history",
    "encoder", "objective" (state dicts), "seed", "from_cache"}`` (``trained``: names of the jobs this run
    trained)."""
    out = []
    for j in jobs:
        d = dict(cache.load(j.kind, j.key, "net.pt"))
        d["records"] = unpack_bits(d["records"], d["n_points"])
        d["from_cache"], d["seed"] = j.name not in set(trained), j.args["cfg"].seed
        out.append(d)
    return out


def _vmap_files(nets: list, root: str, *, ckpt_dir, device, progress: bool, epoch_callback) -> dict:
    """The work of a vmap group job: every pending network of ``nets`` (``network_jobs`` of one config) trained at
    once with ``_train_vmap``; each is committed as its own "profile_net" entry.

    Each network's own lock is held while it trains, so a run that trains the same networks one job each (another
    backend, another notebook run) never trains one twice: networks locked elsewhere are left to that process
    and waited for; one it gave up on is trained here in a later round."""
    import filelock
    from memlab.engine.jobs import job_args
    cache = Cache(root)
    left = [j for j in nets if j.force or not cache.exists(j.kind, j.key)]
    first = True
    while left:
        held, todo = [], []
        try:
            for j in left:
                lock = cache.lock(j.kind, j.key)
                try:
                    lock.acquire(timeout=0 if first else -1)   # first round: skip what another process trains
                except filelock.Timeout:
                    continue
                held.append(lock)
                if (j.force and first) or not cache.exists(j.kind, j.key):
                    todo.append(j)
            if todo:
                a = job_args(todo[0].args)
                # one checkpoint folder per set of networks: a resumed group must hold the same networks
                sub = ckpt_dir / hashlib.sha256(" ".join(j.cache_key(cache) for j in todo).encode()).hexdigest()[:16]
                outs = _train_vmap([j.args["cfg"] for j in todo], a["images"], a["labels"], a["index"], a["x_pos"],
                                   a["bank"], a["n_aug"], a["record_epochs"], a["eval_batch"], a["num_classes"],
                                   device, a["amp"], sub, progress, epoch_callback)
                for j, o in zip(todo, outs):
                    cache.save(j.kind, j.key, {"net.pt": o}, force=j.force and first)
        finally:
            for lock in held:
                lock.release()
        left = [j for j in left if not cache.exists(j.kind, j.key)]   # a forced one trained elsewhere counts
        first = False
    return {"nets.json": json.dumps([j.cache_key(cache) for j in nets])}


def vmap_job(nets: list, cache: Cache, name: str = ""):
    """One job (kind "profile_group") that trains the networks of ``nets`` (``network_jobs`` of one config) all at
    once with ``torch.func.vmap`` -- the fast way on a GPU for small models (``ensemble_backend``)."""
    from memlab.engine.jobs import Cost, Job
    c = nets[0].cost
    cost = Cost(c.epochs, sum(j.cost.image_steps for j in nets), sum(j.cost.flops for j in nets), c.model)
    return Job(name or f"{nets[0].name.rsplit(' seed ', 1)[0]} x{len(nets)} (vmap)", "profile_group",
               {"nets": [j.cache_key(cache) for j in nets]}, _vmap_files, {"nets": nets, "root": str(cache.root)},
               cost, any(j.force for j in nets), members=tuple(j.name for j in nets))


def ensemble_plan_jobs(cfg: TrainConfig, jobs: list, cache: Cache, device, backend: str = "auto") -> list:
    """What a plan declares for one ensemble: its ``network_jobs``, or one ``vmap_job`` over them when
    ``ensemble_backend`` picks vmap (results are read with ``load_networks(jobs, ...)`` either way)."""
    if ensemble_backend(device, cfg, backend, len(jobs)) == "vmap" and len(jobs) > 1:
        return [vmap_job(jobs, cache)]
    return list(jobs)


def train_ensemble(cfg: TrainConfig, seeds, images: torch.Tensor, labels, index, x_pos, bank: ViewBank, n_aug: int,
                   record_epochs, *, eval_batch: int = 256, cache: Cache | None = None, data_id: str = "",
                   device="auto", amp: bool = True, backend: str = "auto", executor: str = "inline",
                   force: bool = False, progress: bool = True, epoch_callback=None) -> list[dict]:
    """Train (or load) one network per seed here and now, and return ``load_networks``'s list.

    The jobs of ``ensemble_plan_jobs`` run with ``executor`` (``executors.make``); ``epoch_callback(seed, epoch)``
    (tests simulate interruptions with it) runs them inline. Notebooks declare the jobs in their plan instead."""
    from memlab.engine.executors import make
    from memlab.engine.jobs import run_job
    cache = cache or Cache()
    device = resolve_device(device)
    jobs = network_jobs(cfg, seeds, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch=eval_batch,
                        cache=cache, data_id=data_id, amp=amp, force=force)
    todo = [j for j in jobs if force or not cache.exists(j.kind, j.key)]
    run = ensemble_plan_jobs(cfg, todo, cache, device, backend)
    if run and epoch_callback is not None:
        for j in run:
            run_job(j, cache.root, device=device, progress=progress, epoch_callback=epoch_callback)
    elif run:
        make(executor, device=device, n_jobs=len(run)).run(run, cache, progress=progress)
    return load_networks(jobs, cache, trained=[j.name for j in todo])


def stack_records(nets: list[dict]) -> np.ndarray:
    """Per-network records -> one bool array (N, E, M, |X|)."""
    return np.stack([n["records"] for n in nets])


def load_network(cfg: TrainConfig, net: dict, num_classes: int | None = None, device="cpu"):
    """(encoder, objective) of one trained network, eval mode, on ``device``."""
    enc, obj = build(replace(cfg, seed=net["seed"]), num_classes)
    enc.load_state_dict(net["encoder"]), obj.load_state_dict(net["objective"])
    return enc.to(device).eval(), obj.to(device).eval()
