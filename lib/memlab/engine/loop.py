"""The one training loop, ``fit``, under every trainer: ``train.train`` (SSL objectives, supervised, random
labels), the ensembles (``ensemble._train_one`` and the stacked ``ensemble_vmap.train_vmap``),
``benign.train_benign``, ``dp.train_dp`` and ``layermem_downstream.finetune``.

Written once here:
- the per-step learning rate: linear warm-up, then cosine decay to 0 (``lr_at``, ``Cosine``), a function of
  the global step, so a resumed run needs nothing restored for it;
- AMP: ``autocast`` (bf16 on CUDA cards that compute it natively, else fp16 with a ``grad_scaler``) and the scaled
  backward + optimiser step (``backward_step``; ``amp_step`` = forward under autocast, then that);
- the non-finite check of the loss and of the weights: ``FloatingPointError`` naming the epoch and the likely cause;
- a checkpoint ``last.pt`` after every epoch and the resume from it (``checkpoints.py``, with the encoder
  ``Snapshots``); a checkpoint that cannot be loaded is reported, deleted, and training starts afresh.

What differs between trainers comes in as hooks (see ``fit``):
- ``batches(epoch)``: the batches of one epoch, in order (``order_batches``: the hashed epoch order of
  ``epoch_order``; DP-SGD: Poisson sampling; fine-tuning: a seeded permutation);
- ``step(batch, epoch, step) -> loss``: one optimiser step (``amp_step`` composes the default one; DP-SGD,
  benign's labels/mixup and the stacked vmap ensemble bring their own);
- ``callbacks``: ``cb(epoch, rec, step) -> stop?`` after every epoch (probes, ``Snapshots``, recognition
  records, monitors, stopping criteria); one with ``state_dict``/``load_state_dict`` is checkpointed too.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from memlab.augmentation.augment import hash_uniform
from memlab.engine import dryrun
from memlab.engine.checkpoints import resume, write_checkpoint
from memlab.streams import EPOCH_ORDER


# ----------------------------------------------------------------------------- schedule and batches
def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Learning rate of global step ``step`` (0-based): linear warm-up ``base * (step + 1) / warmup`` for
    ``warmup`` steps, then cosine decay from ``base`` to 0 at step ``total`` (and 0 after it)."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass(frozen=True)
class Cosine:
    """The ``schedule`` hook of ``fit``: step -> ``lr_at(step, total, warmup, base)``."""
    base: float
    total: int
    warmup: int = 0

    def __call__(self, step: int) -> float:
        return lr_at(step, self.total, self.warmup, self.base)


def plan_steps(n: int, batch_size: int, epochs: int, warmup_epochs: float = 0.0) -> tuple[int, int, int, int]:
    """(batch size, steps per epoch, total steps, warm-up steps) for ``n`` examples: full batches only (the
    remainder of an epoch is dropped), at least one step per epoch; warm-up rounded to whole steps."""
    bs = min(batch_size, n)
    spe = max(1, n // bs)
    return bs, spe, epochs * spe, int(round(warmup_epochs * spe))


def epoch_order(index: torch.Tensor, seed: int, epoch: int, stream: int = EPOCH_ORDER) -> torch.Tensor:
    """Positions 0..N-1 sorted by a hash of (seed, stream + epoch, global example index ``index`` (N,)):
    points shared by two training sets keep the same relative order in both."""
    u = hash_uniform(seed, stream + epoch, torch.as_tensor(index).numpy(), 1)[:, 0]
    return torch.from_numpy(np.argsort(u, kind="stable"))


def order_batches(index: torch.Tensor, seed: int, batch_size: int, steps_per_epoch: int,
                  stream: int = EPOCH_ORDER) -> Callable[[int], list]:
    """The default ``batches`` hook: epoch -> ``steps_per_epoch`` long tensors of ``batch_size`` positions,
    consecutive slices of ``epoch_order(index, seed, epoch, stream)``."""
    def batches(epoch: int) -> list:
        order = epoch_order(index, seed, epoch, stream)
        return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps_per_epoch)]
    return batches


# ----------------------------------------------------------------------------- AMP and the optimiser step
def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype of a CUDA ``device``: bf16 where the card computes it natively (compute capability
    8.0 or higher: A100, H100, RTX 30xx/40xx), else fp16 (with a GradScaler). ``is_bf16_supported()`` also says
    yes on cards that only emulate bf16 (V100, T4), which then run slowly."""
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device, amp: bool):
    """(autocast context, dtype): on CUDA, ``amp_dtype(device)``; off the GPU or with ``amp=False`` a disabled
    context and ``None``."""
    device = torch.device(device)
    if amp and device.type == "cuda":
        dtype = amp_dtype(device)
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast(device.type, enabled=False), None


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """A GradScaler, enabled only when ``autocast`` runs in fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler("cuda", enabled=autocast(device, amp)[1] == torch.float16)


def backward_step(loss: torch.Tensor, opt, scaler, after_step: Callable[[], None] | None = None) -> torch.Tensor:
    """zero_grad; backward of ``scaler.scale(loss)`` (a vector of per-network losses: of its sum); optimiser
    step through the scaler (skipped on non-finite fp16 gradients); scaler update; ``after_step()`` (EMA
    teachers). Returns ``loss.detach()``."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss if loss.dim() == 0 else loss.sum()).backward()
    scaler.step(opt)
    scaler.update()
    if after_step is not None:
        after_step()
    return loss.detach()


