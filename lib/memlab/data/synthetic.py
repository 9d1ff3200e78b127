"""Offline, deterministic synthetic image dataset with planted atypical examples.

Generative process for sample i (everything is a function of (seed, i) only):
  1. true class a = i % num_classes (exactly balanced up to n % num_classes). Class k fixes a
     shape (disc, square, triangle, ring, cross, diamond, star), a texture (solid, stripes of a
     given orientation, checker, dots, gradient) and a two-colour palette; see CLASS_NAMES.
  2. nuisance: object centre, scale, small rotation, texture phase/frequency jitter, object
     brightness; background = random base colour + random linear gradient + smooth blob noise;
     a global hue rotation of the whole image (about the grey axis, |angle| <= 40 deg); mild
     Gaussian pixel noise.
  3. sample i is atypical iff a per-index uniform u_i < atypical_frac (so the fraction is
     approximate, Binomial(n, frac), and the atypical set is nested in atypical_frac). Its kind
     is drawn uniformly from
       - "rare_variant":  the class shape, stretched, in the complementary palette and with a
                          concentric-ring texture no typical image has; label correct;
       - "corruption":    a typical image under heavy noise, a large noise occlusion, or colour
                          inversion plus noise;
       - "flipped_label": a typical image of class a labelled as a seeded class b != a.
Randomness comes from numpy Generators seeded with (seed, block) for fixed blocks of
_BLOCK consecutive indices, so make_synthetic(m, s) is a prefix of make_synthetic(n, s) for
m <= n (images, labels and atypical flags), for fixed num_classes and image_size.
"""
import math

import numpy as np
import torch

# class k = (shape, texture, colour 1, colour 2); colours are RGB in [0, 1]
_RED, _BLUE, _GREEN, _YELLOW = (0.9, 0.15, 0.1), (0.15, 0.3, 0.9), (0.15, 0.75, 0.2), (0.95, 0.85, 0.1)
_PURPLE, _ORANGE, _CYAN, _MAGENTA = (0.6, 0.2, 0.8), (1.0, 0.55, 0.05), (0.1, 0.8, 0.85), (0.9, 0.1, 0.7)
_WHITE, _BLACK = (0.95, 0.95, 0.95), (0.05, 0.05, 0.05)
_CLASSES = [
    ("red-solid-disc", "disc", "solid", _RED, _RED),
    ("blue-white-hstripe-square", "square", "hstripe", _BLUE, _WHITE),
    ("green-black-checker-triangle", "triangle", "checker", _GREEN, _BLACK),
    ("yellow-solid-ring", "ring", "solid", _YELLOW, _YELLOW),
    ("purple-white-vstripe-cross", "cross", "vstripe", _PURPLE, _WHITE),
    ("orange-black-dotted-diamond", "diamond", "dots", _ORANGE, _BLACK),
    ("cyan-black-diagstripe-disc", "disc", "diagstripe", _CYAN, _BLACK),
    ("magenta-yellow-gradient-square", "square", "gradient", _MAGENTA, _YELLOW),
    ("red-white-hstripe-triangle", "triangle", "hstripe", _RED, _WHITE),
    ("blue-yellow-checker-star", "star", "checker", _BLUE, _YELLOW),
]
CLASS_NAMES = [c[0] for c in _CLASSES]
KINDS = ("rare_variant", "corruption", "flipped_label")
_BLOCK = 256          # indices per RNG block; fixed forever, it defines the dataset
_HUE_MAX = math.radians(40)


def _shape_mask(shape, u, v):
    r = np.sqrt(u * u + v * v)
    if shape == "disc":
        return r <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if shape == "triangle":  # apex up (v grows downwards)
        return (v <= 0.75) & (np.abs(u) <= (v + 0.95) * 0.55)
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "cross":
        return ((np.abs(u) <= 0.33) | (np.abs(v) <= 0.33)) & (np.maximum(np.abs(u), np.abs(v)) <= 1.0)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.1
    if shape == "star":
        return r <= 0.45 + 0.6 * ((np.cos(5 * np.arctan2(v, u)) + 1) / 2) ** 2
    raise ValueError(shape)


