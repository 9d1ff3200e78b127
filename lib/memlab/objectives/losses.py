"""Training objectives, in a small registry: a new method is one registered function.

An objective is an ``nn.Module`` holding its heads (projector, classifier) with
``loss(encoder, views, labels) -> scalar``, ``n_views`` (augmented views per image the trainer must
supply) and ``aug`` (the default augmentation preset). ``after_step(encoder)`` is a hook for methods
with momentum teachers.

- ``simclr``: NT-Xent (Chen et al. 2020, Eq. 1) on a 2-layer projector of the pooled embedding,
  ``l_i = -log exp(s(z_i, z_j)/tau) / sum_{k != i} exp(s(z_i, z_k)/tau)`` over the 2B views,
  s = cosine similarity.
- ``supervised``: cross-entropy of a linear classifier on the pooled embedding (true or random labels).
- ``simsiam``: Chen & He 2021: projector f and predictor h,
  ``L = D(h(z1), sg(z2)) / 2 + D(h(z2), sg(z1)) / 2`` with D the negative cosine similarity and sg the
  stop-gradient. Each image's loss depends on that image alone (with ``norm != "batch"``), so it admits
  per-example gradients for DP-SGD (``dp.py``).
- ``dino``, ``vicreg``, ``mae``: see their classes; ``aligned``: the alignment regulariser of SSLMem Eq. 3
  around any of the others.

``bind(encoder, seed)`` runs once after the encoder is built (before a checkpoint is restored): objectives
that need a copy of the encoder (DINO's teacher) or its geometry (MAE's patch grid) build those parts there.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from memlab.objectives.collectives import mean_over_processes

OBJECTIVES: dict[str, Callable[..., "Objective"]] = {}


def register(name: str):
    def deco(factory):
        OBJECTIVES[name] = factory
        return factory
    return deco


def build_objective(name: str, encoder_dim: int, **kwargs) -> "Objective":
    """The objective ``name`` on an encoder of output width ``encoder_dim``; ``kwargs`` are checked first
    (``check_objective``)."""
    check_objective(name, kwargs)
    return OBJECTIVES[name](encoder_dim, **kwargs)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_objective(name: str, kw: dict) -> None:
    """Refuse, before any compute, settings for which objective ``name``'s loss is undefined, constant or
    inverted (ValueError naming the parameter, its value and the cause); unknown keyword names too."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
    cls = {"simclr": SimCLR, "supervised": Supervised, "simsiam": SimSiam, "dino": DINO, "vicreg": VICReg,
           "mae": MAE, "aligned": AlignmentLimited}[name]
    known = [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "encoder_dim")]
    unknown = [k for k in kw if k not in known]
    if unknown:
        raise ValueError(f"objective {name!r} has no parameter(s) {unknown}; its parameters: {known}")
    v = {**{k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if k in known}, **kw}
    problems = []

    def need(ok: bool, key: str, why: str):
        if not ok:
            problems.append(f"{name} {key} = {v[key]!r}: {why}")

    for key in ("temperature", "student_temp", "teacher_temp"):
        if key in v:
            need(_finite(v[key]) and v[key] > 0, key, "a temperature must be > 0 (0 divides by zero; < 0 inverts "
                 "the loss, pushing positive pairs apart)")
    for key in ("proj_dim", "hidden", "pred_hidden", "bottleneck", "expander", "decoder_dim", "decoder_depth",
                "decoder_heads", "local_size"):
        if key in v:
            need(isinstance(v[key], int) and v[key] >= 1, key, "a size must be an integer >= 1")
    if name == "supervised":
        need(isinstance(v["num_classes"], int) and v["num_classes"] >= 2, "num_classes",
             "classification needs at least 2 classes (with 1 the loss is constant 0)")
    if name == "dino":
        if not problems:
            need(v["teacher_temp"] < v["student_temp"], "teacher_temp", f"the teacher must be sharper than the "
                 f"student (teacher_temp < student_temp = {v['student_temp']}), or training collapses")
        need(isinstance(v["out_dim"], int) and v["out_dim"] >= 2, "out_dim", "the head needs >= 2 outputs")
        need(_finite(v["momentum"]) and 0 <= v["momentum"] <= 1, "momentum", "the teacher EMA momentum is in [0, 1]")
        need(_finite(v["center_momentum"]) and 0 <= v["center_momentum"] < 1, "center_momentum",
             "the centre's momentum is in [0, 1) (1 never updates the centre)")
        need(isinstance(v["n_local"], int) and v["n_local"] >= 0, "n_local", "the number of local crops is >= 0")
    if name == "vicreg":
        for key in ("sim_w", "var_w"):
            need(_finite(v[key]) and v[key] > 0, key, "VICReg needs its invariance and variance terms (weight > 0): "
                 "without the first the views are never pulled together, without the second it collapses")
        need(_finite(v["cov_w"]) and v["cov_w"] >= 0, "cov_w", "a loss weight must be >= 0")
    if name == "mae":
        need(_finite(v["mask_ratio"]) and 0 < v["mask_ratio"] < 1, "mask_ratio",
             "must be in (0, 1): 0 masks nothing (nothing to predict), 1 leaves nothing visible")
        if isinstance(v["decoder_dim"], int) and isinstance(v["decoder_heads"], int) and v["decoder_heads"] >= 1:
            need(v["decoder_dim"] % v["decoder_heads"] == 0, "decoder_dim", "must be divisible by decoder_heads")
    if name == "aligned":
        need(_finite(v["lam"]) and 0 <= v["lam"] < 1, "lam", "must be in [0, 1): at 1 only the push-apart term "
             "is left, an inverted objective")
        need(v["base"] != "aligned", "base", "the alignment regulariser cannot wrap itself")
        if not problems:
            check_objective(v["base"], dict(v["base_kw"] or {}))
    if problems:
        raise ValueError("; ".join(problems))


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