def amp_step(forward: Callable[[], torch.Tensor], opt, scaler, device, amp: bool,
             after_step: Callable[[], None] | None = None) -> torch.Tensor:
    """The default optimiser step: ``loss = forward()`` under ``autocast(device, amp)``, then
    ``backward_step(loss, opt, scaler, after_step)``. Returns the detached loss."""
    with autocast(device, amp)[0]:
        loss = forward()
    return backward_step(loss, opt, scaler, after_step)


def accumulate_step(forward: Callable[[slice], torch.Tensor], size: int, micro_batch: int, opt, scaler, device,
                    amp: bool, after_step: Callable[[], None] | None = None) -> torch.Tensor:
    """One optimiser step over a batch of ``size`` items. ``forward(part) -> loss`` is the mean loss of the items
    in the slice ``part``. ``micro_batch`` 0 or >= ``size``: ``amp_step`` on ``slice(0, size)``. Otherwise the batch
    is cut into consecutive parts of at most ``micro_batch`` items; each part's loss, weighted by its share of
    the batch, is back-propagated on its own (peak activation memory follows the part), then one optimiser
    step and ``after_step()``. For a loss that is a mean over items the gradient is the whole batch's, up to
    float rounding; BatchNorm layers normalise over each part. Returns the detached (whole-batch) loss."""
    if not 0 < micro_batch < size:
        return amp_step(lambda: forward(slice(0, size)), opt, scaler, device, amp, after_step)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for lo in range(0, size, micro_batch):
        part = slice(lo, min(size, lo + micro_batch))
        with autocast(device, amp)[0]:
            loss = forward(part) * ((part.stop - part.start) / size)
        scaler.scale(loss).backward()
        total = total + loss.detach().float()
    scaler.step(opt)
    scaler.update()
    if after_step is not None:
        after_step()
    return total


# ----------------------------------------------------------------------------- epoch-end checks
def mean_loss(losses: list) -> float:
    """The default ``epoch_loss``: float32 mean of the steps' 0-d loss tensors."""
    return float(torch.stack(losses).mean())


def check_finite(loss, epoch: int, label, lr: float) -> None:
    """Raise ``FloatingPointError`` when the epoch loss (a float, or a list of per-network floats with
    ``label`` a list of names) is NaN or infinite."""
    values = loss if isinstance(loss, (list, tuple)) else [loss]
    names = label if isinstance(label, (list, tuple)) else [label] * len(values)
    for v, name in zip(values, names):
        if not math.isfinite(v):
            raise FloatingPointError(
                f"{name} diverged at epoch {epoch} (mean loss {v}): most likely the learning rate (base {lr}) is "
                f"too high for this model and batch size, or the inputs hold non-finite values; lower lr or "
                f"check the data")


