"""Content-addressed blob store: every object is named by the sha256 of its bytes.

``open_store(url)`` picks the backend: a local folder (the default) or any fsspec file system
(``s3://bucket/prefix``, ``memory://``...). Objects are immutable; writing the same bytes twice
stores them once.
"""

from __future__ import annotations

from curata.store._base import BlobStore, VerifyReport, is_digest
from curata.store._fsspec import FsspecStore
from curata.store._local import LocalStore

__all__ = ["BlobStore", "FsspecStore", "LocalStore", "VerifyReport", "is_digest", "open_store"]


def open_store(url: str) -> BlobStore:
    """Open the store at ``url``: a plain path or ``file://`` is local, other schemes go through fsspec."""
    if "://" not in url or url.startswith("file://"):
        return LocalStore(url.removeprefix("file://"))
    return FsspecStore(url)
