"""Encoders for memorization studies (SSLMem, LayerMem, UnitMem).

Every model is an `Encoder` (no classification head) that exposes its intermediate layers:

    enc = build_model("resnet9", width=0.25)
    enc.layer_names                                  # ordered readable layers
    feats = enc.forward_features(x, ["layer2"])      # one pass, stops after layer2
    z = enc.embed(x)                                 # (N, enc.out_dim)

Layer outputs are taken AFTER the residual addition / activation of their block.
Each model implements `_layers(x)`, a generator yielding (name, tensor) in network order and
continuing from the tensor it is sent back (`x = yield name, x`), so units can be masked
(`set_unit_mask`, used for pruning) at any layer, residual sums included. `forward_features`
stops pulling from it once the deepest requested layer is out, so later modules never run.
Weights use PyTorch/timm default init (seed outside).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _ch(c: int, width: float) -> int:
    """Channel count c scaled by width, rounded, at least 1."""
    return max(1, int(round(c * width)))


def spatial_mean(h: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,C); (N,T,D) -> (N,D); 2-D tensors unchanged."""
    if h.dim() == 4:
        return h.mean(dim=(2, 3))
    if h.dim() == 3:
        return h.mean(dim=1)
    return h


class Encoder(nn.Module):
    """Base class. Subclasses set `layer_names`, `out_dim` and implement `_layers(x)`."""

    layer_names: list[str]
    out_dim: int

    def _layers(self, x):
        """Yield (name, output) for every entry of `layer_names`, in order, continuing from the tensor
        sent back."""
        raise NotImplementedError

    def set_unit_mask(self, layer: str, keep) -> None:
        """Multiply the units (channels; the last dim of ViT tokens) of `layer`'s output by `keep` (a 0/1
        vector) in every forward pass; `keep=None` removes the mask. Weights are not touched."""
        self._check_layers([layer])
        masks = self.__dict__.setdefault("_unit_masks", {})
        if keep is None:
            masks.pop(layer, None)
        else:
            masks[layer] = torch.as_tensor(keep, dtype=torch.float32)

    def _run(self, x):
        """Drive `_layers`, applying unit masks; yields (name, output)."""
        masks = self.__dict__.get("_unit_masks", {})
        gen = self._layers(x)
        try:
            name, h = next(gen)
            while True:
                m = masks.get(name)
                if m is not None:
                    shape = (1, -1, 1, 1) if h.dim() == 4 else (1,) * (h.dim() - 1) + (-1,)
                    h = h * m.to(h.device, h.dtype).view(shape)
                yield name, h
                name, h = gen.send(h)
        except StopIteration:
            return
        finally:
            gen.close()

    def _check_layers(self, layers) -> set[str]:
        if layers is None:
            return set(self.layer_names)
        if isinstance(layers, str):
            layers = [layers]
        bad = [n for n in layers if n not in self.layer_names]
        if bad:
            raise ValueError(f"unknown layer(s) {bad} for {type(self).__name__}; valid: {self.layer_names}")
        return set(layers)

    def forward_features(self, x, layers=None, pool=False) -> dict[str, torch.Tensor]:
        """Outputs of `layers` (default all; a str or list) from ONE forward pass, keyed in network
        order. Computation stops after the deepest requested layer. `pool=True` -> spatial/token means."""
        want = self._check_layers(layers)
        out = {}
        if not want:
            return out
        gen = self._run(x)
        try:
            for name, h in gen:
                if name in want:
                    out[name] = spatial_mean(h) if pool else h
                    if len(out) == len(want):
                        break
        finally:
            gen.close()
        return out

    def forward(self, x):
        """Final representation before pooling (= output of the last layer in `layer_names`)."""
        h = None
        for _, h in self._run(x):
            pass
        return h

    def embed(self, x, rep: str = "pooled"):
        """(N, D) vector: "pooled" = spatial mean of forward(x) (dim out_dim); "flat" = forward(x).flatten(1)."""
        h = self(x)
        if rep == "pooled":
            return self._pool_final(h)
        if rep == "flat":
            return h.flatten(1)
        raise ValueError(f"rep must be 'pooled' or 'flat', got {rep!r}")

    def _pool_final(self, h):
        return spatial_mean(h)


