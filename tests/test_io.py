"""Atomic writes: a reader sees the old file or the new one, whole; never a temporary name left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from curata._io import atomic_write, fsync_dir


def test_writes_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    atomic_write(target, b"one")
    atomic_write(target, "two ✓")
    assert target.read_text() == "two ✓"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]
    fsync_dir(target.parent)


def test_secret_mode(tmp_path: Path) -> None:
    target = atomic_write(tmp_path / "key", b"k" * 32, mode=0o600, durable_name=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_rename_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")

    def broken(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
