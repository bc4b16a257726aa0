"""The manifest of a release or an export: every file with its sha256 and size, and a Merkle root over them.

``manifest.json`` is canonical JSON (sorted keys, no spaces, files sorted by path), so its sha256 is
stable and is what the transparency log records. The root is RFC 6962's Merkle Tree Hash over one leaf per
file, ``"<sha256> <size> <path>\\n"``; ``verify_release.py`` recomputes both with the standard library.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata.errors import InputError
from curata.rfc6962 import merkle_tree_hash

FORMAT = "curata-manifest/1"
CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestFile:
    path: str
    sha256: str
    size: int

    def leaf(self) -> bytes:
        return f"{self.sha256} {self.size} {self.path}\n".encode()


def merkle_root(leaves: list[bytes]) -> str:
    """RFC 6962 MTH over the leaf *data* (hashes ``0x00 || data`` and ``0x01 || left || right``)."""
    return merkle_tree_hash(leaves).hex()


@dataclass
class Manifest:
    release: str
    version: int
    files: list[ManifestFile] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. licensee and source manifest in an export

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def merkle_root(self) -> str:
        return merkle_root([f.leaf() for f in sorted(self.files, key=lambda f: f.path)])

    def as_dict(self) -> dict[str, Any]:
        files = sorted(self.files, key=lambda f: f.path)
        return {
            "format": FORMAT,
            "release": self.release,
            "version": self.version,
            "merkle_root": self.merkle_root(),
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files],
            **self.extra,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            obj = json.loads(data)
            if obj.get("format") != FORMAT:
                raise ValueError(f"format is {obj.get('format')!r}, not {FORMAT}")
            files = [ManifestFile(f["path"], f["sha256"], int(f["size"])) for f in obj["files"]]
            extra = {
                k: v
                for k, v in obj.items()
                if k not in {"format", "release", "version", "merkle_root", "files"}
            }
            manifest = cls(obj["release"], int(obj["version"]), files, extra)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not a Curata manifest: {exc}") from exc
        if obj.get("merkle_root") != manifest.merkle_root():
            raise InputError("the manifest's merkle_root does not match its files")
        return manifest

    def file(self, path: str) -> ManifestFile | None:
        return next((f for f in self.files if f.path == path), None)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_directory(root: Path, manifest: Manifest) -> list[str]:
    """Problems found comparing ``root`` with the manifest (empty when every file matches)."""
    problems = []
    for f in manifest.files:
        p = root / f.path
        if not p.is_file():
            problems.append(f"missing: {f.path}")
        elif p.stat().st_size != f.size:
            problems.append(f"size differs: {f.path}")
        elif sha256_file(p) != f.sha256:
            problems.append(f"content differs: {f.path}")
    return problems
