#!/usr/bin/env bash
# One command: install Curata into .venv and run the end-to-end demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/bootstrap.sh
exec .venv/bin/curata demo "$@"