def check_weights(modules, epoch: int, label, lr: float) -> None:
    """Raise ``FloatingPointError`` when a parameter of ``modules`` holds NaN or inf: a last step can blow the
    weights up after its loss was measured (finite), and every trainer must stop on it the same way."""
    bad = [n for m in modules for n, p in m.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        name = label if isinstance(label, str) else ", ".join(map(str, label))
        raise FloatingPointError(
            f"{name} diverged at epoch {epoch}: {len(bad)} parameter tensor(s) hold non-finite values (first: "
            f"{bad[0]}); most likely the learning rate (base {lr}) is too high for this model and batch size; "
            f"lower lr")


# ----------------------------------------------------------------------------- the loop
@dataclass
class Fit:
    """What ``fit`` returns: ``history`` (one record per epoch, plus any ``first_records``), ``epochs`` and
    ``steps`` done (resumed ones included), ``seconds`` of training (epochs and callbacks), and ``stopped``:
    a callback ended training before the epoch or step budget ran out."""
    history: list
    epochs: int
    steps: int
    seconds: float
    stopped: bool


def fit(step: Callable, batches: Callable[[int], Iterable], *, epochs: int, optimizer, state: dict,
        schedule: Callable[[int], float] | None = None, max_steps: int | None = None,
        modules: Sequence[torch.nn.Module] = (), epoch_start: Callable[[int], None] | None = None,
        callbacks: Sequence[Callable] = (), ckpt_dir=None, epoch_loss: Callable[[list], object] = mean_loss,
        first_records: Callable[[], list] | None = None, label="training", desc: str = "", progress: bool = True,
        show: Sequence[str] = (), after_epoch: Callable[[int], None] | None = None, write: bool = True) -> Fit:
    """Run epochs ``start..epochs-1`` (``start`` = 0, or the epochs a checkpoint in ``ckpt_dir`` holds).

    Per epoch: ``m.train()`` for every ``m`` in ``modules``, then ``epoch_start(epoch)``; for each ``batch`` of
    ``batches(epoch)`` (epoch 0-based): set every param group's lr to ``schedule(step)`` (``step``: global
    0-based optimiser step; no ``schedule``: lr untouched), call ``step(batch, epoch, step)`` -> the step's
    loss (a 0-d tensor, a per-network (N,) tensor, a float, or None when nothing was computed, e.g. an
    empty Poisson batch); stop early once ``max_steps`` steps are done. Then the record
    ``rec = {"epoch": epoch + 1, "loss": epoch_loss(losses) (NaN without losses), "lr": lr of the last
    step, "time": seconds}``; ``FloatingPointError`` (``check_finite``) if the loss is not finite, with
    ``label`` (one name, or one per network when ``epoch_loss`` returns a list) in the message. Then each
    callback ``cb(epoch + 1, rec, steps_done)`` in order: it may add entries to ``rec``; a true return
    ends training after this epoch. Then ``rec`` joins the history, ``ckpt_dir/last.pt`` is written
    atomically, and ``after_epoch(epoch + 1)`` runs (an exception there simulates a kill). After the loop,
    ``m.eval()`` for every module.

    ``state``: {name: object with ``state_dict``/``load_state_dict``} -- models, the optimiser, the
    GradScaler -- saved in the checkpoint with the state of every callback that has those methods, the
    history and the counters. A checkpoint that cannot be loaded (truncated, not a checkpoint, missing
    keys, mismatched states) gives a ``RuntimeWarning`` naming the file, is deleted, and training starts
    from scratch. ``first_records()``: records that open a fresh history (e.g. a monitor at epoch 0).
    ``show``: ``rec`` keys shown next to the loss on the progress bar. ``write=False``: resume from
    ``ckpt_dir`` but never write to it (the other processes of a DDP group; rank 0 writes).

    During a dry run (``dryrun.limits``) each batch is cut to the dry run's ``batch`` items, training stops after
    its ``steps`` steps, and the callbacks then run once, as at the last epoch (``epochs``).
    """
    path = None if ckpt_dir is None else Path(ckpt_dir) / "last.pt"
    stateful = [cb for cb in callbacks if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict")]
    run = resume(path, state, stateful)
    if run is None:
        run = {"epoch": 0, "step": 0, "seconds": 0.0, "stopped": False,
               "history": first_records() if first_records is not None else []}
    history, n_steps, seconds, stopped = run["history"], run["step"], run["seconds"], run["stopped"]
    base_lr = getattr(schedule, "base", optimizer.param_groups[0]["lr"])
    bar = tqdm(range(run["epoch"], epochs), initial=run["epoch"], total=epochs, disable=not progress, desc=desc,
               leave=False)
    done, dry = run["epoch"], dryrun.active()
    for epoch in bar:
        if stopped or (max_steps is not None and n_steps >= max_steps):
            break
        for m in modules:
            m.train()
        if epoch_start is not None:
            epoch_start(epoch)
        t0, losses = time.time(), []
        for batch in batches(epoch):
            if (max_steps is not None and n_steps >= max_steps) or (dry and n_steps >= dry.steps):
                break
            if dry:
                batch = dryrun.head(batch)
            if schedule is not None:
                lr = schedule(n_steps)
                for g in optimizer.param_groups:
                    g["lr"] = lr
            loss = step(batch, epoch, n_steps)
            if loss is not None:
                losses.append(loss)
            n_steps += 1
        if dry:
            epoch = epochs - 1  # the callbacks act as at the last epoch (records, snapshots, fit checks)
        rec = {"epoch": epoch + 1, "loss": epoch_loss(losses) if losses else math.nan,
               "lr": optimizer.param_groups[0]["lr"], "time": time.time() - t0}
        if losses:
            check_finite(rec["loss"], epoch + 1, label, base_lr)
        check_weights(modules, epoch + 1, label, base_lr)
        for cb in callbacks:
            stopped = bool(cb(epoch + 1, rec, n_steps)) or stopped
        seconds += time.time() - t0
        history.append(rec)
        done = epoch + 1
        bar.set_postfix(loss=f"{float(np.mean(rec['loss'])):.3f}",
                        **{k: f"{float(np.mean(rec[k])):.3f}" for k in show if k in rec})
        if path is not None and write:
            write_checkpoint(path, state, stateful, epoch=done, step=n_steps, seconds=seconds, stopped=stopped,
                             history=history)
        if after_epoch is not None:
            after_epoch(done)
        if dry:
            break
    for m in modules:
        m.eval()
    return Fit(history, done, n_steps, seconds, stopped)
