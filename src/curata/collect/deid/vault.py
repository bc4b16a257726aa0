"""The site's re-identification vault: pseudonym -> original, encrypted, append-only, multi-process safe.

One file per vault folder (``reid.vault``); each line is one AES-256-GCM sealed JSON record
(``base64(nonce || ciphertext)``). The key is derived from the site secret with HKDF-SHA256, so the
vault opens only with the same key file. Appends take an exclusive ``flock`` and write a whole line
with one ``write`` on an ``O_APPEND`` descriptor, so several worker processes never interleave.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from curata.errors import KeyFileError

VAULT_FILE = "reid.vault"
_AAD = b"curata-reid-vault-v1"


def _derive(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"curata vault v1").derive(key)


class Vault:
    """Append-only encrypted store of re-identification records, kept on site beside the key."""

    def __init__(self, folder: Path, key: bytes) -> None:
        self.folder = Path(folder)
        self.path = self.folder / VAULT_FILE
        self._aead = AESGCM(_derive(key))
        self._seen: set[str] = set()  # records this process already appended

    def _seal(self, record: dict[str, Any]) -> bytes:
        nonce = secrets.token_bytes(12)
        blob = self._aead.encrypt(nonce, json.dumps(record, sort_keys=True).encode(), _AAD)
        return base64.b64encode(nonce + blob) + b"\n"

    def append(self, records: list[dict[str, Any]]) -> int:
        """Append records not yet written by this process; returns how many were written."""
        fresh = []
        for rec in records:
            ident = json.dumps(rec, sort_keys=True)
            if ident not in self._seen:
                self._seen.add(ident)
                fresh.append(rec)
        if not fresh:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = b"".join(self._seal(r) for r in fresh)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)  # closing releases the lock
        return len(fresh)

    def sync(self) -> None:
        """fsync the vault file (call at the end of a batch)."""
        if self.path.exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, decrypted; a wrong key raises KeyFileError."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                raw = base64.b64decode(line)
                try:
                    plain = self._aead.decrypt(raw[:12], raw[12:], _AAD)
                except InvalidTag as exc:
                    raise KeyFileError(
                        f"vault {self.path} line {n} does not open with this key",
                        hint="use the site key file this vault was written with",
                    ) from exc
                yield json.loads(plain)

    def lookup(self, pseudonym: str) -> list[dict[str, Any]]:
        """Records for one patient pseudonym (deduplicated)."""
        seen: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            if rec.get("pseudonym") == pseudonym:
                seen[json.dumps(rec, sort_keys=True)] = rec
        return list(seen.values())
