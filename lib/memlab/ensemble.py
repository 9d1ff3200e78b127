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
- Speed: ``ensemble_backend`` is the one place that chooses how the N networks are trained -- a sequential
  loop; one single-threaded worker process per CPU core (``procs``: small networks barely use a second
  thread, so on a CPU whole networks in parallel are the cheap speed-up); or all N at once with
  ``torch.func`` (stacked weights, ``vmap`` over networks), which pays off on a GPU for small models.
  ``benchmarks/bench_ensemble.py`` measures them.
"""
from __future__ import annotations

import copy
import multiprocessing as mp
import os
import queue
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, replace

import numpy as np
import torch
from tqdm import tqdm

from .augment import ViewBank
from .cache import Cache
from .engine import Cosine, amp_step, autocast, fit, grad_scaler, order_batches, plan_steps
from .profiles import eval_chunks, pack_bits, recognized_classification, recognized_in_batch, unpack_bits
from .train import TrainConfig, TrainingViews, build, fingerprint, make_optimizer, resolve_device, view_step

RECOGNITION = {"supervised": "classification", "simclr": "in_batch"}
VMAP_MAX_PARAMS = 5_000_000  # per network; larger models train in a loop (memory, and little to gain)


def recognition_kind(cfg: TrainConfig) -> str:
    if cfg.objective not in RECOGNITION:
        raise ValueError(f"no recognition indicator for objective {cfg.objective!r}; choose from {sorted(RECOGNITION)}")
    return RECOGNITION[cfg.objective]


def views_needed(cfg: TrainConfig, n_aug: int) -> int:
    """Views the bank must hold for M augmentations: M (classification) or 2M (SimCLR view pairs)."""
    return n_aug * (2 if recognition_kind(cfg) == "in_batch" else 1)


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ensemble_backend(device, cfg: TrainConfig, backend: str = "auto", n_networks: int = 2) -> str:
    """How to train the N networks: ``"loop"`` (one after another), ``"procs"`` (one single-threaded worker
    process per CPU core, whole networks in parallel; CPU only) or ``"vmap"`` (torch.func, all at once).
    ``auto``: vmap on CUDA for models under ``VMAP_MAX_PARAMS`` parameters, else loop; on a CPU, procs when
    there are >= 2 cores and >= 2 networks to train, else loop (see benchmarks/bench_ensemble.py)."""
    if backend not in ("auto", "loop", "procs", "vmap"):
        raise ValueError(f"backend must be 'auto', 'loop', 'procs' or 'vmap', got {backend!r}")
    if backend == "procs" and resolve_device(device).type != "cpu":
        raise ValueError("backend 'procs' runs on the CPU only; use 'vmap' or 'loop' on a GPU")
    if backend != "auto":
        return backend
    if resolve_device(device).type != "cuda":
        return "procs" if cpu_cores() >= 2 and n_networks >= 2 else "loop"
    enc, obj = build(cfg, 10)
    n = sum(p.numel() for p in list(enc.parameters()) + list(obj.parameters()))
    return "vmap" if n <= VMAP_MAX_PARAMS else "loop"


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
    return {"train": asdict(replace(cfg, seed=int(seed))), "data": data_fp, "X": [int(i) for i in x_pos],
            "bank": bank.describe(), "n_aug": int(n_aug), "record_epochs": [int(e) for e in record_epochs],
            "recognition": recognition_kind(cfg), "eval_batch": int(eval_batch), "num_classes": num_classes}


def _check(cfg, record_epochs, x_pos, n_images):
    bad = [e for e in record_epochs if not 1 <= e <= cfg.epochs]
    if bad or not record_epochs:
        raise ValueError(f"record_epochs must be a non-empty list within 1..{cfg.epochs}; bad: {bad}")
    x_pos = np.asarray(x_pos)
    if x_pos.size == 0 or x_pos.min() < 0 or x_pos.max() >= n_images or len(np.unique(x_pos)) != x_pos.size:
        raise ValueError(f"X must be distinct positions in the training set (0..{n_images - 1})")


def _ckpt_dir(cache, kind, key, force):
    """The folder of an entry's work-in-progress checkpoint; ``force`` discards what a killed run left there."""
    ckpt = cache.partial_dir(kind, key)
    if force:
        (ckpt / "last.pt").unlink(missing_ok=True)
    return ckpt


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
    return _result(records.records[0], len(x_pos), res.history, encoder, objective)


# ----------------------------------------------------------------------------- procs backend
_PROGRESS = None  # in a worker process: the queue its finished epochs are reported on


def _proc_init(reports):
    global _PROGRESS
    _PROGRESS = reports
    torch.set_num_threads(1)


def _proc_job(job):
    """One network in a worker process: train (resuming its checkpoint), save it to the cache, return its seed."""
    cfg, args, ckpt, cache_root, key = job
    report = None if _PROGRESS is None else (lambda seed, epoch: _PROGRESS.put((seed, epoch)))
    Cache(cache_root).save("profile_net", key, {"net.pt": _train_one(cfg, *args, ckpt, False, report)})
    return cfg.seed


