"""DP-SGD for SSL encoders (Abadi et al. 2016), with opacus's DP optimizer and RDP accountant.

Each step samples every training image independently with probability q = batch_size / n (Poisson
sampling, as the accountant assumes), computes one gradient per *image* -- both of its views together,
with ``torch.func.vmap`` -- and hands them to opacus's ``DPOptimizer``, which clips each to norm C,
sums, adds N(0, (sigma C)^2) noise and averages. The logical (Poisson) batch is processed in physical
micro-batches of at most ``physical_batch`` images by opacus's ``BatchMemoryManager``: the optimiser clips and
accumulates each micro-batch and steps once per logical batch, so memory follows the physical batch. sigma is
set by opacus for the target (epsilon, delta) over the planned epochs; the spent epsilon is reported by the
accountant. The loop is ``engine.fit`` with a DP-SGD step (per-image gradients, ``DPOptimizer``, accountant)
and Poisson batches (``poisson_batches``).

Per-image gradients need a loss in which an image's term depends on that image alone. Contrastive losses
(NT-Xent) couple the images of a batch through their negatives, so changing one image changes every
other image's gradient and the per-image clipping bound no longer holds. DP training therefore uses an
objective with ``per_example`` losses -- SimSiam here -- and an encoder without batch statistics
(GroupNorm; LayerNorm in the heads). opacus is an optional extra: ``pip install -e ".[dp]"``.
"""
from __future__ import annotations

import importlib

import numpy as np
import torch

from memlab.augmentation.augment import hash_uniform
from memlab.engine.checkpoints import Snapshots
from memlab.engine.loop import Cosine, fit
from memlab.streams import DP_POISSON
from memlab.engine.train import TrainConfig, Trained, build, config_key, fingerprint, make_augmentation, make_optimizer, resolve_device


def require_opacus() -> None:
    """Raise ImportError, with the command that installs it, when opacus (the optional ``dp`` extra) is missing."""
    try:
        importlib.import_module("opacus")
    except ImportError as e:
        raise ImportError("differential privacy needs opacus: pip install -e \".[dp]\" (or pip install opacus)") from e


def check_dp_config(cfg: TrainConfig) -> None:
    """Raise ValueError unless ``cfg`` can be trained with per-image gradients: a GroupNorm encoder
    (``model_kw["norm"] == "group"``) and heads without BatchNorm (``objective_kw["norm"]`` "layer" or "none"),
    since batch statistics couple the images of a batch (see the module docstring)."""
    if cfg.model_kw.get("norm") != "group":
        raise ValueError("DP-SGD needs per-example gradients: build the encoder with model_kw={'norm': 'group', ...}")
    if cfg.objective_kw.get("norm", "batch") == "batch":
        raise ValueError("DP-SGD needs heads without BatchNorm: objective_kw={'norm': 'layer'} (or 'none')")


def _dp_files(cfg: TrainConfig, images, index, epsilon: float, max_grad_norm: float, physical_batch=None, *,
              ckpt_dir, device, progress: bool, epoch_callback) -> dict:
    """The work of a DP job: ``train_dp`` from scratch (the accountant's state is not checkpointed)."""
    out = train_dp(cfg, images, index, target_epsilon=epsilon, max_grad_norm=max_grad_norm, device=device,
                   progress=progress, physical_batch=physical_batch)
    return {"result.pt": {"encoder": {k: v.cpu() for k, v in out["encoder"].state_dict().items()},
                          "objective": {k: v.cpu() for k, v in out["objective"].state_dict().items()},
                          "history": out["history"], "epsilon": out["epsilon"], "delta": out["delta"],
                          "noise_multiplier": out["noise_multiplier"], "snapshots": out["snapshots"]}}