class Objective(nn.Module):
    n_views: int = 2
    needs_labels: bool = False
    aug: str = "simclr"
    # Losses that couple the images of a batch (NT-Xent, VICReg) pass their projections through ``gather``
    # first: the identity in one process; under ``ddp.distribute`` the concatenation of every process's
    # projections, with gradients, so the loss is the loss of the global batch.
    gather = staticmethod(_same)

    def loss(self, encoder, views: list[torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    n_local: int = 0          # extra small crops per image (multi-crop), after the n_views global views
    local_size: int = 16
    local_scale: tuple = (0.05, 0.4)

    def bind(self, encoder, seed: int = 0) -> None:  # build encoder-dependent parts (teachers, decoders)
        pass

    def after_step(self, encoder) -> None:  # momentum teachers etc.
        pass


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2B views: positives are (i, i+B); all other 2B-2 views are negatives.
    z1, z2: (B, D) projections of the two views. Raises ValueError for B < 2 (no negatives: the loss is
    constant) or a temperature <= 0."""
    if z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs a batch of >= 2 images (their other views are the negatives), got "
                         f"{z1.shape[0]}; raise batch_size")
    if not temperature > 0:
        raise ValueError(f"NT-Xent temperature must be > 0, got {temperature}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def mlp(dims: list[int], norm: str = "batch") -> nn.Sequential:
    """Linear layers with ``norm`` ("batch", "layer" or "none") and ReLU between them."""
    if norm not in ("batch", "layer", "none"):
        raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {norm!r}")
    layers = []
    for i in range(len(dims) - 1):
        hidden = i < len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=not (hidden and norm != "none")))
        if hidden:
            if norm != "none":
                layers.append(nn.BatchNorm1d(dims[i + 1]) if norm == "batch" else nn.LayerNorm(dims[i + 1]))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SimCLR(Objective):
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, proj_dim: int = 128, hidden: int = 512, temperature: float = 0.5,
                 norm: str = "batch"):
        super().__init__()
        self.temperature = temperature
        self.projector = mlp([encoder_dim, hidden, proj_dim], norm)

    def loss(self, encoder, views, labels=None):
        z = self.projector(encoder.embed(torch.cat(views), rep="pooled"))
        z1, z2 = z.chunk(2)
        return nt_xent(self.gather(z1), self.gather(z2), self.temperature)


class Supervised(Objective):
    n_views, needs_labels, aug = 1, True, "weak"

    def __init__(self, encoder_dim: int, num_classes: int = 10, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.classifier = nn.Linear(encoder_dim, num_classes)

    def logits(self, encoder, x):
        return self.classifier(encoder.embed(x, rep="pooled")) / self.temperature

    def loss(self, encoder, views, labels):
        return F.cross_entropy(self.logits(encoder, views[0]).float(), labels)


class SimSiam(Objective):
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, proj_dim: int = 256, pred_hidden: int = 64, norm: str = "batch"):
        super().__init__()
        self.projector = mlp([encoder_dim, proj_dim, proj_dim], norm)
        self.predictor = mlp([proj_dim, pred_hidden, proj_dim], norm)

    def per_example(self, encoder, views) -> torch.Tensor:
        """Loss of each image (B,): the symmetric negative cosine of predictions and stopped targets."""
        z = self.projector(encoder.embed(torch.cat(views), rep="pooled")).float()
        p = self.predictor(z)
        z1, z2 = z.detach().chunk(2)
        p1, p2 = p.chunk(2)
        return -(F.cosine_similarity(p1, z2, dim=1) + F.cosine_similarity(p2, z1, dim=1)) / 2

    def loss(self, encoder, views, labels=None):
        return self.per_example(encoder, views).mean()


@register("simclr")
def simclr(encoder_dim: int, **kw) -> Objective:
    return SimCLR(encoder_dim, **kw)


@register("supervised")
def supervised(encoder_dim: int, **kw) -> Objective:
    return Supervised(encoder_dim, **kw)


@register("simsiam")
def simsiam(encoder_dim: int, **kw) -> Objective:
    return SimSiam(encoder_dim, **kw)


# ----------------------------------------------------------------------------- DINO
class DINOHead(nn.Module):
    """MLP -> L2-normalise -> weight-normalised linear layer (g fixed to 1), as Caron et al. 2021."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int, norm: str = "batch"):
        super().__init__()
        self.mlp = mlp([in_dim, hidden, hidden, bottleneck], norm=norm)
        self.last = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)

    def forward(self, x):
        return F.normalize(self.mlp(x), dim=-1) @ F.normalize(self.last, dim=1).t()


class DINO(Objective):
    """Self-distillation without labels (Caron et al. 2021, Eq. 1-2).

    Student s and teacher t (an EMA of the student: ``theta_t <- m theta_t + (1 - m) theta_s`` after each
    step) share the architecture (encoder + head). Teacher outputs are *centred* (c <- c_m c + (1 - c_m)
    mean_batch t) and *sharpened* (temperature tau_t < tau_s):

        L = sum_{i in global} sum_{j != i, j in all views} - softmax((t_i - c) / tau_t) . log_softmax(s_j / tau_s)

    averaged over the pairs. Multi-crop: ``n_local`` extra small crops go through the student only. The head
    has BatchNorm by default (``head_norm``, as DINO's ResNet-50 setting): at small scale, without it the
    near-identical initial features let the centred teacher go uniform. The teacher temperature defaults to
    0.02 (the paper: 0.04 -> 0.07 with 65536 outputs); with 1024 outputs and a few hundred steps, 0.04 still
    drifts to the uniform solution (loss -> log 1024), which tests/test_objectives.py would catch.
    SSLMem and the probes use the student encoder.
    """
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, out_dim: int = 1024, hidden: int = 512, bottleneck: int = 128,
                 student_temp: float = 0.1, teacher_temp: float = 0.02, center_momentum: float = 0.9,
                 momentum: float = 0.99, n_local: int = 0, local_size: int = 16, head_norm: str = "batch"):
        super().__init__()
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum, self.momentum = center_momentum, momentum
        self.n_local, self.local_size = n_local, local_size
        self.head = DINOHead(encoder_dim, out_dim, hidden, bottleneck, head_norm)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def bind(self, encoder, seed: int = 0) -> None:
        import copy
        self.teacher = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for p in list(self.teacher.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)

    def loss(self, encoder, views, labels=None):
        n_glob = self.n_views
        with torch.no_grad():
            self.teacher.train(encoder.training)
            t = self.teacher_head(self.teacher.embed(torch.cat(views[:n_glob]), rep="pooled")).float()
            t_prob = F.softmax((t - self.center) / self.teacher_temp, dim=1).chunk(n_glob)
        s_glob = self.head(encoder.embed(torch.cat(views[:n_glob]), rep="pooled")).float().chunk(n_glob)
        s_loc = ()
        if len(views) > n_glob:
            s_loc = self.head(encoder.embed(torch.cat(views[n_glob:]), rep="pooled")).float().chunk(len(views) - n_glob)
        s_logp = [F.log_softmax(s / self.student_temp, dim=1) for s in (*s_glob, *s_loc)]
        total, n = 0.0, 0
        for i, tp in enumerate(t_prob):
            for j, sl in enumerate(s_logp):
                if j != i:
                    total, n = total + (-(tp * sl).sum(1)).mean(), n + 1
        if encoder.training:
            with torch.no_grad():
                # the mean of the global batch's teacher outputs under DDP, not this shard's
                self.center.mul_(self.center_momentum).add_((1 - self.center_momentum) * mean_over_processes(t))
        return total / n

    @torch.no_grad()
    def after_step(self, encoder) -> None:
        m = self.momentum
        for src, dst in ((encoder, self.teacher), (self.head, self.teacher_head)):
            for ps, pt in zip(src.parameters(), dst.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            for bs, bt in zip(src.buffers(), dst.buffers()):  # BatchNorm running statistics
                bt.copy_(bs)


# ----------------------------------------------------------------------------- VICReg
def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_w: float = 25.0, var_w: float = 25.0, cov_w: float = 1.0,
                eps: float = 1e-4) -> torch.Tensor:
    """VICReg (Bardes et al. 2022, Eq. 1-6) with the paper's weights lambda = mu = 25, nu = 1:

        s = mean ||z1 - z2||^2 / n,  v(Z) = mean_j relu(1 - sqrt(Var(z_j) + eps)),
        c(Z) = sum_{i != j} Cov(Z)_{ij}^2 / d,   L = lambda s + mu (v(Z1) + v(Z2)) + nu (c(Z1) + c(Z2)).
    """
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"VICReg needs a batch of >= 2 images (its variance and covariance are over the batch), "
                         f"got {n}; raise batch_size")
    inv = F.mse_loss(z1, z2)
    var, cov = 0.0, 0.0
    for z in (z1, z2):
        z = z - z.mean(0)
        var = var + F.relu(1 - torch.sqrt(z.var(0) + eps)).mean()
        c = (z.t() @ z) / (n - 1)
        cov = cov + (c.pow(2).sum() - c.diagonal().pow(2).sum()) / d
    return sim_w * inv + var_w * var + cov_w * cov


