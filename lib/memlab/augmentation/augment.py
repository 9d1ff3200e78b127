"""Batched, per-sample, reproducible image augmentation on the model's device.

Every random draw is a *counter-based* hash of (seed, stream, example index, slot), so a view is a pure
function of those numbers: it does not depend on batch composition, batch order, device or how many
views were drawn before. Training uses stream = (epoch, view); the `ViewBank` uses its own streams, so
view k of example i is the same for f and g, every epoch and every network (SSLMem, Wang et al. 2024 §3.2;
Sadrtdinov et al. 2021 §3: "M augmentations drawn once").

Presets (parameters as in the papers):
- ``simclr``: RandomResizedCrop(32, scale 0.08-1, ratio 3/4-4/3), flip, ColorJitter(0.4, 0.4, 0.4, 0.1)
  with p=0.8 in a random order per sample, grayscale p=0.2 (blur optional). Colour jitter acts on
  [0, 1] pixels *before* normalisation (a pitfall of the public reference code, methods.md §2).
- ``weak``: RandomCrop(32, padding 4, zero fill) + horizontal flip.
- ``none``: the image itself.
- measurement/ablation presets (SSLMem Tables 8, 9): ``crop`` (RandomResizedCrop + flip only), ``noise``
  (Gaussian noise), ``rotate`` (random rotation), ``colordrop`` (grayscale always + jitter), ``mask``
  (random square erasing).

``Augmentation`` draws each image's parameters (``sample``) and applies them (``apply``) with the batched pixel
operations of ``pixels.py``; ``ViewBank`` holds the fixed views of a measurement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from memlab.augmentation.pixels import affine, color_jitter, erase, gaussian_blur, gray, pad_crop
from memlab.streams import VIEW_BANK

# ----------------------------------------------------------------------------- counter-based uniforms
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrap-around arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, idx, n_slots: int) -> np.ndarray:
    """U[0,1) array (len(idx), n_slots), a pure function of (seed, stream, idx, slot)."""
    idx = np.asarray(idx, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _mix(np.array([seed], np.uint64) * _GOLD + np.uint64(stream & (2**63 - 1)))
        x = _mix(key ^ _mix(idx[:, None] * _GOLD + np.uint64(1)))
        x = _mix(x + np.arange(1, n_slots + 1, dtype=np.uint64)[None, :] * _GOLD)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class AugConfig:
    crop: str = "rrc"                   # "rrc" (random resized crop) | "pad" (random crop with padding) | "none"
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    pad: int = 4
    flip: bool = True
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple = (0.1, 2.0)
    noise_std: float = 0.0               # Gaussian pixel noise (on [0, 1] pixels)
    rotate_deg: float = 0.0              # uniform rotation in [-deg, deg]
    mask_frac: float = 0.0               # side of a random erased square, as a fraction of the image side


PRESETS = {
    "simclr": AugConfig(),
    "weak": AugConfig(crop="pad", jitter_p=0.0, gray_p=0.0),
    "none": AugConfig(crop="none", flip=False, jitter_p=0.0, gray_p=0.0),
    "crop": AugConfig(jitter_p=0.0, gray_p=0.0),
    "croponly": AugConfig(crop="pad", flip=False, jitter_p=0.0, gray_p=0.0),  # random crop, no resize
    "noise": AugConfig(crop="none", flip=False, jitter_p=0.0, gray_p=0.0, noise_std=0.1),
    "rotate": AugConfig(crop="none", flip=False, jitter_p=0.0, gray_p=0.0, rotate_deg=30.0),
    "colordrop": AugConfig(crop="none", flip=False, gray_p=1.0),
    "mask": AugConfig(crop="none", flip=False, jitter_p=0.0, gray_p=0.0, mask_frac=0.5),
}

_N_TRIES = 10  # RandomResizedCrop attempts before the centre-crop fallback (as torchvision)
_SLOTS = 2 * _N_TRIES + 24  # uniforms per sample; Augmentation.sample uses 2*_N_TRIES + 21


class Augmentation:
    """A preset (or an AugConfig) plus the per-channel normalisation applied after it.

    ``aug(images_uint8, idx, seed, stream)`` returns normalised float views on ``images``'s device.
    """

    def __init__(self, preset: str | AugConfig = "simclr", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                 **overrides):
        if isinstance(preset, str):
            if preset not in PRESETS:
                raise ValueError(f"unknown augmentation {preset!r}; choose from {sorted(PRESETS)}")
            cfg = PRESETS[preset]
        else:
            cfg = preset
        unknown = set(overrides) - set(AugConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {sorted(unknown)}")
        self.name = preset if isinstance(preset, str) else "custom"
        self.cfg = replace(cfg, **overrides)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __repr__(self):
        return f"Augmentation({self.name!r}, {self.cfg})"

    def describe(self) -> dict:
        """JSON-able description (used in cache keys)."""
        return {"name": self.name, **{k: v for k, v in self.cfg.__dict__.items()},
                "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    # ---------------------------------------------------------------- parameters
    def sample(self, idx, seed: int, stream: int) -> dict:
        """Per-sample parameters (CPU float tensors), a pure function of (seed, stream, idx)."""
        c = self.cfg
        u = torch.from_numpy(hash_uniform(seed, stream, idx, _SLOTS))
        take = iter(range(_SLOTS))
        col = lambda: u[:, next(take)]  # noqa: E731  one fresh uniform column per call
        n = u.shape[0]
        # random resized crop: rejection sampling as torchvision, vectorised over _N_TRIES attempts
        area = torch.stack([c.crop_scale[0] + (c.crop_scale[1] - c.crop_scale[0]) * col() for _ in range(_N_TRIES)], 1)
        lo, hi = math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1])
        ratio = torch.exp(torch.stack([lo + (hi - lo) * col() for _ in range(_N_TRIES)], 1))
        w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        ok = (w <= 1) & (h <= 1)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(n, dtype=torch.long))
        w = torch.where(ok.any(1), w.gather(1, first[:, None])[:, 0], torch.ones(n))
        h = torch.where(ok.any(1), h.gather(1, first[:, None])[:, 0], torch.ones(n))
        x0, y0 = col() * (1 - w), col() * (1 - h)
        p = {"w": w, "h": h, "cx": x0 + w / 2, "cy": y0 + h / 2}
        p["ox"] = torch.floor(col() * (2 * c.pad + 1)).long()
        p["oy"] = torch.floor(col() * (2 * c.pad + 1)).long()
        p["flip"] = (col() < 0.5) & c.flip
        p["jit"] = col() < c.jitter_p
        b, ct, s, hu = c.jitter
        p["bri"] = 1 - b + 2 * b * col()
        p["con"] = 1 - ct + 2 * ct * col()
        p["sat"] = 1 - s + 2 * s * col()
        p["hue"] = -hu + 2 * hu * col()
        p["order"] = torch.argsort(torch.stack([col() for _ in range(4)], 1), 1)
        p["gray"] = col() < c.gray_p
        p["blur"] = col() < c.blur_p
        p["sigma"] = c.blur_sigma[0] + (c.blur_sigma[1] - c.blur_sigma[0]) * col()
        p["angle"] = (2 * col() - 1) * c.rotate_deg
        p["mx"], p["my"] = col(), col()
        p["noise_seed"] = torch.floor(col() * 2**31).long()
        return {k: v.float() if v.is_floating_point() else v for k, v in p.items()}

    # ---------------------------------------------------------------- application
    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        """uint8 (B,3,H,W) -> normalised float (B,3,H,W), on images' device."""
        c, dev = self.cfg, images.device
        p = {k: v.to(dev) for k, v in p.items()}
        x = images.float().div_(255)
        B, _, H, W = x.shape
        if c.crop == "pad":
            x = pad_crop(x, p["ox"], p["oy"], c.pad)
        if c.crop == "rrc" or c.rotate_deg:  # one grid_sample for crop-resize, rotation and flip
            x = affine(x, p, rrc=c.crop == "rrc", rotate=bool(c.rotate_deg), flip=c.flip)
        elif c.flip:
            x = torch.where(p["flip"].view(B, 1, 1, 1), x.flip(3), x)
        if c.jitter_p > 0:
            x = color_jitter(x, p)
        if c.gray_p > 0:
            x = torch.where(p["gray"].view(B, 1, 1, 1), gray(x).expand_as(x), x)
        if c.blur_p > 0:
            x = torch.where(p["blur"].view(B, 1, 1, 1), gaussian_blur(x, p["sigma"]), x)
        if c.mask_frac > 0:
            x = erase(x, p["mx"], p["my"], c.mask_frac)
        if c.noise_std > 0:
            noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                                 for s in p["noise_seed"].cpu()]).to(dev)
            x = (x + c.noise_std * noise).clamp_(0, 1)
        return (x - self.mean.to(dev)) / self.std.to(dev)

    def __call__(self, images: torch.Tensor, idx, seed: int, stream: int) -> torch.Tensor:
        idx = idx.cpu().numpy() if torch.is_tensor(idx) else np.asarray(idx)
        return self.apply(images, self.sample(idx, seed, stream))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """The un-augmented image, normalised (what probes and `none` see)."""
        return (images.float() / 255 - self.mean.to(images.device)) / self.std.to(images.device)


