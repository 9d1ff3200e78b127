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

__all__ = ["MODELS", "build_model", "width_kw", "Encoder", "CNN", "ResNet", "ResNet9", "VGG", "ViT", "WideResNet50"]

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
