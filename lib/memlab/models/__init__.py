"""Encoders: CNN4, ResNet-9/18/50 and ViT-tiny, with their named layers (for LayerMem) and an ``embed`` output.
"""
