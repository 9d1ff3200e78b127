"""RandAugment (Cubuk et al. 2020) as a batched, counter-based augmentation: the strength knob of Fig. 11 of
the benign-memorization paper (Anagnostidis et al. 2023, appendix C).

Each image gets ``n_ops`` operations drawn uniformly from the 14 of torchvision's ``RandAugment`` (identity,
shear x/y, translate x/y, rotate, brightness, color, contrast, sharpness, posterize, solarize,
autocontrast, equalize) at one global ``magnitude`` M in 0..30 (31 bins, torchvision's ranges: shear
0.3 M/30, translate 150/331 of the side M/30, rotation 30 M/30 degrees, enhance factors 1 +- 0.9 M/30,
posterize 8 - round(M/7.5) bits, solarize threshold 1 - M/30); signed operations take a random sign.
Geometric ops fill with 0. Equalize maps each channel's pixels to their rank (histogram equalisation on
continuous values). Every draw is a hash of (seed, stream, index, slot) as in ``augment.py``, so views
are reproducible and independent of the batch. Same interface as ``augment.Augmentation``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memlab.augmentation.augment import hash_uniform
from memlab.augmentation.pixels import gray

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
       "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
_GEOM = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


class RandAugment:
    name = "randaugment"

    def __init__(self, n_ops: int = 2, magnitude: int = 9, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        if not (isinstance(magnitude, int) and 0 <= magnitude <= 30):
            raise ValueError(f"RandAugment magnitude must be an int in 0..30, got {magnitude!r}")
        if not (isinstance(n_ops, int) and n_ops >= 0):
            raise ValueError(f"n_ops must be an int >= 0, got {n_ops!r}")
        self.n_ops, self.magnitude = n_ops, magnitude
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def describe(self) -> dict:
        return {"name": self.name, "n_ops": self.n_ops, "magnitude": self.magnitude,
                "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean.to(images.device)) / self.std.to(images.device)

    def __call__(self, images: torch.Tensor, idx, seed: int, stream: int) -> torch.Tensor:
        idx = idx.cpu().numpy() if torch.is_tensor(idx) else idx
        u = torch.from_numpy(hash_uniform(seed, stream, idx, 2 * max(1, self.n_ops))).float().to(images.device)
        x = images.float() / 255
        m = self.magnitude / 30.0
        for j in range(self.n_ops):
            op = torch.clamp((u[:, 2 * j] * len(OPS)).long(), max=len(OPS) - 1)
            sign = torch.where(u[:, 2 * j + 1] < 0.5, -1.0, 1.0)
            for k, name in enumerate(OPS):
                sel = op == k
                if name == "identity" or not bool(sel.any()):
                    continue
                x[sel] = _apply(name, x[sel], m, sign[sel]).clamp(0, 1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def _affine(x, a, b, c, d, tx, ty):
    """Per-sample affine sampling grid (normalised coordinates), zero fill."""
    theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blend(img, other, factor):
    f = factor.view(-1, 1, 1, 1)
    return other + f * (img - other)


def _apply(name: str, x: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(sign), torch.zeros_like(sign)
    if name == "shear_x":
        return _affine(x, one, sign * 0.3 * m, zero, one, zero, zero)
    if name == "shear_y":
        return _affine(x, one, zero, sign * 0.3 * m, one, zero, zero)
    if name in ("translate_x", "translate_y"):
        t = sign * 2 * (150 / 331) * m  # fraction of the side, in normalised [-1, 1] units
        return _affine(x, one, zero, zero, one, t if name == "translate_x" else zero,
                       t if name == "translate_y" else zero)
    if name == "rotate":
        a = torch.deg2rad(sign * 30 * m)
        return _affine(x, torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a), zero, zero)
    f = 1 + sign * 0.9 * m
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), f)
    if name == "color":
        return _blend(x, gray(x).expand_as(x), f)
    if name == "contrast":
        return _blend(x, gray(x).mean((1, 2, 3), keepdim=True).expand_as(x), f)
    if name == "sharpness":
        k = torch.tensor([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]], device=x.device) / 13
        blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3).contiguous(), groups=3)
        return _blend(x, blur, f)
    if name == "posterize":
        bits = 8 - int(round(m * 30 / 7.5))
        q = 2 ** (8 - bits)
        return torch.floor(x * 255 / q) * q / 255
    if name == "solarize":
        thr = 1.0 - m
        return torch.where(x >= thr, 1.0 - x, x)
    if name == "autocontrast":
        lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-6), x)
    if name == "equalize":
        n, c, h, w = x.shape
        flat = x.reshape(n, c, -1)
        rank = flat.argsort(-1).argsort(-1).float() / max(1, h * w - 1)
        return rank.reshape(n, c, h, w)
    raise ValueError(f"unknown RandAugment op {name!r}")

