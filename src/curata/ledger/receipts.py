"""One-entry receipts in the C2SP tlog-proof format (https://c2sp.org/tlog-proof), ``.tlog-proof`` files.

A receipt carries the entry (as its extra data), the entry's index, its inclusion proof and the signed
checkpoint, so a contributor or licensee can check offline, with ``verify_standalone.py`` alone, that
the log committed to that entry.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from curata.ledger.verify_standalone import PROOF_HEADER, parse_receipt, verify_receipt

if TYPE_CHECKING:
    from curata.ledger.log import InclusionProof

__all__ = ["make_receipt", "parse_receipt", "verify_receipt"]


def make_receipt(proof: InclusionProof, entry: bytes | None = None) -> bytes:
    lines = [PROOF_HEADER]
    if entry is not None:
        lines.append("extra " + base64.b64encode(entry).decode())
    lines.append(f"index {proof.index}")
    lines.extend(base64.b64encode(h).decode() for h in proof.hashes)
    return ("\n".join(lines) + "\n\n" + proof.checkpoint.note).encode()


def check_receipt(
    receipt: bytes | str, vkey: str, entry: bytes | None = None, witnesses: Sequence[str] = ()
) -> dict[str, Any]:
    text = receipt.decode() if isinstance(receipt, bytes) else receipt
    return verify_receipt(text, vkey, entry, witnesses)
