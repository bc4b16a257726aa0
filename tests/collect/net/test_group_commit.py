"""The gateway's group commit: blobs staged without fsync, made durable per batch, rows filed per batch.

A SIGKILL at each step of the batch (blobs staged / blobs durable, rows not committed / rows committed,
senders not answered) loses no acknowledged instance, and the sender's re-send files nothing twice.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from curata.catalog import Blob, Instance, Provenance, Series
from curata.collect.net.models import GatewayReceived
from tests.collect.net.conftest import free_port, need
from tests.conftest import make_ct
from tests.reliability.conftest import SRC

pytestmark = pytest.mark.integration

N = 8


def _scu() -> Any:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def _serve(root: Path, port: int, fault: str | None = None, after: int = 0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("CURATA_FAULT", None)
    if fault:
        env["CURATA_FAULT"], env["CURATA_FAULT_AFTER"] = fault, str(after)
    cmd = [sys.executable, "-m", "curata.cli", "gateway", "serve", "-w", str(root)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--bind", "127.0.0.1", "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 90
    echo = ["echoscu", "-to", "2", "-aec", "CURATA", "127.0.0.1", str(port)]
    while subprocess.run(echo, capture_output=True).returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.2)
    return proc


def _send(port: int, datasets: list[Any]) -> list[str]:
    """Send each dataset on one association; the SOP Instance UIDs answered success."""
    acked: list[str] = []
    assoc = _scu().associate("127.0.0.1", port, ae_title="CURATA")
    for ds in datasets:
        if not assoc.is_established:
            break
        status = assoc.send_c_store(ds)
        if status is not None and status.get("Status") == 0x0000:
            acked.append(str(ds.SOPInstanceUID))
    if assoc.is_established:
        assoc.release()
    return acked


@pytest.mark.parametrize("point", ["gateway.before_durable", "gateway.before_commit", "gateway.after_commit"])
def test_a_kill_inside_the_group_commit_loses_nothing_and_files_nothing_twice(workspace, point: str) -> None:  # type: ignore[no-untyped-def]
    from curata.collect.net.receive import Receiver
    from curata.store import open_store

    need("echoscu")
    study, series = generate_uid(), generate_uid()
    datasets = [make_ct(study_uid=study, series_uid=series, index=i, rows=32, columns=32) for i in range(N)]
    port = free_port()
    proc = _serve(workspace.root, port, fault=point, after=3)  # three batches pass, the fourth dies
    try:
        acked = _send(port, datasets)
        assert proc.wait(60) == -signal.SIGKILL, "the fault point was not reached"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(acked) == 3, acked  # success was answered for the batches that completed, not the 4th
    ws = type(workspace).open(workspace.root)
    assert Receiver(ws, deidentify=False).missing(acked) == [], "an acknowledged instance was lost"

    proc = _serve(workspace.root, port)  # the sender re-sends everything it holds, as a PACS does
    try:
        again = _send(port, datasets)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert len(again) == N
    ws = type(workspace).open(workspace.root)
    store = open_store(ws.store_url)
    with ws.catalog.session() as s:
        uids = list(s.scalars(select(Instance.sop_instance_uid)))
        digests = list(s.scalars(select(Instance.blob_digest)))
        assert s.scalar(select(func.count()).select_from(GatewayReceived)) == N
        assert s.scalar(select(func.count()).select_from(Blob)) == N
        assert s.scalar(select(func.count()).select_from(Provenance).where(Provenance.step == "deid")) == N
        assert list(s.scalars(select(Series.instance_count))) == [N]
    assert len(uids) == len(set(uids)) == N, "an instance was filed twice"
    for digest in digests:  # every row points at a complete blob under its final name
        with store.open(digest) as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == digest
    assert Receiver(ws, deidentify=False).missing([str(d.SOPInstanceUID) for d in datasets]) == []


def test_concurrent_receives_share_batches_and_stay_exact(workspace) -> None:  # type: ignore[no-untyped-def]
    """Eight threads, each instance sent twice at once: every instance filed once, all rows per batch."""
    from curata.collect.net.receive import Receiver

    study, series = generate_uid(), generate_uid()
    raws = []
    for i in range(12):
        buf = io.BytesIO()
        make_ct(study_uid=study, series_uid=series, index=i, rows=32, columns=32).save_as(
            buf, enforce_file_format=True
        )
        raws.append(buf.getvalue())
    receiver = Receiver(workspace, workers=1)
    receiver.warm_up()
    statuses: list[str] = []
    lock = threading.Lock()

    def send(chunk: list[tuple[int, bytes]]) -> None:
        for i, raw in chunk:
            outcome = receiver.receive(raw, source="test", source_uid=f"1.2.3.{i}", peer="T")
            with lock:
                statuses.append(outcome.status)

    work = [(i, raw) for i, raw in enumerate(raws)] * 2
    threads = [threading.Thread(target=send, args=(work[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    receiver.close()
    assert sorted(set(statuses)) <= ["ingested", "present"] and len(statuses) == 24
    assert statuses.count("ingested") == 12
    with workspace.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 12
        assert s.scalar(select(func.count()).select_from(GatewayReceived)) == 12
        assert list(s.scalars(select(Series.instance_count))) == [12]
    tmp = Path(workspace.store_url) / "tmp"
    assert not list(tmp.glob("put-*")), "a staged blob was left behind"


def test_staged_blobs_have_no_name_until_committed(tmp_path: Path) -> None:
    from curata.store import open_store

    store = open_store(str(tmp_path / "store"))
    digest, tmp = store.stage_bytes(b"pixel bytes")
    assert tmp is not None and tmp.exists() and not store.exists(digest)
    store.commit_staged([(digest, tmp)])
    assert store.exists(digest) and not tmp.exists() and store.get_bytes(digest) == b"pixel bytes"
    again, none = store.stage_bytes(b"pixel bytes")
    assert again == digest and none is None  # already durable: nothing staged


def test_staged_blobs_of_a_killed_gateway_are_swept_but_not_those_in_flight(tmp_path: Path) -> None:
    from curata.store import open_store

    store = open_store(str(tmp_path / "store"))
    _, old = store.stage_bytes(b"left by a killed gateway")
    _, fresh = store.stage_bytes(b"another listener is staging this")
    assert old is not None and fresh is not None
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert store.sweep_temp(older_than=3600) == 1
    assert not old.exists() and fresh.exists()


def _recording(monkeypatch, events: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Records the store's flushes and renames, in order (the real calls still run)."""
    import curata.store._local as local

    real_syncfs, real_replace, real_fsync = local.sync_filesystem, os.replace, os.fsync

    def syncfs(path):  # type: ignore[no-untyped-def]
        done = real_syncfs(path)
        events.append("syncfs" if done else "no syncfs")
        return done

    def replace(a, b):  # type: ignore[no-untyped-def]
        events.append("rename")
        return real_replace(a, b)

    def fsync(fd):  # type: ignore[no-untyped-def]
        events.append("fsync")
        return real_fsync(fd)

    monkeypatch.setattr(local, "sync_filesystem", syncfs)
    monkeypatch.setattr(local.os, "replace", replace)
    monkeypatch.setattr(local.os, "fsync", fsync)
    import curata._io as io_mod

    monkeypatch.setattr(io_mod.os, "fsync", fsync)