def _texture(tex, u, v, freq, phase):
    """Mixing weight in [0, 1] between colour 1 (0) and colour 2 (1)."""
    w = freq * np.float32(math.pi)
    if tex == "solid":
        return np.zeros_like(u)
    if tex == "hstripe":
        return np.sin(w * v + phase) > 0
    if tex == "vstripe":
        return np.sin(w * u + phase) > 0
    if tex == "diagstripe":
        return np.sin(w * (u + v) / np.float32(math.sqrt(2)) + phase) > 0
    if tex == "checker":
        return np.sin(w * u + phase) * np.sin(w * v + phase) > 0
    if tex == "dots":
        return (np.sin(w * u + phase) > 0.5) & (np.sin(w * v + phase) > 0.5)
    if tex == "gradient":
        return np.clip((u + v) / 2.4 + 0.5, 0, 1)
    if tex == "rings":  # rare-variant texture, never used by a typical image
        return np.sin(1.5 * w * np.sqrt(u * u + v * v) + phase) > 0
    raise ValueError(tex)


def _hue_rotation(angle):
    """(B,3,3) rotation matrices about the grey axis (1,1,1)/sqrt(3)."""
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    K = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], np.float32) / np.float32(math.sqrt(3))
    return c * np.eye(3, dtype=np.float32) + s * K + (1 - c) * np.full((3, 3), 1 / 3, np.float32)


def _upsample(g, S):
    """Bilinear upsampling of (B,C,h,w) grids to (B,C,S,S) via separable interpolation matrices."""
    def interp(m):
        pos = np.linspace(0, m - 1, S)
        return np.clip(1 - np.abs(pos[:, None] - np.arange(m)[None, :]), 0, 1).astype(np.float32)
    My, Mx = interp(g.shape[2]), interp(g.shape[3])
    return np.einsum("sh,bchw,tw->bcst", My, g, Mx, optimize=False)


