"""DINO (Caron et al. 2021): self-distillation of a student by a momentum teacher, without labels.

The teacher is a copy of the student (encoder + head) built in ``bind`` and moved towards it after every step
(``after_step``); its centre is the mean over the global batch under DDP (``collectives.mean_over_processes``).
``dino_loss`` is the pure loss; ``DINO`` holds the heads, the teacher and the centre.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from memlab.objectives.base import Objective, mlp
from memlab.objectives.collectives import mean_over_processes


def dino_loss(t_prob: list[torch.Tensor], s_logp: list[torch.Tensor]) -> torch.Tensor:
    """DINO's cross-entropy (Caron et al. 2021, Eq. 2): the mean over the pairs (i, j), i a global view and j any
    other view, of ``mean_batch H(t_i, s_j) = -sum_k t_i[k] log s_j[k]``. ``t_prob``: the teacher's centred and
    sharpened probabilities of each global view, (B, K) each; ``s_logp``: the student's log-probabilities of every
    view (global first, then local), (B, K) each."""
    total, n = 0.0, 0
    for i, tp in enumerate(t_prob):
        for j, sl in enumerate(s_logp):
            if j != i:
                total, n = total + (-(tp * sl).sum(1)).mean(), n + 1
    return total / n


class DINOHead(nn.Module):
    """MLP -> L2-normalise -> weight-normalised linear layer (g fixed to 1), as Caron et al. 2021."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int, norm: str = "batch"):
        super().__init__()
        self.mlp = mlp([in_dim, hidden, hidden, bottleneck], norm=norm)
        self.last = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)

    def forward(self, x):
        return F.normalize(self.mlp(x), dim=-1) @ F.normalize(self.last, dim=1).t()


class DINO(Objective):
    """Self-distillation without labels (Caron et al. 2021, Eq. 1-2).

    Student s and teacher t (an EMA of the student: ``theta_t <- m theta_t + (1 - m) theta_s`` after each
    step) share the architecture (encoder + head). Teacher outputs are *centred* (c <- c_m c + (1 - c_m)
    mean_batch t) and *sharpened* (temperature tau_t < tau_s):

        L = sum_{i in global} sum_{j != i, j in all views} - softmax((t_i - c) / tau_t) . log_softmax(s_j / tau_s)

    averaged over the pairs. Multi-crop: ``n_local`` extra small crops go through the student only. The head
    has BatchNorm by default (``head_norm``, as DINO's ResNet-50 setting): at small scale, without it the
    near-identical initial features let the centred teacher go uniform. The teacher temperature defaults to
    0.02 (the paper: 0.04 -> 0.07 with 65536 outputs); with 1024 outputs and a few hundred steps, 0.04 still
    drifts to the uniform solution (loss -> log 1024), which tests/test_objectives.py would catch.
    SSLMem and the probes use the student encoder.
    """
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, out_dim: int = 1024, hidden: int = 512, bottleneck: int = 128,
                 student_temp: float = 0.1, teacher_temp: float = 0.02, center_momentum: float = 0.9,
                 momentum: float = 0.99, n_local: int = 0, local_size: int = 16, head_norm: str = "batch"):
        super().__init__()
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum, self.momentum = center_momentum, momentum
        self.n_local, self.local_size = n_local, local_size
        self.head = DINOHead(encoder_dim, out_dim, hidden, bottleneck, head_norm)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def bind(self, encoder, seed: int = 0) -> None:
        self.teacher = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for p in list(self.teacher.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)

    def loss(self, encoder, views, labels=None):
        n_glob = self.n_views
        with torch.no_grad():
            self.teacher.train(encoder.training)
            t = self.teacher_head(self.teacher.embed(torch.cat(views[:n_glob]), rep="pooled")).float()
            t_prob = F.softmax((t - self.center) / self.teacher_temp, dim=1).chunk(n_glob)
        s_glob = self.head(encoder.embed(torch.cat(views[:n_glob]), rep="pooled")).float().chunk(n_glob)
        s_loc = ()
        if len(views) > n_glob:
            s_loc = self.head(encoder.embed(torch.cat(views[n_glob:]), rep="pooled")).float().chunk(len(views) - n_glob)
        s_logp = [F.log_softmax(s / self.student_temp, dim=1) for s in (*s_glob, *s_loc)]
        loss = dino_loss(t_prob, s_logp)
        if encoder.training:
            with torch.no_grad():
                # the mean of the global batch's teacher outputs under DDP, not this shard's
                self.center.mul_(self.center_momentum).add_((1 - self.center_momentum) * mean_over_processes(t))
        return loss

    @torch.no_grad()
    def after_step(self, encoder) -> None:
        m = self.momentum
        for src, dst in ((encoder, self.teacher), (self.head, self.teacher_head)):
            for ps, pt in zip(src.parameters(), dst.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            for bs, bt in zip(src.buffers(), dst.buffers()):  # BatchNorm running statistics
                bt.copy_(bs)
