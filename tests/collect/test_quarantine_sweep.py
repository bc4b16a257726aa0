"""A refused input's bytes that a killed run left under write_private's temporary name are removed by
the next run (ingest, the gateway, ``curata deid``); nothing else in the quarantine is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curata.collect.ingest import Ingestor
from curata.collect.reasons import write_private


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(folder: Path) -> tuple[list[Path], list[Path]]:
    """(stale temporary files of a killed writer, files the sweep must keep)."""
    folder.mkdir(parents=True, exist_ok=True)
    dead, alive = _dead_pid(), os.getppid()  # the test runner's parent lives on
    stale = [folder / f".{'ab' * 32}.bin.{dead}.tmp", folder / f".{'cd' * 32}.json.{dead}.tmp"]
    kept = [
        folder / f".{'ef' * 32}.bin.{alive}.tmp",  # a writer still at work
        folder / f"{'ab' * 32}.bin",  # a quarantined input and its reason
        folder / f"{'ab' * 32}.json",
        folder / f"notes.{dead}.tmp",  # not a name write_private makes (no leading dot)
    ]
    old = time.time() - 3600
    for f in stale + kept:
        f.write_bytes(b"MUSTERMANN^ERIKA raw bytes")
        os.utime(f, (old, old))
    return stale, kept


def test_ingest_removes_the_temporary_copies_a_killed_run_left(workspace) -> None:  # type: ignore[no-untyped-def]
    stale, kept = _plant(workspace.quarantine_path)
    fresh = workspace.quarantine_path / f".{'12' * 32}.bin.{_dead_pid()}.tmp"
    fresh.write_bytes(b"written after the run started")  # by another host's run: kept
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    Ingestor(workspace, workers=1)
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in kept) and fresh.exists()


def test_deid_batch_removes_them_too(tmp_path: Path) -> None:
    from curata.collect.deid import load_profile
    from curata.collect.deid.batch import run_batch
    from curata.collect.keys import generate_key_file, read_key_file

    key = read_key_file(generate_key_file(tmp_path / "site.key"))
    quarantine = tmp_path / "quarantine"
    stale, kept = _plant(quarantine)
    (tmp_path / "in").mkdir()
    run_batch(
        tmp_path / "in",
        tmp_path / "out",
        key=key,
        profile=load_profile("research"),
        vault_dir=tmp_path / "vault",
        quarantine=quarantine,
        workers=1,
    )
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in kept)


def test_write_private_names_what_the_sweep_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's pattern is write_private's own temporary name (a change to one breaks this)."""
    from curata.collect.reasons import _PRIVATE_TMP

    target = tmp_path / "q" / f"{'ab' * 32}.bin"
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_private(target, b"x")
    assert len(seen) == 1 and _PRIVATE_TMP.fullmatch(seen[0]) and seen[0].endswith(f".{os.getpid()}.tmp")
