"""Real peers on loopback: an Orthanc PACS (with the DICOMweb plugin) holding planted identifiers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import make_ct, require_peer, require_programs

PLANTED = ("Doe^Jane", "PAT-0001", "Roe^Richard", "PAT-0002", "ACC123")
DICOMWEB_PLUGIN = next(
    (
        p
        for p in (
            Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
            *sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")),
        )
        if p.exists()
    ),
    None,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(*programs: str) -> None:
    require_programs(*programs)


@dataclass
class Orthanc:
    """A running Orthanc: DICOM on ``dicom_port`` (AE ORTHANC), REST and DICOMweb on ``http_port``."""

    dicom_port: int
    http_port: int
    gateway_port: int  # where Orthanc's modality "curata" (AE CURATA) is expected to listen
    instances: list[str] = field(default_factory=list)  # Orthanc ids of what it holds
    source_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)
    ae_title: str = "ORTHANC"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, raw: bytes) -> str:
        r = httpx.post(f"{self.url}/instances", content=raw, timeout=30)
        r.raise_for_status()
        return str(r.json()["ID"])


def _study_files(tmp: Path) -> list[Path]:
    """Two patients, three series, 10 instances, with identifiers planted in the headers."""
    files: list[Path] = []
    layout = [("PAT-0001", "Doe^Jane", [4, 3]), ("PAT-0002", "Roe^Richard", [3])]
    for pid, name, series_sizes in layout:
        study = generate_uid()
        for s_index, size in enumerate(series_sizes):
            series = generate_uid()
            for i in range(size):
                path = tmp / pid / f"S{s_index}" / f"IM{i}.dcm"
                ds = make_ct(
                    None, patient_id=pid, patient_name=name, study_uid=study, series_uid=series, index=i
                )
                ds.SeriesNumber = s_index + 1
                ds.Modality = "CT" if s_index == 0 else "MR"
                ds.InstitutionName = "St Elsewhere General"
                ds.ReferringPhysicianName = "House^Gregory"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
    return files


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    need("Orthanc")
    require_peer(DICOMWEB_PLUGIN is not None, "the orthanc-dicomweb plugin")
    root = tmp_path_factory.mktemp("orthanc")
    peer = Orthanc(dicom_port=free_port(), http_port=free_port(), gateway_port=free_port())
    config = {
        "Name": "test-pacs",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "DicomAet": peer.ae_title,
        "DicomPort": peer.dicom_port,
        "HttpPort": peer.http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": {"curata": ["CURATA", "127.0.0.1", peer.gateway_port]},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "SaveJobs": False,
        "StableAge": 1,
    }
    cfg_path = root / "orthanc.json"
    cfg_path.write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    env = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk inside Orthanc: no delayed-ACK stall per instance
    proc = subprocess.Popen(["Orthanc", str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{peer.url}/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
        import pydicom

        for path in _study_files(root / "src"):
            peer.instances.append(peer.upload(path.read_bytes()))
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            peer.source_uids.append(str(ds.SOPInstanceUID))
            if str(ds.SeriesInstanceUID) not in peer.series_uids:
                peer.series_uids.append(str(ds.SeriesInstanceUID))
        yield peer
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


from tests.server.conftest import serve, tls_files  # noqa: E402, F401  (HTTP server fixtures)
