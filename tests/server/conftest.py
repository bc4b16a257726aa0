"""A real uvicorn server on a loopback port, in a thread, for the HTTP tests."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydicom.uid import generate_uid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    def __init__(self, app: Any, *, certfile: Path | None = None, keyfile: Path | None = None) -> None:
        self.port = free_port()
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app, tls=...)`` -> a started ServerThread; all are stopped at the end of the test."""
    started: list[ServerThread] = []

    def start(app: Any, certfile: Path | None = None, keyfile: Path | None = None) -> ServerThread:
        server = ServerThread(app, certfile=certfile, keyfile=keyfile).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key) in PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


PASSWORD = "correct horse battery"
ROLE_USERS = {
    "adm": "admin",
    "cur": "curator",
    "ann": "annotator",
    "rev": "reviewer",
    "hos": "site",
    "lic": "licensee",
}


class Platform:
    """A workspace with two sites in two projects, a user per role in ``alpha``, an ``outsider``
    (curator of ``beta`` only) and a platform admin ``root``; each user has an API token."""

    def __init__(self, ws: Any, studies: dict[str, str], series: dict[str, str]) -> None:
        self.ws = ws
        self.studies = studies  # site -> study uid
        self.series = series  # site -> series uid
        self.tokens: dict[str, str] = {}

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


def _build_platform(root: Path) -> dict[str, Any]:
    import os

    from sqlalchemy import select

    from curata.catalog import Patient, Series, Site, Study
    from curata.collect.ingest import Ingestor
    from curata.server import service
    from curata.workspace import Workspace
    from tests.conftest import make_ct

    os.environ.pop("CURATA_DATABASE_URL", None)
    ws = Workspace.init(root / "ws", site="test-site")
    for site, pid in (("site-a", "PA"), ("site-b", "PB")):
        src = root / "in" / site
        study, series = generate_uid(), generate_uid()
        for i in range(3):  # patient name = pseudonym, as de-identification leaves it
            make_ct(
                src / f"IM{i}",
                patient_id=pid,
                patient_name=pid,
                study_uid=study,
                series_uid=series,
                index=i,
                deidentified=True,
            )
        Ingestor(ws, deidentify=False, site=site, workers=1).ingest_paths([src])
    studies, series_uids = {}, {}
    with ws.catalog.session() as s:
        for site_name, st, se in s.execute(
            select(Site.name, Study.study_uid, Series.series_uid)
            .join(Patient, Patient.site_id == Site.id)
            .join(Study, Study.patient_id == Patient.id)
            .join(Series, Series.study_id == Study.id)
        ):
            studies[site_name], series_uids[site_name] = st, se
    service.create_project(ws, "alpha", title="Alpha")
    service.add_resource(ws, "alpha", "site", "site-a")
    service.create_project(ws, "beta", title="Beta")
    service.add_resource(ws, "beta", "site", "site-b")
    for user, role in ROLE_USERS.items():
        service.create_user(ws, user, PASSWORD)
        service.set_role(ws, user, "alpha", role)
    service.create_user(ws, "outsider", PASSWORD)
    service.set_role(ws, "outsider", "beta", "curator")
    service.create_user(ws, "root", PASSWORD, platform_admin=True)
    tokens = {
        user: service.create_token(ws, user, "test").token for user in (*ROLE_USERS, "outsider", "root")
    }
    ws.catalog.dispose()
    return {"studies": studies, "series": series_uids, "tokens": tokens}


@pytest.fixture(scope="session")
def _platform_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Built once per session (ingest, argon2 hashes), copied for each test."""
    root = tmp_path_factory.mktemp("platform-template")
    return root / "ws", _build_platform(root)


@pytest.fixture
def platform(
    _platform_template: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Platform:
    import shutil

    from curata.workspace import Workspace

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    template, info = _platform_template
    shutil.copytree(template, tmp_path / "ws", symlinks=True)
    p = Platform(Workspace.open(tmp_path / "ws"), info["studies"], info["series"])
    p.tokens = dict(info["tokens"])
    return p


@pytest.fixture
def stocked(platform: Platform) -> Platform:
    """The platform after QC, a cohort, a release of alpha's site licensed to ``lic`` (and logged with
    a fee, for revenue) and a signed checkpoint."""
    from curata.ledger import Ledger
    from curata.ledger.revenue import add_licence
    from curata.publish import create_release
    from curata.select import create_cohort, run_qc
    from curata.server import service

    ws = platform.ws
    run_qc(ws, workers=1)
    create_cohort(ws, "ct-a", "site = site-a")
    service.add_resource(ws, "alpha", "cohort", "ct-a")
    rel = create_release(ws, "rel-a", cohort="ct-a", split="100,0,0")
    service.add_resource(ws, "alpha", "release", "rel-a")
    service.grant_licence(ws, "lic", "alpha", rel.ref)
    ledger = Ledger.open(ws)
    import datetime as _dt

    add_licence(ledger, "lic", rel.ref, 1_000_00, on=_dt.date(2026, 11, 2))
    ledger.checkpoint()
    platform.release = rel.ref  # type: ignore[attr-defined]
    return platform
