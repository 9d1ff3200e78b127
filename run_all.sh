#!/usr/bin/env bash
# Regenerate every notebook headlessly: jupytext -> papermill (profile parameters) -> nbconvert HTML.
#
#   ./run_all.sh [--profile smoke|laptop|paper] [--list] [NOTEBOOK ...]
#
# NOTEBOOK: a name (02_sslmem), a prefix (02 or 2) or a path (notebooks/02_sslmem.py); default: all.
# Writes outputs/<profile>/: the results page index.html and claims.csv (every notebook's claims),
# <name>.ipynb and .html, figures/ and tables/, logs/<name>.log, results.tsv and manifest.json (git commit,
# package versions, device, parameter hashes, timings). Notebooks not run this time keep their entries.
# Shows live progress: the notebook, its cell and job bar, elapsed time and an estimate of the time left.
# Parameters are validated against each notebook's parameters cell before anything runs.
# Keeps going past a failing notebook; exits non-zero with a summary if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PROFILE="laptop"
LIST=0
SELECT=()

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -p|--profile) [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; exit 2; }; PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --list) LIST=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) SELECT+=("$1"); shift ;;
  esac
done

if [ ! -d "params/$PROFILE" ]; then
  echo "error: unknown profile '$PROFILE' (choose from: $(ls params | tr '\n' ' '))" >&2
  exit 2
fi

