#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs Curata into it. Used by both README commands.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "curata: Python 3.11 or newer is needed" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
if [ -n "$EXTRAS" ]; then
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
else
  .venv/bin/python -m pip install -q -e .
fi
# Curata's own bytecode, as pip writes it for an installed package: an editable install has none, and
# where PYTHONDONTWRITEBYTECODE is set nothing writes it later, so every command compiled its modules
# from source again (about 0.04 CPU-second of each `curata deid`). A stale file is never used: Python
# checks it against its source's time and size.
.venv/bin/python -m compileall -q src/curata >/dev/null || echo "curata: bytecode not written (read-only checkout?)" >&2
# The engine's compiled core (Cython, from the same Python source; see src/curata/_compiled.py)
.venv/bin/python -c 'import sys; from curata._compiled import main; sys.exit(main(["build"]))' \
  || echo "curata: the compiled engine core was not built (Cython or a C compiler missing?); the engine runs as Python" >&2
# The gateway's dcmtk front end (curata-spool-scp, C++ on dcmtk's libraries: libdcmtk-dev, g++), into .venv/bin
.venv/bin/python -c 'from curata.collect.net.spool import ensure_binary; ensure_binary()' \
  || echo "curata: the dcmtk gateway front end was not built (libdcmtk-dev or g++ missing?); the python front end works without it" >&2
# The OHIF viewer served by `curata serve` (outside git, in .ohif/); the platform runs without it.
bash scripts/ohif.sh || echo "curata: the OHIF viewer was not installed (npm missing?); curata serve runs without it" >&2
