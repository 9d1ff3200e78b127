"""The vmap backend of the N-network ensembles (Sadrtdinov et al. 2021; methods.md section 1): every pending network
of one config trained at once in one process, weights and BatchNorm buffers stacked along a new first dimension and
``torch.func.vmap`` over networks -- the fast way on a GPU for small models (``ensemble.ensemble_backend``,
``benchmarks/bench_ensemble.py``). Each network is still committed as its own "profile_net" cache entry, identical
in form to one trained by its own job (``ensemble.network_jobs``).
"""
from __future__ import annotations

import copy
import hashlib
import json

import torch

from memlab.engine.loop import Cosine, amp_step, fit, grad_scaler, order_batches, plan_steps
from memlab.engine.train import TrainingViews, build, make_optimizer
from memlab.experiments.recognition import Records, net_result
from memlab.io.cache import Cache


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


def train_vmap(cfgs, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, num_classes, device,
               amp, ckpt, progress, epoch_callback) -> list:
    """All networks of ``cfgs`` (same config, different seeds) at once: weights and BatchNorm buffers stacked
    along a new first dimension, ``vmap(functional_call)`` over networks, one optimiser over the stacked
    leaves (SGD/Adam act elementwise, so this equals N independent optimisers). Runs on ``engine.fit`` with
    per-network losses (N,) and the sum of them as the backward objective. The arguments are those of
    ``ensemble.network_jobs``' jobs; returns one ``recognition.net_result`` per network. Raises ValueError for a
    multi-crop objective (its views differ in size and cannot be stacked)."""
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

    records = Records(current_nets, N, images, labels, index, x_pos, bank, n_aug, record_epochs, eval_batch, device,
                      amp)
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
        out.append(net_result(records.records[j], records.n_points, hist, net.encoder, net.objective))
    return out


def _vmap_files(nets: list, root: str, *, ckpt_dir, device, progress: bool, epoch_callback) -> dict:
    """The work of a vmap group job: every pending network of ``nets`` (``network_jobs`` of one config) trained at
    once with ``train_vmap``; each is committed as its own "profile_net" entry.

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
                outs = train_vmap([j.args["cfg"] for j in todo], a["images"], a["labels"], a["index"], a["x_pos"],
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
