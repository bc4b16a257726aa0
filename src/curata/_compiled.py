"""The compiled core: the de-identification engine's modules compiled to C by Cython, from their own
Python source, unchanged.

Why (issue 10, item 9): the engine walks every element of every file in Python; compiled, the same
code de-identifies a small CT or MR about a fifth faster, with nothing to keep in step by hand (no
second implementation that could drift from the one the leak tests hold). Annotations are not used
as C types (``annotation_typing=False``), so the compiled module behaves as its source does: a
``bytes`` annotation that is handed a memoryview still works, as in Python.

A compiled module is loaded only where it was built from the very bytes of its ``.py`` file: each
is named after the SHA-256 of its source (``engine.<16 hex>.cpython-311-x86_64-linux-gnu.so``, a
name Python's own finder never loads), and :class:`_Finder` loads it for its module only while the
source's digest (with the build directives) still matches. An edited source is thus run as Python
until it is built again; a stale build is never run. ``CURATA_PURE_PYTHON=1`` turns the compiled core off.

``scripts/bootstrap.sh`` runs :func:`main` with ``build``: it builds what is missing and removes stale
builds; ``status`` says which modules run compiled.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_ROOT = Path(__file__).resolve().parent  # src/curata
# The engine's hot path: walking, reading, writing, matching, pseudonymising (small files spend most
# of their time here), then the index a received instance is filed by.
MODULES: tuple[str, ...] = (
    "curata.collect.deid._native",
    "curata.collect.deid._rawpath",
    "curata.collect.deid._reader",
    "curata.collect.deid._writer",
    "curata.collect.deid.engine",
    "curata.collect.deid.pseudonyms",
    "curata.collect.deid.text",
    "curata.collect.deid.calendars",
    "curata.collect.deid._readings",
    "curata.collect.deid._scripts",
    "curata.catalog.dicom_index",
)
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
DIRECTIVES = ("language_level=3", "annotation_typing=False", "binding=True")
_DISABLE = "CURATA_PURE_PYTHON"


def source_path(name: str) -> Path:
    """The ``.py`` file of a module of this package."""
    parts = name.split(".")
    assert parts[0] == "curata", name
    return PACKAGE_ROOT.joinpath(*parts[1:]).with_suffix(".py")


def digest(source: bytes) -> str:
    """What a build is named by: its source, and the directives it was compiled with (a build made
    under other directives is another build)."""
    return hashlib.sha256(source + repr(DIRECTIVES).encode()).hexdigest()[:16]


def build_path(name: str, source: bytes | None = None) -> Path:
    """Where the build of this module's current source lies (whether or not it exists)."""
    py = source_path(name)
    data = py.read_bytes() if source is None else source
    return py.with_name(f"{py.stem}.{digest(data)}{SUFFIX}")


def _builds(name: str) -> list[Path]:
    """Every build of this module, current or stale."""
    py = source_path(name)
    shape = re.compile(re.escape(py.stem) + r"\.[0-9a-f]{16}" + re.escape(SUFFIX))
    return sorted(p for p in py.parent.glob(f"{py.stem}.*{SUFFIX}") if shape.fullmatch(p.name))


def disabled() -> bool:
    return os.environ.get(_DISABLE, "").strip().lower() not in ("", "0", "false", "no")


class _Finder:
    """Loads a listed module from its build when the build matches the source; else lets Python
    import the source. A meta path finder needs only ``find_spec``: not deriving from
    ``importlib.abc.MetaPathFinder`` spares every command importing ``importlib.abc`` (and
    ``importlib.resources`` with it) at start; the build's tools are imported by ``build`` alone."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _LISTED:
            return None
        try:
            so = build_path(fullname)
        except OSError:
            return None
        if not so.is_file():
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        return importlib.util.spec_from_file_location(fullname, so, loader=loader)


_LISTED = frozenset(MODULES)
_FINDER = _Finder()


def install() -> None:
    """Put the finder first (once), unless ``CURATA_PURE_PYTHON`` is set."""
    if disabled() or any(f is _FINDER for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _FINDER)


def loaded_compiled(name: str) -> bool:
    """Whether ``name`` (imported now if need be) runs from its build."""
    module = importlib.import_module(name)
    return str(getattr(module, "__file__", "")).endswith(SUFFIX)


def build(modules: Sequence[str] = MODULES, jobs: int | None = None) -> list[str]:
    """Build the modules whose current source has no build (in a scratch copy of the package's
    folders, so that each gets its full dotted name), and remove stale builds. Returns the modules
    built; raises RuntimeError when Cython or the C compiler fails."""
    import shutil
    import subprocess
    import tempfile

    todo: list[tuple[str, bytes]] = []
    for name in modules:
        source = source_path(name).read_bytes()
        target = build_path(name, source)
        for old in _builds(name):
            if old != target:
                old.unlink(missing_ok=True)
        if not target.exists():
            todo.append((name, source))
    if not todo:
        return []
    with tempfile.TemporaryDirectory(prefix="curata-compile-") as tmp:
        root = Path(tmp)
        files = []
        for name, source in todo:
            parts = name.split(".")
            for depth in range(1, len(parts)):  # __init__.py files: cythonize names modules by them
                init = root.joinpath(*parts[:depth], "__init__.py")
                init.parent.mkdir(parents=True, exist_ok=True)
                init.touch()
            py = root.joinpath(*parts).with_suffix(".py")
            py.write_bytes(source)
            files.append(str(py))
        cmd = [
            sys.executable,
            "-m",
            "Cython.Build.Cythonize",
            "-i",
            "-q",
            "-j",
            str(jobs or os.cpu_count() or 1),
        ]
        for directive in DIRECTIVES:
            cmd += ["-X", directive]
        done = subprocess.run([*cmd, *files], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"cythonize failed: {(done.stderr or done.stdout).strip()[-800:]}")
        for name, source in todo:
            parts = name.split(".")
            built = root.joinpath(*parts[:-1], parts[-1] + SUFFIX)
            if not built.is_file():
                raise RuntimeError(f"cythonize did not build {name}")
            target = build_path(name, source)
            scratch = target.with_name(f".{target.name}.{os.getpid()}")
            shutil.copyfile(built, scratch)
            os.replace(scratch, target)
    return [name for name, _ in todo]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        try:
            built = build()
        except (RuntimeError, OSError) as exc:
            print(f"curata: the compiled core was not built: {exc}", file=sys.stderr)
            return 1
        print(f"curata: compiled core: {len(built)} module(s) built, {len(MODULES) - len(built)} up to date")
        return 0
    if command == "status":
        for name in MODULES:
            state = "compiled" if build_path(name).is_file() else "python (no build of this source)"
            print(f"{name}: {'python (CURATA_PURE_PYTHON)' if disabled() else state}")
        return 0
    print("usage: main(['build']) or main(['status'])", file=sys.stderr)
    return 2
