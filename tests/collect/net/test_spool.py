"""The dcmtk front end (``curata-spool-scp``) and its drain: real senders (dcmtk, pynetdicom), the real
binary, a real crash (SIGKILL of the gateway), and the workspace afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from curata.collect.net.config import AllowRule, GatewayConfig
from curata.collect.net.spool import BINARY, SpoolGateway, find_binary
from curata.errors import NetworkError
from tests.collect.net.conftest import free_port, need
from tests.collect.net.helpers import assert_deidentified, count, quarantined_count, received_count, storescu
from tests.conftest import in_ci, make_ct

pytestmark = pytest.mark.integration

PLANTED = ("Doe^Jane", "PAT-0001", "ACC123")


@pytest.fixture(autouse=True)
def _binary() -> None:
    if find_binary() is None:
        message = f"{BINARY} is not built (scripts/bootstrap.sh builds it; needs libdcmtk-dev and g++)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _config(port: int = 0, workers: int = 1, **kw: object) -> GatewayConfig:
    return GatewayConfig(ae_title="CURATA", port=port, bind="127.0.0.1", workers=workers, **kw)  # type: ignore[arg-type]


def _scu(aet: str = "MODALITY1") -> AE:
    ae = AE(ae_title=aet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae


def _spooled(ws) -> list[Path]:  # type: ignore[no-untyped-def]
    ready = ws.root / ".curata" / "spool" / "ready"
    return sorted(ready.iterdir()) if ready.exists() else []


@pytest.mark.parametrize("workers", [1, 2], ids=["drain-in-process", "two-drain-processes"])
def test_storescu_push_is_spooled_durably_then_deidentified_and_filed_once(
    workspace, ct_series, workers
) -> None:  # type: ignore[no-untyped-def]
    need("storescu", "echoscu")
    folder = ct_series(6)
    with SpoolGateway(workspace, _config(workers=workers)) as server:
        drain_processes = list(server._children)
        assert len(drain_processes) == (0 if workers == 1 else workers)
        echo = subprocess.run(
            ["echoscu", "-aec", "CURATA", "127.0.0.1", str(server.port)], capture_output=True
        )
        assert echo.returncode == 0, echo.stderr
        first = storescu(server.port, folder)
        assert first.returncode == 0, first.stderr
        assert server.wait_idle(60)
        assert server.counts.stored == 6
        free = workspace.root / ".curata" / "spool" / "free"
        assert list(free.iterdir()), "filed spool files are kept for the next blobs to be written over"
        again = storescu(server.port, folder)  # a PACS re-sending the same study
        assert again.returncode == 0, again.stderr
        assert server.wait_idle(60)
        assert server.counts.present == 6
        spool = workspace.root / ".curata" / "spool"
        assert spool.stat().st_mode & 0o077 == 0, "the spool holds identifiable data: private to the site"
    assert count(workspace) == 6 and received_count(workspace) == 6
    assert assert_deidentified(workspace, PLANTED) == 6
    assert _spooled(workspace) == [], "a filed instance leaves the spool"
    assert list(free.iterdir()) == [], "the kept spool files hold instances as received: gone at stop"
    assert [p.exitcode for p in drain_processes] == [0] * len(drain_processes), "drain ended, not killed"


def test_every_byte_sent_is_what_is_spooled(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The front end alone (no drain): bit-preserving, in the negotiated syntax, with a Part-10 header."""
    need("storescu")
    import pydicom
    from pydicom.data import get_testdata_file

    from curata.collect.net.spool import front_end_config

    spool = tmp_path / "spool"
    spool.mkdir()
    conf = tmp_path / "scp.conf"
    conf.write_text(front_end_config(_config()))
    proc = subprocess.Popen(
        [str(find_binary()), "--config", str(conf), "--spool", str(spool), "--port", "0"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        kind, port = proc.stdout.readline().decode().strip().split("\t")
        assert kind == "listening"
        source = Path(get_testdata_file("MR_small_jp2klossless.dcm"))
        cmd = ["storescu", "-R", "-xv", "-aet", "STORESCU", "-aec", "CURATA", "127.0.0.1", port, str(source)]
        sent = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        kind, name, calling, uid = proc.stdout.readline().decode().rstrip("\n").split("\t")
        assert (kind, calling) == ("stored", "STORESCU")
        original = pydicom.dcmread(source)
        assert uid == original.SOPInstanceUID
        spooled = pydicom.dcmread(spool / "ready" / name)
        assert spooled.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert spooled.PixelData == original.PixelData and spooled.PatientName == original.PatientName
        assert (spool / "ready" / name).stat().st_mode & 0o077 == 0
        assert list((spool / "tmp").iterdir()) == []
    finally:
        proc.terminate()
        proc.wait(10)


def test_refused_instance_is_answered_then_quarantined_and_the_rest_go_on(workspace) -> None:  # type: ignore[no-untyped-def]
    with SpoolGateway(workspace, _config()) as server:
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        assert assoc.is_established
        bad = make_ct()
        del bad.StudyInstanceUID  # de-identification refuses it
        # answered once durable in the spool: the refusal is the quarantine's, with its reason
        assert assoc.send_c_store(bad).Status == 0x0000
        assert assoc.send_c_store(make_ct(index=1)).Status == 0x0000
        assoc.release()
        assert server.wait_idle(60)
        assert server.counts.refused == 1 and server.counts.stored == 1
    assert count(workspace) == 1 and quarantined_count(workspace) == 1
    assert _spooled(workspace) == []


def test_a_malformed_or_cut_data_set_is_dropped_or_quarantined_with_its_reason_and_the_rest_go_on(
    workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """Sent as the bytes are (pynetdicom sends a file's data set undecoded): a data set of odd length
    breaks DIMSE's rules, so dcmtk aborts the association: the sender has no success, and the gateway
    logs and counts it (before: no line, no count). One whose pixel data was cut short, its length
    rewritten to what arrived (as dcmtk writes it), is quarantined with its reason (before: filed, and
    the whole re-send was then answered "present"). The whole instance sent after it is filed."""
    whole = tmp_path / "whole.dcm"
    make_ct(whole, rows=64, columns=64)
    raw = whole.read_bytes()
    odd = tmp_path / "odd.dcm"
    odd.write_bytes(raw[:-1])
    cut = make_ct(sop_uid=pydicom.dcmread(whole).SOPInstanceUID, rows=64, columns=64)
    cut.PixelData = cut.PixelData[:-1000]
    cut_path = tmp_path / "cut.dcm"
    cut.save_as(cut_path, enforce_file_format=True)
    caplog.set_level("WARNING", logger="curata.gateway")
    with SpoolGateway(workspace, _config()) as server:
        statuses = []
        for path in (odd, cut_path, whole):
            assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
            assert assoc.is_established
            answer = assoc.send_c_store(str(path))
            statuses.append(getattr(answer, "Status", None))
            if assoc.is_established:
                assoc.release()
        assert server.wait_idle(60)
        assert statuses == [None, 0x0000, 0x0000], "odd: aborted, no answer; the others durable in the spool"
        assert server.counts.dropped_connections == 1
        assert server.counts.refused == 1 and server.counts.stored == 1 and server.counts.present == 0
    assert count(workspace) == 1 and quarantined_count(workspace) == 1
    text = caplog.text
    assert "not received whole" in text and "truncated" in text
    assert not any(value in text for value in PLANTED)


def test_allow_list_called_ae_and_networks_are_enforced(workspace) -> None:  # type: ignore[no-untyped-def]
    need("echoscu")

    def echo(port: int, aet: str, called: str = "CURATA") -> int:
        cmd = ["echoscu", "-aet", aet, "-aec", called, "127.0.0.1", str(port)]
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode

    allow = [AllowRule.parse("MODALITY1"), AllowRule.parse("PACS@127.0.0.1")]
    with SpoolGateway(workspace, _config(allow=allow)) as server:
        assert echo(server.port, "INTRUDER") != 0
        assert echo(server.port, "MODALITY1") == 0
        assert echo(server.port, "PACS") == 0
        assert echo(server.port, "MODALITY1", called="SOMEONE") != 0
        deadline = time.monotonic() + 10
        while server.counts.rejected_associations < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.counts.rejected_associations == 2
    with SpoolGateway(workspace, _config(allow=[AllowRule.parse("PACS@10.9.9.9")])) as server:
        assert echo(server.port, "PACS") != 0  # right AE, wrong host: not even read (allowed networks)
        deadline = time.monotonic() + 10
        while server.counts.dropped_connections < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.counts.dropped_connections == 1


def test_a_spooled_file_whose_event_was_lost_is_filed_while_running(workspace) -> None:  # type: ignore[no-untyped-def]
    """An association's process killed between its answer and its event line: the instance is in the
    spool, answered; the running gateway finds it and files it (not only at the next start)."""
    server = SpoolGateway(workspace, _config())
    server.rescan_seconds = 0.3
    with server:
        ready = workspace.root / ".curata" / "spool" / "ready"
        lost = ready / f"{time.time_ns():016x}-1-1.{b'MODALITY1'.hex()}.dcm"
        make_ct(lost)
        old = time.time() - 5
        os.utime(lost, (old, old))
        deadline = time.monotonic() + 30
        while server.counts.stored < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.wait_idle(30)
        assert server.counts.stored == 1
    assert count(workspace) == 1 and _spooled(workspace) == []
    assert assert_deidentified(workspace, PLANTED) == 1


def test_association_limit_refuses_transiently(workspace) -> None:  # type: ignore[no-untyped-def]
    with SpoolGateway(workspace, _config(max_associations=1)) as server:
        first = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        assert first.is_established
        second = _scu("MODALITY2").associate("127.0.0.1", server.port, ae_title="CURATA")
        assert second.is_rejected
        first.release()
        deadline = time.monotonic() + 10
        third = None
        while time.monotonic() < deadline:  # the first association's process has ended: room again
            third = _scu("MODALITY2").associate("127.0.0.1", server.port, ae_title="CURATA")
            if third.is_established:
                break
            time.sleep(0.2)
        assert third is not None and third.is_established
        assert third.send_c_echo().Status == 0x0000
        third.release()


def test_port_in_use_is_a_clear_error(workspace) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(NetworkError, match=f"cannot listen on 127.0.0.1:{port}"):
            SpoolGateway(workspace, _config(port=port)).start()


def test_dicom_tls_needs_the_python_front_end(workspace) -> None:  # type: ignore[no-untyped-def]
    from curata.errors import ConfigError

    cfg = _config()
    cfg.dicom_tls = True
    with pytest.raises(ConfigError, match="Python front end"):
        SpoolGateway(workspace, cfg)


def test_a_killed_gateway_loses_nothing_and_files_nothing_twice(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the gateway right after the sender was answered: the answered instances wait in the
    spool; the next start files each exactly once, and its log names no patient."""
    need("storescu")
    folder = ct_series(12)
    port = free_port()
    env = {**os.environ, "CURATA_WORKSPACE": str(workspace.root)}
    env.pop("CURATA_DATABASE_URL", None)
    curata = str(Path(sys.executable).parent / "curata")
    cmd = [curata, "gateway", "serve", "--front-end", "dcmtk", "--port", str(port)]
    cmd += ["--bind", "127.0.0.1", "--workers", "1", "--json"]

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = subprocess.run(["echoscu", "-aec", "CURATA", "127.0.0.1", str(port)], capture_output=True)
            if probe.returncode == 0:
                return proc
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        raise AssertionError("the gateway did not start")

    first = start()
    # hold the drain back: the catalog is locked, so nothing is filed while the sender is answered
    import sqlite3

    lock = sqlite3.connect(workspace.root / "catalog.sqlite", timeout=30)
    lock.execute("BEGIN EXCLUSIVE")
    sent = storescu(port, folder)
    assert sent.returncode == 0, sent.stderr
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    lock.rollback()
    lock.close()
    spooled = _spooled(workspace)
    assert len(spooled) == 12, "every answered instance must be durable in the spool"
    second = start()
    deadline = time.monotonic() + 120
    while _spooled(workspace) and time.monotonic() < deadline:
        time.sleep(0.1)
    again = storescu(port, folder)  # the PACS re-sends the whole study
    assert again.returncode == 0, again.stderr
    deadline = time.monotonic() + 120
    while _spooled(workspace) and time.monotonic() < deadline:
        time.sleep(0.1)
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=120)
    assert count(workspace) == 12 and received_count(workspace) == 12
    assert assert_deidentified(workspace, PLANTED) == 12
    for value in (*PLANTED, "Doe", "Jane"):
        assert value.lower() not in (out + err).lower(), f"{value!r} in the gateway's output"
    assert '"stored": 12' in out and '"present": 12' in out
