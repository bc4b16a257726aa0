"""A licensee's download: their fingerprinted export of a release version (publish's ``export_release``),
zipped once into ``WORKSPACE/exports/REF/`` and reused for later downloads.

One request builds a given copy at a time (a lock file per copy): a second request for the same copy
waits and then serves the zip the first one wrote, instead of deleting its half-written folder. A
version a consent withdrawal left behind is never served, cached or not, and its cached zips are
deleted when the withdrawal is made (``purge_superseded``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

try:  # the standard library's, POSIX only
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process's threads are still kept apart
    fcntl = None  # type: ignore[assignment]

from curata.workspace import Workspace

_LOCAL = threading.Lock()  # where flock is missing


def _slug(ref: str, licensee: str) -> str:
    return hashlib.sha256(f"{ref}\n{licensee}".encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        with _LOCAL:
            yield
        return
    with open(path, "a+b") as fh:  # each open is its own lock holder, across threads and processes
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def licensee_zip(ws: Workspace, ref: str, licensee: str) -> Path:
    from curata.publish import check_may_hand_out, export_release

    check_may_hand_out(ws, ref)  # before the cache: a superseded version's zip is never served
    slug = _slug(ref, licensee)
    root = ws.root / "exports" / ref
    folder, archive = root / slug, root / f"{slug}.zip"
    if archive.exists():
        return archive
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{slug}.lock"):
        if archive.exists():  # another request built it while this one waited
            return archive
        if folder.exists():  # left by a request that died half-way: nobody else is writing it
            shutil.rmtree(folder)
        export_release(ws, ref, folder, licensee=licensee)
        tmp = archive.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, str(path.relative_to(folder)))
        os.replace(tmp, archive)
    return archive


def purge_superseded(ws: Workspace) -> list[str]:
    """Delete the cached downloads of every version a consent withdrawal left behind (also those an older
    layout kept flat in ``exports/``); returns the versions whose cache was deleted."""
    from curata.publish import exported_to, superseded_versions

    root = ws.root / "exports"
    purged: list[str] = []
    if not root.is_dir():
        return purged
    for found in superseded_versions(ws):
        hit = False
        folder = root / found.ref
        if folder.is_dir():
            shutil.rmtree(folder)
            hit = True
        licensees = exported_to(ws, found.ref)
        for licensee in licensees:
            slug = _slug(found.ref, licensee)
            for old in (root / f"{slug}.zip", root / f"{slug}.zip.tmp"):
                if old.exists():
                    old.unlink()
                    hit = True
            if (root / slug).is_dir():
                shutil.rmtree(root / slug)
                hit = True
        if hit:
            purged.append(found.ref)
    return purged