def dp_job(cfg: TrainConfig, images: torch.Tensor, index, *, epsilon: float, cache, data_id: str = "",
           max_grad_norm: float = 1.0, physical_batch: int | None = None, name: str = "", force: bool = False):
    """The job (``jobs.Job``, kind "dp_encoder") that trains ``cfg`` with DP-SGD to (``epsilon``, 1/n)-DP on
    ``images`` (uint8 N,3,H,W; ``index`` their global indices). ``cfg.batch_size`` is the logical (expected
    Poisson) batch; ``physical_batch`` caps the images whose per-image gradients are held at once (None: the
    whole logical batch). The physical batch is a memory knob like the device: it is not part of the cache
    key. A DP run is one unit: an interrupted one restarts. Raises ValueError for a config DP-SGD cannot train
    (``check_dp_config``) or a physical batch < 1, before any compute."""

    from memlab.engine.jobs import Cost, Job, Stored
    check_dp_config(cfg)
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if physical_batch is not None and physical_batch < 1:
        raise ValueError(f"physical_batch must be >= 1 (or None for the whole logical batch), got {physical_batch}")
    index = torch.as_tensor(index, dtype=torch.long)
    key = {"train": config_key(cfg), "data": fingerprint(images, index), "data_id": data_id, "epsilon": float(epsilon),
           "max_grad_norm": float(max_grad_norm)}
    n = images.shape[0]
    q = min(1.0, cfg.batch_size / n)
    logical = max(1, int(q * n))
    held = min(physical_batch or logical, logical)  # per-image gradients and activations held at once
    cost = Cost.of(cfg.model, cfg.model_kw, epochs=cfg.epochs, steps_per_epoch=max(1, round(1 / q)),
                   batch=logical, views=2, size=images.shape[-1], per_sample_grads=held, memory_batch=held)
    return Job(name or f"DP eps={epsilon:g}", "dp_encoder", key, _dp_files,
               {"cfg": cfg, "images": Stored(images, cache.root), "index": index, "epsilon": float(epsilon),
                "max_grad_norm": float(max_grad_norm), "physical_batch": physical_batch}, cost, force)


def load_dp(job, cache, device="auto", from_cache: bool = True) -> Trained:
    """The ``Trained`` DP encoder of a DP job, with ``.dp = {epsilon (spent), delta, noise_multiplier}``."""
    res = cache.load(job.kind, job.key, "result.pt")
    tr = Trained.from_state(job.args["cfg"], res, job.cache_key(cache), device, from_cache=from_cache)
    tr.dp = {"epsilon": res["epsilon"], "delta": res["delta"], "noise_multiplier": res["noise_multiplier"]}
    return tr


def cached_dp_encoder(cache, cfg: TrainConfig, images: torch.Tensor, index, *, epsilon: float, data_id: str = "",
                      max_grad_norm: float = 1.0, device="auto", force: bool = False,
                      progress: bool = False) -> Trained:
    """``dp_job`` run here and now (inline), then ``load_dp``. Notebooks declare ``dp_job`` in their plan."""
    from memlab.engine.jobs import run_job
    job = dp_job(cfg, images, index, epsilon=epsilon, cache=cache, data_id=data_id, max_grad_norm=max_grad_norm,
                 force=force)
    status = run_job(job, cache.root, device=device, progress=progress)
    return load_dp(job, cache, device, from_cache=status == "cached")