def _train_procs(jobs, workers, progress, desc):
    """Run ``_proc_job`` over ``jobs`` in ``workers`` processes; yield seeds as networks finish. The bar counts
    the epochs the workers report. On any error or interrupt the workers are killed at once, so a rerun never
    races a leftover worker on a checkpoint."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    reports = ctx.Queue()
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_proc_init, initargs=(reports,))
    total = {j[0].seed: j[0].epochs for j in jobs}
    reached = dict.fromkeys(total, 0)
    bar = tqdm(total=sum(total.values()), disable=not progress, desc=desc, unit="epoch", leave=False)
    try:
        pending = {ex.submit(_proc_job, j) for j in jobs}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while True:
                try:
                    seed, epoch = reports.get_nowait()
                except queue.Empty:
                    break
                reached[seed] = max(reached[seed], epoch)
            for f in finished:
                seed = f.result()
                reached[seed] = total[seed]
                yield seed
            bar.n = sum(reached.values())
            bar.set_postfix(networks=f"{sum(reached[s] == total[s] for s in total)}/{len(total)}")
    except BaseException:
        for proc in list((getattr(ex, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        bar.close()
        ex.shutdown(wait=True, cancel_futures=True)


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
        out.append(_result(records.records[j], len(x_pos), hist, net.encoder, net.objective))
    return out


# ----------------------------------------------------------------------------- public entry point
def train_ensemble(cfg: TrainConfig, seeds, images: torch.Tensor, labels, index, x_pos, bank: ViewBank, n_aug: int,
                   record_epochs, *, eval_batch: int = 256, cache: Cache | None = None, data_id: str = "",
                   device="auto", amp: bool = True, backend: str = "auto", force: bool = False,
                   progress: bool = True, epoch_callback=None) -> list[dict]:
    """Train (or load) one network per seed and return, per network, ``{"records": bool (E, M, |X|),
    "history", "encoder", "objective" (state dicts), "from_cache"}``.

    ``images``/``labels``: the training set (labels: true or random; None for SimCLR); ``index``: its global
    indices (they key the augmentation draws); ``x_pos``: positions of X in the training set;
    ``record_epochs``: 1-based epochs after which the indicators are recorded."""
    cache = cache or Cache()
    device = resolve_device(device)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    if n_aug < 1:
        raise ValueError(f"n_aug must be >= 1, got {n_aug}")
    index = torch.arange(images.shape[0]) if index is None else torch.as_tensor(index)
    record_epochs = sorted(int(e) for e in record_epochs)
    _check(cfg, record_epochs, x_pos, images.shape[0])
    kind = recognition_kind(cfg)
    if kind == "classification" and labels is None:
        raise ValueError(f"objective {cfg.objective!r} needs labels")
    if bank.n_views < views_needed(cfg, n_aug):
        raise ValueError(f"the view bank holds {bank.n_views} views; {views_needed(cfg, n_aug)} are needed")
    num_classes = None if labels is None else int(labels.max()) + 1
    x_pos = torch.as_tensor(np.asarray(x_pos), dtype=torch.long)
    fp = fingerprint(images, labels, index) + data_id
    keys = {s: _net_key(cfg, s, fp, x_pos.tolist(), bank, n_aug, record_epochs, eval_batch, num_classes) for s in seeds}
    done = {s: None for s in seeds}
    for s in seeds:
        if not force and cache.exists("profile_net", keys[s]):
            done[s] = cache.load("profile_net", keys[s], "net.pt")
    todo = [s for s in seeds if done[s] is None]
    chosen = ensemble_backend(device, cfg, backend, len(todo))
    if chosen == "procs" and epoch_callback is not None:  # a callback cannot run in another process
        chosen = "loop"
    args = (images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes, device, amp)
    if todo and chosen == "vmap" and len(todo) > 1:
        group_key = {"nets": [keys[s] for s in todo]}
        ckpt = _ckpt_dir(cache, "profile_group", group_key, force)
        outs = _train_vmap([replace(cfg, seed=s) for s in todo], *args, ckpt, progress, epoch_callback)
        for s, o in zip(todo, outs):
            cache.save("profile_net", keys[s], {"net.pt": o})
            done[s] = o
        shutil.rmtree(ckpt, ignore_errors=True)
    elif todo and chosen == "procs" and len(todo) > 1:
        jobs = []
        for s in todo:
            ckpt = _ckpt_dir(cache, "profile_net", keys[s], force)
            jobs.append((replace(cfg, seed=s), args, ckpt, cache.root, keys[s]))
        workers = min(cpu_cores(), len(todo))
        for s in _train_procs(jobs, workers, progress, f"{cfg.objective} networks ({workers} processes)"):
            done[s] = cache.load("profile_net", keys[s], "net.pt")
    else:
        for s in tqdm(todo, disable=not progress or not todo, desc=f"{cfg.objective} networks", leave=False):
            ckpt = _ckpt_dir(cache, "profile_net", keys[s], force)
            o = _train_one(replace(cfg, seed=s), *args, ckpt, progress, epoch_callback)
            cache.save("profile_net", keys[s], {"net.pt": o})
            done[s] = o
    out = []
    for s in seeds:
        d = dict(done[s])
        d["records"] = unpack_bits(d["records"], d["n_points"])
        d["from_cache"] = s not in todo
        d["seed"] = s
        out.append(d)
    return out


def stack_records(nets: list[dict]) -> np.ndarray:
    """Per-network records -> one bool array (N, E, M, |X|)."""
    return np.stack([n["records"] for n in nets])


def load_network(cfg: TrainConfig, net: dict, num_classes: int | None = None, device="cpu"):
    """(encoder, objective) of one trained network, eval mode, on ``device``."""
    enc, obj = build(replace(cfg, seed=net["seed"]), num_classes)
    enc.load_state_dict(net["encoder"]), obj.load_state_dict(net["objective"])
    return enc.to(device).eval(), obj.to(device).eval()
