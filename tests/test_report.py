"""Notebook reporting (memlab.io.report): claims as PASS/FAIL lines and as a table; smoke claims not evaluated."""
import pandas as pd

from memlab.io.report import Report


def test_claims_are_printed_counted_and_written(tmp_path, capsys):
    r = Report(tmp_path, "02_sslmem", "laptop", "cifar10")
    assert r.claim("a holds", 1 > 0, "1 vs 0") is True
    assert r.claim("b holds", 0 > 1) is False
    assert capsys.readouterr().out.splitlines() == ["[PASS] a holds -- 1 vs 0", "[FAIL] b holds"]
    r.print_claims("; wall time 3s")
    assert capsys.readouterr().out.splitlines() == ["1/2 claims pass; wall time 3s", "  [PASS] a holds: 1 vs 0",
                                                    "  [FAIL] b holds: "]
    df = r.claims_table()
    assert list(df.result) == ["PASS", "FAIL"] and list(df.outcome) == ["PASS", "FAIL"]
    written = pd.read_csv(tmp_path / "tables" / "02_sslmem" / "claims.csv")
    assert written.claim.tolist() == ["a holds", "b holds"]
    assert set(written.paper) == {"Wang et al. ICLR 2024, SSLMem"}
    assert "profile: laptop" in r.caption() and "dataset: cifar10" in r.caption()


def test_smoke_claims_are_marked_not_evaluated_with_the_computed_outcome(tmp_path, capsys):
    r = Report(tmp_path, "06_benign_memorization", "smoke", "synthetic")
    r.claim("a holds", False, "0.1 vs 0.2")
    assert capsys.readouterr().out.splitlines() == ["[not evaluated, smoke: FAIL] a holds -- 0.1 vs 0.2"]
    r.print_claims()
    out = capsys.readouterr().out
    assert out.startswith("1 claims computed, not evaluated (0 would pass)") and "laptop and paper" in out
    assert "[FAIL]" not in out and "[PASS]" not in out
    df = r.claims_table()
    assert list(df.result) == ["not evaluated"] and list(df.outcome) == ["FAIL"]


def test_figures_are_embedded_as_png_whatever_the_backend(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.display import Image
    import IPython
    import IPython.display
    r = Report(tmp_path, "01_profiles_vs_binomial", "laptop", "cifar10")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    r.figure(fig, "line")
    assert (r.figures / "line.png").is_file() and (r.figures / "line.pdf").is_file()
    assert len(shown) == 1 and isinstance(shown[0], Image) and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()  # closed
