"""A licensee's download: their fingerprinted export of a release version (publish's ``export_release``),
zipped once into ``WORKSPACE/exports/`` and reused for later downloads."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from curata.workspace import Workspace


def licensee_zip(ws: Workspace, ref: str, licensee: str) -> Path:
    from curata.publish import export_release

    slug = hashlib.sha256(f"{ref}\n{licensee}".encode()).hexdigest()[:16]
    root = ws.root / "exports"
    folder, archive = root / slug, root / f"{slug}.zip"
    if archive.exists():
        return archive
    root.mkdir(parents=True, exist_ok=True)
    if not (folder.exists() and any(folder.iterdir())):
        export_release(ws, ref, folder, licensee=licensee)
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, str(path.relative_to(folder)))
    os.replace(tmp, archive)
    return archive
