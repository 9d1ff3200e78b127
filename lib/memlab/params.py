"""Notebook parameters: the ``parameters`` cell is the schema.

Each notebook's parameters cell (jupytext tag ``parameters``) holds literal assignments; their values are
the defaults (the laptop profile) and their types are the accepted types. A parameter set -- a profile
file ``params/<profile>/<notebook>.yaml`` or papermill's ``-p`` -- is rejected before any compute when it
names an unknown parameter or gives a value of the wrong type:

- ``validate(overrides, defaults)`` raises ``ParameterError`` (used by ``run_all.sh`` through
  ``python -m memlab.runner check``);
- ``check_injected()`` is called in the notebook's first cell after the parameters: it reads the
  parameters cell and papermill's injected cell from the kernel history and validates the latter.

Type rules: same type as the default; an int is accepted for a float; list and tuple are interchangeable;
a default of ``None`` accepts anything; a bool is never accepted for a number (or vice versa).
"""
from __future__ import annotations

import ast
import difflib
import re
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
    """Raise ``ParameterError`` listing every unknown name and every wrong type in ``overrides``."""
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
    if ours is None or injected is None:
        return {}
    values = literal_assignments(injected)
    validate(values, literal_assignments(ours), "injected parameters")
    return values


def choice(name: str, value, options) -> None:
    """Raise ParameterError unless ``value`` is one of ``options``."""
    options = list(options)
    if value not in options:
        raise ParameterError(f"parameter {name!r} = {value!r} is not one of {options}")


def positive(**values) -> None:
    """Raise ParameterError for any non-positive number among ``values``."""
    bad = [f"{k}={v!r}" for k, v in values.items() if not (isinstance(v, (int, float)) and v > 0)]
    if bad:
        raise ParameterError(f"parameters must be positive: {', '.join(bad)}")
