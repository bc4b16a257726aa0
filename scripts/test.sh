#!/usr/bin/env bash
# One command: install everything (Debian packages, Python packages, test tools), start what the
# integration tests talk to, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/bootstrap.sh dev,bench
bash scripts/postgres.sh
export CURATA_REQUIRE_POSTGRES=1
# The browser tests save their screenshots here (CI output; not in git).
export CURATA_SCREENSHOTS="${CURATA_SCREENSHOTS:-$PWD/.ci-output/screenshots}"
# Two workers on this 2-core machine; each test is isolated in its own tmp folder and database.
exec .venv/bin/python -m pytest -n "${CURATA_TEST_WORKERS:-2}" --timeout 600 "$@"
