"""Train N networks of one paradigm from different seeds and record, at chosen epochs, the recognition indicator of
every (image, fixed augmentation) of a subset X (Sadrtdinov et al. 2021, §3; methods.md §1).

- Network n uses ``replace(cfg, seed=seeds[n])``: its own initialisation, data order and training augmentations.
  The evaluation views come from one ``ViewBank`` shared by every network and epoch.
- Records are bool ``(E, M, |X|)`` per network (``recognition.record``), stored as bitsets in the cache, one entry
  per network (kind ``profile_net``) with the final weights and the training history.
- Training runs on ``engine.fit`` (schedule, AMP, divergence check, checkpoints); the recognition records are its
  epoch-end callback (``recognition.Records``).
- Resumable: the work in progress of a network (weights, optimiser, records so far) is checkpointed atomically
  after every epoch; a killed run resumes at the last finished epoch and gives the same numbers as an
  uninterrupted one.
- Every network is a job (``network_jobs``), so a notebook's plan lists them and an executor trains them: one after
  another, one single-threaded worker per CPU core (small networks barely use a second thread, so whole networks in
  parallel are the cheap speed-up), one per GPU, or a SLURM array. ``ensemble_backend`` chooses between those jobs
  and training all pending networks at once with ``torch.func`` (``ensemble_vmap``), which pays off on a GPU for
  small models. ``benchmarks/bench_ensemble.py`` measures them.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from memlab.augmentation.augment import ViewBank
from memlab.engine.loop import Cosine, fit, grad_scaler, order_batches, plan_steps
from memlab.engine.train import (TrainConfig, build, config_key, fingerprint, make_optimizer, resolve_device,
                                 training_cost, view_step)
from memlab.experiments.ensemble_vmap import vmap_job
from memlab.experiments.recognition import Records, net_result, recognition_kind, views_needed
from memlab.io.cache import Cache
from memlab.metrics.profiles import unpack_bits

VMAP_MAX_PARAMS = 5_000_000  # per network; larger models train in a loop (memory, and little to gain)


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


# ----------------------------------------------------------------------------- one job per network
def _net_key(cfg, seed, data_fp, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes):
    """The cache key of one network (its fields and their order are those of every cached network: keep them)."""
    return {"train": config_key(replace(cfg, seed=int(seed))), "data": data_fp, "X": [int(i) for i in x_pos],
            "bank": bank.describe(), "n_aug": int(n_aug), "record_epochs": [int(e) for e in record_epochs],
            "recognition": recognition_kind(cfg), "eval_batch": int(eval_batch), "num_classes": num_classes}


def _check(cfg, record_epochs, x_pos, n_images):
    """ValueError unless the recorded epochs lie in 1..epochs and X holds distinct positions of the training set."""
    bad = [e for e in record_epochs if not 1 <= e <= cfg.epochs]
    if bad or not record_epochs:
        raise ValueError(f"record_epochs must be a non-empty list within 1..{cfg.epochs}; bad: {bad}")
    x_pos = np.asarray(x_pos)
    if x_pos.size == 0 or x_pos.min() < 0 or x_pos.max() >= n_images or len(np.unique(x_pos)) != x_pos.size:
        raise ValueError(f"X must be distinct positions in the training set (0..{n_images - 1})")


def _train_one(cfg, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes, device,
               amp, ckpt, progress, epoch_callback):
    """Train one network on ``engine.fit`` (resuming from ``ckpt``), recording after each of ``record_epochs``;
    its cache entry (``recognition.net_result``)."""
    encoder, objective = build(cfg, num_classes)
    encoder.to(device), objective.to(device)
    params = [p for p in list(encoder.parameters()) + list(objective.parameters()) if p.requires_grad]
    opt = make_optimizer(cfg, params)
    scaler = grad_scaler(device, amp)
    bs, spe, total, warmup = plan_steps(images.shape[0], cfg.batch_size, cfg.epochs, cfg.warmup_epochs)
    records = Records(lambda: [(encoder, objective, cfg)], 1, images, labels, index, x_pos, bank, n_aug,
                       record_epochs, eval_batch, device, amp)
    res = fit(view_step(cfg, encoder, objective, images, labels, index, opt, scaler, device, amp),
              order_batches(index, cfg.seed, bs, spe), epochs=cfg.epochs, optimizer=opt,
              schedule=Cosine(cfg.lr, total, warmup), modules=(encoder, objective),
              state={"encoder": encoder, "objective": objective, "optimizer": opt, "scaler": scaler},
              callbacks=(records,), ckpt_dir=ckpt, label=f"{cfg.objective} seed {cfg.seed}",
              desc=f"  {cfg.objective} seed {cfg.seed}", progress=progress, show=("mean_p",),
              after_epoch=None if epoch_callback is None else (lambda e: epoch_callback(cfg.seed, e)))
    return net_result(records.records[0], records.n_points, res.history, encoder, objective)


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
