"""The gateway SCP against real senders: dcmtk's storescu/echoscu, a pynetdicom SCU, and Orthanc."""

from __future__ import annotations

import sqlite3
import subprocess

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification
from sqlalchemy import select

from curata.catalog import Instance
from curata.collect.net.config import AllowRule, GatewayConfig
from curata.collect.net.scp import GatewayServer
from tests.collect.net.conftest import PLANTED, free_port, need
from tests.collect.net.helpers import (
    assert_deidentified,
    count,
    quarantined_count,
    received_count,
    record,
    storescu,
)
from tests.conftest import make_ct

pytestmark = pytest.mark.integration


def _config(port: int = 0, allow: list[str] | None = None) -> GatewayConfig:
    return GatewayConfig(
        ae_title="CURATA",
        port=port,
        bind="127.0.0.1",
        workers=1,
        allow=[AllowRule.parse(a) for a in allow or []],
    )


def test_storescu_push_is_deidentified_and_filed_exactly_once(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    need("storescu", "echoscu")
    folder = ct_series(6)
    with GatewayServer(workspace, _config()) as server:
        echo = subprocess.run(
            ["echoscu", "-aec", "CURATA", "127.0.0.1", str(server.port)], capture_output=True
        )
        assert echo.returncode == 0, echo.stderr
        first = storescu(server.port, folder)
        assert first.returncode == 0, first.stderr
        assert server.counts.stored == 6
        again = storescu(server.port, folder)  # a PACS re-sending the same study
        assert again.returncode == 0, again.stderr
        assert server.counts.present == 6
    assert count(workspace) == 6 and received_count(workspace) == 6
    assert assert_deidentified(workspace, ("Doe^Jane", "PAT-0001", "ACC123")) == 6
    record("storescu -> gateway (sent twice)", 12, count(workspace))


def test_association_from_unlisted_ae_is_rejected(workspace) -> None:  # type: ignore[no-untyped-def]
    need("echoscu")
    with GatewayServer(workspace, _config(allow=["MODALITY1", "PACS@127.0.0.1"])) as server:

        def echo(aet: str) -> int:
            cmd = ["echoscu", "-aet", aet, "-aec", "CURATA", "127.0.0.1", str(server.port)]
            return subprocess.run(cmd, capture_output=True, timeout=30).returncode

        assert echo("INTRUDER") != 0
        assert echo("MODALITY1") == 0
        assert echo("PACS") == 0
        assert server.counts.rejected_associations == 1
    with GatewayServer(workspace, _config(allow=["PACS@10.9.9.9"])) as server:
        cmd = ["echoscu", "-aet", "PACS", "-aec", "CURATA", "127.0.0.1", str(server.port)]
        assert subprocess.run(cmd, capture_output=True, timeout=30).returncode != 0  # right AE, wrong host


def _scu() -> AE:
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae


def test_bad_dataset_is_refused_with_failure_and_the_server_keeps_serving(workspace) -> None:  # type: ignore[no-untyped-def]
    with GatewayServer(workspace, _config()) as server:
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        assert assoc.is_established
        bad = make_ct()
        del bad.StudyInstanceUID  # cannot be filed: de-identification refuses it
        status = assoc.send_c_store(bad)
        assert status.Status == 0xC000 and "refused" in status.ErrorComment
        good = make_ct(index=1)
        assert assoc.send_c_store(good).Status == 0x0000  # same association goes on
        assoc.release()
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")  # and new ones too
        assert assoc.send_c_store(make_ct(index=2)).Status == 0x0000
        assoc.release()
        assert server.counts.refused == 1 and server.counts.stored == 2
    assert count(workspace) == 2 and quarantined_count(workspace) == 1
    record("pynetdicom SCU -> gateway (1 malformed)", 3, count(workspace))


def test_catalog_failure_is_never_acknowledged(workspace) -> None:  # type: ignore[no-untyped-def]
    db = workspace.root / "catalog.sqlite"
    with GatewayServer(workspace, _config()) as server:
        with sqlite3.connect(db) as conn:  # a real database failure: the table disappears
            conn.execute("ALTER TABLE instance RENAME TO instance_away")
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        ds = make_ct()
        status = assoc.send_c_store(ds)
        assert status.Status == 0xA700, "a failed catalog write must not be acknowledged"
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE instance_away RENAME TO instance")
        assert assoc.send_c_store(ds).Status == 0x0000  # the sender's retry succeeds
        assoc.release()
    assert count(workspace) == 1 and received_count(workspace) == 1


def test_common_transfer_syntaxes_are_accepted(workspace) -> None:  # type: ignore[no-untyped-def]
    """Compressed and deflated objects from pydicom's test data: each is filed or refused, never lost."""
    need("storescu")
    from pydicom.data import get_testdata_file

    files = {  # file -> the storescu option proposing its transfer syntax
        "CT_small.dcm": "-xe",  # explicit VR little endian
        "SC_rgb_jpeg_dcmtk.dcm": "-xy",  # JPEG baseline
        "JPEG-LL.dcm": "-xs",  # JPEG lossless SV1
        "MR_small_jp2klossless.dcm": "-xv",  # JPEG 2000 lossless
        "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS lossless
        "MR_small_RLE.dcm": "-xr",  # RLE
        "image_dfl.dcm": "-xd",  # deflated
    }
    names = list(files)
    with GatewayServer(workspace, _config()) as server:
        for name, option in files.items():
            src = get_testdata_file(name)
            assert src is not None, name
            cmd = ["storescu", option, "-aec", "CURATA", "127.0.0.1", str(server.port), str(src)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (name, done.stderr[-500:])
        answered = server.counts.stored + server.counts.refused + server.counts.present
    assert answered == len(names), "every object was negotiated and answered"
    # the three MR_small files share one SOP Instance UID: filed once, the others answered "present"
    distinct = {
        str(pydicom.dcmread(get_testdata_file(n), stop_before_pixels=True).SOPInstanceUID) for n in names
    }
    assert count(workspace) + quarantined_count(workspace) == len(distinct) == 5
    with workspace.catalog.session() as s:
        syntaxes = set(s.scalars(select(Instance.transfer_syntax)))
    assert len(syntaxes) >= 3, syntaxes  # compressed objects are kept compressed
    record(
        "storescu (7 transfer syntaxes, 5 distinct SOP instances) -> gateway", len(names), count(workspace)
    )


def test_orthanc_pushes_to_the_gateway(workspace, orthanc) -> None:  # type: ignore[no-untyped-def]
    with GatewayServer(workspace, _config(port=orthanc.gateway_port, allow=["ORTHANC"])):
        r = httpx.post(
            f"{orthanc.url}/modalities/curata/store",
            json={"Resources": orthanc.instances, "Synchronous": True},
            timeout=120,
        )
        assert r.status_code == 200, r.text
    assert count(workspace) == len(orthanc.instances) == received_count(workspace)
    assert assert_deidentified(workspace, PLANTED) == len(orthanc.instances)
    record("Orthanc C-STORE -> gateway", len(orthanc.instances), count(workspace))


def test_port_in_use_is_a_clear_error(workspace) -> None:  # type: ignore[no-untyped-def]
    from curata.errors import NetworkError

    port = free_port()
    with GatewayServer(workspace, _config(port=port)), pytest.raises(NetworkError, match="cannot listen"):
        GatewayServer(workspace, _config(port=port)).start()
    assert generate_uid()  # uid generator untouched


def test_every_acknowledged_instance_survives_a_kill(workspace) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the gateway mid-stream: whatever it acknowledged is in the catalog and the store."""
    import os
    import signal
    import sys
    import threading
    import time

    from curata.collect.net.receive import Receiver
    from curata.store import open_store

    need("echoscu")
    port = free_port()
    cmd = [sys.executable, "-m", "curata.cli", "gateway", "serve", "-w", str(workspace.root)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--bind", "127.0.0.1", "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 60
        echo = ["echoscu", "-to", "2", "-aec", "CURATA", "127.0.0.1", str(port)]
        while subprocess.run(echo, capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.2)
        assoc = _scu().associate("127.0.0.1", port, ae_title="CURATA")
        study, series = generate_uid(), generate_uid()
        for i in range(40):
            if i == 5:  # without warning, while the next instances are in flight
                threading.Timer(0.05, os.kill, (proc.pid, signal.SIGKILL)).start()
            ds = make_ct(study_uid=study, series_uid=series, index=i)
            status = assoc.send_c_store(ds) if assoc.is_established else None
            if status is not None and status.get("Status") == 0x0000:
                acked.append(str(ds.SOPInstanceUID))
            elif not assoc.is_established:
                break
        if assoc.is_established:
            assoc.abort()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert 1 <= len(acked) <= 40
    ws = type(workspace).open(workspace.root)
    receiver = Receiver(ws, deidentify=False)
    assert receiver.missing(acked) == [], "an acknowledged instance was lost"
    store = open_store(str(ws.store_path))
    with ws.catalog.session() as s:
        digests = list(s.scalars(select(Instance.blob_digest)))
    assert len(digests) >= len(acked)
    assert all(store.exists(d) and store.hash_of(d) == d for d in digests)
    record(
        "pynetdicom SCU -> gateway killed with SIGKILL mid-stream (acked vs filed)", len(acked), len(digests)
    )


def test_dicom_tls(workspace, tls_files) -> None:  # type: ignore[no-untyped-def]
    import ssl

    cert, key = tls_files
    cfg = _config()
    cfg.tls_cert, cfg.tls_key, cfg.dicom_tls = str(cert), str(key), True
    with GatewayServer(workspace, cfg) as server:
        client = ssl.create_default_context(cafile=str(cert))
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA", tls_args=(client, "127.0.0.1"))
        assert assoc.is_established
        assert assoc.send_c_store(make_ct()).Status == 0x0000
        assoc.release()
        scu = _scu()
        scu.acse_timeout = scu.network_timeout = 2
        plain = scu.associate("127.0.0.1", server.port, ae_title="CURATA")  # no TLS: no association
        assert not plain.is_established
    assert count(workspace) == 1


def test_concurrent_associations_share_commits_and_lose_nothing(workspace) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    def send(patient: int) -> int:
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="CURATA")
        study, series = generate_uid(), generate_uid()
        ok = 0
        for i in range(4):
            ds = make_ct(patient_id=f"PAT-{patient:04d}", study_uid=study, series_uid=series, index=i)
            ok += assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        return ok

    with GatewayServer(workspace, _config()) as server, ThreadPoolExecutor(4) as pool:
        acked = sum(pool.map(send, range(4)))
    assert acked == 16 == count(workspace) == received_count(workspace)
    record("4 concurrent pynetdicom SCUs -> gateway", 16, count(workspace))
