#!/usr/bin/env bash
# Create the project's virtualenv on first use, or reuse it, and install what memlab needs into it:
# the torch build that fits this machine, then memlab (editable) with its extras. A later call that finds
# everything installed for the current pyproject.toml returns at once. `make figures` and `make test` call it.
#
#   scripts/setup.sh [VENV]      default VENV: .venv
#
# Environment: PYTHON (the interpreter, default python3; needs 3.10+), MEMLAB_EXTRAS (default dev,dp,cluster),
# TORCH_INDEX_URL (a pip index for torch, e.g. https://download.pytorch.org/whl/cu126; default: chosen below),
# TORCH_SOURCE=pypi (take torch from the configured pip index even without a GPU: what CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PY="${PYTHON:-python3}"
EXTRAS="${MEMLAB_EXTRAS:-dev,dp,cluster}"
TORCH="torch==2.14.1 torchvision==0.29.1"   # the versions the project is tested with
STAMP="$VENV/.memlab-installed"
WANT="$(cksum < pyproject.toml | cut -d' ' -f1) extras=$EXTRAS"   # cksum: POSIX, on Linux and macOS alike

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import torch, memlab" 2>/dev/null; then
  exit 0
fi
if ! command -v "$PY" > /dev/null; then
  echo "error: no '$PY' found. Install Python 3.10 or newer, or set PYTHON=/path/to/python3." >&2; exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: memlab needs Python 3.10 or newer; '$PY' is $("$PY" -V 2>&1). Set PYTHON=/path/to/python3.x." >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtualenv $VENV"
  "$PY" -m venv "$VENV" || { echo "error: could not create $VENV (Debian/Ubuntu: apt install python3-venv)" >&2; exit 2; }
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip

if "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  echo "setup: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') already installed"
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
  echo "setup: installing torch from $TORCH_INDEX_URL"
  pip install -q $TORCH --index-url "$TORCH_INDEX_URL"
elif [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
  if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of torch (PyPI, several GB)"
    pip install -q $TORCH
  elif [ "${TORCH_SOURCE:-}" != pypi ] && "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/', timeout=5)" 2>/dev/null; then
    echo "setup: no NVIDIA GPU: installing the CPU build of torch (download.pytorch.org, about 200 MB)"
    pip install -q $TORCH --index-url https://download.pytorch.org/whl/cpu
  else
    echo "setup: no GPU and download.pytorch.org unreachable: installing torch from PyPI (the CUDA build; runs on the CPU)"
    pip install -q $TORCH
  fi
else
  echo "setup: installing torch for $(uname -s) $(uname -m) from PyPI (CPU / Apple MPS build)"
  pip install -q torch torchvision
fi

echo "setup: installing memlab with the extras [$EXTRAS]"
pip install -q -e ".[$EXTRAS]"
"$VENV/bin/python" -c "import torch, memlab; print(f'setup: ready: torch {torch.__version__}, memlab {memlab.__version__}, CUDA available: {torch.cuda.is_available()}')"
echo "$WANT" > "$STAMP"
