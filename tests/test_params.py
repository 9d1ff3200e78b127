import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from memlab.io.params import ParameterError, literal_assignments, notebook_defaults, validate
from memlab.io.runner import main as runner_main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
PROFILES = ["smoke", "laptop", "paper"]


def test_defaults_are_parsed_from_the_parameters_cell():
    d = notebook_defaults(ROOT / "notebooks" / "02_sslmem.py")
    assert d["dataset"] == "cifar10" and isinstance(d["seeds"], list) and d["profile"] == "laptop"


def test_validate_rejects_unknown_and_wrong_types_with_hints():
    d = {"epochs": 10, "lr": 0.1, "seeds": [0], "name": "x", "flag": True, "opt": None}
    validate({"epochs": 3, "lr": 1, "seeds": (1, 2), "opt": "anything"}, d)
    with pytest.raises(ParameterError, match=r"unknown parameter 'epoch' \(did you mean 'epochs'\?\)"):
        validate({"epoch": 3}, d)
    with pytest.raises(ParameterError, match="'epochs' must be int"):
        validate({"epochs": "ten"}, d)
    with pytest.raises(ParameterError, match="'epochs' must be int"):
        validate({"epochs": 2.5}, d)
    with pytest.raises(ParameterError, match="'flag' must be bool"):
        validate({"flag": 1}, d)
    with pytest.raises(ParameterError, match="'lr' must be float"):
        validate({"lr": True}, d)


def test_parameters_must_be_literals():
    with pytest.raises(ParameterError, match="literal"):
        literal_assignments("x = foo()")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_profile_file_is_valid(profile, nb):
    f = ROOT / "params" / profile / f"{nb.stem}.yaml"
    assert f.is_file(), f"missing {f}"
    validate(yaml.safe_load(f.read_text()) or {}, notebook_defaults(nb), str(f))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_laptop_profile_equals_notebook_defaults(nb):
    defaults = notebook_defaults(nb)
    laptop = yaml.safe_load((ROOT / "params" / "laptop" / f"{nb.stem}.yaml").read_text()) or {}
    assert {k: v for k, v in laptop.items() if defaults[k] != v} == {}


