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


def test_sync_filesystem_flushes_and_falls_back_where_syncfs_is_refused(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ctypes
    import errno

    import curata._io as io_mod

    (tmp_path / "blob").write_bytes(b"x" * 4096)
    assert io_mod.sync_filesystem(tmp_path) is True  # Linux with glibc: the real syncfs(2)

    def refused(fd: int) -> int:  # a sandbox whose seccomp filter answers EPERM
        ctypes.set_errno(errno.EPERM)
        return -1

    monkeypatch.setattr(io_mod, "_SYNCFS", refused)
    assert io_mod.sync_filesystem(tmp_path) is False  # the caller flushes each file instead
    assert io_mod._SYNCFS is False  # and is not asked again

    def failing(fd: int) -> int:  # a real write-back error must not pass for "not offered"
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(io_mod, "_SYNCFS", failing)
    with pytest.raises(OSError, match="syncfs"):
        io_mod.sync_filesystem(tmp_path)
