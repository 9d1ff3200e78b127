"""Encoders by name: ``MODELS`` and ``build_model`` (e.g. ``build_model("resnet9", width=0.25)``).

Every model is an ``Encoder`` (``encoder``: no classification head, named intermediate layers, ``embed``).
Modules: ``resnet`` (ResNet-9, ResNet-18/34/50), ``cnn`` (CNN4), ``vgg`` (VGG-11/16, torchvision's builder), ``vit``
(ViT-Tiny), ``wide_resnet`` (WRN-50-2, timm's ResNet); the encoder classes are importable from here too. Weights use PyTorch/timm default init (seed outside).
"""
from __future__ import annotations

from memlab.models.cnn import CNN
from memlab.models.encoder import Encoder
from memlab.models.resnet import ResNet, ResNet9, resnet18, resnet34, resnet50
from memlab.models.vgg import VGG, vgg11, vgg16
from memlab.models.vit import ViT, vit_tiny
from memlab.models.wide_resnet import WideResNet50, wrn50_2

__all__ = ["MODELS", "build_model", "width_kw", "stem_kw", "Encoder", "CNN", "ResNet", "ResNet9", "VGG", "ViT", "WideResNet50"]

MODELS = {
    "resnet9": ResNet9,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "cnn": CNN,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "vit_tiny": vit_tiny,
    "wrn50_2": wrn50_2,
}


def build_model(name: str, **kwargs) -> Encoder:
    """``MODELS[name](**kwargs)``, initialised from torch's global RNG; ValueError naming the valid names for an
    unknown ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def width_kw(name: str, width: float) -> dict:
    """``{"width": width}`` for the models with a channel-width multiplier (ResNets, VGGs, WRN), else {}."""
    return {"width": width} if name.startswith(("resnet", "vgg", "wrn")) else {}


def stem_kw(name: str, size: int) -> dict:
    """The stem of encoder ``name`` for ``size`` x ``size`` images: ``{"stem_stride": 2}`` for 64 px and more with the
    models that take it (ResNets, VGGs, WRN), else {} (the 32-px stem; the model's default, so the cache keys of
    32-px runs do not change). The stride-2 first convolution is the benign-memorisation paper's for Tiny-ImageNet
    at 64x64 (appendix F), for ResNet-18 and VGG alike: the later layers see 32-px-sized maps. The other models
    (CNN4, ViT) get no such option and see the images at their size."""
    return {"stem_stride": 2} if size >= 64 and name.startswith(("resnet", "vgg", "wrn")) else {}
