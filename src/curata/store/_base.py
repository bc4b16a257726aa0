from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from curata.errors import StoreError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def is_digest(value: str) -> bool:
    return bool(_DIGEST.match(value))


def check_digest(value: str) -> str:
    if not is_digest(value):
        raise StoreError(f"{value!r} is not a sha256 digest (64 lowercase hex characters)")
    return value


def shard(digest: str) -> str:
    """Relative location of a blob: two levels of 256-way sharding keep folders small."""
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


class BlobStore(ABC):
    """What every backend implements. Digests are lowercase hex sha256."""

    url: str

    @abstractmethod
    def put_bytes(self, data: bytes, *, digest: str | None = None) -> str:
        """Store ``data``; returns its sha256. ``digest``: the caller's sha256 of exactly these bytes
        (computed over the same object a moment before: the de-identifier's record), saving a pass."""

    @abstractmethod
    def put_file(self, path: Path) -> str: ...

    @abstractmethod
    def open(self, digest: str) -> BinaryIO: ...

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def size(self, digest: str) -> int: ...

    @abstractmethod
    def digests(self) -> Iterator[str]: ...

    @abstractmethod
    def delete(self, digest: str) -> None: ...

    def local_path(self, digest: str) -> Path | None:
        """A path on this machine holding the blob, where the backend has one (else None)."""
        return None

    def get_bytes(self, digest: str) -> bytes:
        with self.open(digest) as fh:
            return fh.read()

    def hash_of(self, digest: str) -> str:
        h = hashlib.sha256()
        with self.open(digest) as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def verify(self, expected: set[str] | None = None) -> VerifyReport:
        """Re-hash every blob; with ``expected`` (digests the catalog names), also report missing ones."""
        report = VerifyReport()
        present = set()
        for digest in self.digests():
            present.add(digest)
            report.checked += 1
            report.bytes += self.size(digest)
            if self.hash_of(digest) != digest:
                report.corrupt.append(digest)
        if expected is not None:
            report.missing = sorted(expected - present)
        report.corrupt.sort()
        return report

    def total_size(self) -> tuple[int, int]:
        count = size = 0
        for digest in self.digests():
            count += 1
            size += self.size(digest)
        return count, size
