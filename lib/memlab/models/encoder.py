"""The encoder interface every model implements (``Encoder``), and the conv blocks the CNNs share.

An ``Encoder`` has no classification head and exposes its intermediate layers:

    enc = build_model("resnet9", width=0.25)         # memlab.models.networks
    enc.layer_names                                  # ordered readable layers
    feats = enc.forward_features(x, ["layer2"])      # one pass, stops after layer2
    z = enc.embed(x)                                 # (N, enc.out_dim)

Layer outputs are taken AFTER the residual addition / activation of their block.
Each model implements `_layers(x)`, a generator yielding (name, tensor) in network order and
continuing from the tensor it is sent back (`x = yield name, x`), so units can be masked
(`set_unit_mask`, used for pruning) at any layer, residual sums included. `forward_features`
stops pulling from it once the deepest requested layer is out, so later modules never run.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def scaled(c: int, width: float) -> int:
    """Channel count ``c`` scaled by ``width`` (the models' width multiplier), rounded, at least 1."""
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
