#!/usr/bin/env bash
# One command: install Curata into .venv, run the end-to-end demo on the embedded defaults, then start
# the platform on it (Ctrl-C stops it; `curata demo --serve-only` starts it again without re-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/bootstrap.sh
exec .venv/bin/curata demo --serve "$@"
