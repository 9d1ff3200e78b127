"""Déjà Vu memorisation (Meehan et al., NeurIPS 2023, "Do SSL models have déjà vu?"), the test the SSLMem paper
compares with in its Table 4 (§4.5).

A target encoder A trained on set A and a reference encoder B trained on a disjoint set B (same distribution) each
embed a *background crop* of every point of A -- here the lower-left corner, a ``crop_frac`` fraction of each side,
resized back to the input size, as the authors' corner-crop variant (``crop_xfrm``) -- and label it by a k-NN vote
over the embeddings of a labelled public set disjoint from both. A point is déjà vu memorised when A recovers its
label from the crop and B does not: A associated that background with that object because it trained on the point,
beyond what the data's correlations (B) give. The population figures, as the authors report them:

- accuracy of A and of B on the crops of set A, overall and on A's most confident ``conf_frac`` of the points
  (confidence: low entropy of the k neighbours' labels);
- the déjà vu rate: the fraction of points with A correct and B wrong (their "swap test"), among all points and
  among A's most confident ones.

Here set A is f's candidates S_C (f trains on them, g does not), B is g, and the public set is labelled test
images. Embeddings are the encoders' pooled backbone representations (the authors' default is their projector's
output; memlab's encoders keep no projector), neighbours by Euclidean distance.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import entropy


def corner_crop(images: torch.Tensor, crop_frac: float) -> torch.Tensor:
    """The lower-left corner of uint8 images (N, 3, H, W): ``int(crop_frac * H)`` rows by ``int(crop_frac * W)``
    columns, resized back to (H, W) (bilinear, antialiased). Raises ValueError unless 0 < crop_frac < 1 and the crop
    keeps at least 2 pixels a side."""
    h, w = images.shape[-2:]
    ch, cw = int(crop_frac * h), int(crop_frac * w)
    if not 0 < crop_frac < 1 or min(ch, cw) < 2:
        raise ValueError(f"crop_frac {crop_frac} of {h}x{w} images leaves a {ch}x{cw} crop; choose 0 < crop_frac < 1 "
                         f"with at least 2 pixels a side")
    crop = images[..., h - ch:, :cw].float()
    out = F.interpolate(crop, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def knn_label_counts(query: torch.Tensor, public: torch.Tensor, public_labels: torch.Tensor, k: int,
                     num_classes: int) -> np.ndarray:
    """(N, num_classes) int counts of the labels among each query's ``k`` nearest public embeddings (Euclidean).
    ``query`` (N, D), ``public`` (M, D) float; ``public_labels`` (M,) int64. Raises ValueError unless 1 <= k <= M."""
    if not 1 <= k <= len(public):
        raise ValueError(f"k = {k} neighbours need 1 <= k <= {len(public)} public points")
    idx = torch.cdist(query.float(), public.float()).topk(k, largest=False).indices       # (N, k)
    labels = public_labels[idx]
    return F.one_hot(labels, num_classes).sum(1).numpy()


def dejavu(counts_a: np.ndarray, counts_b: np.ndarray, labels, conf_frac: float) -> dict:
    """Déjà Vu's population figures (module docstring) from the k-NN label counts of target A and reference B on
    the same points (``knn_label_counts``, rows aligned) and the points' true ``labels`` (N,). ``conf_frac``: the
    most confident fraction, each model ranked by its own confidence (the entropy of its neighbours' labels), as
    the authors do. Returns {"acc A", "acc B", "acc A (confident)", "acc B (confident)", "deja vu rate",
    "deja vu rate (confident)", "n", "n confident"} (fractions in [0, 1]) and, per point, "correct A" and
    "correct B" (bool arrays) and "entropy A". "deja vu rate" is the authors' swap test (A right, B wrong, over
    all points); "deja vu rate (confident)" restricts it to A's most confident points (memlab's addition).
    A tie between labels goes to the smaller label (``argmax``). Raises ValueError for misaligned inputs or
    conf_frac outside (0, 1]."""
    labels = np.asarray(labels)
    if counts_a.shape != counts_b.shape or len(labels) != len(counts_a):
        raise ValueError(f"counts {counts_a.shape} and {counts_b.shape} and labels {labels.shape} must align")
    if not 0 < conf_frac <= 1:
        raise ValueError(f"conf_frac must lie in (0, 1], got {conf_frac}")
    ok_a, ok_b = counts_a.argmax(1) == labels, counts_b.argmax(1) == labels
    m = max(1, int(conf_frac * len(labels)))
    unc_a, unc_b = entropy(counts_a, axis=1), entropy(counts_b, axis=1)
    top_a, top_b = (np.argsort(u, kind="stable")[:m] for u in (unc_a, unc_b))
    swap = ok_a & ~ok_b
    return {"acc A": float(ok_a.mean()), "acc B": float(ok_b.mean()), "acc A (confident)": float(ok_a[top_a].mean()),
            "acc B (confident)": float(ok_b[top_b].mean()), "deja vu rate": float(swap.mean()),
            "deja vu rate (confident)": float(swap[top_a].mean()), "n": len(labels), "n confident": m,
            "correct A": ok_a, "correct B": ok_b, "entropy A": unc_a}
