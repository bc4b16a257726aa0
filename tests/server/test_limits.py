"""Server limits: STOW body size, QIDO paging bounds, and STOW to one study's URL."""

from __future__ import annotations

import socket

import httpx
from sqlalchemy import func, select

from curata.catalog import Instance
from curata.collect.dicomweb import _multipart
from curata.server import create_app
from tests.conftest import make_ct

TOKEN = "limits-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _count(ws) -> int:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(Instance)) or 0)


def _part(**kw) -> bytes:  # type: ignore[no-untyped-def]
    import io

    buf = io.BytesIO()
    make_ct(**kw).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_stow_body_over_the_limit_is_413_before_it_is_read(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN, max_upload_bytes=1 << 20))
    body, ctype = _multipart.encode([({}, b"\0" * (2 << 20))])
    r = httpx.post(
        f"{server.url}/dicomweb/studies", content=body, headers={"Content-Type": ctype, **AUTH}, timeout=30
    )
    assert r.status_code == 413

    # a chunked upload (no Content-Length) is cut off when it passes the limit
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(64):
            yield b"\0" * 65536

    r = httpx.post(
        f"{server.url}/dicomweb/studies",
        content=chunks(),
        headers={"Content-Type": ctype, **AUTH},
        timeout=30,
    )
    assert r.status_code == 413
    # a lying Content-Length, on a raw socket: refused from the header alone
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            f"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {500 << 20}\r\n\r\n".encode()
        )
        assert b" 413 " in s.recv(4096).split(b"\r\n", 1)[0] + b" "
    assert _count(workspace) == 0 and not any(workspace.quarantine_path.iterdir())
    # under the limit, it works
    body, ctype = _multipart.encode([({}, _part())])
    r = httpx.post(
        f"{server.url}/dicomweb/studies", content=body, headers={"Content-Type": ctype, **AUTH}, timeout=30
    )
    assert r.status_code == 200 and _count(workspace) == 1


def test_qido_limit_and_offset_are_bounded(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN))
    body, ctype = _multipart.encode([({}, _part(index=i)) for i in range(3)])
    assert (
        httpx.post(
            f"{server.url}/dicomweb/studies", content=body, headers={"Content-Type": ctype, **AUTH}
        ).status_code
        == 200
    )
    base = f"{server.url}/dicomweb/instances"
    assert len(httpx.get(f"{base}?limit=99999999999999999999", headers=AUTH).json()) == 3  # cut, not a 500
    for bad in (
        "offset=99999999999999999999",
        "limit=-1",
        "offset=-5",
        "limit=x",
    ):
        r = httpx.get(f"{base}?{bad}", headers=AUTH)
        assert r.status_code == 400, (bad, r.status_code)
    assert len(httpx.get(f"{base}?limit=2", headers=AUTH).json()) == 2
    assert len(httpx.get(f"{base}?limit=2&offset=2", headers=AUTH).json()) == 1
    assert len(httpx.get(f"{base}?limit=1000000", headers=AUTH).json()) == 3  # cut to the server's page size


def test_stow_to_a_study_url_refuses_other_studies(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    from pydicom.uid import generate_uid

    server = serve(create_app(workspace, token=TOKEN))
    mine, other = generate_uid(), generate_uid()
    body, ctype = _multipart.encode([({}, _part(study_uid=mine)), ({}, _part(study_uid=other, index=1))])
    r = httpx.post(
        f"{server.url}/dicomweb/studies/{mine}", content=body, headers={"Content-Type": ctype, **AUTH}
    )
    assert r.status_code == 202, r.text
    assert len(r.json()["00081199"]["Value"]) == 1 and len(r.json()["00081198"]["Value"]) == 1
    assert _count(workspace) == 1
