"""The toy example of appendix E (Anagnostidis et al. 2023; methods.md section 5, Fig. 13).

Data: x in R^d with class z uniform over C classes; the first d1 coordinates carry the class and the rest is
noise,

    x[:d1] | z = k ~ N(mu_k, S1),    x[d1:] ~ N(0, S2),    S3 = S2 = 10 S1 = sigma^2 I,

with random centres mu_k ~ N(0, center_std^2 I_d1). An augmentation adds a ~ N(0, S3) to the noise
coordinates only: x~ = x + a, a[:d1] = 0. Each of the n training points gets B augmentations, drawn once.

Model: linear encoder h_W(x) = W x (W in R^{d x d}) and the soft nearest-vector projector

    g_V(z) = sum_{i=1}^K  (1/||z - v_i||) / (sum_j 1/||z - v_j||)  l_i

over K learnable vectors v_i, each with a fixed random one-hot label l_i. Trained (W and V, full-batch
Adam) on random labels y~_j, one per point and shared by its B augmentations, with the squared error
||g(W x~) - y~||^2. Probe: K-NN (cosine, ``probes.knn_accuracy``) of the clean labels of unseen test
points, with the unaugmented training points and their clean labels as memory. Memorisation is benign only
when n * B exceeds what K vectors can fit (appendix E).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from memlab.metrics.probes import knn_accuracy
from memlab.streams import TOY_B_STRIDE, TOY_SEED_STRIDE


@dataclass(frozen=True)
class ToyConfig:
    """The toy model of appendix E: data, projector and training. Raises ValueError unless 0 < d1 < d, the counts
    are >= 1 and sigma, lr > 0. Every field enters the cache key of notebook 06's toy grid (``describe``)."""
    d: int = 20               # input (and embedding) dimension
    d1: int = 2               # class-carrying coordinates
    classes: int = 5          # C, for the true classes and the random labels
    sigma: float = 1.0        # S2 = S3 = sigma^2 I, S1 = sigma^2 / 10 I
    center_std: float = 1.0   # mu_k ~ N(0, center_std^2 I)
    K: int = 10               # projector vectors
    steps: int = 300          # full-batch Adam steps
    lr: float = 0.01
    n_test: int = 500
    knn_k: int = 20
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.d1 < self.d:
            raise ValueError(f"need 0 < d1 < d, got d1={self.d1}, d={self.d}")
        if min(self.classes, self.K, self.steps, self.n_test, self.knn_k) < 1 or self.sigma <= 0 or self.lr <= 0:
            raise ValueError("classes, K, steps, n_test, knn_k must be >= 1 and sigma, lr > 0")

    def describe(self) -> dict:
        """Every field, as the dict that keys the cached grid."""
        return asdict(self)


def centres(cfg: ToyConfig) -> torch.Tensor:
    """The C class centres mu_k (C, d1), fixed by the seed."""
    g = torch.Generator().manual_seed(cfg.seed)
    return cfg.center_std * torch.randn(cfg.classes, cfg.d1, generator=g, dtype=torch.float64)


def sample(cfg: ToyConfig, n: int, gen: torch.Generator):
    """n points of the Gaussian mixture: x float64 (n, d) and their classes z int64 (n,), drawn from ``gen``."""
    mu = centres(cfg)
    z = torch.randint(0, cfg.classes, (n,), generator=gen)
    s1 = cfg.sigma / np.sqrt(10.0)
    x = torch.empty(n, cfg.d, dtype=torch.float64)
    x[:, :cfg.d1] = mu[z] + s1 * torch.randn(n, cfg.d1, generator=gen, dtype=torch.float64)
    x[:, cfg.d1:] = cfg.sigma * torch.randn(n, cfg.d - cfg.d1, generator=gen, dtype=torch.float64)
    return x, z


