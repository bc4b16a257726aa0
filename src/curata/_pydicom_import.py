"""pydicom imported without what a curata process never uses of it.

``import pydicom`` costs about 0.3 CPU-second, a sixth of a ``curata deid`` run over a thousand small
files. Of it (``-X importtime``, 2026-12-06):

- ``pydicom.data.download`` imports ``requests`` (with ``urllib3``, ``charset_normalizer``,
  ``idna``, ``certifi``) and ``tqdm`` to fetch pydicom's own test files over the network, which no
  curata process does: about 0.05-0.07 s;
- pylibjpeg's plugin look-up reads the entry points of every installed distribution once per
  entry-point group, three times over (pydicom's old handler, its decoders and its encoders): about
  0.01-0.02 s.

``install()`` (the ``curata`` command, the gateway's drain processes) makes the first ``import
pydicom`` of the process run with ``requests`` and ``tqdm`` unavailable (``pydicom.data`` then
reports ``HAVE_REQUESTS = False``, which only matters to ``pydicom.data.get_testdata_file`` for a
file it would download) and with the installed entry points read once. Both are restored as soon as
pydicom is imported: a later ``import requests`` by anything else imports it as usual. Library code
and the tests never call it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.machinery
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

_UNUSED = ("requests", "tqdm")  # imported by pydicom.data.download only, for pydicom's test files


@contextlib.contextmanager
def _without(names: tuple[str, ...]) -> Iterator[None]:
    """``import NAME`` raises ImportError inside; the modules as they were after."""
    blocked = [name for name in names if name not in sys.modules]  # one already in stays as it is
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not available"
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                sys.modules.pop(name, None)


@contextlib.contextmanager
def _entry_points_read_once() -> Iterator[None]:
    """``importlib.metadata.entry_points`` answered from one reading of every distribution."""
    import importlib.metadata  # pylibjpeg imports it in any case

    real = importlib.metadata.entry_points
    read: list[Any] = []

    def entry_points(**params: Any) -> Any:
        if not read:
            read.append(real())
        return read[0].select(**params) if params else read[0]

    importlib.metadata.entry_points = entry_points  # type: ignore[assignment]
    try:
        yield
    finally:
        importlib.metadata.entry_points = real  # type: ignore[assignment]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """What an import makes (modules, classes, functions, tables) lives as long as the process: the
    cycle collector, run every 700 allocations, walks it again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Loader:  # not importlib.abc's classes: importing that module costs more than this saves
    def __init__(self, real: Any) -> None:
        self._real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._real.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        with _without(_UNUSED), _entry_points_read_once(), _collector_paused():
            self._real.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the real loader's
        return getattr(self._real, name)


class _Finder:
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "pydicom":
            return None
        _remove()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)  # type: ignore[assignment]  # a Loader by its methods
        return spec


def _remove() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def install() -> None:
    """Import pydicom leanly when this process first imports it (nothing if it has already)."""
    if "pydicom" not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
