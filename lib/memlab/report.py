"""Notebook reporting: output folders, CSV tables and the paper's claims as PASS/FAIL lines."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Report:
    """Where a notebook writes: ``<output_dir>/figures/<notebook>/`` and ``<output_dir>/tables/<notebook>/``;
    and the claims it checks."""
    output_dir: Path
    notebook: str
    profile: str
    dataset: str
    claims: list = field(default_factory=list)

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        self.figures = self.output_dir / "figures" / self.notebook
        self.tables = self.output_dir / "tables" / self.notebook
        self.figures.mkdir(parents=True, exist_ok=True)
        self.tables.mkdir(parents=True, exist_ok=True)

    def caption(self, extra: str = "") -> str:
        return f"memlab {self.notebook} | profile: {self.profile} | dataset: {self.dataset}" + (
            f" | {extra}" if extra else "")

    def figure(self, fig, name: str) -> None:
        """Save ``fig`` as PNG and PDF, show it (in a notebook) and close it."""
        import matplotlib.pyplot as plt

        from .plots import save
        save(fig, self.figures / name)
        try:
            from IPython import get_ipython
            from IPython.display import display
            if get_ipython() is not None:
                display(fig)
        finally:
            plt.close(fig)

    def table(self, df: pd.DataFrame, name: str) -> Path:
        path = self.tables / f"{name}.csv"
        df.to_csv(path, index=False)
        return path

    def claim(self, text: str, passed: bool, detail: str = "") -> bool:
        """Record and print one of the paper's claims, as computed from this run."""
        passed = bool(passed)
        self.claims.append({"claim": text, "result": "PASS" if passed else "FAIL", "detail": detail})
        print(f"[{'PASS' if passed else 'FAIL'}] {text}" + (f" -- {detail}" if detail else ""))
        return passed

    def print_claims(self, suffix: str = "") -> None:
        """The closing summary: how many claims pass, then one line per claim."""
        n_pass = sum(c["result"] == "PASS" for c in self.claims)
        print(f"{n_pass}/{len(self.claims)} claims pass{suffix}")
        for c in self.claims:
            print(f"  [{c['result']}] {c['claim']}: {c['detail']}")

    def claims_table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.claims, columns=["claim", "result", "detail"])
        self.table(df, "claims")
        return df
