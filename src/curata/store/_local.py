from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from curata._io import fsync_dir, fsync_file, sync_filesystem
from curata.errors import BlobNotFound, StoreError
from curata.store._base import CHUNK, BlobStore, check_digest, is_digest, shard


class LocalStore(BlobStore):
    """Blobs under ``root/sha256/ab/cd/<digest>``, written to ``root/tmp`` then renamed into place.

    A crash at any moment leaves either no blob or the whole blob under its name; stray temp files are
    swept on open. Several processes may write at once: rename is atomic and the content is the name.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._objects = self.root / "sha256"
        self._tmp = self.root / "tmp"
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}") from exc

    def _path(self, digest: str) -> Path:
        return self._objects / shard(check_digest(digest))

    def local_path(self, digest: str) -> Path | None:
        path = self._path(digest)
        return path if path.exists() else None

    def _commit(self, tmp: Path, digest: str) -> str:
        final = self._path(digest)
        if final.exists():
            tmp.unlink(missing_ok=True)
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return digest

    def _tempfile(self) -> tuple[int, Path]:
        import tempfile

        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        return fd, Path(name)

    def put_bytes(self, data: bytes, *, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        if self._path(digest).exists():
            return digest
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return self._commit(tmp, digest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write a blob into {self.root}: {exc.strerror}") from exc

    def stage_bytes(
        self, data: bytes, *, digest: str | None = None, sync: bool = True, over: Path | None = None
    ) -> tuple[str, Path | None]:
        """Write and fsync ``data`` under the temp folder, *without* giving it its name, for a writer
        that names many blobs at once (:meth:`commit_staged`): ``(digest, temp path)``, or ``(digest,
        None)`` when the blob is already stored (a final name only ever appears after its bytes were
        fsynced). The data flush runs here, in each caller's thread or process, so the flushes of
        concurrent senders overlap instead of queueing behind one writer. ``digest``: as for
        :meth:`put_bytes`. ``sync=False`` leaves the flush to :meth:`commit_staged` (``synced=False``),
        which flushes a whole batch at once.

        ``over``: a file of this store's file system that nobody else uses and whose content may go
        (the spool's drain hands back each spooled file once its instance is filed): the blob is
        written over its bytes, then the file is cut to the blob's length, and it becomes the temp
        file. Its inode and its pages in the page cache are reused: no inode to allocate (on an ext4
        without a journal, that search skips every inode freed in the last half-minute), no blocks to
        free and allocate, no new pages. When ``over`` cannot be opened, a new temp file is used."""
        digest = digest or hashlib.sha256(data).hexdigest()
        if self._path(digest).exists():
            return digest, None  # ``over`` is left as it is
        fd = -1
        if over is not None:
            try:
                fd, tmp = os.open(over, os.O_WRONLY | os.O_NOFOLLOW), over
            except OSError:
                over.unlink(missing_ok=True)
        if fd < 0:
            fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.ftruncate(fh.fileno(), len(data))  # nothing of what was there before is left
                if sync:
                    os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write a blob into {self.root}: {exc.strerror}") from exc
        return digest, tmp

    def commit_staged(
        self, staged: list[tuple[str, Path]], also: Iterable[str] = (), *, synced: bool = True
    ) -> None:
        """Name a batch of staged (already fsynced) blobs: rename each into place, then fsync each
        folder once, so the names are durable together. ``also`` names blobs that were already stored:
        their folders are fsynced too, so a name another writer renamed a moment ago is durable before
        the caller commits a row pointing at it. Until this returns nothing may point at the blobs; a
        crash before it leaves temp files only.

        ``synced=False``: the blobs were staged without their flush (``stage_bytes(sync=False)``). The
        batch is then flushed with two ``syncfs`` calls, one before the renames (a final name still only
        ever appears after its bytes are on disk) and one after them, instead of a flush per blob and
        per folder; where ``syncfs`` is missing, each blob is flushed, then its folder, as above."""
        folders: set[Path] = {self._path(d).parent for d in also}
        group = False
        try:
            if not synced and staged:
                group = sync_filesystem(self.root)
                if not group:
                    for _digest, tmp in staged:
                        fsync_file(tmp)
            for digest, tmp in staged:
                final = self._path(digest)
                folders.add(final.parent)
                if final.exists():
                    tmp.unlink(missing_ok=True)
                    continue
                if not final.parent.is_dir():  # a new shard folder: its own name must be durable too
                    final.parent.mkdir(parents=True, exist_ok=True)
                    folders.update((final.parent.parent, final.parent.parent.parent))
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
            if group and sync_filesystem(self.root):
                return
            for folder in folders:
                fsync_dir(folder)
        except OSError as exc:
            raise StoreError(f"cannot make blobs durable in {self.root}: {exc.strerror}") from exc

    def put_file(self, path: Path) -> str:
        h = hashlib.sha256()
        fd, tmp = self._tempfile()
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            return self._commit(tmp, h.hexdigest())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot store {path}: {exc.strerror}") from exc

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self._path(digest), "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(
                f"blob {digest} is not in the store at {self.root}",
                hint="run `curata store verify` to list what is missing",
            ) from exc

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(f"blob {digest} is not in the store at {self.root}") from exc

    def digests(self) -> Iterator[str]:
        for path in sorted(self._objects.glob("??/??/*")):
            if is_digest(path.name):
                yield path.name

    def delete(self, digest: str) -> None:
        path = self._path(digest)
        if path.exists():
            os.chmod(path, 0o644)
            path.unlink()

    def sweep_temp(self, older_than: float = 0) -> int:
        """Remove temp files left by writers that died mid-write; returns how many. ``older_than``
        (seconds) spares files a live writer may still be using (another process on the same store)."""
        import time

        n = 0
        cutoff = time.time() - older_than
        for tmp in self._tmp.glob("put-*"):
            try:
                if older_than and tmp.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def clear(self) -> None:
        shutil.rmtree(self.root)