def train_dp(cfg: TrainConfig, images: torch.Tensor, index=None, *, target_epsilon: float, delta: float | None = None,
             max_grad_norm: float = 1.0, device="auto", progress: bool = True, physical_batch: int | None = None) -> dict:
    """Train ``cfg`` (objective with ``per_example``, GroupNorm encoder) with DP-SGD to (target_epsilon,
    delta)-DP; delta defaults to 1/n. ``cfg.batch_size``: the expected logical batch q n; ``physical_batch``:
    at most this many images per per-image-gradient pass (opacus ``BatchMemoryManager``; None: all).
    Returns {encoder, objective, history, epsilon, noise_multiplier, delta, snapshots}: ``epsilon`` is the spent
    privacy budget (RDP accountant), ``noise_multiplier`` sigma, ``snapshots`` {epoch: encoder state dict} after
    ``cfg.snapshot_epochs`` (each has spent the ``epsilon`` of its epoch's history record, less than the target).
    Same seed, same result: the noise comes from the global torch RNG, seeded by ``build``. Raises ImportError
    without opacus, ValueError for a config DP-SGD cannot train (``check_dp_config``) or an objective without
    ``per_example`` losses."""
    require_opacus()
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.optimizers import DPOptimizer
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from torch.utils.data import DataLoader

    check_dp_config(cfg)
    device = resolve_device(device)
    n = images.shape[0]
    index = torch.arange(n) if index is None else torch.as_tensor(index)
    delta = delta if delta is not None else 1.0 / n
    q = min(1.0, cfg.batch_size / n)
    steps_per_epoch = max(1, round(1 / q))
    encoder, objective = build(cfg)
    if not hasattr(objective, "per_example"):
        raise ValueError(f"objective {cfg.objective!r} has no per-example loss; use e.g. 'simsiam'")
    encoder.to(device), objective.to(device)
    model = _Pair(encoder, objective)
    params = {k: p for k, p in model.named_parameters()}
    buffers = {k: b for k, b in model.named_buffers()}
    sigma = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=q,
                                 steps=cfg.epochs * steps_per_epoch, accountant="rdp")
    opt = DPOptimizer(make_optimizer(cfg, list(params.values())), noise_multiplier=sigma,
                      max_grad_norm=max_grad_norm, expected_batch_size=max(1, int(q * n)))
    accountant = RDPAccountant()
    aug = make_augmentation(cfg, objective)

    positions = list(range(n))
    phys = physical_batch or n

    def step(sel, epoch, _step):
        """One logical batch: its physical micro-batches are clipped and accumulated, then one noisy step."""
        total, count = 0.0, 0
        if not len(sel):  # an empty Poisson batch still gets noise (the accountant counts the step)
            for p in params.values():
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device)
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            logical = DataLoader(positions, batch_sampler=[sel.tolist()],
                                 collate_fn=lambda b: torch.tensor(b, dtype=torch.long))
            with BatchMemoryManager(data_loader=logical, max_physical_batch_size=phys, optimizer=opt) as micro:
                for part in micro:
                    x = images[part].to(device)
                    gidx = index[part].numpy()
                    v1, v2 = (aug(x, gidx, cfg.seed, 2 * epoch + v) for v in range(2))
                    grads = per_image_gradients(model, params, buffers, v1, v2)
                    for k, p in params.items():
                        p.grad_sample = grads[k].detach()
                    with torch.no_grad():
                        total, count = total + float(model(v1, v2).sum()), count + len(part)
                    opt.step()  # all but a logical batch's last micro-batch: clip and accumulate only
                    opt.zero_grad(set_to_none=True)
        accountant.step(noise_multiplier=sigma, sample_rate=q)
        return total / count if count else None

    def spent(epoch, rec, _step):
        rec["epsilon"] = accountant.get_epsilon(delta)

    total, warmup = cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch))
    snapshots = Snapshots(encoder, cfg.snapshot_epochs)
    res = fit(step, poisson_batches(index, cfg.seed, steps_per_epoch, q), epochs=cfg.epochs, optimizer=opt,
              state={}, schedule=Cosine(cfg.lr, total, warmup), modules=(model,), callbacks=(spent, snapshots),
              epoch_loss=lambda losses: float(np.mean(losses)), label=f"DP-SGD training (epsilon {target_epsilon})",
              desc=f"DP-SGD eps={target_epsilon}", progress=progress, show=("epsilon",))
    return {"encoder": encoder, "objective": objective, "history": res.history,
            "epsilon": accountant.get_epsilon(delta), "noise_multiplier": sigma, "delta": delta,
            "snapshots": snapshots.saved}


def poisson_batches(index: torch.Tensor, seed: int, steps_per_epoch: int, q: float):
    """The ``batches`` hook of DP-SGD: epoch -> for each of its steps, the positions (long) of the images drawn
    independently with probability ``q`` (Poisson sampling, as the RDP accountant assumes), from the hash of
    (seed, DP_POISSON + global step, global index ``index``). A batch may be empty."""
    def batches(epoch: int):
        for i in range(steps_per_epoch):
            u = hash_uniform(seed, DP_POISSON + epoch * steps_per_epoch + i, index.numpy(), 1)[:, 0]
            yield torch.from_numpy(np.flatnonzero(u < q))
    return batches


def per_image_gradients(model, params: dict, buffers: dict, v1: torch.Tensor, v2: torch.Tensor) -> dict:
    """{parameter name: (B, *shape)} gradients of each image's loss (its two views v1[i], v2[i], float (B,3,H,W)),
    with ``torch.func.vmap`` over the images: the per-example gradients DP-SGD clips (Abadi et al. 2016)."""
    from torch.func import functional_call, grad, vmap

    def image_loss(p, b, a1, a2):
        return functional_call(model, (p, b), (a1[None], a2[None]))[0]

    return vmap(grad(image_loss), in_dims=(None, None, 0, 0))(params, buffers, v1, v2)


class _Pair(torch.nn.Module):
    """encoder + objective heads as one module: forward(v1, v2) -> per-image losses."""

    def __init__(self, encoder, objective):
        super().__init__()
        self.encoder, self.objective = encoder, objective

    def forward(self, v1, v2):
        return self.objective.per_example(self.encoder, [v1, v2])