def norm_layer(c: int, norm: str = "batch") -> nn.Module:
    """BatchNorm2d, or GroupNorm (no cross-sample statistics: needed for DP-SGD per-example gradients)."""
    if norm == "batch":
        return nn.BatchNorm2d(c)
    if norm == "group":
        return nn.GroupNorm(math.gcd(c, min(32, max(1, c // 4))), c)
    raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")


def conv_bn(c_in, c_out, stride=1, norm="batch"):
    """conv3x3 (no bias) + BN (or GroupNorm) + ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), norm_layer(c_out, norm),
                         nn.ReLU(inplace=True))


# ---------------------------------------------------------------------------------------------
# ResNet-9 (Myrtle / DAWNBench), encoder only

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
    32x32 input -> final map (N, 512w, 4, 4). ``norm="group"`` swaps BatchNorm for GroupNorm.
    """

    def __init__(self, width: float = 1.0, norm: str = "batch"):
        super().__init__()
        c = [_ch(n, width) for n in (64, 128, 256, 512)]
        self.prep = conv_bn(3, c[0], norm=norm)
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


# ---------------------------------------------------------------------------------------------
# CIFAR ResNets (3x3 stem, no max-pool)

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride=1, norm="batch"):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes, norm)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm_layer(c_out, norm))

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
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm_layer(c_out, norm))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(Encoder):
    """CIFAR ResNet: stem conv3x3(64w)+BN+ReLU (stride 1, no max-pool), then 4 stages of residual
    blocks (planes 64w,128w,256w,512w; strides 1,2,2,2). Layers: stem, layer1.0, ..., layer4.{n-1}
    (block outputs after residual addition + ReLU). 32x32 input -> (N, 512*expansion*w, 4, 4)."""

    def __init__(self, block, num_blocks, width: float = 1.0, norm: str = "batch"):
        super().__init__()
        c = _ch(64, width)
        self.stem = conv_bn(3, c, norm=norm)
        self.layer_names = ["stem"]
        for i, (n, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = _ch(64 * 2 ** i, width)
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


def resnet18(width=1.0, norm="batch"):
    return ResNet(BasicBlock, [2, 2, 2, 2], width, norm)


def resnet34(width=1.0, norm="batch"):
    return ResNet(BasicBlock, [3, 4, 6, 3], width, norm)


def resnet50(width=1.0, norm="batch"):
    return ResNet(Bottleneck, [3, 4, 6, 3], width, norm)


# ---------------------------------------------------------------------------------------------
# Small CNN ("CNN4")

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


# ---------------------------------------------------------------------------------------------
# ViT (timm), with an explicit block loop exposing sub-layers

class ViT(Encoder):
    """timm VisionTransformer (cls token, fixed token order: cls first, then patches row-major).

    Layers: patch_embed (patch tokens + cls + pos embed, after pos_drop/patch_drop/norm_pre),
    block{i}.attn (x after x = x + attn branch), block{i}.mlp (after the MLP residual), i = 0..depth-1,
    and norm (final LayerNorm = forward(x), shape (N, 1+num_patches, D)).
    embed(rep="pooled") = mean of the PATCH tokens of forward(x) (`pool="avg"`, default) or the cls
    token (`pool="token"`). Note forward_features(pool=True) averages over ALL tokens (incl. cls).
    """

    def __init__(self, img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, pool="avg", **kwargs):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer
        if pool not in ("avg", "token"):
            raise ValueError(f"pool must be 'avg' or 'token', got {pool!r}")
        self.pool = pool
        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                                     num_heads=num_heads, num_classes=0, class_token=True, global_pool="token",
                                     **kwargs)
        self.num_prefix_tokens = self.vit.num_prefix_tokens
        self.out_dim = embed_dim
        self.layer_names = ["patch_embed"]
        for i in range(depth):
            self.layer_names += [f"block{i}.attn", f"block{i}.mlp"]
        self.layer_names.append("norm")

    def _layers(self, x):
        v = self.vit
        x = v._pos_embed(v.patch_embed(x))  # cls + pos embed, includes pos_drop
        x = getattr(v, "patch_drop", nn.Identity())(x)
        x = getattr(v, "norm_pre", nn.Identity())(x)
        x = yield "patch_embed", x
        for i, b in enumerate(v.blocks):
            # attn called with x only: works with timm versions with and without attn_mask
            x = x + b.drop_path1(b.ls1(b.attn(b.norm1(x))))
            x = yield f"block{i}.attn", x
            x = x + b.drop_path2(b.ls2(b.mlp(b.norm2(x))))
            x = yield f"block{i}.mlp", x
        yield "norm", v.norm(x)

    def _pool_final(self, h):
        if self.pool == "token":
            return h[:, 0]
        return h[:, self.num_prefix_tokens:].mean(dim=1)


def vit_tiny(**kwargs):
    """ViT-Tiny for 32x32: patch 4 (64 patches + cls), dim 192, depth 12, 3 heads."""
    return ViT(**kwargs)


# ---------------------------------------------------------------------------------------------

MODELS = {
    "resnet9": ResNet9,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "cnn": CNN,
    "vit_tiny": vit_tiny,
}


def build_model(name: str, **kwargs) -> Encoder:
    """Instantiate MODELS[name](**kwargs)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
