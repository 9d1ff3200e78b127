"""Notebook reporting: output folders, figures, CSV tables and the paper's claims as PASS/FAIL lines.

A claim is computed in every profile. The smoke profile runs for seconds on synthetic data only to show
that the code runs, so its claims are printed and stored as *not evaluated* (with the computed outcome
beside them): a smoke FAIL is not a broken notebook. The laptop and paper profiles evaluate them.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# which paper (../shared/seeds) each notebook reproduces; shown beside its claims on the results page
PAPERS = {
    "01": "Sadrtdinov et al. 2021, memorization properties of contrastive learning",
    "02": "Wang et al. ICLR 2024, SSLMem",
    "03": "Wang et al. ICLR 2024, SSLMem",
    "04": "Wang et al. NeurIPS 2024, localizing memorization",
    "05": "Wang et al. NeurIPS 2024, localizing memorization",
    "06": "Anagnostidis et al. ICLR 2023, benign memorization",
}
UNEVALUATED_PROFILES = ("smoke",)
NOT_EVALUATED = "not evaluated"
CLAIM_COLUMNS = ["paper", "claim", "result", "outcome", "detail"]


def paper_of(notebook: str) -> str:
    """The paper a notebook (``"02_sslmem"``) reproduces, or ``""`` for a notebook outside ``PAPERS``."""
    return PAPERS.get(notebook[:2], "")


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

    @property
    def evaluated(self) -> bool:
        """False in the smoke profile, whose claims are computed but not meant to hold."""
        return self.profile not in UNEVALUATED_PROFILES

    def caption(self, extra: str = "") -> str:
        return f"memlab {self.notebook} | profile: {self.profile} | dataset: {self.dataset}" + (
            f" | {extra}" if extra else "")

    @staticmethod
    def slug(text: str) -> str:
        """``text`` as part of an output file name: runs of characters other than letters, digits, ``.``, ``-`` and
        ``_`` become one ``_`` (e.g. "synthetic (for svhn)" -> "synthetic_for_svhn")."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")

    def figure(self, fig, name: str) -> None:
        """Save ``fig`` as ``<name>.png`` and ``.pdf``, show the PNG (in a notebook) and close the figure.

        The saved PNG is displayed as an image, so the executed notebook and its HTML embed the figure whatever
        matplotlib backend runs (``MPLBACKEND=Agg`` included, where displaying the figure object gives only
        its text repr)."""
        import matplotlib.pyplot as plt

        from memlab.io.plots import save
        try:
            png = save(fig, self.figures / name)[0]
            from IPython import get_ipython
            from IPython.display import Image, display
            if get_ipython() is not None:
                display(Image(filename=str(png)))
        finally:
            plt.close(fig)

    def table(self, df: pd.DataFrame, name: str) -> Path:
        path = self.tables / f"{name}.csv"
        df.to_csv(path, index=False)
        return path

    def _tag(self, outcome: str) -> str:
        return outcome if self.evaluated else f"{NOT_EVALUATED}, smoke: {outcome}"

    def claim(self, text: str, passed: bool, detail: str = "") -> bool:
        """Record and print one of the paper's claims, as computed from this run: ``[PASS]``/``[FAIL]``, or in
        the smoke profile ``[not evaluated, smoke: PASS/FAIL]``. Returns whether the computed claim holds."""
        passed = bool(passed)
        outcome = "PASS" if passed else "FAIL"
        self.claims.append({"paper": paper_of(self.notebook), "claim": text,
                            "result": outcome if self.evaluated else NOT_EVALUATED, "outcome": outcome,
                            "detail": detail})
        print(f"[{self._tag(outcome)}] {text}" + (f" -- {detail}" if detail else ""))
        return passed

    def print_claims(self, suffix: str = "") -> None:
        """The closing summary: how many claims pass, then one line per claim."""
        n_pass = sum(c["outcome"] == "PASS" for c in self.claims)
        if self.evaluated:
            print(f"{n_pass}/{len(self.claims)} claims pass{suffix}")
        else:
            print(f"{len(self.claims)} claims computed, not evaluated ({n_pass} would pass){suffix}. The smoke "
                  "profile runs for seconds on tiny synthetic data to check that the code runs; its claims are not "
                  "meant to hold. The laptop and paper profiles evaluate them.")
        for c in self.claims:
            print(f"  [{self._tag(c['outcome'])}] {c['claim']}: {c['detail']}")

    def claims_table(self) -> pd.DataFrame:
        """The claims as a table (columns ``CLAIM_COLUMNS``), also written to ``tables/<notebook>/claims.csv``."""
        df = pd.DataFrame(self.claims, columns=CLAIM_COLUMNS)
        self.table(df, "claims")
        return df
