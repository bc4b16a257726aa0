"""Temporary files a killed ``curata deid`` run left in OUTPUT, removed by the next run.

A batch stages each output as ``.<sop uid>.dcm.<pid>.<n>.tmp`` beside its final name, and the report
as ``.deid-report.json.<pid>.<8 hex>.tmp``; a run killed before it names or removes them leaves them
behind, hidden, and nothing else would ever remove them. A file is removed only when all of these
hold: its name is exactly one of those two patterns (never a file this tool did not make), it is a
plain file (not a link), it was last written before this run started, and its writer is gone (no
process of that pid here, or the pid is the sweeping process's own: reused, since a worker sweeps a
folder before it writes there). A writer still alive (a concurrent run, a killed run's worker still
finishing its chunk) keeps its files. A run on another host writing into the same OUTPUT is not
seen by the pid test; its files are then kept only when written after this run started.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

_STAGED = re.compile(r"\.[0-9]+(?:\.[0-9]+)*\.dcm\.([0-9]+)\.[0-9]+\.tmp")
_REPORT = re.compile(r"\.deid-report\.json\.([0-9]+)\.[0-9a-f]{8}\.tmp")


def sweep(folder: Path, started: float, *, report: bool = False) -> int:
    """Remove the stale temporary files of ``folder`` (not of its sub-folders); ``report``: the
    report's too (OUTPUT itself). Returns how many were removed."""
    removed = 0
    alive: dict[int, bool] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _STAGED.fullmatch(entry.name) or (report and _REPORT.fullmatch(entry.name))
        if not match:
            continue
        pid = int(match.group(1))
        if pid != os.getpid():
            if pid not in alive:
                alive[pid] = _alive(pid)
            if alive[pid]:
                continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_mtime >= started:
                continue
        except OSError:
            continue
        with contextlib.suppress(OSError):  # another worker swept it first; or not ours to remove
            os.unlink(entry.path)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether a process of that id exists here (one we may not signal exists too)."""
    if pid <= 0:  # no writer's pid (0 would signal our own process group): kept
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists under another user, or not a pid we can judge: kept
    return True