class VICReg(Objective):
    """VICReg on an expander MLP of the pooled embedding (``vicreg_loss``)."""
    n_views, aug = 2, "simclr"

    def __init__(self, encoder_dim: int, expander: int = 512, sim_w: float = 25.0, var_w: float = 25.0,
                 cov_w: float = 1.0, norm: str = "batch"):
        super().__init__()
        self.weights = (sim_w, var_w, cov_w)
        self.expander = mlp([encoder_dim, expander, expander, expander], norm)

    def loss(self, encoder, views, labels=None):
        z1, z2 = self.expander(encoder.embed(torch.cat(views), rep="pooled")).chunk(2)
        return vicreg_loss(self.gather(z1), self.gather(z2), *self.weights)


# ----------------------------------------------------------------------------- MAE
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
        masked = torch.ones(b, self.n_patches, device=img.device)
        masked.scatter_(1, keep, 0.0)
        per_patch = (pred - target).pow(2).mean(-1)
        return (per_patch * masked).sum() / masked.sum()

    def after_step(self, encoder) -> None:
        self.step += 1


# ----------------------------------------------------------------------------- alignment regulariser
class AlignmentLimited(Objective):
    """SSLMem Eq. 3 (Wang et al. 2024, §4.3): ``L = (1 - lam) L_base - lam * mean d(h(x'), h(x''))`` with d the
    L2 distance between the L2-normalised flattened representations of two views (the SSLMem alignment
    distance). lam > 0 pushes views apart: it limits alignment, hence memorisation. Works around any base
    objective; the representations of the base's own forward pass are reused when it has one."""

    def __init__(self, encoder_dim: int, base: str = "simclr", lam: float = 0.1, base_kw: dict | None = None):
        super().__init__()
        if base == "aligned":
            raise ValueError("the alignment regulariser cannot wrap itself")
        if not 0 <= lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.base = build_objective(base, encoder_dim, **(base_kw or {}))
        self.lam = lam
        self.n_views, self.aug, self.needs_labels = max(2, self.base.n_views), self.base.aug, self.base.needs_labels
        self.n_local, self.local_size, self.local_scale = self.base.n_local, self.base.local_size, self.base.local_scale

    def bind(self, encoder, seed: int = 0) -> None:
        self.base.bind(encoder, seed)

    def loss(self, encoder, views, labels=None):
        b = views[0].shape[0]
        seen = []
        hook = encoder.register_forward_hook(lambda mod, inp, out: seen.append(out))
        try:
            base_loss = self.base.loss(encoder, views[:self.base.n_views] + views[self.n_views:], labels)
        finally:
            hook.remove()
        h = seen[0] if seen else None  # the first encoder() call holds the global views (multi-crop: more follow)
        if h is None or h.shape[0] < 2 * b:  # the base never ran both views through encoder(): do it here
            h = encoder(torch.cat(views[:2]))
        h1, h2 = F.normalize(h[:b].flatten(1).float(), dim=1), F.normalize(h[b:2 * b].flatten(1).float(), dim=1)
        return (1 - self.lam) * base_loss - self.lam * (h1 - h2).norm(dim=1).mean()

    def after_step(self, encoder) -> None:
        self.base.after_step(encoder)


@register("dino")
def dino(encoder_dim: int, **kw) -> Objective:
    return DINO(encoder_dim, **kw)


@register("vicreg")
def vicreg(encoder_dim: int, **kw) -> Objective:
    return VICReg(encoder_dim, **kw)


@register("mae")
def mae(encoder_dim: int, **kw) -> Objective:
    return MAE(encoder_dim, **kw)


@register("aligned")
def aligned(encoder_dim: int, **kw) -> Objective:
    return AlignmentLimited(encoder_dim, **kw)
