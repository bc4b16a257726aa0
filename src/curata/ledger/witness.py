"""A witness: a hospital-run cosigner that vouches a log never forked or rewrote its past.

The witness remembers, per log, the last checkpoint it cosigned. It cosigns a new checkpoint only if
the log's signature verifies and a consistency proof shows the new tree extends the remembered one;
otherwise it refuses, and the log operator cannot hide a rewritten history from anyone relying on
the witness. Cosignatures follow C2SP tlog-cosignature (Ed25519, type 0x04, timestamped).

Folder layout: ``witness.key`` (0600, its signing key), ``witness.vkey``, ``logs/<origin>.json``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from curata.errors import CurataError, KeyFileError
from curata.ledger.checkpoint import Checkpoint, CheckpointError
from curata.ledger.merkle import ProofError, verify_consistency
from curata.ledger.note import ALG_COSIGNATURE_V1, Signer, Verifier
from curata.ledger.tiles import write_atomic

if TYPE_CHECKING:
    from curata.ledger.log import Ledger


class WitnessRefusal(CurataError):
    """The witness will not cosign: bad signature, or a checkpoint inconsistent with what it saw."""


@dataclass(frozen=True)
class SeenHead:
    origin: str
    size: int
    root_hash: bytes
    log_vkey: str


class Witness:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        key = folder / "witness.key"
        if not key.exists():
            raise KeyFileError(
                f"{folder} is not a witness", hint=f"run `curata ledger witness init {folder}`"
            )
        self.signer = Signer.from_skey(key.read_text())
        if self.signer.alg != ALG_COSIGNATURE_V1:
            raise KeyFileError(f"{key} is not a cosignature key")

    @classmethod
    def init(cls, folder: Path, name: str) -> Witness:
        folder.mkdir(parents=True, exist_ok=True)
        key = folder / "witness.key"
        if not key.exists():
            signer = Signer.generate(name, ALG_COSIGNATURE_V1)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(signer.to_skey() + "\n")
            write_atomic(folder / "witness.vkey", (signer.verifier.vkey + "\n").encode())
        return cls(folder)

    @property
    def name(self) -> str:
        return self.signer.name

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey

    def _state_path(self, origin: str) -> Path:
        return self.folder / "logs" / (re.sub(r"[^A-Za-z0-9._-]", "_", origin) + ".json")

    def last_seen(self, origin: str) -> SeenHead | None:
        path = self._state_path(origin)
        if not path.exists():
            return None
        d = json.loads(path.read_text())
        return SeenHead(d["origin"], d["size"], base64.b64decode(d["root"]), d["log_vkey"])

    def cosign(self, note: str, log_vkey: str, proof: list[bytes], *, timestamp: int | None = None) -> str:
        """Return a cosignature line for the signed checkpoint ``note``, or raise WitnessRefusal."""
        try:
            verifier = Verifier.from_vkey(log_vkey)
            cp = Checkpoint.from_note(note, [verifier], origin=verifier.name)
        except (CheckpointError, ValueError) as exc:
            raise WitnessRefusal(f"refused: the checkpoint's log signature does not verify: {exc}") from exc
        seen = self.last_seen(cp.origin)
        if seen is not None:
            if seen.log_vkey != log_vkey:
                raise WitnessRefusal(f"refused: log {cp.origin} changed its key since the last checkpoint")
            try:
                verify_consistency(seen.size, cp.size, seen.root_hash, cp.root_hash, proof)
            except ProofError as exc:
                raise WitnessRefusal(
                    f"refused: checkpoint of size {cp.size} is inconsistent with the size {seen.size} "
                    f"this witness saw for {cp.origin}: {exc}",
                    hint="the log was rewritten or forked; keep both checkpoints as evidence",
                ) from exc
        if seen is None or cp.size > seen.size:
            state = {
                "origin": cp.origin,
                "size": cp.size,
                "root": base64.b64encode(cp.root_hash).decode(),
                "log_vkey": log_vkey,
            }
            write_atomic(self._state_path(cp.origin), json.dumps(state, indent=1).encode())
        ts = int(_time.time()) if timestamp is None else timestamp
        return self.signer.signature_line(cp.text.encode(), timestamp=ts)


def witness_checkpoint(ledger: Ledger, witness: Witness) -> Checkpoint:
    """Have ``witness`` cosign the ledger's latest checkpoint and store the cosignature with it."""
    cp = ledger.checkpoint()
    seen = witness.last_seen(cp.origin)
    proof = []
    if seen is not None and seen.size <= cp.size:
        proof = ledger.consistency(seen.size, cp.size)
    line = witness.cosign(cp.note, ledger.verifier.vkey, proof)
    return ledger.add_cosignature(cp.note + line)
