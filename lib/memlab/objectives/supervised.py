"""Supervised training: cross-entropy of a linear classifier on the pooled embedding, with the true labels or
with random ones (the memorization baselines of Sadrtdinov et al. 2021 and Anagnostidis et al. 2023)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from memlab.objectives.base import Objective


class Supervised(Objective):
    """``cross_entropy(classifier(embed(x)) / temperature, labels)``; one weakly augmented view per image."""
    n_views, needs_labels, aug = 1, True, "weak"

    def __init__(self, encoder_dim: int, num_classes: int = 10, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.classifier = nn.Linear(encoder_dim, num_classes)

    def logits(self, encoder, x):
        """(B, num_classes) float logits of the images ``x`` (B, 3, H, W)."""
        return self.classifier(encoder.embed(x, rep="pooled")) / self.temperature

    def loss(self, encoder, views, labels):
        return F.cross_entropy(self.logits(encoder, views[0]).float(), labels)
