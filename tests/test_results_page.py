"""The results page (memlab.io.results) and run_all's live progress (memlab.io.progress)."""
import json
import subprocess
import sys
import os
import time

import pandas as pd

from memlab.io import progress
from memlab.io import results

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


def make_outputs(root, profile="laptop"):
    """An outputs folder as run_all leaves it: two notebooks, three claims, three figures."""
    out = root / "outputs" / profile
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    entries = [{"notebook": "02_sslmem", "status": "OK", "seconds": 600.0, "params": "params/x/02.yaml",
                "params_sha256": "ab" * 32, "git_commit": "c0ffee" * 6, "git_dirty": False, "finished": iso},
               {"notebook": "06_benign_memorization", "status": "FAIL", "seconds": 60.0, "params": "p.yaml",
                "params_sha256": None, "git_commit": "c0ffee" * 6, "git_dirty": True, "finished": iso}]
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"profile": profile, "created": iso, "git_commit": "c0ffee",
                                                   "device": {"type": "cpu"}, "packages": {"torch": "2.14.1"},
                                                   "notebooks": entries}))
    for nb, rows in {"02_sslmem": [("m(S_C) > m(S_S)", "PASS", "PASS", "p=0.004"),
                                   ("m(S_E) > m(S_I)", "FAIL", "FAIL", "p=0.25 <b>")],
                     "06_benign_memorization": [("random labels + DA learn features", "PASS", "PASS", "0.37")]}.items():
        (out / "tables" / nb).mkdir(parents=True)
        pd.DataFrame([{"paper": "", "claim": c, "result": r, "outcome": o, "detail": d} for c, r, o, d in rows]
                     ).to_csv(out / "tables" / nb / "claims.csv", index=False)
        (out / "figures" / nb).mkdir(parents=True)
    old = now - 3600  # 06's claims predate its last (failed) run: stale
    os.utime(out / "tables" / "06_benign_memorization" / "claims.csv", (old, old))
    for nb, name in [("02_sslmem", "fig2"), ("02_sslmem", "fig3"), ("06_benign_memorization", "fig8")]:
        (out / "figures" / nb / f"{name}.png").write_bytes(PNG)
    (out / "02_sslmem.html").write_text("<html></html>")
    return out


def test_results_page_lists_every_notebook_claim_and_figure(tmp_path):
    out = make_outputs(tmp_path)
    page = results.write(out).read_text()
    assert page.count("<tr class='claim") == 3
    assert page.count("<img class='thumb'") == 3 and "figures/02_sslmem/fig3.png" in page
    assert "<a href='02_sslmem.html'>" in page and "06_benign_memorization.html" not in page  # no HTML: no link
    assert "p=0.25 &lt;b&gt;" in page  # escaped
    assert "1/2 notebooks succeeded; 2/3 evaluated claims pass" in page
    assert page.count("from an earlier run") == 1
    table = pd.read_csv(out / "claims.csv")
    assert table.notebook.tolist() == ["02_sslmem", "02_sslmem", "06_benign_memorization"]
    assert table.stale.tolist() == [False, False, True]
    assert table.paper.tolist()[0] == "Wang et al. ICLR 2024, SSLMem"  # filled in from the notebook name


def test_results_markdown_has_one_dated_section_per_notebook(tmp_path):
    out = make_outputs(tmp_path)
    md = results.markdown(out)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert md.count("\n## ") + md.startswith("## ") == 2
    assert f"## 02_sslmem: laptop profile, run of {day}" in md and "10.0 min" in md
    assert "| m(S_E) > m(S_I) | FAIL | p=0.25 <b> |" in md and "1 of 1 pass" in md


def test_smoke_page_marks_claims_not_evaluated(tmp_path):
    out = make_outputs(tmp_path, "smoke")
    f = out / "tables" / "02_sslmem" / "claims.csv"
    df = pd.read_csv(f)
    df["result"] = "not evaluated"
    df.to_csv(f, index=False)
    page = results.page(out)
    assert "not evaluated (smoke: FAIL)" in page and "2 not evaluated" in page
    assert "1/1 evaluated claims pass" in page  # only 06's (hand-made, evaluated) claim counts


