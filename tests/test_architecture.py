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


# -- the rooms of a stage (docs/architecture.md "The rooms of a stage") ----------------------------------
import ast  # noqa: E402

SRC = ROOT / "src" / "curata"
STAGES = (
    "annotate",
    "catalog",
    "collect",
    "demo",
    "ledger",
    "preprocess",
    "publish",
    "select",
    "server",
    "store",
)
# Rooms a stage does not have yet, with the reason. The list only shrinks: a room that appears must be
# taken off it (the test below fails on a stale line), so the debt stays visible and never grows.
MISSING_ROOMS: dict[tuple[str, str], str] = {
    (
        "collect",
        "service.py",
    ): "its services live per sub-package (deid, net, wsi, clinical) and in ingest.py",
    ("demo", "service.py"): "runner.run_demo is the demo's one service; the full-demo work owns it",
    ("store", "service.py"): "a library of backends (local, fsspec) used through curata.store.open_store",
    ("store", "cli.py"): "`curata store verify` is a catalog command (it checks catalog against store)",
}
# What a service module may not do: print or draw (the CLI renders its records through cli_common.finish).
DRAWING_NAMES = {"console", "err_console", "print_json", "print_table", "make_progress"}
DRAWING_IMPORTS = DRAWING_NAMES | {"status", "track"}  # curata.console's, imported under these names


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _defines(tree: ast.Module, what: str) -> bool:
    """Whether a module declares tables (``__tablename__``) or routes (an ``APIRouter(...)``)."""
    for node in ast.walk(tree):
        if what == "tables" and isinstance(node, ast.Name) and node.id == "__tablename__":
            return True
        if what == "routes" and isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "APIRouter":
                return True
    return False


def test_every_stage_has_its_rooms() -> None:
    problems = []
    for stage in STAGES:
        folder = SRC / stage
        modules = list(folder.rglob("*.py"))
        trees = {p: _tree(p) for p in modules}
        for room in ("service.py", "cli.py"):
            exists = (folder / room).is_file()
            if not exists and (stage, room) not in MISSING_ROOMS:
                problems.append(f"{stage}/ has no {room}")
            if exists and (stage, room) in MISSING_ROOMS:
                problems.append(f"{stage}/{room} exists: take it off MISSING_ROOMS")
        # its tables live in models.py (a sub-package, collect/wsi, collect/net..., in its own models.py)
        for p in (p for p, t in trees.items() if _defines(t, "tables")):
            if p.name != "models.py":
                problems.append(f"{p.relative_to(SRC)} declares tables outside a models.py")
        routes = [p for p, t in trees.items() if _defines(t, "routes")]
        if routes and not (folder / "router.py").is_file():
            problems.append(f"{stage}/ declares routes ({routes[0].name}) but has no router.py")
    assert problems == []


def test_services_never_print() -> None:
    """No service module prints or draws: it returns records, and the CLI renders them."""
    offenders = []
    for path in sorted(SRC.rglob("service.py")):
        for node in ast.walk(_tree(path)):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{where} print()")
            elif isinstance(node, ast.Name) and node.id in DRAWING_NAMES:
                offenders.append(f"{where} {node.id}")
            elif isinstance(node, ast.Attribute) and node.attr in {"stdout", "stderr"}:
                offenders.append(f"{where} sys.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rich":
                offenders.append(f"{where} imports rich")
            elif isinstance(node, ast.ImportFrom) and node.module == "curata.console":
                offenders += [f"{where} imports {a.name}" for a in node.names if a.name in DRAWING_IMPORTS]
    assert offenders == []


def test_every_cli_registers_commands_the_same_way() -> None:
    """A stage's command faces (``cli.py``, ``*_cli.py``): module-level Typer groups, ``register(app)``
    the only entry point, and ``--workspace`` only from ``curata.cli_common``."""
    problems = []
    faces = [p for p in SRC.rglob("*.py") if p.name == "cli.py" or p.name.endswith("_cli.py")]
    for path in sorted(p for p in faces if p != SRC / "cli.py"):
        tree = _tree(path)
        where = path.relative_to(SRC)
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        register = functions.get("register")
        if register is None or [a.arg for a in register.args.args] != ["app"]:
            problems.append(f"{where}: no register(app)")
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(fn):
                func = node.func if isinstance(node, ast.Call) else None
                if isinstance(func, ast.Attribute) and func.attr == "Typer":
                    problems.append(f"{where}:{func.lineno}: a Typer group built inside {fn.name}()")
        if '"--workspace"' in path.read_text():
            problems.append(f"{where}: declares --workspace itself (use cli_common.WorkspaceOpt)")
    assert problems == []


def test_every_setting_is_read_in_one_place() -> None:
    """``settings.<section>.<field>`` is read in one place (an accessor, a service's constructor); every
    other use goes through that place (ws.database_url, ws.workers(), Ingestor, GatewayConfig...)."""
    import re

    from curata.settings import Settings

    texts = {p: p.read_text() for p in SRC.rglob("*.py") if p.name != "settings.py"}
    readers: dict[str, list[str]] = {}
    for section, info in Settings.model_fields.items():
        for field in getattr(info.annotation, "model_fields", {}):
            pattern = re.compile(rf"settings\.{section}\.{field}\b")
            readers[f"{section}.{field}"] = sorted(
                {
                    f"{p.relative_to(SRC)}:{text[: m.start()].count(chr(10)) + 1}"
                    for p, text in texts.items()
                    for m in pattern.finditer(text)
                }
            )
    assert {k: v for k, v in readers.items() if len(v) > 1} == {}
