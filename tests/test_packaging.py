"""pyproject.toml, environment.yml and scripts/setup.sh agree on what is installed."""
import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_installs_every_extra_and_the_same_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    editable = [p for p in pip if p.startswith("-e")]
    assert len(editable) == 1
    extras = set(re.search(r"\[(.*)\]", editable[0]).group(1).split(","))
    assert extras == set(project["optional-dependencies"])  # opacus (dp) and submitit (cluster) included
    deps = {_name(d): d for d in project["dependencies"]}
    for conda_name, pip_name in [("pytorch", "torch"), ("torchvision", "torchvision")]:
        spec = next(c for c in conda if _name(c) == conda_name)
        assert spec.replace(conda_name, pip_name, 1) == deps[pip_name]  # the same lower bound


def test_setup_script_installs_every_extra_by_default():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    script = (ROOT / "scripts" / "setup.sh").read_text()
    default = re.search(r'EXTRAS="\$\{MEMLAB_EXTRAS:-([^}]*)\}"', script).group(1)
    assert set(default.split(",")) == set(project["optional-dependencies"])
