"""The library's layout: one folder per concept, and imports that only point down the layers of memlab/__init__."""
import ast
from pathlib import Path

import memlab

ROOT = Path(memlab.__file__).parent
# lower number = lower layer; a module may import its own layer and the ones below it
LAYERS = {"streams": 0, "io.cache": 0, "io.params": 0, "data": 1, "augmentation": 2, "models": 3, "objectives": 4,
          "engine": 5, "metrics": 6, "io": 7, "experiments": 8, "cli": 9, "__main__": 9}


def layer(module: str) -> int:
    rel = module.removeprefix("memlab").lstrip(".")
    for name in sorted(LAYERS, key=len, reverse=True):
        if rel == name or rel.startswith(name + "."):
            return LAYERS[name]
    return 0  # memlab itself (__version__)


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("memlab"):
            if node.level:
                raise AssertionError(f"{path}: relative import; use memlab.<package>.<module>")
            # `from memlab.engine import jobs` imports the module memlab.engine.jobs
            yield from (f"{node.module}.{a.name}" if (ROOT / node.module.replace("memlab", "", 1).strip(".").replace(".", "/") / f"{a.name}.py").exists()
                        else node.module for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("memlab"))


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(("memlab",) + parts).removesuffix(".__init__"), path


def test_every_import_points_down_the_layers():
    upward = [f"{mod} -> {target}" for mod, path in modules() for target in imports(path) if layer(target) > layer(mod)]
    assert upward == []


def test_layer_check_sees_an_upward_import():
    assert layer("memlab.data.datasets") < layer("memlab.engine.dryrun")
    assert layer("memlab.io.cache") < layer("memlab.data.splits") < layer("memlab.io.plots")


def test_one_folder_per_concept():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {"data", "augmentation", "models", "objectives", "engine", "metrics", "experiments", "io"}
    top = {p.stem for p in ROOT.glob("*.py")}
    assert top == {"__init__", "__main__", "cli", "streams"}


def test_the_readme_layout_names_every_module():
    readme = (ROOT.parents[1] / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = []
    for mod, path in modules():
        if path.name == "__init__.py" and path.parent == ROOT:
            continue
        name = path.parent.name + "/" if path.name == "__init__.py" else path.name
        if name not in layout:
            missing.append(f"{mod} ({name})")
    assert missing == [], "README.md's Layout section does not name these modules"
