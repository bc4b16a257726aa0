"""Helpers shared by the benchmarks: timing, core counts, free ports, atomic JSON, ratio tables."""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 200)


def cores() -> int:
    """CPU cores this process may use (the container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t["seconds"]`` (wall) and ``t["cpu"]``: CPU seconds of this
    process and of the children it waited for meanwhile (a pool's workers still running are not
    counted; a server in another process is not)."""
    box: dict[str, float] = {}
    start, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start
        box["cpu"] = cpu_seconds() - cpu


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_json(path: Path, data: Any) -> None:
    """Atomic write: temp file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rate(count: float, seconds: float | None) -> float | None:
    return None if not seconds else count / seconds


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_ratio_table(
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    reference: str,
    columns: Sequence[tuple[str, str]],
    ratio_of: Sequence[str] = (),
) -> None:
    """A table of ``columns`` (key, header); each key in ``ratio_of`` also gets a ratio to ``reference``."""
    ref_row = next((r for r in rows if r.get("tool") == reference), {})
    table = Table(title=title)
    for key, header in columns:
        table.add_column(header, justify="left" if key in ("tool", "status") else "right")
        if key in ratio_of:
            table.add_column(f"vs {reference}", justify="right")
    for row in rows:
        cells = []
        for key, _ in columns:
            cells.append(fmt(row.get(key)))
            if key in ratio_of:
                cells.append(ratio(row.get(key), ref_row.get(key)))
        table.add_row(*cells)
    console.print(table)