ALL=(notebooks/[0-9][0-9]_*.py)
NOTEBOOKS=()
if [ ${#SELECT[@]} -eq 0 ]; then
  NOTEBOOKS=("${ALL[@]}")
else
  for s in "${SELECT[@]}"; do
    s="$(basename "${s%.py}")"; s="${s%.ipynb}"
    if [[ "$s" =~ ^[0-9]$ ]]; then s="0$s"; fi   # "5" selects 05_...
    match=()
    for nb in "${ALL[@]}"; do
      n="$(basename "$nb" .py)"
      if [ "$n" = "$s" ] || [[ "$n" == "$s"_* ]]; then match+=("$nb"); fi
    done
    if [ ${#match[@]} -ne 1 ]; then
      echo "error: '$s' matches ${#match[@]} notebooks (available: $(for nb in "${ALL[@]}"; do basename "$nb" .py; done | tr '\n' ' '))" >&2
      exit 2
    fi
    NOTEBOOKS+=("${match[0]}")
  done
fi

if [ $LIST -eq 1 ]; then
  for nb in "${NOTEBOOKS[@]}"; do echo "$(basename "$nb" .py)  params/$PROFILE/$(basename "$nb" .py).yaml"; done
  exit 0
fi

OUT="outputs/$PROFILE"
mkdir -p "$OUT/logs" "$OUT/build"
RESULTS="$OUT/results.tsv"          # one line per notebook, across runs
RUN_RESULTS="$OUT/build/results.run-$$.tsv"   # this run's lines (per process: two runs at once keep their own)
: > "$RUN_RESULTS"
record() {  # $1 = this run's line: keep it for the summary; merge it into results.tsv and manifest.json (locked)
  printf '%s\n' "$1" >> "$RUN_RESULTS"
  python -m memlab.io.runner record "$OUT" --profile "$PROFILE" --line "$1" > /dev/null \
    || echo "warning: could not record the result in $RESULTS and $OUT/manifest.json"
}
previous() {  # seconds of notebook $1's last OK run with this profile (0: none), from results.tsv
  [ -f "$RESULTS" ] && awk -F'\t' -v n="$1" '$1 == n && $2 == "OK" { print int($3); f = 1 } END { if (!f) print 0 }' "$RESULTS" || echo 0
}
FAILED=0
T_ALL=$(date +%s)
echo "memlab run_all: profile=$PROFILE, ${#NOTEBOOKS[@]} notebook(s), outputs in $OUT/ (results page: $OUT/index.html)"
PREV=()   # earlier times, for the estimate of the time left (unknown: -1 for the whole rest of the run)
for nb in "${NOTEBOOKS[@]}"; do PREV+=("$(previous "$(basename "$nb" .py)")"); done
PROGRESS_PID=""
# the follower exits on SIGTERM; if it has not within 5 s (it never should), SIGKILL it rather than wait forever
stop_progress() {
  if [ -n "$PROGRESS_PID" ]; then
    kill "$PROGRESS_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PROGRESS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PROGRESS_PID" 2>/dev/null && kill -9 "$PROGRESS_PID" 2>/dev/null
    wait "$PROGRESS_PID" 2>/dev/null; PROGRESS_PID=""
  fi
}
trap 'stop_progress; rm -f "$RUN_RESULTS"' EXIT

i=0
for nb in "${NOTEBOOKS[@]}"; do
  name="$(basename "$nb" .py)"
  params="params/$PROFILE/$name.yaml"
  log="$OUT/logs/$name.log"
  t0=$(date +%s)
  i=$((i + 1))
  after=0
  for ((j = i; j < ${#NOTEBOOKS[@]}; j++)); do
    if [ "${PREV[$j]}" -gt 0 ] && [ "$after" -ge 0 ]; then after=$((after + PREV[j])); else after=-1; fi
  done
  echo "[$i/${#NOTEBOOKS[@]}] $name  (log: $log)"
  : > "$log"
  python -m memlab.io.progress "$log" --label "  [$i/${#NOTEBOOKS[@]}] $name" --notebook "$OUT/build/$name.ipynb" \
    --expected "${PREV[$((i - 1))]}" --after "$after" &
  PROGRESS_PID=$!
  {
    echo "== $name ($PROFILE) $(date -u +%FT%TZ)"
    if [ ! -f "$params" ]; then echo "error: missing parameter file $params"; false; fi &&
    python -m memlab.io.runner check "$nb" "$params" -p output_dir "$OUT" -p profile "$PROFILE" &&
    jupytext --to ipynb --output "$OUT/build/$name.ipynb" "$nb" &&
    papermill "$OUT/build/$name.ipynb" "$OUT/$name.ipynb" -f "$params" \
      -p output_dir "$OUT" -p profile "$PROFILE" --cwd "$ROOT" -k python3 --log-output --no-progress-bar &&
    jupyter nbconvert --to html --log-level WARN "$OUT/$name.ipynb" --output-dir "$OUT"
  } > "$log" 2>&1
  rc=$?
  stop_progress
  dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then status=OK; else status=FAIL; FAILED=$((FAILED + 1)); fi
  claims_line=$(grep -E "^[0-9]+/[0-9]+ claims pass|^[0-9]+ claims computed, not evaluated" "$log" | tail -n 1 | cut -c1-70)
  printf '  %-28s %-5s %6ss  %s\n' "$name" "$status" "$dt" "$claims_line"
  record "$(printf '%s\t%s\t%s\t%s' "$name" "$status" "$dt" "$params")"
  python -m memlab.io.results "$OUT" --profile "$PROFILE" > /dev/null || echo "warning: could not write $OUT/index.html"
  if [ $rc -ne 0 ]; then
    grep -E "Error|error|Exception" "$log" | tail -n 3 | sed 's/^/    /'
  fi
done

echo
echo "Summary ($PROFILE, $(( $(date +%s) - T_ALL ))s total):"
awk -F'\t' '{ printf "  %-28s %-5s %6ss\n", $1, $2, $3 }' "$RUN_RESULTS"
echo "($RESULTS and $OUT/manifest.json list all $(wc -l < "$RESULTS") notebook(s) run with this profile.)"
echo "Results page: $OUT/index.html; every claim: $OUT/claims.csv"
if [ $FAILED -gt 0 ]; then
  echo "$FAILED notebook(s) failed; see the logs above."
  exit 1
fi
echo "All notebooks succeeded. Results page: $OUT/index.html (executed notebooks, HTML, figures and tables are in $OUT/)."
