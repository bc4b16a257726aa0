"""The site's re-identification vault: pseudonym -> original, encrypted, append-only, multi-process safe.

One file per vault folder (``reid.vault``); each line is one AES-256-GCM sealed JSON record
(``base64(nonce || ciphertext)``). The key is derived from the site secret with HKDF-SHA256, so the
vault opens only with the same key file. Appends take an exclusive ``flock`` and write a whole line
with one ``write`` on an ``O_APPEND`` descriptor, so several worker processes never interleave.
"""

from __future__ import annotations

import base64
import binascii
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

from curata.errors import KeyFileError, VaultError

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
        self._folder_ready = False  # made (0700) by this process: not asked again per append
        # where this process's last line ends in the vault file, and its last bytes (sealed under a
        # random nonce, found nowhere else): the file only grows, so they stay where they were
        self._last: tuple[int, bytes] | None = None

    def _seal(self, record: dict[str, Any]) -> bytes:
        nonce = secrets.token_bytes(12)
        blob = self._aead.encrypt(nonce, json.dumps(record, sort_keys=True).encode(), _AAD)
        return base64.b64encode(nonce + blob) + b"\n"

    def append(self, records: list[dict[str, Any]]) -> int:
        """Append records not yet written by this process; returns how many were written.

        Raises VaultError where the folder or the file this process wrote to is gone, replaced or
        cut short since (removed during a run): records written before would be lost unseen, so the
        caller must not release the file. A record counts as written only once its line is."""
        fresh: dict[str, dict[str, Any]] = {}
        for rec in records:
            ident = json.dumps(rec, sort_keys=True)
            if ident not in self._seen:
                fresh.setdefault(ident, rec)
        if not fresh:
            return 0
        if not self._folder_ready:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.stat(self.folder).st_mode & 0o077:
                os.chmod(self.folder, 0o700)
            self._folder_ready = True
        data = b"".join(self._seal(r) for r in fresh.values())
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError as exc:  # made by this process, so removed since
            raise self._gone("folder") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            end = os.fstat(fd).st_size
            if self._last is not None and os.pread(fd, len(self._last[1]), self._last[0]) != self._last[1]:
                raise self._gone("file")  # a new file (its inode may be the old one's, reused)
            if end and os.pread(fd, 1, end - 1) != b"\n":
                # an earlier append was cut short (disk full, kill): start on a line of our own,
                # so the torn line stays alone and is skipped by records()
                data = b"\n" + data
            # a partial write (OSError) leaves a torn last line; readers skip it, and the next
            # append starts on a fresh line. The records are not written: the caller's error says why.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._last = (end + len(data) - 32, data[-32:])
        finally:
            os.close(fd)  # closing releases the lock
        self._seen.update(fresh)
        return len(fresh)

    def _gone(self, what: str) -> VaultError:
        return VaultError(
            f"the vault {what} {self.folder if what == 'folder' else self.path} was removed or"
            " replaced while this process wrote to it: the records written before are not there,"
            " so nothing more is released",
            hint="put the vault back (from a backup) and run again: finished files are kept, and"
            " a run writes the vault records of every file it meets again",
        )

    def sync(self) -> None:
        """fsync the vault file (call at the end of a batch)."""
        if self.path.exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    damaged: int = 0  # torn or damaged lines skipped by the last records() pass

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, decrypted; a wrong key raises KeyFileError.

        A line torn by a crash or a full disk (cut short, or not base64) is skipped and counted in
        ``damaged``: one bad line never makes the whole vault unreadable. A line that is whole but
        does not decrypt means the wrong key when nothing before it opened either."""
        self.damaged = 0
        if not self.path.exists():
            return
        opened = 0
        with open(self.path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    raw = base64.b64decode(line, validate=True)
                except (binascii.Error, ValueError):
                    self.damaged += 1
                    continue
                if len(raw) < 12 + 16:
                    self.damaged += 1
                    continue
                try:
                    plain = self._aead.decrypt(raw[:12], raw[12:], _AAD)
                except InvalidTag as exc:
                    if opened == 0:
                        raise KeyFileError(
                            f"vault {self.path} line {n} does not open with this key",
                            hint="use the site key file this vault was written with",
                        ) from exc
                    self.damaged += 1
                    continue
                opened += 1
                yield json.loads(plain)

    def lookup(self, pseudonym: str) -> list[dict[str, Any]]:
        """Records for one patient pseudonym (deduplicated)."""
        seen: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            if rec.get("pseudonym") == pseudonym:
                seen[json.dumps(rec, sort_keys=True)] = rec
        return list(seen.values())
