import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from memlab.params import ParameterError, literal_assignments, notebook_defaults, validate
from memlab.runner import main as runner_main

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
    r = subprocess.run(["bash", "run_all.sh", "--profile", "bad"], cwd=repo, capture_output=True, text=True,
                       timeout=300)
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


ENCODER_KEYS = ["dataset", "synthetic_n_train", "synthetic_n_test", "atypical_frac", "method", "arch", "width",
                "split_shared", "split_candidates", "split_independent", "split_extra", "split_seed", "score_shared",
                "epochs", "batch_size", "optimizer", "lr", "weight_decay", "temperature", "seeds", "pair_seeds",
                "view_pairs", "measure_aug", "representation", "snapshot_epochs", "device"]


@pytest.mark.parametrize("profile", PROFILES)
def test_unitmem_notebook_shares_the_sslmem_encoders(profile):
    """05 reuses 02's cached f and g and SSLMem scores only if every encoder-defining value is equal."""
    def resolved(nb):
        d = notebook_defaults(ROOT / "notebooks" / f"{nb}.py")
        d.update(yaml.safe_load((ROOT / "params" / profile / f"{nb}.yaml").read_text()) or {})
        return {k: d[k] for k in ENCODER_KEYS}
    assert resolved("02_sslmem") == resolved("05_unitmem_classmem")


@pytest.mark.parametrize("profile", PROFILES)
def test_layermem_notebook_shares_the_sslmem_encoders(profile):
    """04 reuses 02's cached f and g (every encoder-defining value equal) and 02's grid cells (each method cell
    of 04 is one of 02's grid entries, trained with some of 02's grid seeds)."""
    def resolved(nb):
        d = notebook_defaults(ROOT / "notebooks" / f"{nb}.py")
        d.update(yaml.safe_load((ROOT / "params" / profile / f"{nb}.yaml").read_text()) or {})
        return d
    a, b = resolved("02_sslmem"), resolved("04_layermem")
    assert {k: a[k] for k in ENCODER_KEYS} == {k: b[k] for k in ENCODER_KEYS}
    assert set(b["grid_seeds"]) <= set(a["grid_seeds"])
    assert all(c in a["grid"] for c in b["method_cells"]), [c for c in b["method_cells"] if c not in a["grid"]]


def test_every_numeric_parameter_has_a_declared_range():
    from memlab.params import range_of
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