def augment(cfg: ToyConfig, x: torch.Tensor, B: int, gen: torch.Generator) -> torch.Tensor:
    """B augmentations of each point, float64 (n, B, d): noise N(0, sigma^2) added to the noise coordinates d1:
    only (the class-carrying ones are kept), drawn from ``gen``."""
    out = x[:, None].repeat(1, B, 1)
    out[:, :, cfg.d1:] += cfg.sigma * torch.randn(x.shape[0], B, cfg.d - cfg.d1, generator=gen, dtype=x.dtype)
    return out


def projector(z: torch.Tensor, v: torch.Tensor, l: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The soft nearest-vector projector g(z) = sum_i w_i(z) l_i, w_i = (1/||z - v_i||) / sum_j (1/||z - v_j||), of
    embeddings ``z`` (m, d) over the K vectors ``v`` (K, d) with one-hot labels ``l`` (K, C): (m, C). ``eps`` keeps
    a point on a vector finite."""
    sq = ((z * z).sum(1, keepdim=True) + (v * v).sum(1) - 2 * z @ v.T).clamp_min(eps * eps)  # ||z - v_i||^2
    inv = 1.0 / sq.sqrt()
    return (inv / inv.sum(1, keepdim=True)) @ l


def run(cfg: ToyConfig, n: int, B: int) -> dict:
    """Train on n points x B augmentations with random labels; return ``{"n", "B", "knn_init", "knn", "fit",
    "loss"}``: the K-NN accuracy (in [0, 1]) of the true classes at init and after training, the final fit (accuracy
    of argmax g on the training augmentations) and the final loss. Seeds: ``streams.TOY_SEED_STRIDE`` and
    ``TOY_B_STRIDE``. Runs on the CPU in one thread (these small float64 ops are several times slower
    multi-threaded on a busy machine). Raises ValueError for n or B < 1."""
    if n < 1 or B < 1:
        raise ValueError(f"n and B must be >= 1, got n={n}, B={B}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(cfg, n, B)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ToyConfig, n: int, B: int) -> dict:
    # data, random labels and W at init depend on (seed, n) only: at fixed n, only B changes
    gen = torch.Generator().manual_seed(cfg.seed * TOY_SEED_STRIDE + n)
    x, z = sample(cfg, n, gen)
    xt, zt = sample(cfg, cfg.n_test, gen)
    y = torch.randint(0, cfg.classes, (n,), generator=gen)
    W = (torch.randn(cfg.d, cfg.d, generator=gen, dtype=torch.float64) / np.sqrt(cfg.d)).requires_grad_()
    gen_b = torch.Generator().manual_seed(cfg.seed * TOY_SEED_STRIDE + n + TOY_B_STRIDE * B)
    xa = augment(cfg, x, B, gen_b).reshape(n * B, cfg.d)
    ya = torch.nn.functional.one_hot(y, cfg.classes).double().repeat_interleave(B, 0)
    start = torch.randint(0, n * B, (cfg.K,), generator=gen_b)
    v = (xa[start] @ W.detach().T).clone().requires_grad_()
    l = torch.nn.functional.one_hot(torch.randint(0, cfg.classes, (cfg.K,), generator=gen_b), cfg.classes).double()
    k = min(cfg.knn_k, n)
    probe = lambda: knn_accuracy((x @ W.T).detach(), z, (xt @ W.T).detach(), zt, k=k)  # noqa: E731
    acc0 = probe()
    opt = torch.optim.Adam([W, v], lr=cfg.lr)
    for _ in range(cfg.steps):
        loss = ((projector(xa @ W.T, v, l) - ya) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fit = float((projector(xa @ W.T, v, l).argmax(1) == ya.argmax(1)).double().mean())
    return {"n": n, "B": B, "knn_init": acc0, "knn": probe(), "fit": fit, "loss": float(loss.detach())}


def grid(cfg: ToyConfig, ns, Bs, progress: bool = True) -> list:
    """``run`` over the grid of n (outer) and B (inner): one row dict per cell."""
    from tqdm import tqdm
    cells = [(n, B) for n in ns for B in Bs]
    return [run(cfg, n, B) for n, B in tqdm(cells, disable=not progress, desc="toy grid", leave=False)]
