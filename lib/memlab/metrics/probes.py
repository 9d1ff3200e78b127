"""Probes on frozen representations: K-NN and linear (SSLMem Table 1; benign memorization Table 2).

- ``knn_accuracy``: K = 20 nearest neighbours by cosine similarity of L2-normalised embeddings, majority
  vote (ties broken by the summed similarity), memory bank = the labelled training features.
- ``linear_probe``: multinomial logistic regression on standardised features, full-batch L-BFGS with an
  L2 penalty, on the features' device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm


@torch.no_grad()
def extract(encoder, images: torch.Tensor, normalize, *, rep: str = "pooled", layer: str | None = None,
            batch_size: int = 512, device=None, progress: bool = False) -> torch.Tensor:
    """Embeddings of un-augmented images. ``normalize``: uint8 batch -> float model input
    (e.g. ``Augmentation.normalize``). ``layer``: read that layer instead of the final output."""
    device = device or next(encoder.parameters()).device
    encoder.eval()
    out = []
    for s in tqdm(range(0, len(images), batch_size), disable=not progress, desc="features", leave=False):
        x = normalize(images[s:s + batch_size].to(device))
        if layer is None:
            out.append(encoder.embed(x, rep=rep).float().cpu())
        else:
            f = encoder.forward_features(x, layers=[layer], pool=rep == "pooled")[layer]
            out.append(f.float().flatten(1).cpu())
    return torch.cat(out)


def check_features(**features) -> None:
    """Raise ValueError naming each features tensor that holds NaN or inf (a diverged encoder): a probe on them
    would report an accuracy (by chance, about 1 / classes) instead of the failure."""
    bad = [f"{k} ({int((~torch.isfinite(v)).sum())} of {v.numel()} values)" for k, v in features.items()
           if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"non-finite features: {', '.join(bad)}; the encoder that made them has diverged or was "
                         "fed non-finite input")


@torch.no_grad()
def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 20, batch_size: int = 1024) -> float:
    """K-NN test accuracy (cosine similarity, majority vote, ties by summed similarity). train_x (N, D),
    test_x (M, D) float features; labels long. Raises ValueError for non-finite features."""
    check_features(train_x=train_x, test_x=test_x)
    tx, qx = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    train_y, test_y = train_y.long(), test_y.long()
    c = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(tx))
    correct = 0
    for s in range(0, len(qx), batch_size):
        sim = qx[s:s + batch_size] @ tx.t()
        top, ix = sim.topk(k, dim=1)
        votes = F.one_hot(train_y[ix], c).float()
        score = votes.sum(1) + 1e-3 * (votes * top.unsqueeze(-1)).sum(1)  # majority, ties by similarity
        correct += int((score.argmax(1) == test_y[s:s + batch_size]).sum())
    return correct / len(qx)


def linear_probe(train_x, train_y, test_x, test_y, *, weight_decay: float = 1e-4, max_iter: int = 200,
                 device=None) -> float:
    """Test accuracy of an L2-regularised softmax regression fitted on the training features (N, D) and
    evaluated on the test features (M, D). Raises ValueError for non-finite features."""
    check_features(train_x=train_x, test_x=test_x)
    device = device or train_x.device
    mu, sd = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr = ((train_x - mu) / sd).float().to(device)
    xte = ((test_x - mu) / sd).float().to(device)
    ytr, yte = train_y.long().to(device), test_y.long().to(device)
    c = int(max(ytr.max(), yte.max())) + 1
    w = torch.zeros(xtr.shape[1], c, device=device, requires_grad=True)
    b = torch.zeros(c, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, ytr) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == yte).float().mean())


@torch.no_grad()
def knn_loo_accuracy(x, y, k: int = 20, batch_size: int = 1024) -> float:
    """Leave-one-out K-NN accuracy on a labelled set (each point voted on by its K nearest *other* points,
    cosine similarity of L2-normalised features, ties by summed similarity): how well a representation
    clusters by ``y`` (e.g. the random training labels, Fig. 3 of the benign-memorization paper)."""
    check_features(x=x)
    xn, y = F.normalize(x.float(), dim=1), y.long()
    c, k = int(y.max()) + 1, min(k, len(xn) - 1)
    if k < 1:
        raise ValueError("leave-one-out K-NN needs at least 2 points")
    correct = 0
    for s in range(0, len(xn), batch_size):
        sim = xn[s:s + batch_size] @ xn.t()
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + s] = float("-inf")  # exclude the point itself
        top, ix = sim.topk(k, dim=1)
        votes = F.one_hot(y[ix], c).float()
        score = votes.sum(1) + 1e-3 * (votes * top.unsqueeze(-1)).sum(1)
        correct += int((score.argmax(1) == y[s:s + batch_size]).sum())
    return correct / len(xn)
