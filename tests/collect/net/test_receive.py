"""The receiver under the SCP and STOW-RS: process pool, worker death, keyed source records."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from sqlalchemy import select

from curata.collect.net.models import GatewayReceived
from curata.collect.net.receive import Receiver, source_key
from tests.collect.net.helpers import count
from tests.conftest import make_ct


def _raw(index: int) -> bytes:
    import io

    buf = io.BytesIO()
    make_ct(index=index).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_worker_death_fails_one_instance_then_the_pool_is_renewed(workspace) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(workspace, workers=2)
    try:
        receiver.warm_up()
        assert receiver.receive(_raw(0), source="t", source_uid="1.2.3.1").status == "ingested"
        pool = receiver._pool
        assert pool is not None
        for pid in list(pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            receiver.receive(_raw(1), source="t", source_uid="1.2.3.2")
        again = receiver.receive(_raw(1), source="t", source_uid="1.2.3.2")  # the sender's retry
        assert again.status == "ingested" and receiver._pool is not pool
    finally:
        receiver.close()
    assert count(workspace) == 2
    assert receiver.missing(["1.2.3.1", "1.2.3.2", "1.2.3.3"]) == ["1.2.3.3"]


def test_source_uids_are_kept_only_as_keyed_hashes(workspace) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(workspace, workers=1)
    try:
        raw = _raw(0)
        receiver.receive(raw, source="t", source_uid="1.2.840.99.1")
        receiver.receive(raw, source="t", source_uid="1.2.840.99.1")  # twice: one record
    finally:
        receiver.close()
    with workspace.catalog.session() as s:
        keys = list(s.scalars(select(GatewayReceived.source_key)))
    assert keys == [source_key(workspace.site_key(), "1.2.840.99.1")]
    assert keys[0] != source_key(b"another site's secret key 32 bytes", "1.2.840.99.1")
    files = [p for p in workspace.root.glob("catalog.sqlite*") if p.is_file()]  # with the WAL
    assert files and all(b"1.2.840.99.1" not in p.read_bytes() for p in files)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_workspace(request: pytest.FixtureRequest, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A workspace on each catalog engine (the batch writer's INSERTs differ per dialect)."""
    from curata.workspace import Workspace

    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    if request.param == "postgresql":
        monkeypatch.setenv("CURATA_DATABASE_URL", request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    ws = Workspace.init(tmp_path / "ws", site="test-site")
    yield ws
    ws.catalog.dispose()


def test_resends_are_recognised_in_the_batch_and_filed_once(any_workspace) -> None:  # type: ignore[no-untyped-def]
    """No look-up per instance: the batch writer recognises a re-send by its input bytes or by its
    de-identified SOP Instance UID, in batches with duplicates inside them, on both engines."""
    from curata.catalog import Blob, Provenance

    ws = any_workspace
    raws = [_raw(i) for i in range(3)]
    receiver = Receiver(ws, workers=1)
    try:
        first = [receiver.receive(r, source="t", source_uid=f"1.2.9.{i}") for i, r in enumerate(raws)]
        assert [o.status for o in first] == ["ingested"] * 3
        # the same bytes again (a sender's retry), twice in one batch, and under a new source UID
        results: list[Any] = []
        threads = [
            threading.Thread(
                target=lambda r=r, u=u: results.append(receiver.receive(r, source="t", source_uid=u))
            )
            for r, u in [(raws[0], "1.2.9.0"), (raws[0], "1.2.9.0"), (raws[1], "1.2.9.77")]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(o.status for o in results) == ["present"] * 3
        assert {o.sop_instance_uid for o in results} <= {o.sop_instance_uid for o in first}
    finally:
        receiver.close()
    assert count(ws) == 3 and count(ws, Blob) == 3 and count(ws, Provenance) == 3
    assert count(ws, GatewayReceived) == 4  # 1.2.9.0-2 and 1.2.9.77, each once
    assert receiver.missing(["1.2.9.0", "1.2.9.77", "1.2.9.5"]) == ["1.2.9.5"]


def test_warm_up_prepares_the_catalog_writer_and_each_thread_its_deidentifier(workspace) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(workspace, workers=1)
    try:
        receiver.warm_up()
        assert receiver._session is not None and receiver._writer is not None  # open before a batch
        contexts: list[Any] = []

        def thread() -> None:
            receiver.warm_thread()
            contexts.append(receiver._local.ctx)

        workers = [threading.Thread(target=thread) for _ in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert len(contexts) == 2 and contexts[0] is not contexts[1]
        assert all(c.deidentifier is not None for c in contexts)
        assert receiver.receive(_raw(0), source="t", source_uid="1.2.3.9").status == "ingested"
    finally:
        receiver.close()
    assert count(workspace) == 1


def test_a_catalog_that_fails_at_warm_up_is_tried_again_at_the_first_batch(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import OperationalError

    receiver = Receiver(workspace, workers=1)
    real = receiver._open_writer

    def down() -> Any:
        raise OperationalError("connect", {}, Exception("the database is not up yet"))

    monkeypatch.setattr(receiver, "_open_writer", down)
    try:
        receiver.warm_up()  # logged, not raised: the gateway still starts
        assert receiver._session is None
        monkeypatch.setattr(receiver, "_open_writer", real)
        assert receiver.receive(_raw(0), source="t", source_uid="1.2.3.8").status == "ingested"
    finally:
        receiver.close()
    assert count(workspace) == 1
