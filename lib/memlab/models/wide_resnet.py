"""Wide ResNet-50-2 for 32x32 images, from timm's maintained ResNet (``timm.models.resnet``): bottleneck blocks
[3, 4, 6, 3] whose inner 3x3 convolutions are twice as wide (``base_width`` 128), as torchvision's and timm's
``wide_resnet50_2``. The SSLMem paper's Table 15 scores it beside ResNet-50 and ResNet-18.

Adapted to small images as the CIFAR ResNets of ``resnet``: the 7x7 stride-2 stem and its max-pool become one 3x3
stride-1 convolution, so a 32x32 input ends at 4x4. ``width`` scales the stages' channels (the paper: 1; timm keeps
the stem at 64).
"""
from __future__ import annotations

import torch.nn as nn

from memlab.models.encoder import Encoder, scaled
from memlab.models.resnet import ResNet


class WideResNet50(Encoder):
    """WRN-50-2 (timm's ResNet: Bottleneck, layers [3, 4, 6, 3], base_width 128) with a 3x3 stride-1 stem and no
    max-pool, the stages' channels scaled by ``width``. Layers: stem, layer1.0, ..., layer4.2 (block outputs after the
    residual addition and ReLU). 32x32 input -> (N, 2048 w, 4, 4); ``out_dim`` = 2048 w. ``stem_stride`` 2: a 64x64
    input ends at 4x4 too."""

    def __init__(self, width: float = 1.0, stem_stride: int = 1):
        from timm.models.resnet import Bottleneck, ResNet as TimmResNet   # here: timm imports torchvision (as vgg)
        super().__init__()
        net = TimmResNet(Bottleneck, [3, 4, 6, 3], num_classes=0, base_width=128,
                         channels=tuple(scaled(c, width) for c in (64, 128, 256, 512)))
        stem = net.bn1.num_features   # timm keeps a 64-channel stem whatever the stages' width
        net.conv1 = nn.Conv2d(3, stem, 3, stem_stride, 1, bias=False)   # small images: no 7x7/2 stem, no max-pool
        net.maxpool = nn.Identity()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act1)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.layer_names = ["stem"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(net, f"layer{i}")))]
        self.out_dim = net.num_features

    _layers = ResNet._layers   # the same walk over stem and blocks as memlab's CIFAR ResNets


def wrn50_2(width: float = 1.0, stem_stride: int = 1) -> WideResNet50:
    return WideResNet50(width, stem_stride)
