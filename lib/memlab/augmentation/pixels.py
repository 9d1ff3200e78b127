"""The pixel operations of an augmentation, batched on the device, each image with its own parameters (drawn in
``augment.Augmentation.sample``): padded crop, one affine resample (crop-resize, rotation, flip), colour jitter in a
per-image order, grayscale, Gaussian blur and erasing. Pixels are float in [0, 1], images (B, C, H, W)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv


def pad_crop(x, ox, oy, pad):
    """RandomCrop with zero padding: image b (of x, float (B, C, H, W)) zero-padded by ``pad`` pixels, then cut at
    offsets ``ox[b]``, ``oy[b]`` (long, in 0..2 pad) back to H x W."""
    B, C, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (oy[:, None] + torch.arange(H, device=x.device)[None, :])  # (B,H)
    cols = (ox[:, None] + torch.arange(W, device=x.device)[None, :])  # (B,W)
    b = torch.arange(B, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def affine(x, p, rrc, rotate, flip):
    """Crop-resize (``rrc``), rotation and flip of x (B, C, H, W) as one bilinear grid_sample (a per-image affine
    map). ``p``: the parameters of ``Augmentation.sample`` -- crop size ``w``, ``h`` and centre ``cx``, ``cy`` as
    fractions of the image side, ``angle`` in degrees, ``flip`` (bool); zero fill outside a rotated image."""
    B = x.shape[0]
    one, zero = torch.ones(B, device=x.device), torch.zeros(B, device=x.device)
    sx, sy = (p["w"], p["h"]) if rrc else (one, one)
    tx, ty = (2 * p["cx"] - 1, 2 * p["cy"] - 1) if rrc else (zero, zero)
    a = torch.deg2rad(p["angle"]) if rotate else zero
    fs = torch.where(p["flip"], -one, one) if flip else one
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([sx * cos * fs, -sx * sin, tx], 1),
                         torch.stack([sy * sin * fs, sy * cos, ty], 1)], 1).float()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros" if rotate else "border",
                         align_corners=False)


def gray(x):
    """Luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B) of x (B, 3, H, W) in [0, 1]: (B, 1, H, W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(a, b, r):
    return (r.view(-1, 1, 1, 1) * a + (1 - r.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def _adjust(x, op, p):
    if op == 0:
        return (x * p["bri"].view(-1, 1, 1, 1)).clamp(0, 1)
    if op == 1:
        return _blend(x, gray(x).mean((1, 2, 3), keepdim=True), p["con"])
    if op == 2:
        return _blend(x, gray(x), p["sat"])
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0:1] + p["hue"].view(-1, 1, 1, 1) * 2 * math.pi, 2 * math.pi)
    return hsv_to_rgb(torch.cat([h, hsv[:, 1:]], 1)).clamp(0, 1)


def color_jitter(x, p):
    """torchvision ColorJitter semantics, with a random order of the four ops per sample."""
    jit = p["jit"]
    if not bool(jit.any()):
        return x
    out = x.clone()
    for pos in range(4):
        for op in range(4):
            m = jit & (p["order"][:, pos] == op)
            if bool(m.any()):
                sub = {k: v[m] for k, v in p.items() if k in ("bri", "con", "sat", "hue")}
                out[m] = _adjust(out[m], op, sub)
    return out


def gaussian_blur(x, sigma, k=3):
    """Separable Gaussian blur of x (B, C, H, W) with a k x k kernel of per-image std ``sigma`` (B,) pixels,
    reflect-padded."""
    r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    w = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    w = w / w.sum(1, keepdim=True)  # (B,k)
    B, C, H, W = x.shape
    xp = F.pad(x, (k // 2,) * 4, mode="reflect")
    xh = sum(w[:, i].view(B, 1, 1, 1) * xp[:, :, :, i:i + W] for i in range(k))
    return sum(w[:, i].view(B, 1, 1, 1) * xh[:, :, i:i + H, :] for i in range(k))


def erase(x, mx, my, frac):
    """Random erasing: a zero square of side ``frac`` of the image side per image of x (B, C, H, W), its corner at
    the uniforms ``mx``, ``my`` (B,) in [0, 1) scaled to the valid range."""
    B, C, H, W = x.shape
    s = max(1, int(round(frac * H)))
    y0 = torch.floor(my * (H - s + 1)).long().view(B, 1)
    x0 = torch.floor(mx * (W - s + 1)).long().view(B, 1)
    r = torch.arange(H, device=x.device)[None, :]
    c = torch.arange(W, device=x.device)[None, :]
    inside = ((r >= y0) & (r < y0 + s))[:, :, None] & ((c >= x0) & (c < x0 + s))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)
