"""Encoders: CNN4 (``cnn``), ResNet-9/18/50 (``resnet``) and ViT-tiny (``vit``), with their named layers (for LayerMem)
and an ``embed`` output (``encoder``); built by name in ``networks``.
"""
