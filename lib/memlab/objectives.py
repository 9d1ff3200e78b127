"""Training objectives, in a small registry: a new method is one registered function.

An objective is an ``nn.Module`` holding its heads (projector, classifier) with
``loss(encoder, views, labels) -> scalar``, ``n_views`` (augmented views per image the trainer must
supply) and ``aug`` (the default augmentation preset). ``after_step(encoder)`` is a hook for methods
with momentum teachers.

- ``simclr``: NT-Xent (Chen et al. 2020, Eq. 1) on a 2-layer projector of the pooled embedding,
  ``l_i = -log exp(s(z_i, z_j)/tau) / sum_{k != i} exp(s(z_i, z_k)/tau)`` over the 2B views,
  s = cosine similarity.
- ``supervised``: cross-entropy of a linear classifier on the pooled embedding (true or random labels).
- ``simsiam``: Chen & He 2021: projector f and predictor h,
  ``L = D(h(z1), sg(z2)) / 2 + D(h(z2), sg(z1)) / 2`` with D the negative cosine similarity and sg the
  stop-gradient. Each image's loss depends on that image alone (with ``norm != "batch"``), so it admits
  per-example gradients for DP-SGD (``dp.py``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

OBJECTIVES: dict[str, Callable[..., "Objective"]] = {}


def register(name: str):
    def deco(factory):
        OBJECTIVES[name] = factory
        return factory
    return deco


def build_objective(name: str, encoder_dim: int, **kwargs) -> "Objective":
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](encoder_dim, **kwargs)


class Objective(nn.Module):
    n_views: int = 2
    needs_labels: bool = False
    aug: str = "simclr"

    def loss(self, encoder, views: list[torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, encoder) -> None:  # momentum teachers etc.
        pass


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2B views: positives are (i, i+B); all other 2B-2 views are negatives."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def mlp(dims: list[int], norm: str = "batch") -> nn.Sequential:
    """Linear layers with ``norm`` ("batch", "layer" or "none") and ReLU between them."""
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


class SimCLR(Objective):
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, proj_dim: int = 128, hidden: int = 512, temperature: float = 0.5,
                 norm: str = "batch"):
        super().__init__()
        self.temperature = temperature
        self.projector = mlp([encoder_dim, hidden, proj_dim], norm)

    def loss(self, encoder, views, labels=None):
        z = self.projector(encoder.embed(torch.cat(views), rep="pooled"))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, self.temperature)


class Supervised(Objective):
    n_views, needs_labels, aug = 1, True, "weak"

    def __init__(self, encoder_dim: int, num_classes: int = 10, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.classifier = nn.Linear(encoder_dim, num_classes)

    def logits(self, encoder, x):
        return self.classifier(encoder.embed(x, rep="pooled")) / self.temperature

    def loss(self, encoder, views, labels):
        return F.cross_entropy(self.logits(encoder, views[0]).float(), labels)


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
        return -(F.cosine_similarity(p1, z2, dim=1) + F.cosine_similarity(p2, z1, dim=1)) / 2

    def loss(self, encoder, views, labels=None):
        return self.per_example(encoder, views).mean()


@register("simclr")
def simclr(encoder_dim: int, **kw) -> Objective:
    return SimCLR(encoder_dim, **kw)


@register("supervised")
def supervised(encoder_dim: int, **kw) -> Objective:
    return Supervised(encoder_dim, **kw)


@register("simsiam")
def simsiam(encoder_dim: int, **kw) -> Objective:
    return SimSiam(encoder_dim, **kw)
