"""Finding input files: folders (recursive), single files and zip archives, in a stable order."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from curata.errors import InputError

SKIP_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}


@dataclass(frozen=True)
class Source:
    """One input file, on disk or inside a zip archive. Picklable, so workers can read it themselves."""

    path: str
    member: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path

    def read(self) -> bytes:
        try:
            if self.member is None:
                return Path(self.path).read_bytes()
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(self.member)
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise InputError(f"cannot read: {exc}", path=self.name) from exc

    @property
    def skipped(self) -> bool:
        """Directory records and desktop litter: not inputs, not errors either."""
        base = os.path.basename(self.member or self.path)
        return base in SKIP_NAMES


def iter_sources(paths: list[Path]) -> Iterator[Source]:
    """Every file under ``paths``: folders recursively (sorted), zip archives member by member."""
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise InputError("no such file or folder", path=str(root))
        if root.is_file():
            yield from _file_sources(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                yield from _file_sources(Path(dirpath) / name)


def _file_sources(path: Path) -> Iterator[Source]:
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if not info.is_dir():
                    yield Source(str(path), info.filename)
        return
    yield Source(str(path))
