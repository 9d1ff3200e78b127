"""Activation maximisation (Erhan et al. 2009; Sadrtdinov et al. 2021, appendix C.2): the input that
maximises one channel's mean activation, found by gradient ascent in pixel space.

    x* = argmax_x mean_{h,w} a_c(layer(x)),   x_0 ~ 0.01 N(0, 1),   Adam on x (weights frozen, eval mode)

For display every image is normalised to zero mean and unit variance and passed through the logistic
function sigma(y) = 1 / (1 + e^-y), which maps it into the RGB range [0, 1].
"""
from __future__ import annotations

import torch


def maximize_channels(encoder, layer: str, channels, *, steps: int = 60, lr: float = 0.05, size: int = 32,
                      seed: int = 0, device="cpu") -> torch.Tensor:
    """One image per channel of ``layer``, float CPU (len(channels), 3, size, size) in the encoder's input space,
    optimised jointly by Adam (``lr``, ``steps``) from small noise drawn with ``seed`` (channel i's image only
    drives channel i). The encoder's weights are frozen meanwhile and trainable again afterwards. Raises
    ValueError for steps < 1."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    ch = torch.as_tensor(list(channels), dtype=torch.long, device=device)
    g = torch.Generator().manual_seed(seed)
    x = (0.01 * torch.randn(len(ch), 3, size, size, generator=g)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    try:
        for _ in range(steps):
            h = encoder.forward_features(x, [layer])[layer]           # (C, K, H, W)
            act = h[torch.arange(len(ch), device=device), ch].float().flatten(1).mean(1)
            opt.zero_grad(set_to_none=True)
            (-act.sum()).backward()
            opt.step()
    finally:
        for p in encoder.parameters():
            p.requires_grad_(True)
    return x.detach().cpu()


def to_display(x: torch.Tensor) -> torch.Tensor:
    """Per image: zero mean, unit variance, then the logistic: values in (0, 1), (N, 3, H, W)."""
    x = x.float()
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    sd = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return torch.sigmoid((x - mu) / sd)
