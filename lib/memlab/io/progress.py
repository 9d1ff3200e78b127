"""Live progress of ``run_all.sh`` in the terminal: which notebook runs, which cell or job, elapsed time and an
estimate of the time left.

``run_all.sh`` sends each notebook's output to its log (papermill ``--log-output``). While a notebook runs,
``python -m memlab.io.progress LOG ...`` follows that log and prints one status line, e.g.::

    [2/6] 02_sslmem  12:04 elapsed | cell 6/31 | jobs (2 CPU workers): 45% 62.9/139.7 TFLOPs, 9:40 left | run: ~71 min left

On a terminal the line is redrawn in place every second; otherwise (a file, CI) a line is printed when the
status changed, at most once a minute. The run's estimate is the current notebook's expected time (the bar's
own estimate, else its time in the previous run of this profile) plus the previous times of the notebooks
still to come; without earlier times it is left out.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path

# a tqdm bar as papermill logs it: "desc:  45%|####  | 62.9/139.7 [04:10<05:10, 3.9s/TFLOP, jobs=3/16]"
BAR = re.compile(r"(?P<desc>[^\r\n|]*?):?\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)"
                 r"\s*\[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)(?P<rest>[^\]]*)\]")
CELL = re.compile(r"Executing Cell (\d+)-")


def clock(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` or ``M:SS``."""
    s = int(max(0, seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def parse_clock(text: str) -> float | None:
    """``"1:02:03"`` / ``"05:10"`` -> seconds; None for tqdm's ``"?"``."""
    if "?" in text:
        return None
    secs = 0
    for part in text.split(":"):
        secs = secs * 60 + int(part)
    return float(secs)


def status(log_text: str, n_cells: int | None = None) -> tuple[str, float | None]:
    """(the status read from a notebook log so far, seconds left of its current progress bar or None).

    The status names the cell being executed and the newest progress bar of that cell, if any."""
    cells = CELL.findall(log_text)
    cell = int(cells[-1]) if cells else None
    tail = log_text[log_text.rfind("Executing Cell"):] if cells else log_text
    bars = list(BAR.finditer(tail))
    parts = []
    if cell is not None:
        parts.append(f"cell {cell}/{n_cells}" if n_cells else f"cell {cell}")
    left = None
    if bars:
        b = bars[-1]
        unit = "TFLOPs" if "TFLOP" in b["rest"] else ""
        jobs = re.search(r"jobs=\d+/\d+", b["rest"])
        left = parse_clock(b["left"])
        parts.append(f"{b['desc'].strip() or 'progress'}: {b['pct']}% {b['n']}/{b['total']}" + (f" {unit}" if unit else "")
                     + (f" ({jobs.group(0)})" if jobs else "") + (f", {clock(left)} left" if left is not None else ""))
    return " | ".join(parts), left


def code_cells(notebook: Path) -> int | None:
    """How many code cells papermill will execute (the injected-parameters cell included)."""
    try:
        import nbformat
        nb = nbformat.read(notebook, as_version=4)
        return sum(c.cell_type == "code" for c in nb.cells) + 1
    except Exception:  # noqa: BLE001 -- progress is best effort; the run itself reports real errors
        return None


def follow(log: Path, label: str, notebook: Path | None, expected: float | None, after: float | None,
           tty: bool, every: float = 60.0, poll: float = 1.0, out=sys.stdout, polls: int | None = None) -> None:
    """Print the status of ``log`` until killed (SIGTERM clears the line on a terminal).

    ``notebook``: the .ipynb papermill executes (read for its cell count; it is written after the start);
    ``expected``: seconds this notebook took in the previous run of the profile (None: unknown); ``after``:
    seconds of the notebooks still to come (None: unknown); ``polls``: stop after that many polls (tests)."""
    t0 = time.time()
    last_print, last_text = 0.0, None
    offset, mark, since = 0, "", ""   # read only what the log gained since the last poll (logs reach many MB)

    n = 0
    while polls is None or n < polls:
        n += 1
        try:
            with open(log, "rb") as fh:
                fh.seek(offset)
                new = fh.read().decode("utf-8", errors="replace")
                offset = fh.tell()
        except OSError:
            new = ""
        # the newest "Executing Cell N" marker, and at most the last 64 kB written after it
        cells = CELL.findall(new)
        if cells:
            mark, since = f"Executing Cell {cells[-1]}-\n", new[new.rfind("Executing Cell"):]
        else:
            since += new
        since = since[-65536:]
        what, left = status(mark + since, code_cells(notebook) if notebook else None)
        elapsed = time.time() - t0
        line = f"{label}  {clock(elapsed)} elapsed" + (f" | {what}" if what else "")
        here = left if left is not None else (max(0.0, expected - elapsed) if expected else None)
        if here is not None and after is not None:
            line += f" | run: ~{max(1, round((here + after) / 60))} min left"
        now = time.time()
        if tty:
            width = 160
            out.write("\r\033[K" + line[:width])
            out.flush()
        elif what != last_text and now - last_print >= every:
            out.write(line + "\n")
            out.flush()
            last_print, last_text = now, what
        time.sleep(poll)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memlab.io.progress", description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path, help="the notebook's log file")
    ap.add_argument("--label", required=True, help='what the line starts with, e.g. "[2/6] 02_sslmem"')
    ap.add_argument("--notebook", type=Path, help="the .ipynb papermill executes (for the cell count)")
    ap.add_argument("--expected", type=float, default=0, help="seconds of this notebook's previous run (0: unknown)")
    ap.add_argument("--after", type=float, default=-1, help="seconds of the notebooks to come (-1: unknown)")
    ap.add_argument("--every", type=float, default=60, help="seconds between lines when not on a terminal")
    ap.add_argument("--tty", choices=["auto", "yes", "no"], default="auto")
    a = ap.parse_args(argv)
    tty = sys.stdout.isatty() if a.tty == "auto" else a.tty == "yes"

    def stop(*_):  # run_all.sh ends us with SIGTERM when the notebook finishes: leave a clean terminal line
        try:
            if tty:
                sys.stdout.write("\r\033[K")
            sys.stdout.flush()
        finally:   # even if the terminal is gone (a broken pipe)
            # os._exit, not sys.exit: a SIGTERM that lands inside an import (nbformat's, on the first poll) runs
            # this handler in a context where SystemExit is printed as "Exception ignored" and swallowed, and the
            # follower kept running while run_all.sh waited for it (a CI run hung 300 s on a notebook that failed
            # at once)
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    follow(a.log, a.label, a.notebook, a.expected or None,
           a.after if a.after >= 0 else None, tty, every=a.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
