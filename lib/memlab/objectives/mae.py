"""MAE (He et al. 2022): a masked autoencoder on the ``vit_tiny`` encoder; its decoder is built in ``bind``, from
the encoder's patch grid. ``masked_mse`` is the pure loss; ``MAE`` holds the decoder and the step of its masks."""
from __future__ import annotations

import torch
import torch.nn as nn

from memlab.objectives.base import Objective


def masked_mse(pred: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """MAE's loss (He et al. 2022, §3): the mean over the *masked* patches of the per-patch mean squared error.
    ``pred``, ``target``: (B, N, P) float pixels of the N patches; ``keep``: long (B, n_keep), the visible patches
    (excluded)."""
    masked = torch.ones(pred.shape[:2], device=pred.device)
    masked.scatter_(1, keep, 0.0)
    per_patch = (pred - target).pow(2).mean(-1)
    return (per_patch * masked).sum() / masked.sum()


class MAE(Objective):
    """Masked autoencoder (He et al. 2022) for the ``vit_tiny`` encoder.

    A random ``mask_ratio`` of the patches is dropped; the encoder sees the visible patches *in their
    original order* (the kept indices are sorted, so token i always means patch i: SSLMem then compares
    matching tokens); a light decoder (``decoder_depth`` blocks) fills in mask tokens and predicts the
    pixels of every patch. Loss: mean squared error on the masked patches only, against per-patch
    normalised pixels (``norm_pix``). Masks are drawn from (seed, step), so a resumed run is identical.
    """
    n_views, aug = 1, "crop"

    def __init__(self, encoder_dim: int, mask_ratio: float = 0.75, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, norm_pix: bool = True):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.mask_ratio, self.norm_pix, self.encoder_dim = mask_ratio, norm_pix, encoder_dim
        self.decoder_dim, self.decoder_depth, self.decoder_heads = decoder_dim, decoder_depth, decoder_heads
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def bind(self, encoder, seed: int = 0) -> None:
        from timm.models.vision_transformer import Block
        if not hasattr(encoder, "vit"):
            raise ValueError("the MAE objective needs a ViT encoder (arch 'vit_tiny')")
        pe = encoder.vit.patch_embed
        self.patch, self.n_patches, self.seed = pe.patch_size[0], pe.num_patches, seed
        d = self.decoder_dim
        self.dec_embed = nn.Linear(self.encoder_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dec_pos = nn.Parameter(torch.randn(1, 1 + self.n_patches, d) * 0.02)
        self.dec_blocks = nn.Sequential(*[Block(d, self.decoder_heads, mlp_ratio=4.0) for _ in range(self.decoder_depth)])
        self.dec_norm = nn.LayerNorm(d)
        self.dec_pred = nn.Linear(d, self.patch * self.patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, x):
        p = self.patch
        b, c, h, w = x.shape
        return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)

    def masks(self, b: int, device) -> torch.Tensor:
        """Sorted indices of the visible patches (b, n_keep), a function of (seed, step)."""
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(self.step))
        n_keep = max(1, int(round(self.n_patches * (1 - self.mask_ratio))))
        noise = torch.rand(b, self.n_patches, generator=g)
        return noise.argsort(1)[:, :n_keep].sort(1).values.to(device)

    def loss(self, encoder, views, labels=None):
        img, v = views[0], encoder.vit
        b = img.shape[0]
        keep = self.masks(b, img.device)
        x = v.patch_embed(img) + v.pos_embed[:, v.num_prefix_tokens:]
        x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (v.cls_token + v.pos_embed[:, :v.num_prefix_tokens]).expand(b, -1, -1)
        x = v.norm(v.blocks(torch.cat([cls, x], 1)))
        y = self.dec_embed(x)
        full = self.mask_token.expand(b, self.n_patches, -1).to(y.dtype).clone()
        full = full.scatter(1, keep[..., None].expand(-1, -1, y.shape[-1]), y[:, v.num_prefix_tokens:])
        y = torch.cat([y[:, :1], full], 1) + self.dec_pos
        pred = self.dec_pred(self.dec_norm(self.dec_blocks(y)))[:, 1:].float()
        target = self.patchify(img.float())
        if self.norm_pix:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return masked_mse(pred, target, keep)

    def after_step(self, encoder) -> None:
        self.step += 1
