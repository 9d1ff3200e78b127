"""SimSiam (Chen & He 2021): projector f and predictor h, ``L = D(h(z1), sg(z2)) / 2 + D(h(z2), sg(z1)) / 2`` with
D the negative cosine similarity and sg the stop-gradient. Each image's loss depends on that image alone (with
``norm != "batch"``), so it admits the per-example gradients of DP-SGD (``memlab.engine.dp``). ``simsiam_loss`` is
the pure loss; ``SimSiam`` holds the projector and predictor."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memlab.objectives.base import Objective, mlp


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The symmetric negative cosine of each image (B,): ``-(cos(p1, z2) + cos(p2, z1)) / 2`` for predictions
    ``p`` and targets ``z`` (B, D) of its two views; the caller stops the targets' gradient."""
    return -(F.cosine_similarity(p1, z2, dim=1) + F.cosine_similarity(p2, z1, dim=1)) / 2


class SimSiam(Objective):
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, proj_dim: int = 256, pred_hidden: int = 64, norm: str = "batch"):
        super().__init__()
        self.projector = mlp([encoder_dim, proj_dim, proj_dim], norm)
        self.predictor = mlp([proj_dim, pred_hidden, proj_dim], norm)

    def per_example(self, encoder, views) -> torch.Tensor:
        """Loss of each image (B,): the symmetric negative cosine of predictions and stopped targets."""
        z = self.projector(encoder.embed(torch.cat(views), rep="pooled")).float()
        p = self.predictor(z)
        z1, z2 = z.detach().chunk(2)
        p1, p2 = p.chunk(2)
        return simsiam_loss(p1, p2, z1, z2)

    def loss(self, encoder, views, labels=None):
        return self.per_example(encoder, views).mean()
