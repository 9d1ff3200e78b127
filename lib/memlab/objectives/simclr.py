"""SimCLR (Chen et al. 2020): NT-Xent on a 2-layer projector of the pooled embedding.

``l_i = -log exp(s(z_i, z_j)/tau) / sum_{k != i} exp(s(z_i, z_k)/tau)`` over the 2B views of a batch (Eq. 1),
s = cosine similarity, (i, j) the two views of one image. ``nt_xent`` is the pure loss; ``SimCLR`` holds the
projector.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memlab.objectives.base import Objective, mlp


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2B views: positives are (i, i+B); all other 2B-2 views are negatives.
    z1, z2: (B, D) projections of the two views. Raises ValueError for B < 2 (no negatives: the loss is
    constant) or a temperature <= 0."""
    if z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs a batch of >= 2 images (their other views are the negatives), got "
                         f"{z1.shape[0]}; raise batch_size")
    if not temperature > 0:
        raise ValueError(f"NT-Xent temperature must be > 0, got {temperature}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(Objective):
    """NT-Xent (``nt_xent``) of the projections of two views, over the global batch under DDP (``gather``)."""
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, proj_dim: int = 128, hidden: int = 512, temperature: float = 0.5,
                 norm: str = "batch"):
        super().__init__()
        self.temperature = temperature
        self.projector = mlp([encoder_dim, hidden, proj_dim], norm)

    def loss(self, encoder, views, labels=None):
        z = self.projector(encoder.embed(torch.cat(views), rep="pooled"))
        z1, z2 = z.chunk(2)
        return nt_xent(self.gather(z1), self.gather(z2), self.temperature)
