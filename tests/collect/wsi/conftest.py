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
