"""Shared by the fault-injection and fuzz tests: the CLI in a subprocess, a small filesystem, and the
tally (class | tried | held | failed) printed at the end of the run for the closing note."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from curata.catalog import Instance

SRC = str(Path(__file__).resolve().parents[2] / "src")


class _Table:
    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}

    def add(self, name: str, *, ok: bool, n: int = 1) -> None:
        row = self.rows.setdefault(name, [0, 0, 0])
        row[0] += n
        row[1 if ok else 2] += n

    def render(self) -> str:
        lines = ["class | tried | held | failed", "--- | ---: | ---: | ---:"]
        lines += [f"{k} | {t} | {h} | {f}" for k, (t, h, f) in self.rows.items()]
        return "\n".join(lines)


TABLE = _Table()


@pytest.fixture(scope="session", autouse=True)
def _print_table() -> Iterator[None]:
    yield
    if TABLE.rows:
        text = TABLE.render()
        print("\n[reliability]\n" + text)
        out = os.environ.get("CURATA_RELIABILITY_TABLE")
        if out:
            Path(out).write_text(text + "\n")


def cli(
    *args: Any, fault: str | None = None, after: int = 0, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"}
    env.pop("CURATA_FAULT", None)
    if fault:
        env["CURATA_FAULT"] = fault
        env["CURATA_FAULT_AFTER"] = str(after)
    cmd = [sys.executable, "-m", "curata.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def instances_ok(ws: Any) -> int:
    """Instances in the catalog, after checking each is unique and its blob is whole in the store."""
    with ws.catalog.session() as s:
        n = int(s.scalar(select(func.count()).select_from(Instance)) or 0)
        uids = list(s.scalars(select(Instance.sop_instance_uid)))
        digests = list(s.scalars(select(Instance.blob_digest)))
    assert len(set(uids)) == n, "an instance was filed twice"
    store = ws.store
    for d in digests:
        assert store.exists(d) and store.hash_of(d) == d, f"blob {d[:12]} missing or corrupt"
    return n


@contextmanager
def small_fs(where: Path, size: str) -> Iterator[Path]:
    """A filesystem of ``size`` (e.g. "3m") mounted at ``where``: tmpfs, else an ext4 loop file.
    Needs root (the test command runs as root); elsewhere the test skips, and in CI it fails."""
    where.mkdir(parents=True, exist_ok=True)
    attempts = [["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)]]
    loop_file = None
    if shutil.which("mkfs.ext4"):
        loop_file = Path(tempfile.mkdtemp(prefix="curata-loop-")) / "fs.img"
    mounted = False
    errors = []
    for cmd in attempts:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            mounted = True
            break
        errors.append(r.stderr.strip())
    if not mounted and loop_file is not None:
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[size[-1].lower()]
        with open(loop_file, "wb") as fh:
            fh.truncate(max(int(size[:-1]) * mult, 2 << 20))
        r1 = subprocess.run(["mkfs.ext4", "-q", "-F", str(loop_file)], capture_output=True, text=True)
        r2 = subprocess.run(
            ["mount", "-o", "loop", str(loop_file), str(where)], capture_output=True, text=True
        )
        mounted = r1.returncode == 0 and r2.returncode == 0
        errors.append((r1.stderr + r2.stderr).strip())
    if not mounted:
        msg = f"cannot mount a small filesystem (needs root): {errors}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        if loop_file is not None:
            shutil.rmtree(loop_file.parent, ignore_errors=True)
