"""The house rules, checked on every test run: the import contract (import-linter) and the types (mypy).

A stage that imports another stage's module rather than its ``__init__``, a private ``_module`` used
from outside its package, or a foundation module (errors, settings, _io, rfc6962, console, runtime)
that imports a stage fails here, and so does any mypy error. docs/architecture.md explains the rules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_the_import_contract_holds() -> None:
    out = _run(str(BIN / "lint-imports"), "--no-cache")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_mypy_reports_no_error() -> None:
    out = _run(sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"))
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "Success: no issues found" in out.stdout


def test_no_import_error_fallback_on_curata_code() -> None:
    """`except ImportError` may guard an optional third-party package, never Curata's own modules."""
    offenders = []
    for path in (ROOT / "src" / "curata").rglob("*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "except ImportError" in line:
                guarded = "\n".join(lines[max(0, i - 6) : i])
                if "from curata" in guarded or "import curata" in guarded:
                    offenders.append(f"{path.relative_to(ROOT)}:{i + 1}")
    allowed = {"src/curata/publish/verify_release.py"}  # runs outside Curata in an export (suppress)
    assert [o for o in offenders if o.split(":")[0] not in allowed] == []
