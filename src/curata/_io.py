"""Durable file writes, shared by every stage: write to a temporary name, fsync, rename into place.

A reader never sees a half-written file: it finds the old content, or the new, whole. With
``durable_name=True`` the folder is fsynced too, so the new name itself survives a power cut.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
from pathlib import Path
from typing import Any


def fsync_dir(path: Path | str) -> None:
    """Make the names in folder ``path`` durable (a rename is only on disk once its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNCFS: Any = None


def sync_filesystem(path: Path | str) -> bool:
    """``syncfs(2)``: flush every written byte and name of the filesystem that holds ``path`` in one
    journal commit, for a writer that made many files durable at once (one call instead of a flush
    per file and per folder). False where the C library or the kernel does not offer ``syncfs`` (the
    caller flushes each file); an error of the flush raises ``OSError``."""
    global _SYNCFS
    if _SYNCFS is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).syncfs
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            _SYNCFS = fn
        except (OSError, AttributeError):
            _SYNCFS = False
    if not _SYNCFS:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSYS, errno.EPERM):  # not offered here (an old kernel, a sandbox's filter)
                _SYNCFS = False
                return False
            raise OSError(err, f"syncfs: {os.strerror(err)}")
    finally:
        os.close(fd)
    return True


def fsync_file(path: Path | str) -> None:
    """Flush a file already written to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process and call (threads write side by side)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(
    path: Path | str,
    data: bytes | str,
    *,
    fsync: bool = True,
    mode: int = 0o644,
    durable_name: bool = False,
) -> Path:
    """Write ``data`` to ``path`` atomically; a str is written as UTF-8. Returns ``path``.

    ``fsync=False`` skips the flush (for bulk writes the caller syncs once at the end); ``mode`` is the
    new file's permission bits (less the umask), set before any byte is written (0o600 for secrets).
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable_name:
        fsync_dir(path.parent)
    return path


def process_alive(pid: int) -> bool:
    """Whether a process of that id exists on this host (one we may not signal exists too): a
    temporary file's writer named by its pid is still at work, and its file is not stale."""
    if pid <= 0:  # no writer's pid (0 would signal our own process group): kept
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists under another user, or not a pid we can judge: kept
    return True


def sweep_stale(folder: Path | str, started: float, patterns: tuple[re.Pattern[str], ...]) -> int:
    """Remove the temporary files a killed writer left in ``folder`` (not its sub-folders): a file is
    removed only when its name is exactly one of ``patterns`` (whose first group is the writer's
    pid: never a file the caller did not make), it is a plain file (not a link), it was last written
    before ``started`` and its writer is gone (no process of that pid here, or the pid is the sweeping
    process's own: reused). A writer still alive keeps its files. Returns how many were removed."""
    removed = 0
    alive: dict[int, bool] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = next((m for m in (p.fullmatch(entry.name) for p in patterns) if m), None)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid():
            if pid not in alive:
                alive[pid] = process_alive(pid)
            if alive[pid]:
                continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_mtime >= started:
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:  # another process swept it first; or not ours to remove
            continue
    return removed