def test_progress_reads_the_cell_and_the_newest_bar_of_a_papermill_log():
    log = ("Executing Cell 5---------------------------------------\n"
           "jobs (2 CPU workers):   3%|3         | 4.6/139.7 [00:30<20:51,  8.0s/TFLOP, jobs=0/16]\n"
           "Executing Cell 6---------------------------------------\n"
           "\rscoring:  40%|####      | 2/5 [00:10<00:15,  5.00s/it]\n"
           "\rscoring:  60%|######    | 3/5 [00:15<01:05,  5.00s/it]\n")
    what, left = progress.status(log, 31)
    assert what == "cell 6/31 | scoring: 60% 3/5, 1:05 left" and left == 65
    what, left = progress.status(log[:log.index("Executing Cell 6")], 31)
    assert what == "cell 5/31 | jobs (2 CPU workers): 3% 4.6/139.7 TFLOPs (jobs=0/16), 20:51 left" and left == 1251
    assert progress.status("Executing Cell 2---\nno bar [00:01<?, ?it/s]\n") == ("cell 2", None)
    assert progress.clock(3725) == "1:02:05" and progress.clock(65) == "1:05"


def browser_or_skip():
    import importlib.util

    import pytest
    from browser import BrowserMissing, chromium
    try:
        chromium()
    except BrowserMissing as e:
        pytest.skip(f"no headless browser for the results-page test: {e}")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("no headless browser for the results-page test: playwright is not installed (pip install -e '.[dev]')")


def test_results_page_in_a_headless_browser_shows_every_claim_and_figure(tmp_path):
    browser_or_skip()
    from browser import shown
    out = make_outputs(tmp_path)
    seen = shown(results.write(out), screenshot="results_page_constructed.png")
    assert seen["title"] == "memlab results: laptop"
    assert len(seen["claims"]) == 3 and any("m(S_E) > m(S_I)" in c and "FAIL" in c for c in seen["claims"])
    assert len(seen["images"]) == 3 and all(ok for _, ok in seen["images"])
    # the check notices a missing claim row and a figure that does not load
    page = (out / "index.html").read_text()
    start = page.index("<tr class='claim")
    page = page[:start] + page[page.index("</tr>", start) + 5:]
    (out / "figures" / "02_sslmem" / "fig3.png").unlink()
    (out / "index.html").write_text(page)
    seen = shown(out / "index.html")
    assert len(seen["claims"]) == 2 and sorted(ok for _, ok in seen["images"]) == [False, True, True]


def test_progress_follows_a_growing_log_and_prints_a_line_when_the_status_changes(tmp_path):
    import io
    import threading
    log = tmp_path / "nb.log"
    log.write_text("Executing Cell 3-----\n")
    out = io.StringIO()
    t = threading.Thread(target=progress.follow, args=(log, "[1/2] nb", None, 100.0, 50.0, False),
                         kwargs=dict(every=0, poll=0.02, out=out, polls=400), daemon=True)
    t.start()

    def wait_for(text):  # until the follower has printed ``text`` (it polls every 20 ms)
        for _ in range(300):
            if text in out.getvalue():
                return
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} in {out.getvalue()!r}")

    wait_for("cell 3")
    with open(log, "a") as f:
        f.write("jobs (2 CPU workers):  10%|#   | 1.0/10.0 [00:10<01:30, 9.0s/TFLOP, jobs=0/4]\n")
    wait_for("TFLOPs")
    with open(log, "a") as f:  # more than the 64 kB kept, then a new cell
        f.write("x" * 70000 + "\nExecuting Cell 4-----\n")
    wait_for("cell 4")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] nb  0:00 elapsed | cell 3 | run: ~2 min left"   # 100 s expected + 50 s to come
    assert "cell 3 | jobs (2 CPU workers): 10% 1.0/10.0 TFLOPs (jobs=0/4), 1:30 left | run: ~2 min left" in lines[1]
    assert lines[-1].endswith("| cell 4 | run: ~2 min left")


def test_progress_follower_exits_on_sigterm_even_inside_a_callback(tmp_path):
    """run_all.sh ends the follower with SIGTERM and waits for it. A SIGTERM handled inside a weakref callback
    (as in an import's module-lock callback, the CI hang of stop 29) swallows SystemExit; the follower must exit
    anyway."""
    script = tmp_path / "f.py"
    script.write_text(
        "import os, signal, sys, time, weakref\n"
        "from memlab.io import progress\n"
        "class O: pass\n"
        "def cb(_):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    for _ in range(1000): pass\n"
        "def fake_follow(*a, **k):\n"
        "    o = O(); r = weakref.ref(o, cb); del o\n"
        "    time.sleep(0.5); print('still running', flush=True); time.sleep(30)\n"
        "progress.follow = fake_follow\n"
        f"progress.main([{str(tmp_path / 'log')!r}, '--label', 'x', '--tty', 'no'])\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "still running" not in r.stdout, (r.stdout, r.stderr)
