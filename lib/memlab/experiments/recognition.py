"""Recognition records of a network on a fixed subset X (Sadrtdinov, Chirkova, Lobacheva 2021, §3; methods.md
section 1): after chosen epochs of training, for every image x of X and each of its M fixed augmentations, whether
the network *recognises* it (``metrics.profiles``: the argmax of the logits is its training label, or for SimCLR
the positive view is the most similar in the fixed evaluation batch).

- ``record``: the indicators, bool (M, |X|), of one network now;
- ``Records``: the epoch-end callback of ``engine.fit`` that keeps them for the recorded epochs (of one network,
  or of every network of a stacked vmap ensemble) and checkpoints them as bitsets (``profiles.pack_bits``);
- ``net_result``: a trained network's cache entry (records, history, weights).

The evaluation views come from one ``augment.ViewBank`` shared by every network and epoch.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from memlab.augmentation.augment import ViewBank
from memlab.engine import dryrun
from memlab.engine.loop import autocast
from memlab.engine.train import TrainConfig
from memlab.metrics.profiles import eval_chunks, pack_bits, recognized_classification, recognized_in_batch, unpack_bits

RECOGNITION = {"supervised": "classification", "simclr": "in_batch"}   # objective -> kind of indicator


def recognition_kind(cfg: TrainConfig) -> str:
    """"classification" or "in_batch" (SimCLR) for ``cfg``'s objective; ValueError for an objective without one."""
    if cfg.objective not in RECOGNITION:
        raise ValueError(f"no recognition indicator for objective {cfg.objective!r}; choose from {sorted(RECOGNITION)}")
    return RECOGNITION[cfg.objective]


def views_needed(cfg: TrainConfig, n_aug: int) -> int:
    """Views the bank must hold for M augmentations: M (classification) or 2M (SimCLR view pairs)."""
    return n_aug * (2 if recognition_kind(cfg) == "in_batch" else 1)


@torch.no_grad()
def record(encoder, objective, cfg: TrainConfig, images: torch.Tensor, labels, index, bank: ViewBank,
           n_aug: int, eval_batch: int = 256, device="cpu", amp: bool = True) -> np.ndarray:
    """Recognition indicators, bool (M, |X|), of one network on X (``images`` uint8 = data[index]).

    Classification: I = [argmax logits(view m of x) == label(x)]. SimCLR: view pair m = bank views (2m, 2m+1),
    scored inside the fixed evaluation batches ``eval_chunks(|X|, eval_batch)``, anchor = first view. ``index``:
    the images' global indices (they key the view draws); ``amp``: autocast on CUDA. Raises ValueError when the
    bank holds fewer than ``views_needed`` views or the objective has no indicator."""
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


def net_result(records, n_points, history, encoder, objective) -> dict:
    """The cache entry of one trained network: ``records`` (list of bool (M, |X|), one per recorded epoch) packed as
    bitsets, ``n_points`` = |X|, the training ``history`` and the encoder's and objective's weights (CPU)."""
    return {"records": pack_bits(np.stack(records)), "n_points": n_points, "history": history,
            "encoder": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
            "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()}}


class Records:
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
