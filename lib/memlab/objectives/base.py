"""What every training objective is: an ``nn.Module`` holding its heads, with ``loss(encoder, views, labels)``.

An objective also says how many augmented views per image the trainer must supply (``n_views``, then ``n_local``
small multi-crop views), which augmentation preset it trains with by default (``aug``) and whether it needs labels.
``bind(encoder, seed)`` runs once after the encoder is built (before a checkpoint is restored): objectives that
need a copy of the encoder (DINO's teacher) or its geometry (MAE's patch grid) build those parts there.
``after_step(encoder)`` is the hook of methods with momentum teachers. ``mlp`` builds every method's heads.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


class Objective(nn.Module):
    n_views: int = 2
    needs_labels: bool = False
    aug: str = "simclr"
    # Losses that couple the images of a batch (NT-Xent, VICReg) pass their projections through ``gather``
    # first: the identity in one process; under ``ddp.distribute`` the concatenation of every process's
    # projections, with gradients, so the loss is the loss of the global batch.
    gather = staticmethod(_same)

    def loss(self, encoder, views: list[torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        """The scalar loss of one batch. ``views``: ``n_views`` float tensors (B, 3, H, W), normalised, then
        ``n_local`` smaller ones; ``labels``: int64 (B,) or None."""
        raise NotImplementedError

    n_local: int = 0          # extra small crops per image (multi-crop), after the n_views global views
    local_size: int = 16
    local_scale: tuple = (0.05, 0.4)

    def bind(self, encoder, seed: int = 0) -> None:  # build encoder-dependent parts (teachers, decoders)
        pass

    def after_step(self, encoder) -> None:  # momentum teachers etc.
        pass


def mlp(dims: list[int], norm: str = "batch") -> nn.Sequential:
    """Linear layers ``dims[0] -> ... -> dims[-1]`` with ``norm`` ("batch", "layer" or "none") and ReLU between
    them (hidden linear layers lose their bias before a norm). Raises ValueError for another ``norm``."""
    if norm not in ("batch", "layer", "none"):
        raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {norm!r}")
    layers = []
    for i in range(len(dims) - 1):
        hidden = i < len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=not (hidden and norm != "none")))
        if hidden:
            if norm != "none":
                layers.append(nn.BatchNorm1d(dims[i + 1]) if norm == "batch" else nn.LayerNorm(dims[i + 1]))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
