"""Notebook parameters: the ``parameters`` cell is the schema.

Each notebook's parameters cell (jupytext tag ``parameters``) holds literal assignments; their values are
the defaults (the laptop profile) and their types are the accepted types. A parameter set -- a profile
file ``params/<profile>/<notebook>.yaml`` or papermill's ``-p`` -- is rejected before any compute when it
names an unknown parameter or gives a value of the wrong type:

- ``validate(overrides, defaults)`` raises ``ParameterError`` (used by ``run_all.sh`` through
  ``python -m memlab.io.runner check``);
- ``check_injected()`` is called in the notebook's first cell after the parameters: it reads the
  parameters cell and papermill's injected cell from the kernel history and validates the latter.

Type rules: same type as the default; an int is accepted for a float; list and tuple are interchangeable;
a default of ``None`` accepts anything; a bool is never accepted for a number (or vice versa).

Range rules: ``RANGES`` declares, once for every notebook, the valid range of each numeric parameter by name
(a significance level in (0, 1), a count >= 1, a seed >= 0, a temperature > 0, ...). A list is checked
element by element and a dict value by value (notebook 01's per-paradigm settings). Relations between
parameters (n_points <= n_train, sizes within the data) stay in the notebooks.
"""
from __future__ import annotations

import ast
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "# Notebook parameters"  # first line of every memlab parameters cell


class ParameterError(ValueError):
    pass


def parameters_source(notebook_py: str | Path) -> str:
    """Source of the cell tagged ``parameters`` in a jupytext percent-format file."""
    text = Path(notebook_py).read_text()
    cells = re.split(r"^# %%", text, flags=re.M)
    for cell in cells[1:]:
        header, _, body = cell.partition("\n")
        if re.search(r"tags\s*=\s*\[[^\]]*[\"']parameters[\"']", header):
            return body
    raise ParameterError(f"{notebook_py}: no cell tagged 'parameters'")


