"""VGG encoders for 32x32 images, built with torchvision's own VGG layer builder (``torchvision.models.vgg``:
its configurations "A" (VGG-11) to "E" (VGG-19) and ``make_layers``), with batch norm and without the 224-pixel
classifier head: the benign-memorisation paper's second encoder family (Anagnostidis et al., ICLR 2023, Table 2).
"""
from __future__ import annotations

import torch.nn as nn

from memlab.models.encoder import Encoder, scaled

DEPTHS = {11: "A", 13: "B", 16: "D", 19: "E"}


class VGG(Encoder):
    """VGG-``depth`` with BatchNorm (torchvision's ``make_layers`` on its configuration, channels scaled by
    ``width``), cut into its five stages: layers block1..block5, each ending with its 2x2 max-pool. A 32x32 input
    gives (N, 512 w, 1, 1); ``out_dim`` = 512 w. ``stem_stride`` 2 strides the first convolution, so a 64x64 input
    (Tiny-ImageNet: the paper's appendix F) also ends at 1x1. Raises ValueError for a depth torchvision does not
    define."""

    def __init__(self, depth: int = 16, width: float = 1.0, stem_stride: int = 1):
        # imported here, not at the top: torchvision.models pulls in torch._dynamo (about 1.3 s), which every
        # process importing memlab (notebook kernels, executor workers) would pay without ever building a VGG
        from torchvision.models.vgg import cfgs, make_layers
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"VGG depth must be one of {sorted(DEPTHS)}, got {depth}")
        cfg = [v if v == "M" else scaled(v, width) for v in cfgs[DEPTHS[depth]]]
        features = list(make_layers(cfg, batch_norm=True))
        features[0].stride = (stem_stride, stem_stride)   # torchvision builds every conv with stride 1
        self.blocks, start = nn.ModuleList(), 0
        for i, m in enumerate(features):
            if isinstance(m, nn.MaxPool2d):   # a stage ends at each max-pool
                self.blocks.append(nn.Sequential(*features[start:i + 1]))
                start = i + 1
        self.layer_names = [f"block{i + 1}" for i in range(len(self.blocks))]
        self.out_dim = [v for v in cfg if v != "M"][-1]

    def _layers(self, x):
        for name, blk in zip(self.layer_names, self.blocks):
            x = blk(x)
            x = yield name, x


def vgg11(width: float = 1.0, stem_stride: int = 1) -> VGG:
    return VGG(11, width, stem_stride)


def vgg16(width: float = 1.0, stem_stride: int = 1) -> VGG:
    return VGG(16, width, stem_stride)
