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

import re
from pathlib import Path

from curata._io import sweep_stale

_STAGED = re.compile(r"\.[0-9]+(?:\.[0-9]+)*\.dcm\.([0-9]+)\.[0-9]+\.tmp")
_REPORT = re.compile(r"\.deid-report\.json\.([0-9]+)\.[0-9a-f]{8}\.tmp")


def sweep(folder: Path, started: float, *, report: bool = False) -> int:
    """Remove the stale temporary files of ``folder`` (not of its sub-folders); ``report``: the
    report's too (OUTPUT itself). Returns how many were removed."""
    return sweep_stale(folder, started, (_STAGED, _REPORT) if report else (_STAGED,))