def literal_assignments(source: str) -> dict:
    """``{name: value}`` for the top-level ``name = <literal>`` statements of ``source``."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    try:
                        out[t.id] = ast.literal_eval(node.value)
                    except ValueError as e:
                        raise ParameterError(f"parameter {t.id!r} must be a literal value") from e
    return out


def notebook_defaults(notebook_py: str | Path) -> dict:
    return literal_assignments(parameters_source(notebook_py))


def _type_ok(value, default) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _tname(v) -> str:
    return type(v).__name__


def validate(overrides: dict, defaults: dict, where: str = "notebook") -> None:
    """Raise ``ParameterError`` listing every unknown name and every wrong type in ``overrides``, then any number
    of ``{**defaults, **overrides}`` outside its range (``check_ranges``)."""
    problems = []
    for name, value in overrides.items():
        if name not in defaults:
            near = difflib.get_close_matches(name, list(defaults), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"unknown parameter {name!r}{hint}")
        elif not _type_ok(value, defaults[name]):
            problems.append(f"parameter {name!r} must be {_tname(defaults[name])} (default "
                            f"{defaults[name]!r}), got {_tname(value)} {value!r}")
    if problems:
        raise ParameterError(f"{where}: " + "; ".join(problems) + f". Known parameters: {sorted(defaults)}")
    check_ranges({**defaults, **overrides}, where)


@dataclass(frozen=True)
class Range:
    """lo <= x <= hi (``open`` ends exclusive; None: unbounded); ``integer``: whole numbers only."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    what: str = ""

    def ok(self, x) -> bool:
        if not math.isfinite(x) or (self.integer and x != int(x)):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def __str__(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        span = f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"
        return f"{self.what}: {'an integer in ' if self.integer else ''}{span}"


COUNT = Range(1, integer=True, what="a count")
# (name pattern, range): the first pattern that matches the whole name applies; every numeric parameter of every
# notebook matches one (tests/test_params.py checks this against all parameters cells and profiles).
RANGES = [
    (r"objective_kw|slurm|grid|method_cells|arch_cells", None),   # settings dicts: checked where they are used
    (r"workers|cpu_threads|threads", Range(0, integer=True, what="a number of workers or threads (0 = automatic)")),
    (r".*seeds?", Range(0, integer=True, what="a seed")),
    (r"alpha", Range(0, 1, True, True, what="a significance level")),
    (r"atypical_frac", Range(0, 1, hi_open=True, what="a fraction of planted atypical points")),
    (r"overlap_fracs|prune_fracs|mae_mask_ratios|targets", Range(0, 1, True, True, what="a fraction")),
    (r"fit_target", Range(0, 1, lo_open=True, what="a fraction of fitted labels")),
    (r"lambdas", Range(0, 1, hi_open=True, what="an alignment weight lambda (1 leaves only the push-apart term)")),
    (r"sweep_noise", Range(0, 1, what="a label-noise fraction")),
    (r"simclr_crop_scale", Range(0, 1, lo_open=True, what="a crop area fraction")),
    (r"dejavu_crop", Range(0, 1, True, True, what="a crop side fraction")),
    (r"dejavu_conf", Range(0, 1, lo_open=True, what="a fraction of the points")),
    (r"mixup|weight_decay", Range(0, what="a non-negative weight")),
    (r"warmup_epochs", Range(0, what="a number of warm-up epochs")),
    (r"blur", Range(0, 1, what="a probability")),
    (r"sweep_magnitudes", Range(0, 30, integer=True, what="a RandAugment magnitude")),
    (r"temperature", Range(0, lo_open=True, what="a temperature (0 divides by zero, < 0 inverts the loss)")),
    (r".*lr|dp_max_grad_norm|dp_epsilons|claim_ratio|toy_sigma|.*width", Range(0, lo_open=True, what="a positive number")),
    (r"(dp_)?batch_size|eval_batch", Range(2, integer=True, what="a batch size (statistics over the batch need 2)")),
    (r"dp_physical_batch|micro_batch", Range(0, integer=True, what="a micro-batch size (0 = the whole batch)")),
    (r"dp_epochs", Range(0, integer=True, what="a number of DP epochs (0 = the DP section off)")),
    (r"table2_n_train|table2_n_test", Range(0, integer=True, what="a number of images (0 = the whole split)")),
    (r"num_classes|n_networks|toy_classes", Range(2, integer=True, what="a count of at least 2")),
    (r".*", COUNT),
]


def range_of(name: str) -> Range | None:
    """The ``RANGES`` entry of parameter ``name`` (None: not a number to check)."""
    return next(r for pattern, r in RANGES if re.fullmatch(pattern, name))


def _numbers(value):
    """The numbers a parameter value holds: itself, a list's elements, a dict's values (bools and text skipped)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def check_ranges(values: dict, where: str = "notebook") -> None:
    """Raise ``ParameterError`` naming every parameter of ``values`` with a number outside its ``RANGES`` entry,
    the range, and the value."""
    problems = []
    for name, value in values.items():
        r = range_of(name)
        bad = [] if r is None else [x for x in _numbers(value) if not r.ok(x)]
        if bad:
            problems.append(f"parameter {name!r} = {value!r}: {bad[0]!r} is outside the range of {r}")
    if problems:
        raise ParameterError(f"{where}: " + "; ".join(problems))


def check_injected() -> dict:
    """Inside a running notebook: validate papermill's injected parameters against the parameters cell.
    Returns the injected values (empty when run interactively)."""
    try:
        from IPython import get_ipython
        history = list(get_ipython().user_ns.get("In", []))
    except Exception:  # not in IPython: nothing injected
        return {}
    ours = next((c for c in reversed(history) if c.lstrip().startswith(MARKER)), None)
    injected = next((c for c in reversed(history) if c.lstrip().startswith("# Parameters")), None)
    if ours is None:
        return {}
    defaults = literal_assignments(ours)
    values = literal_assignments(injected) if injected is not None else {}
    validate(values, defaults, "injected parameters")   # types, then the ranges of {**defaults, **values}
    return values


def choice(name: str, value, options) -> None:
    """Raise ParameterError unless ``value`` is one of ``options``."""
    options = list(options)
    if value not in options:
        raise ParameterError(f"parameter {name!r} = {value!r} is not one of {options}")
