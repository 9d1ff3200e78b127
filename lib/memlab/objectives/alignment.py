"""The alignment regulariser of the SSLMem paper (Wang et al. 2024, Eq. 3, §4.3) around any other objective:
``alignment_distance`` is the pure term; ``AlignmentLimited`` holds the base objective."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memlab.objectives.base import Objective


def alignment_distance(h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """The SSLMem alignment distance of two views' representations (B, ...): the batch mean of the L2 distance
    between the L2-normalised, flattened representations (float32), in [0, 2]."""
    h1, h2 = F.normalize(h1.flatten(1).float(), dim=1), F.normalize(h2.flatten(1).float(), dim=1)
    return (h1 - h2).norm(dim=1).mean()


class AlignmentLimited(Objective):
    """SSLMem Eq. 3 (Wang et al. 2024, §4.3): ``L = (1 - lam) L_base - lam * mean d(h(x'), h(x''))`` with d the
    L2 distance between the L2-normalised flattened representations of two views (the SSLMem alignment
    distance). lam > 0 pushes views apart: it limits alignment, hence memorisation. Works around any base
    objective; the representations of the base's own forward pass are reused when it has one."""

    def __init__(self, encoder_dim: int, base: str = "simclr", lam: float = 0.1, base_kw: dict | None = None):
        super().__init__()
        if base == "aligned":
            raise ValueError("the alignment regulariser cannot wrap itself")
        if not 0 <= lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        from memlab.objectives.losses import build_objective  # here: the registry imports this module
        self.base = build_objective(base, encoder_dim, **(base_kw or {}))
        self.lam = lam
        self.n_views, self.aug, self.needs_labels = max(2, self.base.n_views), self.base.aug, self.base.needs_labels
        self.n_local, self.local_size, self.local_scale = self.base.n_local, self.base.local_size, self.base.local_scale

    def bind(self, encoder, seed: int = 0) -> None:
        self.base.bind(encoder, seed)

    def loss(self, encoder, views, labels=None):
        b = views[0].shape[0]
        seen = []
        hook = encoder.register_forward_hook(lambda mod, inp, out: seen.append(out))
        try:
            base_loss = self.base.loss(encoder, views[:self.base.n_views] + views[self.n_views:], labels)
        finally:
            hook.remove()
        h = seen[0] if seen else None  # the first encoder() call holds the global views (multi-crop: more follow)
        if h is None or h.shape[0] < 2 * b:  # the base never ran both views through encoder(): do it here
            h = encoder(torch.cat(views[:2]))
        return (1 - self.lam) * base_loss - self.lam * alignment_distance(h[:b], h[b:2 * b])

    def after_step(self, encoder) -> None:
        self.base.after_step(encoder)
