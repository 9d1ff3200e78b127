"""Notebook reporting (memlab.report): claims as PASS/FAIL lines and as a table."""
import pandas as pd

from memlab.report import Report


def test_claims_are_printed_counted_and_written(tmp_path, capsys):
    r = Report(tmp_path, "nb", "smoke", "synthetic")
    assert r.claim("a holds", 1 > 0, "1 vs 0") is True
    assert r.claim("b holds", 0 > 1) is False
    assert capsys.readouterr().out.splitlines() == ["[PASS] a holds -- 1 vs 0", "[FAIL] b holds"]
    r.print_claims("; wall time 3s")
    assert capsys.readouterr().out.splitlines() == ["1/2 claims pass; wall time 3s", "  [PASS] a holds: 1 vs 0",
                                                    "  [FAIL] b holds: "]
    df = r.claims_table()
    assert list(df.result) == ["PASS", "FAIL"]
    assert pd.read_csv(tmp_path / "tables" / "nb" / "claims.csv").claim.tolist() == ["a holds", "b holds"]
    assert "profile: smoke" in r.caption() and "dataset: synthetic" in r.caption()
