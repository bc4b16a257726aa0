from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from curata.errors import BlobNotFound, StoreError
from curata.store._base import CHUNK, BlobStore, check_digest, is_digest, shard


class FsspecStore(BlobStore):
    """The same layout on any fsspec file system (S3-compatible, GCS, memory...).

    Object stores give atomic whole-object puts, so a blob is uploaded under a temporary key and moved;
    on file systems where ``mv`` is a copy the content address still guarantees no torn blob is trusted:
    ``verify`` re-hashes.
    """

    def __init__(self, url: str, **storage_options: object) -> None:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec ships with dask
            raise StoreError(
                "the fsspec package is needed for remote stores", hint="pip install fsspec s3fs"
            ) from exc
        self.url = url.rstrip("/")
        self.fs, self._root = fsspec.core.url_to_fs(self.url, **storage_options)
        self._root = self._root.rstrip("/")

    def _key(self, digest: str) -> str:
        return f"{self._root}/sha256/{shard(check_digest(digest))}"

    def put_bytes(self, data: bytes, *, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        if self.fs.exists(key):
            return digest
        tmp = f"{self._root}/tmp/{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(tmp, key)
        return digest

    def put_file(self, path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        key = self._key(digest)
        if not self.fs.exists(key):
            tmp = f"{self._root}/tmp/{uuid.uuid4().hex}"
            self.fs.put_file(str(path), tmp)
            self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(tmp, key)
        return digest

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.fs.open(self._key(digest), "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(f"blob {digest} is not in the store at {self.url}") from exc

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._key(digest)))

    def size(self, digest: str) -> int:
        try:
            return int(self.fs.size(self._key(digest)))
        except FileNotFoundError as exc:
            raise BlobNotFound(f"blob {digest} is not in the store at {self.url}") from exc

    def digests(self) -> Iterator[str]:
        base = f"{self._root}/sha256"
        if not self.fs.exists(base):
            return
        for path in sorted(self.fs.find(base)):
            name = path.rsplit("/", 1)[-1]
            if is_digest(name):
                yield name

    def delete(self, digest: str) -> None:
        key = self._key(digest)
        if self.fs.exists(key):
            self.fs.rm(key)