def test_a_batch_staged_without_flushes_is_flushed_before_its_names_appear(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from curata.store import open_store

    store = open_store(str(tmp_path / "store"))
    events: list[str] = []
    _recording(monkeypatch, events)
    staged = [store.stage_bytes(f"slice {i}".encode(), sync=False) for i in range(5)]
    assert events == []  # nothing flushed while staging
    store.commit_staged([(d, t) for d, t in staged if t is not None], synced=False)
    # one flush of the filesystem before any name appears, one after the renames; no flush per blob
    assert events == ["syncfs", *["rename"] * 5, "syncfs"]
    assert [store.get_bytes(d) for d, _ in staged] == [f"slice {i}".encode() for i in range(5)]


def test_without_syncfs_each_staged_blob_is_flushed_before_its_name(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import curata._io as io_mod
    from curata.store import open_store

    monkeypatch.setattr(io_mod, "_SYNCFS", False)  # a C library without syncfs(2)
    store = open_store(str(tmp_path / "store"))
    events: list[str] = []
    _recording(monkeypatch, events)
    staged = [store.stage_bytes(f"slice {i}".encode(), sync=False) for i in range(3)]
    store.commit_staged([(d, t) for d, t in staged if t is not None], synced=False)
    first_rename = events.index("rename")
    assert events[:first_rename] == ["no syncfs", "fsync", "fsync", "fsync"]
    assert events.count("rename") == 3 and events[-1] == "fsync"  # then the folders
    assert [store.get_bytes(d) for d, _ in staged] == [f"slice {i}".encode() for i in range(3)]