# ----------------------------------------------------------------------------- fixed views


class ViewBank:
    """K fixed views per example index: view k of example i is ``aug(x_i)`` drawn with the counter
    (seed, BANK + k, i). Identical for f and g, every epoch and every network.

    With preset ``none`` every view is the image itself. Views are pure functions of their counters, so the
    bank memoises them (up to ``memo_mb`` MiB; 0 turns it off): recording N networks at E epochs, or
    scoring f and g, augments each (image, view) once instead of N x E times. A memo hit is keyed by the
    view, the indices and a checksum of the images, and returns a copy.
    """

    def __init__(self, aug: Augmentation, n_views: int, seed: int = 0, memo_mb: float = 256):
        if n_views < 1:
            raise ValueError("n_views must be >= 1")
        if memo_mb < 0:
            raise ValueError("memo_mb must be >= 0")
        self.aug, self.n_views, self.seed = aug, int(n_views), int(seed)
        self.memo_bytes, self._memo, self._used = int(memo_mb * 2**20), {}, 0

    def describe(self) -> dict:
        return {"aug": self.aug.describe(), "n_views": self.n_views, "seed": self.seed}

    def __getstate__(self):  # a bank sent to a worker process travels without its memo
        return {**self.__dict__, "_memo": {}, "_used": 0}

    def view(self, images: torch.Tensor, idx, k: int) -> torch.Tensor:
        """View k (0 <= k < n_views) of the examples with global indices ``idx`` (images = data[idx])."""
        if not 0 <= k < self.n_views:
            raise IndexError(f"view {k} outside 0..{self.n_views - 1}")
        if not self.memo_bytes:
            return self.aug(images, idx, self.seed, VIEW_BANK + k)
        flat = images.reshape(len(images), -1).to(torch.int64)
        check = (flat * (torch.arange(flat.shape[1], device=flat.device) % 251 + 1)).sum(1)
        key = (k, str(images.device), tuple(images.shape), np.asarray(idx, np.int64).tobytes(),
               check.cpu().numpy().tobytes())
        hit = self._memo.get(key)
        if hit is None:
            hit = self.aug(images, idx, self.seed, VIEW_BANK + k)
            size = hit.numel() * hit.element_size()
            if self._used + size <= self.memo_bytes:
                self._memo[key], self._used = hit, self._used + size
            else:
                return hit
        return hit.clone()
