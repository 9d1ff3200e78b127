"""ResNets for 32x32 images: the Myrtle ResNet-9 (DAWNBench) and the CIFAR ResNet-18/34/50 (3x3 stem, no max-pool),
encoders only (no classification head). Their layers are the block outputs after the residual addition."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from memlab.models.encoder import Encoder, conv_bn, norm_layer, scaled


# ----------------------------------------------------------------------------- ResNet-9
class Res9Stage(nn.Module):
    """conv_bn + MaxPool2, optionally followed by a residual block: out = h + res2(res1(h))."""

    def __init__(self, c_in, c_out, residual, norm="batch"):
        super().__init__()
        self.conv = conv_bn(c_in, c_out, norm=norm)
        self.pool = nn.MaxPool2d(2)
        self.residual = residual
        if residual:
            self.res1 = conv_bn(c_out, c_out, norm=norm)
            self.res2 = conv_bn(c_out, c_out, norm=norm)


class ResNet9(Encoder):
    """Myrtle ResNet-9: prep(64w) -> layer1(128w, pool, +res) -> layer2(256w, pool) -> layer3(512w, pool, +res).

    Layers: prep, layer1, layer1.res1, layer1.res2, layer2, layer3, layer3.res1, layer3.res2, where
    `X.res1` is the first conv of the residual branch and `X.res2` the block output X + res2(res1(X)).
    32x32 input -> final map (N, 512w, 4, 4). ``norm="group"`` swaps BatchNorm for GroupNorm. ``stem_stride`` 2
    makes the prep convolution strided, so a 64x64 input ends at 4x4 too (``networks.stem_kw``).
    """

    def __init__(self, width: float = 1.0, norm: str = "batch", stem_stride: int = 1):
        super().__init__()
        c = [scaled(n, width) for n in (64, 128, 256, 512)]
        self.prep = conv_bn(3, c[0], stride=stem_stride, norm=norm)
        self.layer1 = Res9Stage(c[0], c[1], residual=True, norm=norm)
        self.layer2 = Res9Stage(c[1], c[2], residual=False, norm=norm)
        self.layer3 = Res9Stage(c[2], c[3], residual=True, norm=norm)
        self.out_dim = c[3]
        self.layer_names = ["prep", "layer1", "layer1.res1", "layer1.res2", "layer2",
                            "layer3", "layer3.res1", "layer3.res2"]

    def _layers(self, x):
        x = self.prep(x)
        x = yield "prep", x
        for name in ("layer1", "layer2", "layer3"):
            stage = getattr(self, name)
            x = stage.pool(stage.conv(x))
            x = yield name, x
            if stage.residual:
                r = stage.res1(x)
                r = yield f"{name}.res1", r
                x = x + stage.res2(r)
                x = yield f"{name}.res2", x


# ----------------------------------------------------------------------------- CIFAR ResNets
def shortcut(c_in: int, c_out: int, stride: int, norm: str) -> nn.Sequential:
    """The skip path of a residual block: the identity (an empty Sequential) when the shape is kept, else a
    strided 1x1 conv (no bias) + norm projecting ``c_in`` channels to ``c_out`` (He et al. 2016, option B)."""
    if stride == 1 and c_in == c_out:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm_layer(c_out, norm))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride=1, norm="batch"):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes, norm)
        self.shortcut = shortcut(c_in, c_out, stride, norm)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride=1, norm="batch"):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = norm_layer(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes, norm)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = norm_layer(c_out, norm)
        self.shortcut = shortcut(c_in, c_out, stride, norm)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(Encoder):
    """CIFAR ResNet: stem conv3x3(64w)+BN+ReLU (stride 1, no max-pool), then 4 stages of residual
    blocks (planes 64w,128w,256w,512w; strides 1,2,2,2). Layers: stem, layer1.0, ..., layer4.{n-1}
    (block outputs after residual addition + ReLU). 32x32 input -> (N, 512*expansion*w, 4, 4). ``stem_stride`` 2
    restores the stride of the first convolution for 64x64 images (Tiny-ImageNet, Anagnostidis et al. 2023,
    appendix F), which then end at 4x4 too."""

    def __init__(self, block, num_blocks, width: float = 1.0, norm: str = "batch", stem_stride: int = 1):
        super().__init__()
        c = scaled(64, width)
        self.stem = conv_bn(3, c, stride=stem_stride, norm=norm)
        self.layer_names = ["stem"]
        for i, (n, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = scaled(64 * 2 ** i, width)
            blocks = []
            for j in range(n):
                blocks.append(block(c, planes, stride if j == 0 else 1, norm))
                c = planes * block.expansion
                self.layer_names.append(f"layer{i + 1}.{j}")
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_dim = c

    def _layers(self, x):
        x = self.stem(x)
        x = yield "stem", x
        for i in range(1, 5):
            for j, blk in enumerate(getattr(self, f"layer{i}")):
                x = blk(x)
                x = yield f"layer{i}.{j}", x


def resnet18(width=1.0, norm="batch", stem_stride=1):
    return ResNet(BasicBlock, [2, 2, 2, 2], width, norm, stem_stride)


def resnet34(width=1.0, norm="batch", stem_stride=1):
    return ResNet(BasicBlock, [3, 4, 6, 3], width, norm, stem_stride)


def resnet50(width=1.0, norm="batch", stem_stride=1):
    return ResNet(Bottleneck, [3, 4, 6, 3], width, norm, stem_stride)
