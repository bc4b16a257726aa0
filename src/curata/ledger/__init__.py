"""The transparency log: an RFC 6962 Merkle log with C2SP signed checkpoints, tiles, witnesses and
receipts, plus the licences, usage events and revenue statements computed from it.

    from curata.ledger import Ledger
    ledger = Ledger.open(ws)
    entry = ledger.append("release", {"name": "lung-ct", "version": 1, "sites": {...}})
    ledger.checkpoint(); ledger.prove(entry.index); ledger.receipt(entry.index); ledger.verify()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.ledger.events import log_provenance
    from curata.ledger.service import (
        KINDS,
        Checkpoint,
        InclusionProof,
        Ledger,
        LedgerEntry,
        LedgerError,
        Verifier,
        VerifyReport,
        add_licence,
        statement,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "add_licence": "service",
        "statement": "service",
        "Verifier": "service",
        "Checkpoint": "service",
        "log_provenance": "events",
        "KINDS": "service",
        "InclusionProof": "service",
        "Ledger": "service",
        "LedgerEntry": "service",
        "LedgerError": "service",
        "VerifyReport": "service",
    },
)

__all__ = [
    "KINDS",
    "Checkpoint",
    "InclusionProof",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "Verifier",
    "VerifyReport",
    "add_licence",
    "log_provenance",
    "statement",
]
