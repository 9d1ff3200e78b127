"""VICReg (Bardes et al. 2022): variance, invariance and covariance terms on an expander of the pooled embedding.
``vicreg_loss`` is the pure loss; ``VICReg`` holds the expander."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memlab.objectives.base import Objective, mlp


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_w: float = 25.0, var_w: float = 25.0, cov_w: float = 1.0,
                eps: float = 1e-4) -> torch.Tensor:
    """VICReg (Bardes et al. 2022, Eq. 1-6) with the paper's weights lambda = mu = 25, nu = 1:

        s = mean ||z1 - z2||^2 / n,  v(Z) = mean_j relu(1 - sqrt(Var(z_j) + eps)),
        c(Z) = sum_{i != j} Cov(Z)_{ij}^2 / d,   L = lambda s + mu (v(Z1) + v(Z2)) + nu (c(Z1) + c(Z2)).
    """
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"VICReg needs a batch of >= 2 images (its variance and covariance are over the batch), "
                         f"got {n}; raise batch_size")
    inv = F.mse_loss(z1, z2)
    var, cov = 0.0, 0.0
    for z in (z1, z2):
        z = z - z.mean(0)
        var = var + F.relu(1 - torch.sqrt(z.var(0) + eps)).mean()
        c = (z.t() @ z) / (n - 1)
        cov = cov + (c.pow(2).sum() - c.diagonal().pow(2).sum()) / d
    return sim_w * inv + var_w * var + cov_w * cov


class VICReg(Objective):
    """VICReg on an expander MLP of the pooled embedding (``vicreg_loss``)."""
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, expander: int = 512, sim_w: float = 25.0, var_w: float = 25.0,
                 cov_w: float = 1.0, norm: str = "batch"):
        super().__init__()
        self.weights = (sim_w, var_w, cov_w)
        self.expander = mlp([encoder_dim, expander, expander, expander], norm)

    def loss(self, encoder, views, labels=None):
        z1, z2 = self.expander(encoder.embed(torch.cat(views), rep="pooled")).chunk(2)
        return vicreg_loss(self.gather(z1), self.gather(z2), *self.weights)