def test_runner_check_exit_codes(tmp_path, capsys):
    nb = str(ROOT / "notebooks" / "02_sslmem.py")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("epochs: 3\n")
    bad.write_text("epochs: three\nlearning_rate: 0.1\n")
    assert runner_main(["check", nb, str(good)]) == 0
    assert runner_main(["check", nb, str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'epochs' must be int" in err and "unknown parameter 'learning_rate'" in err


def _repo_copy(tmp_path):
    dst = tmp_path / "repo"
    dst.mkdir()
    shutil.copy(ROOT / "run_all.sh", dst)
    shutil.copytree(ROOT / "notebooks", dst / "notebooks")
    shutil.copytree(ROOT / "params", dst / "params")
    return dst


def test_run_all_rejects_bad_parameters_before_compute_and_reports(tmp_path):
    repo = _repo_copy(tmp_path)
    (repo / "params" / "bad").mkdir()
    for nb in NOTEBOOKS:
        (repo / "params" / "bad" / f"{nb.stem}.yaml").write_text("epochs: 2\nno_such_parameter: 1\n")
    # two notebooks (a pair notebook and the benign one) show the mechanism; each parameters cell's own checks are
    # tested without a kernel (test_injected_unknown_parameter_fails_before_compute, the dataclass tests)
    r = subprocess.run(["bash", "run_all.sh", "--profile", "bad", "02", "06"], cwd=repo, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1
    assert "FAIL" in r.stdout and "Summary" in r.stdout and "notebook(s) failed" in r.stdout
    log = (repo / "outputs" / "bad" / "logs" / "02_sslmem.log").read_text()
    assert "unknown parameter 'no_such_parameter'" in log
    assert not (repo / "outputs" / "bad" / "02_sslmem.ipynb").exists()  # nothing executed
    assert (repo / "outputs" / "bad" / "manifest.json").is_file()


def test_run_all_cli_errors(tmp_path):
    repo = _repo_copy(tmp_path)
    r = subprocess.run(["bash", "run_all.sh", "--profile", "nope"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown profile" in r.stderr
    r = subprocess.run(["bash", "run_all.sh", "99_missing"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 2 and "matches 0 notebooks" in r.stderr
    r = subprocess.run(["bash", "run_all.sh", "--profile", "smoke", "--list", "02"], cwd=repo,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "02_sslmem" in r.stdout
    r = subprocess.run(["bash", "run_all.sh", "--profile", "smoke", "--list", "5", "1"], cwd=repo,
                       capture_output=True, text=True)  # a number without its leading zero selects the notebook
    assert r.returncode == 0 and [ln.split()[0] for ln in r.stdout.splitlines()] == [
        "05_unitmem_classmem", "01_profiles_vs_binomial"]
    r = subprocess.run(["bash", "run_all.sh", "--help"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0 and "./run_all.sh [--profile" in r.stdout
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith(("set ", "ROOT=", "#"))], r.stdout


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_type_and_help(nb, caplog):
    """`papermill --help-notebook` reads the parameters cell with its own line parser, which drops (with a
    warning) any line holding more than one '=' and gives no type or help where the line has none."""
    import jupytext
    from papermill.translators import PythonTranslator
    cell = next(c for c in jupytext.read(nb).cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level("WARNING", logger="papermill"):
        listed = {p.name: p for p in PythonTranslator.inspect(cell)}
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    defaults = notebook_defaults(nb)
    assert sorted(listed) == sorted(defaults)
    types = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}
    for name, p in listed.items():
        assert p.inferred_type_name == types[type(defaults[name])], (name, p.inferred_type_name)
        assert p.help, f"{nb.stem}: parameter {name} has no help text"


@pytest.mark.parametrize("profile", PROFILES)
def test_notebooks_04_and_05_take_notebook_02s_pair_and_cells_by_name(profile):
    """The pair is defined once per profile (notebook 02's parameters): 04 and 05 hold no copy of it, and the
    recipe they read is 02's resolved values; 04's method cells are labels of 02's grid cells."""
    from memlab.experiments.grid import cell_spec
    from memlab.experiments.recipes import PAIR_KEYS, sslmem_grid, sslmem_pair
    for nb in ("04_layermem", "05_unitmem_classmem"):
        own = set(notebook_defaults(ROOT / "notebooks" / f"{nb}.py"))
        own |= set(yaml.safe_load((ROOT / "params" / profile / f"{nb}.yaml").read_text()) or {})
        assert not own & set(PAIR_KEYS), (nb, own & set(PAIR_KEYS))
    d02 = notebook_defaults(ROOT / "notebooks" / "02_sslmem.py")
    d02.update(yaml.safe_load((ROOT / "params" / profile / "02_sslmem.yaml").read_text()) or {})
    pair = sslmem_pair(profile)
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in pair.__dict__.items()} == {k: d02[k] for k in PAIR_KEYS}
    grid, seeds = sslmem_grid(profile)
    labels = {cell_spec(c, pair.base_cell(seeds))["label"] for c in grid}
    d04 = notebook_defaults(ROOT / "notebooks" / "04_layermem.py")
    d04.update(yaml.safe_load((ROOT / "params" / profile / "04_layermem.yaml").read_text()) or {})
    assert set(d04["method_cells"]) <= labels and set(d04["grid_seeds"]) <= set(seeds)


def test_the_pair_recipe_refuses_a_profile_without_notebook_02s_file_and_bad_values(tmp_path, monkeypatch):
    from memlab.experiments.recipes import sslmem_pair
    with pytest.raises(ParameterError, match=r"profile 'nope' has no .*02_sslmem.yaml.*choose a profile from"):
        sslmem_pair("nope")
    root = _repo_copy(tmp_path)
    (root / "params" / "bad").mkdir()
    (root / "params" / "bad" / "02_sslmem.yaml").write_text("epochs: -3\n")
    monkeypatch.setenv("MEMLAB_ROOT", str(root))
    with pytest.raises(ParameterError, match="epochs"):
        sslmem_pair("bad")
    (root / "params" / "bad" / "02_sslmem.yaml").write_text("epochs: 7\nseeds: [3]\n")
    pair = sslmem_pair("bad")
    assert pair.epochs == 7 and pair.seeds == (3,) and pair.dataset == "cifar10"


def test_every_numeric_parameter_has_a_declared_range():
    from memlab.io.params import range_of
    for nb in NOTEBOOKS:
        for name, value in notebook_defaults(nb).items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric:
                assert range_of(name) is not None, (nb.name, name)


@pytest.mark.parametrize("name, value, message", [
    ("alpha", 5.0, r"'alpha' = 5.0: 5.0 is outside the range of a significance level: \(0, 1\)"),
    ("alpha", 0.0, "significance level"),
    ("probe_test", -1, r"'probe_test' = -1: -1 is outside the range of a count: an integer in \[1, inf\)"),
    ("temperature", -0.5, "inverts the loss"),
    ("seeds", [0, -1], "a seed"),
    ("batch_size", 1, "batch size"),
    ("dp_epochs", -1, r"DP section off"),
])
def test_out_of_range_parameters_are_refused_by_the_check_before_compute(tmp_path, capsys, name, value, message):
    checked = 0
    for nb in NOTEBOOKS:
        if name not in notebook_defaults(nb) or isinstance(notebook_defaults(nb)[name], dict):
            continue
        checked += 1
        f = tmp_path / "bad.yaml"
        f.write_text(yaml.safe_dump({name: value}))
        assert runner_main(["check", str(nb), str(f)]) == 2, nb.name
        assert re.search(message, capsys.readouterr().err), nb.name
    assert checked


def test_per_paradigm_settings_are_checked_value_by_value():
    with pytest.raises(ParameterError, match=r"'lr' = \{'supervised': 0.005, 'simclr': -1\}: -1"):
        validate({"lr": {"supervised": 0.005, "simclr": -1}}, {"lr": {"supervised": 0.1}})


def test_dp_epochs_zero_turns_the_dp_section_off_and_passes_the_range_check():
    from memlab.io.params import check_ranges
    check_ranges({"dp_epochs": 0})          # documented as "0: skip" in notebooks 03 and 05
