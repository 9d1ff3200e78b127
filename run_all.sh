#!/usr/bin/env bash
# Regenerate every notebook headlessly: jupytext -> papermill (profile parameters) -> nbconvert HTML.
#
#   ./run_all.sh [--profile smoke|laptop|paper] [--list] [NOTEBOOK ...]
#
# NOTEBOOK: a name (02_sslmem), a prefix (02) or a path (notebooks/02_sslmem.py); default: all.
# Writes outputs/<profile>/<name>.ipynb and .html, figures/ and tables/, logs/<name>.log, results.tsv and
# manifest.json (git commit, package versions, device, parameter hashes, timings). results.tsv and the
# manifest keep the entries of notebooks not run this time (one line / entry per notebook).
# Parameters are validated against each notebook's parameters cell before anything runs.
# Keeps going past a failing notebook; exits non-zero with a summary if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PROFILE="laptop"
LIST=0
SELECT=()

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

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
trap 'rm -f "$RUN_RESULTS"' EXIT
record() {  # $1 = this run's line: keep it for the summary; merge it into results.tsv and manifest.json (locked)
  printf '%s\n' "$1" >> "$RUN_RESULTS"
  python -m memlab.runner record "$OUT" --profile "$PROFILE" --line "$1" > /dev/null \
    || echo "warning: could not record the result in $RESULTS and $OUT/manifest.json"
}
FAILED=0
T_ALL=$(date +%s)
echo "memlab run_all: profile=$PROFILE, ${#NOTEBOOKS[@]} notebook(s), outputs in $OUT/"

for nb in "${NOTEBOOKS[@]}"; do
  name="$(basename "$nb" .py)"
  params="params/$PROFILE/$name.yaml"
  log="$OUT/logs/$name.log"
  t0=$(date +%s)
  printf '%-28s ' "$name"
  {
    echo "== $name ($PROFILE) $(date -u +%FT%TZ)"
    if [ ! -f "$params" ]; then echo "error: missing parameter file $params"; false; fi &&
    python -m memlab.runner check "$nb" "$params" -p output_dir "$OUT" -p profile "$PROFILE" &&
    jupytext --to ipynb --output "$OUT/build/$name.ipynb" "$nb" &&
    papermill "$OUT/build/$name.ipynb" "$OUT/$name.ipynb" -f "$params" \
      -p output_dir "$OUT" -p profile "$PROFILE" --cwd "$ROOT" -k python3 --log-output --no-progress-bar &&
    jupyter nbconvert --to html --log-level WARN "$OUT/$name.ipynb" --output-dir "$OUT"
  } > "$log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then status=OK; else status=FAIL; FAILED=$((FAILED + 1)); fi
  printf '%-5s %6ss  log: %s\n' "$status" "$dt" "$log"
  record "$(printf '%s\t%s\t%s\t%s' "$name" "$status" "$dt" "$params")"
  if [ $rc -ne 0 ]; then
    grep -E "Error|error|Exception" "$log" | tail -n 3 | sed 's/^/    /'
  fi
done

echo
echo "Summary ($PROFILE, $(( $(date +%s) - T_ALL ))s total):"
awk -F'\t' '{ printf "  %-28s %-5s %6ss\n", $1, $2, $3 }' "$RUN_RESULTS"
echo "($RESULTS and $OUT/manifest.json list all $(wc -l < "$RESULTS") notebook(s) run with this profile.)"
if [ $FAILED -gt 0 ]; then
  echo "$FAILED notebook(s) failed; see the logs above."
  exit 1
fi
echo "All notebooks succeeded. Executed notebooks, HTML, figures and tables are in $OUT/."
