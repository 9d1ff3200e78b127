import json
import multiprocessing as mp

from memlab.io import runner


def _run(tmp_path, monkeypatch, commit, lines):
    monkeypatch.setattr(runner, "_git", lambda *a: commit if a[0] == "rev-parse" else "")
    monkeypatch.setattr(runner, "_device", lambda: {"type": "cpu"})
    res = tmp_path / "this-run.tsv"
    res.write_text("".join("\t".join(line) + "\n" for line in lines))
    return json.loads(runner.manifest(str(tmp_path / "out"), "smoke", str(res)).read_text())


def test_manifest_keeps_notebooks_of_earlier_runs(tmp_path, monkeypatch):
    params = tmp_path / "06.yaml"
    params.write_text("epochs: 1\n")
    first = _run(tmp_path, monkeypatch, "aaaa", [("06_layermem", "OK", "12", str(params))])
    e06 = first["notebooks"][0]
    assert e06["git_commit"] == "aaaa" and e06["finished"] == first["created"] and e06["params_sha256"]

    second = _run(tmp_path, monkeypatch, "bbbb", [("01_ssl_vs_sup", "FAIL", "3", str(tmp_path / "missing.yaml"))])
    by_name = {e["notebook"]: e for e in second["notebooks"]}
    assert list(by_name) == ["01_ssl_vs_sup", "06_layermem"]
    assert by_name["06_layermem"] == e06  # status, seconds, params hash, commit and time of the run that made it
    assert by_name["01_ssl_vs_sup"]["git_commit"] == "bbbb" and by_name["01_ssl_vs_sup"]["status"] == "FAIL"
    assert second["git_commit"] == "bbbb"

    third = _run(tmp_path, monkeypatch, "cccc", [("06_layermem", "OK", "10", str(params))])
    by_name = {e["notebook"]: e for e in third["notebooks"]}
    assert by_name["06_layermem"]["git_commit"] == "cccc" and by_name["06_layermem"]["seconds"] == 10
    assert by_name["01_ssl_vs_sup"]["git_commit"] == "bbbb"


def _record_many(out, prefix, n):
    runner._git = lambda *a: "" if a[0] == "status" else "abcd"   # no git subprocess per record: the race is the point
    runner._device = lambda: {"type": "cpu"}
    for i in range(n):
        runner.record(out, "smoke", f"{prefix}{i:02d}\tOK\t{i}\tmissing.yaml")


def test_concurrent_records_lose_no_notebook(tmp_path):
    # two run_all.sh of one profile at once, each recording 25 notebooks into the same results.tsv and manifest
    out = str(tmp_path / "out")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(out, p, 25)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(f"{p}{i:02d}" for p in "ab" for i in range(25))
    lines = (tmp_path / "out" / "results.tsv").read_text().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == names
    assert [e["notebook"] for e in json.loads((tmp_path / "out" / "manifest.json").read_text())["notebooks"]] == names
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_record_refuses_a_malformed_line(tmp_path):
    import pytest
    with pytest.raises(ValueError, match="4 tab-separated fields"):
        runner.record(str(tmp_path), "smoke", "02_sslmem OK 12")


def test_run_all_keeps_results_of_notebooks_not_rerun(tmp_path):
    # a profile whose parameter files fail validation: run_all.sh records FAIL without computing anything
    import shutil
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(root / "run_all.sh", repo)
    shutil.copytree(root / "notebooks", repo / "notebooks")
    (repo / "params" / "bad").mkdir(parents=True)
    for nb in (root / "notebooks").glob("[0-9][0-9]_*.py"):
        (repo / "params" / "bad" / f"{nb.stem}.yaml").write_text("no_such_parameter: 1\n")
    names = sorted(nb.stem for nb in (root / "notebooks").glob("[0-9][0-9]_*.py"))
    first, second = names[-1], names[0]
    for nb in (first, second, second):
        r = subprocess.run(["bash", "run_all.sh", "--profile", "bad", nb], cwd=repo, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 1 and "Summary" in r.stdout, r.stdout + r.stderr
    out = repo / "outputs" / "bad"
    lines = (out / "results.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [second, first]  # one line each, both kept
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["notebook"] for e in manifest["notebooks"]] == [second, first]
    assert all(e["status"] == "FAIL" and e["git_commit"] and e["finished"] for e in manifest["notebooks"])
