"""The results page of a profile: ``outputs/<profile>/index.html`` and ``outputs/<profile>/claims.csv``.

``run_all.sh`` writes both after every run, from what the notebooks left in ``outputs/<profile>/``:
``manifest.json`` (status, time, commit, versions, device, parameter hashes), each notebook's
``tables/<notebook>/claims.csv`` and its ``figures/<notebook>/*.png``. The page is plain static HTML (no
script, no network) that opens from disk: per notebook its status, time and a link to its executed HTML;
every claim with its paper, PASS / FAIL / not evaluated, and the numbers; thumbnails of the figures; and the
manifest.

    python -m memlab.io.results outputs/laptop
"""
from __future__ import annotations

import argparse
import html
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from memlab.io.report import CLAIM_COLUMNS, NOT_EVALUATED, paper_of

ALL_CLAIM_COLUMNS = ["notebook"] + CLAIM_COLUMNS + ["stale"]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; font-size: 14px; }
th { background: #f3f3f3; }
.PASS { background: #dff3df; } .FAIL { background: #f8dcdc; } .ne { background: #eeeeee; color: #555; }
.OK { color: #1a7f1a; font-weight: bold; } .bad { color: #b00; font-weight: bold; }
figure { display: inline-block; margin: 4px; text-align: center; font-size: 12px; }
figure img { width: 260px; border: 1px solid #ddd; }
.note { color: #555; font-size: 13px; }
"""


def _e(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and pd.isna(x)) else str(x))


def _entries(out: Path) -> tuple[dict, list]:
    """(the manifest, its notebook entries; from results.tsv where there is no manifest)."""
    path = out / "manifest.json"
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            return doc, doc.get("notebooks", [])
        except json.JSONDecodeError:
            pass
    rows = []
    if (out / "results.tsv").is_file():
        for line in (out / "results.tsv").read_text().splitlines():
            if line.strip():
                name, status, seconds, params = line.split("\t")
                rows.append({"notebook": name, "status": status, "seconds": float(seconds), "params": params})
    return {}, rows


def _started(entry: dict) -> float | None:
    try:
        return datetime.fromisoformat(entry["finished"]).timestamp() - float(entry["seconds"])
    except (KeyError, TypeError, ValueError):
        return None


def claims(out: Path, entries: list) -> pd.DataFrame:
    """Every notebook's claims (columns ``ALL_CLAIM_COLUMNS``). ``stale`` is True where the claims file is
    older than the notebook's last run (that run failed before writing its claims)."""
    frames = []
    for e in entries:
        f = out / "tables" / e["notebook"] / "claims.csv"
        if not f.is_file():
            continue
        df = pd.read_csv(f, keep_default_na=False)
        if "outcome" not in df:          # written before claims had an outcome column: evaluated claims
            df["outcome"] = df["result"]
        if "paper" not in df:
            df["paper"] = ""
        df["paper"] = df["paper"].astype(str).replace("", paper_of(e["notebook"]))
        df["notebook"] = e["notebook"]
        start = _started(e)
        df["stale"] = bool(start is not None and f.stat().st_mtime < start - 1)
        frames.append(df[ALL_CLAIM_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ALL_CLAIM_COLUMNS)


def figures(out: Path, notebook: str) -> list[Path]:
    return sorted((out / "figures" / notebook).glob("*.png"))


def _claim_class(result: str) -> str:
    return result if result in ("PASS", "FAIL") else "ne"


def page(out: Path, profile: str | None = None) -> str:
    """The HTML of the results page of the outputs folder ``out``."""
    doc, entries = _entries(out)
    profile = profile or doc.get("profile") or out.name
    table = claims(out, entries)
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>memlab results: {_e(profile)}</title>",
         f"<style>{STYLE}</style></head><body>", f"<h1>memlab results: profile <code>{_e(profile)}</code></h1>"]
    if profile == "smoke":
        h.append("<p class='note'>Smoke profile: seconds of training on tiny synthetic data, to check that the code "
                 "runs. Its claims are computed but <b>not evaluated</b> (the computed outcome is shown in grey); the "
                 "laptop and paper profiles evaluate them.</p>")
    n_ok = sum(e.get("status") == "OK" for e in entries)
    evaluated = table[table.result != NOT_EVALUATED]
    h.append(f"<p>{n_ok}/{len(entries)} notebooks succeeded; {int((evaluated.result == 'PASS').sum())}/{len(evaluated)}"
             f" evaluated claims pass. Machine-readable: <a href='claims.csv'>claims.csv</a>, "
             f"<a href='manifest.json'>manifest.json</a>.</p>")
    h.append("<h2>Notebooks</h2><table id='notebooks'><tr><th>notebook</th><th>paper</th><th>status</th><th>time</th>"
             "<th>claims</th><th>finished</th><th>commit</th><th>parameters (sha256)</th></tr>")
    for e in entries:
        nb = e["notebook"]
        sub = table[table.notebook == nb]
        link = f"<a href='{_e(nb)}.html'>{_e(nb)}</a>" if (out / f"{nb}.html").is_file() else _e(nb)
        n_claims = (f"{int((sub.outcome == 'PASS').sum())}/{len(sub)} pass" if len(sub) else "none")
        if len(sub) and (sub.result == NOT_EVALUATED).all():
            n_claims = f"{len(sub)} not evaluated"
        commit = (e.get("git_commit") or "")[:10] + (" (dirty)" if e.get("git_dirty") else "")
        status = e.get("status", "?")
        h.append(f"<tr><td>{link}</td><td>{_e(paper_of(nb))}</td><td class='{'OK' if status == 'OK' else 'bad'}'>"
                 f"{_e(status)}</td><td>{float(e.get('seconds', 0)) / 60:.1f} min</td><td>{_e(n_claims)}</td>"
                 f"<td>{_e(e.get('finished'))}</td><td>{_e(commit)}</td><td>{_e(e.get('params'))} "
                 f"<code>{_e((e.get('params_sha256') or '')[:12])}</code></td></tr>")
    h.append("</table><h2>Claims</h2><table id='claims'><tr><th>notebook</th><th>paper</th><th>claim</th>"
             "<th>result</th><th>numbers</th></tr>")
    for _, c in table.iterrows():
        res = c.result if c.result != NOT_EVALUATED else f"not evaluated (smoke: {c.outcome})"
        stale = " <span class='note'>(from an earlier run: the last run stopped before its claims)</span>" \
            if c.stale else ""
        h.append(f"<tr class='claim {_claim_class(c.result)}'><td>{_e(c.notebook)}</td><td>{_e(c.paper)}</td>"
                 f"<td>{_e(c.claim)}{stale}</td><td>{_e(res)}</td><td>{_e(c.detail)}</td></tr>")
    h.append("</table><h2>Figures</h2>")
    for e in entries:
        figs = figures(out, e["notebook"])
        if figs:
            h.append(f"<h3>{_e(e['notebook'])}</h3><div>")
            for f in figs:
                rel = f.relative_to(out).as_posix()
                pdf = f.with_suffix(".pdf")
                target = pdf.relative_to(out).as_posix() if pdf.is_file() else rel
                h.append(f"<figure><a href='{_e(target)}'><img class='thumb' src='{_e(rel)}' alt='{_e(f.stem)}'>"
                         f"</a><figcaption>{_e(f.stem)}</figcaption></figure>")
            h.append("</div>")
    h.append("<h2>Manifest</h2><table id='manifest'>")
    for key in ("created", "git_commit", "git_dirty", "python", "platform"):
        if key in doc:
            h.append(f"<tr><th>{key}</th><td>{_e(doc[key])}</td></tr>")
    if doc.get("device"):
        h.append(f"<tr><th>device</th><td>{_e(', '.join(f'{k}: {v}' for k, v in doc['device'].items()))}</td></tr>")
    if doc.get("packages"):
        h.append(f"<tr><th>packages</th><td>{_e(', '.join(f'{k} {v}' for k, v in doc['packages'].items()))}</td></tr>")
    h.append("</table></body></html>")
    return "\n".join(h)


def _settings(params_file: str) -> str:
    """The prose header of a parameter file (its leading comment lines), or ""."""
    path = Path(params_file)
    if not path.is_file():
        return ""
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line.lstrip("# ").rstrip())
    return " ".join(head)


def markdown(out_dir, profile: str | None = None) -> str:
    """docs/results.md sections for the notebooks of ``out_dir``: one per notebook, dated by its own run, with
    the run's settings (the parameter file's header, path and hash), time, commit and every claim."""
    out = Path(out_dir)
    doc, entries = _entries(out)
    profile = profile or doc.get("profile") or out.name
    table = claims(out, entries)
    device = ", ".join(f"{k} {v}" for k, v in (doc.get("device") or {}).items())
    parts = []
    for e in entries:
        nb = e["notebook"]
        sub = table[table.notebook == nb]
        day = (e.get("finished") or "")[:10]
        n_pass = int((sub.outcome == "PASS").sum())
        parts.append(f"## {nb}: {profile} profile, run of {day}\n")
        parts.append(f"- **Paper:** {paper_of(nb)}")
        parts.append(f"- **Settings:** `{e.get('params')}` (sha256 `{(e.get('params_sha256') or '')[:12]}`). "
                     f"{_settings(e.get('params', ''))}")
        parts.append(f"- **Run:** {e.get('status')} in {float(e.get('seconds', 0)):.0f} s "
                     f"({float(e.get('seconds', 0)) / 60:.1f} min), finished {e.get('finished')}, commit "
                     f"`{(e.get('git_commit') or '')[:10]}`{' (uncommitted changes)' if e.get('git_dirty') else ''}; "
                     f"device: {device or 'unknown'}")
        parts.append(f"- **Claims:** {n_pass} of {len(sub)} pass" + (" (computed, not evaluated: smoke)"
                                                                     if len(sub) and (sub.result == NOT_EVALUATED).all() else ""))
        parts.append("")
        parts.append("| claim | result | numbers |\n|---|---|---|")
        for _, c in sub.iterrows():
            cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
            parts.append(f"| {cell(c.claim)} | {c.outcome} | {cell(c.detail)} |")
        parts.append("")
    return "\n".join(parts)


def write(out_dir, profile: str | None = None) -> Path:
    """Write ``<out_dir>/index.html`` and ``<out_dir>/claims.csv`` (atomically); returns the page's path."""
    out = Path(out_dir)
    _, entries = _entries(out)
    for name, text in (("claims.csv", claims(out, entries).to_csv(index=False)), ("index.html", page(out, profile))):
        tmp = out / f"{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    return out / "index.html"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memlab.io.results", description="write a profile's results page")
    ap.add_argument("out_dir", help="outputs/<profile>")
    ap.add_argument("--profile")
    ap.add_argument("--markdown", action="store_true", help="print docs/results.md sections instead")
    a = ap.parse_args(argv)
    if not Path(a.out_dir).is_dir():
        print(f"error: no outputs folder {a.out_dir} (run ./run_all.sh first)", file=sys.stderr)
        return 2
    print(markdown(a.out_dir, a.profile) if a.markdown else write(a.out_dir, a.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
