"""Fault-injection points for the crash-consistency tests.

``CURATA_FAULT=<point>[,<point>...]`` makes the process SIGKILL itself when it reaches a named
point (``CURATA_FAULT_AFTER=N`` lets N hits pass first). Unset (the normal case) a point costs one
dictionary lookup. Points: ingest.after_blob, ingest.before_commit, ingest.after_commit,
release.after_catalog, release.after_log, ledger.mid_append, and the gateway's group commit:
gateway.before_durable (a blob staged, not named: fsynced, or in the spool's drain not yet), gateway.before_commit (blobs named
and durable, rows not committed), gateway.after_commit (rows committed, senders not answered yet).
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get("CURATA_FAULT")
    if not wanted or name not in wanted.split(","):
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] > int(os.environ.get("CURATA_FAULT_AFTER", "0") or 0):
        os.kill(os.getpid(), signal.SIGKILL)
