"""Reasons and private files at rest: what a refusal may say, and who may read what was refused.

A quarantine reason is kept in the catalog, printed on the console and written into reports, so it
must not carry the input's values (a parser message can quote a name, an ID or a date) nor its
source path (folder names often hold the patient's name). :func:`safe_reason` keeps the words, the
DICOM tag and the rule, and replaces quoted text, paths and long numbers (it lives in ``curata.errors``
beside the errors it describes, for every stage, and is re-exported here). Raw refused inputs and the
vault are private to the service account: folders 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from curata._io import sweep_stale
from curata.errors import safe_reason, sanitize

DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})
# the reason of an input not filed for want of space: the sender (DIMSE, STOW-RS) is told to retry later
DISK_FULL_REASON = "no space left on the device (store, quarantine or catalog)"

__all__ = [
    "DISK_FULL", "DISK_FULL_REASON", "is_disk_full", "private_dir", "safe_reason", "sanitize", "sweep_private", "write_private",
]  # fmt: skip


def is_disk_full(exc: BaseException) -> bool:
    """Out of space (or quota), from the OS or from SQLite ("database or disk is full")."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        if "database or disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True)
    if (os.stat(path).st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomically write ``data`` as a 0600 file in a 0700 folder; nothing partial is left behind."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_PRIVATE_TMP = re.compile(r"\..+\.([0-9]+)\.tmp")  # write_private's temporary name: .<name>.<pid>.tmp


def sweep_private(folder: Path, started: float) -> int:
    """Remove the temporary files ``write_private`` left in ``folder`` when its writer was killed
    between writing and renaming (see ``curata._io.sweep_stale``): each holds a refused input's raw
    bytes, an identifiable copy that no reason points at and that nothing else would ever remove."""
    return sweep_stale(folder, started, (_PRIVATE_TMP,))