def _block(seed, b, num_classes, S, atypical_frac):
    """Render the _BLOCK samples with indices [b*_BLOCK, (b+1)*_BLOCK). Returns uint8 images
    (B,3,S,S), labels, true labels, kind codes (-1 typical, else index into KINDS)."""
    B, f32 = _BLOCK, np.float32
    rng = np.random.default_rng([seed, b, 0x5EED])
    P = rng.random((B, 24), dtype=f32)  # per-sample uniforms, fixed layout
    smooth = rng.random((B, 3, 3, 3), dtype=f32)
    noise = rng.standard_normal((B, 3, S, S), dtype=f32)
    occ_fill = rng.random((B, 3, S, S), dtype=f32)

    true = np.arange(b * B, (b + 1) * B) % num_classes
    kind = np.where(P[:, 0] < atypical_frac, np.minimum(P[:, 1] * 3, 2).astype(np.int64), -1)
    flip_to = (true + 1 + np.minimum(P[:, 2] * (num_classes - 1), num_classes - 2).astype(np.int64)) % num_classes
    labels = np.where(kind == 2, flip_to, true)
    rare = kind == 0

    # object frame: centre, radius, rotation (+ stretch for rare variants); arrays are (B,S,S)
    coords = np.linspace(-1, 1, S, dtype=f32)
    y, x = coords[None, :, None], coords[None, None, :]
    col = lambda a: a[:, None, None]  # noqa: E731  (B,) -> (B,1,1)
    cx, cy = col((P[:, 3] - 0.5) * 0.9), col((P[:, 4] - 0.5) * 0.9)
    rad, rot = col(0.38 + 0.3 * P[:, 5]), col((P[:, 6] - 0.5) * 0.7)
    dx, dy = (x - cx) / rad, (y - cy) / rad
    u, v = np.cos(rot) * dx + np.sin(rot) * dy, -np.sin(rot) * dx + np.cos(rot) * dy
    stretch = col(np.where(rare, 1.6 + 0.6 * P[:, 7], 1).astype(f32))
    u, v = u / stretch, v * stretch
    freq, phase = col(2.2 + 0.8 * P[:, 8]), col(P[:, 9] * f32(2 * math.pi))  # half-periods per radius

    # foreground: per class shape mask and texture, colours from the palette
    mask, mix = np.zeros((B, S, S), f32), np.zeros((B, S, S), f32)
    c1, c2 = np.zeros((B, 3), f32), np.zeros((B, 3), f32)
    for k in range(num_classes):
        sel = true == k
        _, shape, tex, col1, col2 = _CLASSES[k]
        mask[sel] = _shape_mask(shape, u[sel], v[sel])
        mix[sel] = _texture(tex, u[sel], v[sel], freq[sel], phase[sel])
        c1[sel], c2[sel] = col1, col2
    if rare.any():  # rare variant: ring texture, complementary palette (kept two-tone)
        mix[rare] = _texture("rings", u[rare], v[rare], freq[rare], phase[rare])
        c1[rare], c2[rare] = 1 - c1[rare], 1 - c2[rare]
        same = rare & (np.abs(c1 - c2).sum(1) < 0.3)
        c2[same] = 1 - c2[same]
    bright = (0.8 + 0.3 * P[:, 10])[:, None, None, None]
    fg = bright * (c1[:, :, None, None] * (1 - mix[:, None]) + c2[:, :, None, None] * mix[:, None])

    # background: base colour + linear gradient + smooth blobs
    base = (0.15 + 0.7 * P[:, 11:14])[:, :, None, None]
    ga = P[:, 14] * f32(2 * math.pi)
    grad = (col(np.cos(ga)) * x + col(np.sin(ga)) * y) * col(0.35 * P[:, 15])
    bg = base + grad[:, None] + 0.4 * _upsample(smooth - 0.5, S)
    img = mask[:, None] * fg + (1 - mask[:, None]) * bg

    # global hue rotation, mild pixel noise
    R = _hue_rotation((P[:, 16] * 2 - 1) * f32(_HUE_MAX))
    img = (R[:, :, :, None, None] * img[:, None]).sum(2) + 0.03 * noise

    # corruptions: 0 heavy noise, 1 large noise occlusion, 2 colour inversion + noise
    corr, ctype = kind == 1, np.minimum(P[:, 17] * 3, 2).astype(np.int64)
    heavy, occ, inv = corr & (ctype == 0), corr & (ctype == 1), corr & (ctype == 2)
    img[heavy] += 0.35 * noise[heavy]
    half = col(0.3 + 0.15 * P[:, 18])  # half side of the square occluder, in [-1,1] units
    ox, oy = cx + col((P[:, 19] - 0.5) * 0.3), cy + col((P[:, 20] - 0.5) * 0.3)
    box = (np.abs(x - ox) <= half) & (np.abs(y - oy) <= half) & col(occ)
    img = np.where(box[:, None], occ_fill, img)
    img[inv] = 1 - img[inv] + 0.15 * noise[inv]
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), labels, true, kind


def make_synthetic(n: int, seed: int = 0, atypical_frac: float = 0.05, num_classes: int = 10,
                   image_size: int = 32) -> dict:
    """Generate n synthetic images (see module docstring). Returns a dict with
    images (uint8, (n,3,S,S)), labels (int64, (n,), flipped for "flipped_label" points),
    true_labels (int64, (n,), the class the image was drawn from), class_names (list[str]),
    atypical (int64, sorted indices of planted atypical points), atypical_kind (list[str],
    aligned with atypical, each in KINDS)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not 0 <= atypical_frac < 1:
        raise ValueError(f"atypical_frac must be in [0, 1), got {atypical_frac!r}")
    if not isinstance(num_classes, (int, np.integer)) or not 2 <= num_classes <= len(_CLASSES):
        raise ValueError(f"num_classes must be an integer in [2, {len(_CLASSES)}], got {num_classes!r}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}")
    parts = [_block(int(seed), b, int(num_classes), int(image_size), float(atypical_frac))
             for b in range(-(-n // _BLOCK))]
    img, labels, true, kind = (np.concatenate(t)[:n] for t in zip(*parts))
    atyp = np.flatnonzero(kind >= 0)
    return dict(
        images=torch.from_numpy(img),
        labels=torch.from_numpy(labels.astype(np.int64)),
        true_labels=torch.from_numpy(true.astype(np.int64)),
        class_names=CLASS_NAMES[:num_classes],
        atypical=torch.from_numpy(atyp.astype(np.int64)),
        atypical_kind=[KINDS[k] for k in kind[atyp].tolist()],
    )
