"""Two instances under one SOP Instance UID reaching the gateway: the same instance sent again is a
success ("present"), but another instance under that UID (different content once de-identified) is
refused with a failure status and its reason, quarantined, and counted, as `curata ingest` does. The
gateway answered success ("present") and dropped it without a word. Its de-identified blob, written
before the refusal, is not left in the store with no row pointing at it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from curata.catalog import Instance, QuarantineItem
from curata.collect.net.config import GatewayConfig
from curata.collect.net.receive import Receiver
from curata.collect.net.scp import GatewayServer
from tests.collect.net.conftest import need
from tests.collect.net.helpers import count, quarantined_count, storescu
from tests.conftest import make_ct

pytestmark = pytest.mark.integration

CONFLICT = "another instance with the same SOP Instance UID and different content is already stored"


def _config() -> GatewayConfig:
    return GatewayConfig(ae_title="CURATA", port=0, bind="127.0.0.1", workers=1)


def _pair(folder: Path) -> tuple[Path, Path]:
    """Two files with one SOP Instance UID (and study, series) and different pixel data."""
    uids = {"study_uid": generate_uid(), "series_uid": generate_uid(), "sop_uid": generate_uid()}
    first, second = folder / "a" / "IM0001", folder / "b" / "IM0001"
    make_ct(first, seed=1, **uids)  # type: ignore[arg-type]
    make_ct(second, seed=2, **uids)  # type: ignore[arg-type]
    assert first.read_bytes() != second.read_bytes()
    return first, second


def _store_matches_catalog(ws) -> None:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        filed = set(s.scalars(select(Instance.blob_digest)))
    assert set(ws.store.digests()) == filed, "a blob with no catalog row was left in the store"


def _refused_send(port: int, path: Path) -> str:
    """storescu with its debug log (the C-STORE response's Error Comment), for a send that fails."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    cmd = ["storescu", "-d", "-aec", "CURATA", "127.0.0.1", str(port), str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    log = done.stdout + done.stderr
    assert done.returncode != 0, log  # storescu exits non-zero when a store failed
    assert "DIMSE Status                  : 0xc000" in log, log  # a failure: the sender keeps it
    (comment,) = [line for line in log.splitlines() if "ErrorComment" in line]
    return comment


def test_storescu_conflicting_uid_is_refused_and_a_resend_is_present(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    need("storescu")
    first, second = _pair(tmp_path / "in")
    with GatewayServer(workspace, _config()) as server:
        sent = storescu(server.port, first)
        assert sent.returncode == 0, sent.stderr
        assert server.counts.stored == 1
        comment = _refused_send(server.port, second)  # another image under the same SOP Instance UID
        assert "[refused: SOP Instance UID already stored with other content]" in comment
        assert server.counts.refused == 1 and server.counts.present == 0
        again = storescu(server.port, first)  # a true re-send: a success, filed once
        assert again.returncode == 0, again.stderr
        assert server.counts.present == 1 and server.counts.refused == 1
        _refused_send(server.port, second)  # the conflicting one again: refused again, one entry
        assert server.counts.refused == 2 and server.counts.stored == 1
    assert count(workspace) == 1 and quarantined_count(workspace) == 1
    with workspace.catalog.session() as s:
        item = s.scalar(select(QuarantineItem))
        assert item is not None and item.reason == CONFLICT and item.stage == "ingest"
    # the refused input's bytes are kept on site, in the quarantine, with the reason (no PHI in it)
    kept = sorted(p.name for p in workspace.quarantine_path.glob("*"))
    assert kept == [f"{item.input_digest}.bin", f"{item.input_digest}.json"]
    kept_ds = pydicom.dcmread(workspace.quarantine_path / f"{item.input_digest}.bin")
    assert kept_ds.PixelData == pydicom.dcmread(second).PixelData  # the refused image, as received
    meta = json.loads((workspace.quarantine_path / f"{item.input_digest}.json").read_text())
    assert meta["reason"] == CONFLICT
    _store_matches_catalog(workspace)


def test_a_batch_with_two_instances_under_one_uid_files_one(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The spool's drain files a batch in one commit: the second image under a UID filed in the same
    batch is refused, not counted present; the same image twice in one batch is filed once."""
    first, second = _pair(tmp_path / "in")
    copy = tmp_path / "in" / "c" / "IM0001"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    receiver = Receiver(workspace, workers=1)
    try:
        items = [(p, f"c-store from PACS ({i})", None, "PACS") for i, p in enumerate((first, second, copy))]
        results = receiver.receive_files(items)
    finally:
        receiver.close()
    statuses = [(r.status, r.reason) for r in results]  # type: ignore[union-attr]
    assert statuses == [("ingested", None), ("quarantined", CONFLICT), ("present", None)]
    assert count(workspace) == 1 and quarantined_count(workspace) == 1
    assert (workspace.quarantine_path / f"{results[1].input_digest}.bin").read_bytes() == second.read_bytes()  # type: ignore[union-attr]
    _store_matches_catalog(workspace)


def test_platform_gateway_keeps_no_refused_bytes(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At the central platform (verified mode) the conflicting instance is refused too, and none of
    its bytes are kept: neither in the quarantine folder nor as a blob."""
    uids = {"study_uid": generate_uid(), "series_uid": generate_uid(), "sop_uid": generate_uid()}
    raws = []
    for seed in (1, 2):
        import io

        buf = io.BytesIO()
        make_ct(deidentified=True, seed=seed, **uids).save_as(buf, enforce_file_format=True)  # type: ignore[arg-type]
        raws.append(buf.getvalue())
    receiver = Receiver(workspace, deidentify=False, workers=1)
    try:
        assert receiver.receive(raws[0], source="a").status == "ingested"
        out = receiver.receive(raws[1], source="b")
        assert (out.status, out.reason) == ("quarantined", CONFLICT)
        assert receiver.receive(raws[0], source="a again").status == "present"
    finally:
        receiver.close()
    assert count(workspace) == 1 and quarantined_count(workspace) == 1
    assert list(workspace.quarantine_path.glob("*")) == []
    _store_matches_catalog(workspace)
