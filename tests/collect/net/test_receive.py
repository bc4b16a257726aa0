"""The receiver under the SCP and STOW-RS: process pool, worker death, keyed source records."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

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
