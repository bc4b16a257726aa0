"""Catalog provenance into the log: every de-identification, ingest, QC decision and processing step.

Stages record their work as catalog ``Provenance`` rows and never call the ledger themselves;
``log_provenance`` appends an entry for each row not logged yet. The entry holds only digests:
the provenance key, the step, the input and output digests (sha256 hex), the code version and a digest
of the parameters, and the output's flags and counts (a QC verdict's ``passed``). Any other value is replaced by a salted commitment (or dropped
where the site secret is missing), so no pseudonym or identifier reaches the log in the clear.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from curata.catalog.models import Provenance
from curata.ledger.log import Ledger

if TYPE_CHECKING:
    from curata.workspace import Workspace

_HEX64 = re.compile(r"[0-9a-f]{64}")


def kind_for_step(step: str) -> str:
    s = step.lower()
    if s.startswith("deid"):
        return "deid"
    if s.startswith("ingest"):
        return "ingest"
    if s.startswith(("qc", "select", "exclu")):
        return "qc-decision"
    if s.startswith("withdraw"):
        return "withdrawal"
    return "provenance"


def _digests(value: Any, ledger: Ledger) -> list[str]:
    """The sha256 digests in ``value``; other strings as salted commitments."""
    out: list[str] = []
    if isinstance(value, dict):
        for v in value.values():
            out.extend(_digests(v, ledger))
    elif isinstance(value, list | tuple):
        for v in value:
            out.extend(_digests(v, ledger))
    elif isinstance(value, str) and value:
        if _HEX64.fullmatch(value):
            out.append(value)
        elif ledger._commitment_key is not None:
            out.append(ledger.commit(value))
    return out


def provenance_payload(row: Provenance, ledger: Ledger) -> dict[str, Any]:
    params = json.dumps(row.parameters, sort_keys=True, separators=(",", ":"), default=str)
    output = row.output or {}
    return {
        "provenance_key": row.key,
        "step": row.step,
        "inputs": _digests(row.inputs, ledger),
        "outputs": sorted(set(_digests({k: v for k, v in output.items() if k != "record"}, ledger))),
        "parameters_sha256": hashlib.sha256(params.encode()).hexdigest(),
        "record_sha256": hashlib.sha256(
            json.dumps(output.get("record"), sort_keys=True, default=str).encode()
        ).hexdigest()
        if output.get("record") is not None
        else None,
        "code_version": row.code_version,
        # flags and counts (a QC verdict's passed/warned, a cohort's size) say nothing about a patient
        "values": {
            k: v for k, v in sorted(output.items()) if isinstance(v, bool | int | float) and k != "record"
        },
    }


def logged_provenance_keys(ledger: Ledger) -> set[str]:
    keys = set()
    for e in ledger.entries():
        key = e.payload.get("provenance_key")
        if isinstance(key, str):
            keys.add(key)
    return keys


def log_provenance(ws: Workspace, session: Session | None = None, *, batch: int = 1000) -> int:
    """Append a ledger entry for every Provenance row not logged yet; returns how many were appended."""
    ledger = Ledger.open(ws)
    done = logged_provenance_keys(ledger)

    def run(s: Session) -> int:
        appended = 0
        pending: list[tuple[str, dict[str, Any]]] = []
        for row in s.scalars(select(Provenance).order_by(Provenance.id)):
            if row.key in done:
                continue
            pending.append((kind_for_step(row.step), provenance_payload(row, ledger)))
            done.add(row.key)
            if len(pending) >= batch:
                appended += len(ledger.append_many(pending))
                pending = []
        if pending:
            appended += len(ledger.append_many(pending))
        return appended

    if session is not None:
        return run(session)
    with ws.catalog.session() as s:
        return run(s)
