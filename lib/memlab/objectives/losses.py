"""The training objectives by name: ``OBJECTIVES`` (name -> class), ``build_objective`` and ``check_objective``.

One module per method holds its loss and heads (``memlab.objectives.<method>``); each is an ``Objective``
(``base``): an ``nn.Module`` with ``loss(encoder, views, labels) -> scalar``, ``n_views``, ``aug`` and the hooks
``bind``/``after_step``.

- ``simclr``: NT-Xent (Chen et al. 2020, Eq. 1) on a projector of the pooled embedding (``simclr``).
- ``supervised``: cross-entropy of a linear classifier on the pooled embedding, true or random labels
  (``supervised``).
- ``simsiam``: negative cosine of predictor and stopped projector (Chen & He 2021); per-example, so it admits
  DP-SGD (``simsiam``).
- ``dino``: self-distillation with a momentum teacher (Caron et al. 2021, ``dino``).
- ``vicreg``: variance-invariance-covariance (Bardes et al. 2022, ``vicreg``).
- ``mae``: masked autoencoding on a ViT (He et al. 2022, ``mae``).
- ``aligned``: the alignment regulariser of SSLMem Eq. 3 around any of the others (``alignment``).

A new method is one class, added with ``register``.
"""
from __future__ import annotations

import inspect
import math

from memlab.objectives.alignment import AlignmentLimited
from memlab.objectives.base import Objective
from memlab.objectives.dino import DINO
from memlab.objectives.mae import MAE
from memlab.objectives.simclr import SimCLR
from memlab.objectives.simsiam import SimSiam
from memlab.objectives.supervised import Supervised
from memlab.objectives.vicreg import VICReg

# name -> class; a class is called as cls(encoder_dim, **objective_kw), and its __init__ keywords are the
# objective's parameters (check_objective reads them)
OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLR, "supervised": Supervised, "simsiam": SimSiam, "dino": DINO, "vicreg": VICReg, "mae": MAE,
    "aligned": AlignmentLimited,
}


def register(name: str):
    """Class decorator: add an ``Objective`` subclass to ``OBJECTIVES`` under ``name``."""
    def deco(cls):
        OBJECTIVES[name] = cls
        return cls
    return deco


def build_objective(name: str, encoder_dim: int, **kwargs) -> Objective:
    """The objective ``name`` (heads freshly initialised from torch's global RNG) on an encoder of output width
    ``encoder_dim``; ``kwargs`` are checked first: ValueError for an unknown name, keyword or value
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
    params = inspect.signature(OBJECTIVES[name].__init__).parameters
    known = [k for k in params if k not in ("self", "encoder_dim")]
    unknown = [k for k in kw if k not in known]
    if unknown:
        raise ValueError(f"objective {name!r} has no parameter(s) {unknown}; its parameters: {known}")
    v = {**{k: p.default for k, p in params.items() if k in known}, **kw}
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
