"""The ledger service, the stage's public typed API: the transparency log (``Ledger``: append, checkpoint,
prove, receipt, verify) and the licences and revenue statements computed from it. Every call returns a
record (``LedgerEntry``, ``InclusionProof``, ``VerifyReport``, ``Statement``...); none prints. The CLI, the
server, publish and the demo use these.

The work itself lives in ``log.py`` (the Merkle log), ``checkpoint.py`` / ``note.py`` (signed
checkpoints), ``witness.py``, ``tiles.py``, ``receipts.py`` and ``revenue.py``. ``log_provenance``
(``events.py``) is exported by ``curata.ledger`` directly: it imports the catalog, which this light
module does not.
"""

from __future__ import annotations

from curata.ledger.checkpoint import Checkpoint
from curata.ledger.log import KINDS, InclusionProof, Ledger, LedgerEntry, LedgerError, VerifyReport
from curata.ledger.note import Verifier
from curata.ledger.revenue import add_licence, statement

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
    "statement",
]
