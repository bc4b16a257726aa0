"""Slides for the WSI tests: the real small slides in ``shared/data/wsi`` and synthetic planted ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def find_shared_wsi() -> Path | None:
    """``shared/data/wsi`` beside the repository root (or beside one of its parents: worktrees)."""
    env = os.environ.get("CURATA_SHARED_DATA")
    if env and (Path(env) / "wsi").is_dir():
        return Path(env) / "wsi"
    root = Path(__file__).resolve().parents[3]
    for base in [root, *root.parents]:
        cand = base / "shared" / "data" / "wsi"
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_wsi() -> Path:
    found = find_shared_wsi()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("shared/data/wsi not found beside the repository (the real test slides)")
        pytest.skip("shared/data/wsi not found beside the repository")
    return found


def scan_hits(blobs: list[bytes], planted: list[str]) -> list[str]:
    """Every planted string found in any blob (case-insensitive, UTF-8 and UTF-16)."""
    hits = set()
    for blob in blobs:
        low = blob.lower()
        for s in planted:
            for enc in (s.lower().encode(), s.lower().encode("utf-16-le")):
                if enc in low:
                    hits.add(s)
    return sorted(hits)


def corrupt_tile(src: Path, dst: Path, *, page: int, tile: int, how: str) -> None:
    """Copy a real slide and damage one tile's bytes in place (offsets found with tifffile):
    ``garbage`` overwrites the whole tile; ``zeros`` keeps its first third and zeroes the rest (a
    truncated write); ``sof`` sets the JPEG frame header's sample precision to 3 bits, which no
    decoder takes, leaving every marker in place (the envelope checks still pass)."""
    import tifffile

    dst.write_bytes(src.read_bytes())
    with tifffile.TiffFile(dst) as tf:
        offset, count = tf.pages[page].dataoffsets[tile], tf.pages[page].databytecounts[tile]
    data = bytearray(dst.read_bytes()[offset : offset + count])
    if how == "garbage":
        data[:] = bytes((i * 37 + 11) % 256 for i in range(count))
    elif how == "zeros":
        data[count // 3 :] = bytes(count - count // 3)
    elif how == "sof":
        sof = data.find(b"\xff\xc0")
        assert sof >= 0, "no baseline JPEG frame header in this tile"
        data[sof + 4] = 3
    else:
        raise ValueError(how)
    with dst.open("r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(data))
