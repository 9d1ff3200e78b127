"""ViT-Tiny for 32x32 images (timm's VisionTransformer), with an explicit block loop that exposes the attention and
MLP sub-layers of every block (LayerMem, UnitMem)."""
from __future__ import annotations

import torch.nn as nn

from memlab.models.encoder import Encoder


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
