"""CNN4: the small plain CNN of the UnitMem and LayerMem experiments."""
from __future__ import annotations

import torch.nn as nn

from memlab.models.encoder import Encoder, conv_bn


class CNN(Encoder):
    """CNN4: four blocks conv3x3+BN+ReLU+MaxPool2 with `channels`; layers block1..block4.
    32x32 input -> (N, channels[-1], 2, 2)."""

    def __init__(self, channels=(32, 64, 128, 256)):
        super().__init__()
        c_in = 3
        self.blocks = nn.ModuleList()
        for c in channels:
            self.blocks.append(nn.Sequential(*conv_bn(c_in, c), nn.MaxPool2d(2)))
            c_in = c
        self.layer_names = [f"block{i + 1}" for i in range(len(channels))]
        self.out_dim = c_in

    def _layers(self, x):
        for name, blk in zip(self.layer_names, self.blocks):
            x = blk(x)
            x = yield name, x
