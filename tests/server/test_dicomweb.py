"""The DICOMweb server over a workspace, exercised with dicomweb-client over real HTTP (uvicorn)."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from sqlalchemy import func, select

from curata.catalog import Instance
from curata.collect.dicomweb import multipart as _multipart
from curata.server import create_app
from tests.conftest import make_ct

TOKEN = "s3cret-token"
PLANTED = (b"Doe^Jane", b"PAT-0001", b"ACC123")


def _count(ws) -> int:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(Instance)) or 0)


def _stow(
    url: str, raws: list[bytes], token: str | None = TOKEN, headers: list[dict] | None = None
) -> httpx.Response:
    body, ctype = _multipart.encode([((headers or [{}] * len(raws))[i], r) for i, r in enumerate(raws)])
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{url}/dicomweb/studies", content=body, headers={**auth, "Content-Type": ctype}, timeout=60
    )


def _files(ct_series, n: int = 4, **kw) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [p.read_bytes() for p in sorted(ct_series(n, **kw).iterdir())]


def test_stow_deidentifies_then_qido_and_wado_serve_it(workspace, ct_series, serve) -> None:  # type: ignore[no-untyped-def]
    from dicomweb_client.api import DICOMwebClient

    server = serve(create_app(workspace, token=TOKEN))
    raws = _files(ct_series, 4)
    r = _stow(server.url, raws)
    assert r.status_code == 200, r.text
    stored = r.json()["00081199"]["Value"]
    assert len(stored) == 4 and _count(workspace) == 4
    for raw in (workspace.store.get_bytes(d) for d in _digests(workspace)):
        assert not any(p in raw for p in PLANTED)

    client = DICOMwebClient(f"{server.url}/dicomweb", headers={"Authorization": f"Bearer {TOKEN}"})
    studies = client.search_for_studies()
    assert len(studies) == 1
    study = studies[0]
    assert study["00201208"]["Value"] == [4] and study["00080061"]["Value"] == ["CT"]
    pseudonym = study["00100020"]["Value"][0]
    assert pseudonym != "PAT-0001"
    assert len(client.search_for_studies(search_filters={"PatientID": pseudonym})) == 1
    assert client.search_for_studies(search_filters={"PatientID": "PAT-0001"}) == []
    study_uid = study["0020000D"]["Value"][0]
    series = client.search_for_series(study_instance_uid=study_uid, search_filters={"Modality": "CT"})
    assert len(series) == 1
    series_uid = series[0]["0020000E"]["Value"][0]
    instances = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid)
    assert len(instances) == 4
    assert len(client.search_for_instances(search_filters={"limit": 2})) == 2
    sop = instances[0]["00080018"]["Value"][0]

    ds = client.retrieve_instance(study_uid, series_uid, sop)
    assert ds.PatientIdentityRemoved == "YES" and ds.SOPInstanceUID == sop
    assert len(client.retrieve_series(study_uid, series_uid)) == 4
    meta = client.retrieve_series_metadata(study_uid, series_uid)
    assert len(meta) == 4 and "BulkDataURI" in meta[0]["7FE00010"]
    frame = client.retrieve_instance_frames(study_uid, series_uid, sop, frame_numbers=[1])[0]
    assert frame == ds.PixelData and np.frombuffer(frame, np.uint16).size == 16 * 16
    bulk = httpx.get(meta[0]["7FE00010"]["BulkDataURI"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert bulk.status_code == 200
    parts = _multipart.decode(bulk.content, bulk.headers["content-type"])
    assert len(parts[0][1]) == len(ds.PixelData)


def _digests(ws) -> list[str]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return list(s.scalars(select(Instance.blob_digest)))


def test_token_is_required(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN))
    assert httpx.get(f"{server.url}/dicomweb/studies").status_code == 401
    bad = httpx.get(f"{server.url}/dicomweb/studies", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    good = httpx.get(f"{server.url}/dicomweb/studies", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and good.json() == []
    assert _stow(server.url, [make_ct().to_json().encode()], token=None).status_code == 401


def test_central_server_refuses_what_is_not_deidentified(workspace, ct_series, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    raw_phi = _files(ct_series, 2)
    r = _stow(server.url, raw_phi)
    assert r.status_code == 409
    assert [i["00081197"]["Value"][0] for i in r.json()["00081198"]["Value"]] == [0xC000, 0xC000]
    assert _count(workspace) == 0
    clean = _files(ct_series, 3, folder="clean", deidentified=True)
    r = _stow(server.url, [*clean, raw_phi[0]])
    assert r.status_code == 202
    assert len(r.json()["00081199"]["Value"]) == 3 and len(r.json()["00081198"]["Value"]) == 1
    # stored unchanged: the platform's blobs are exactly the bytes the gateway sent
    assert sorted(_digests(workspace)) == sorted(hashlib.sha256(c).hexdigest() for c in clean)


def test_central_server_keeps_no_raw_copy_of_what_it_refuses(workspace, ct_series, serve) -> None:  # type: ignore[no-untyped-def]
    """Reviewer 8, finding 8: STOW answered 409 but kept the raw object (name, MRN, birth date) in the
    platform's quarantine/; finding 4: an object marked YES that keeps the raw MRN was stored. Now the
    sender keeps its copy and the platform keeps the digest, size and reason only."""
    from curata.catalog import QuarantineItem

    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    raw_phi = _files(ct_series, 1)
    marked = pydicom.dcmread(io.BytesIO(_files(ct_series, 1, folder="marked", deidentified=True)[0]))
    marked.PatientID = marked.PatientName = "PAT-0001"  # the raw MRN, under PatientIdentityRemoved YES
    buf = io.BytesIO()
    marked.save_as(buf, enforce_file_format=True)
    r = _stow(server.url, [*raw_phi, buf.getvalue()])
    assert r.status_code == 409
    assert [i["00081197"]["Value"][0] for i in r.json()["00081198"]["Value"]] == [0xC000, 0xC000]
    assert _count(workspace) == 0
    assert [p.name for p in workspace.quarantine_path.rglob("*")] == []
    with workspace.catalog.session() as s:
        rows = {q.input_digest: (q.size, q.reason) for q in s.scalars(select(QuarantineItem))}
    sent = {hashlib.sha256(b).hexdigest(): len(b) for b in (*raw_phi, buf.getvalue())}
    assert {d: size for d, (size, _r) in rows.items()} == sent
    assert not any(p.decode() in reason for p in PLANTED for _s, reason in rows.values())


def test_stow_checks_the_content_digest(workspace, ct_series, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    good, other = _files(ct_series, 2, deidentified=True)

    def digest(data: bytes) -> dict[str, str]:
        return {
            "Content-Digest": "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
        }

    r = _stow(server.url, [good, other], headers=[digest(good), digest(b"something else")])
    assert r.status_code == 202
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert _count(workspace) == 1


def test_stow_rejects_a_body_that_is_not_multipart(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN))
    r = httpx.post(
        f"{server.url}/dicomweb/studies",
        content=b"x",
        headers={"Content-Type": "application/dicom", "Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 415


def test_wado_unknown_study_is_404(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(create_app(workspace, token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{server.url}/dicomweb/studies/1.2.3", headers=auth).status_code == 404
    assert httpx.get(f"{server.url}/dicomweb/studies/1.2.3/metadata", headers=auth).status_code == 404


def test_multipart_roundtrip() -> None:
    parts = [({}, b"\r\n--not-a-boundary\r\n"), ({"Content-Location": "x"}, bytes(range(256)))]
    body, ctype = _multipart.encode(parts)
    back = _multipart.decode(body, ctype)
    assert [d for _, d in back] == [d for _, d in parts]
    assert back[1][0]["content-location"] == "x"


@pytest.mark.parametrize("n_frames", [3])
def test_frames_of_a_multiframe_instance(workspace, serve, tmp_path: Path, n_frames: int) -> None:  # type: ignore[no-untyped-def]
    ds = make_ct(deidentified=True)
    ds.NumberOfFrames = n_frames
    frames = [np.full((16, 16), i, np.uint16).tobytes() for i in range(n_frames)]
    ds.PixelData = b"".join(frames)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    assert _stow(server.url, [buf.getvalue()]).status_code == 200
    url = f"{server.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.get(f"{url}/instances/{ds.SOPInstanceUID}/frames/3,1", headers=auth)
    assert r.status_code == 200
    got = [d for _, d in _multipart.decode(r.content, r.headers["content-type"])]
    assert got == [frames[2], frames[0]]
    assert httpx.get(f"{url}/instances/{ds.SOPInstanceUID}/frames/4", headers=auth).status_code == 404
    assert pydicom.dcmread(io.BytesIO(workspace.store.get_bytes(_digests(workspace)[0]))).NumberOfFrames == 3


def test_a_decoder_panic_on_a_thumbnail_is_a_clear_400_and_the_server_serves_on(
    workspace, tmp_path: Path, serve
) -> None:  # type: ignore[no-untyped-def]
    """The Rust RLE decoder panics on a damaged frame: the rendered/thumbnail answer says the pixel
    data cannot be decoded (400), not an internal error, and the intact series still renders."""
    from curata.catalog import Series, Study
    from curata.collect.ingest import Ingestor
    from tests.conftest import write_good_and_corrupt_series

    write_good_and_corrupt_series(tmp_path / "in", n=1)  # one slice: the series' thumbnail is the damaged one
    Ingestor(workspace, workers=1).ingest_paths([tmp_path / "in"])
    with workspace.catalog.session() as s:
        rows = s.execute(select(Study.study_uid, Series.series_uid, Series.description).join(Study)).all()
    server = serve(create_app(workspace, token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = {
        desc: httpx.get(f"{server.url}/dicomweb/studies/{st}/series/{se}/thumbnail", headers=auth, timeout=60)
        for st, se, desc in rows
    }
    damaged = answers.pop("AXIAL DAMAGED")
    assert damaged.status_code == 400 and "cannot decode pixel data" in damaged.json()["detail"], damaged.text
    (intact,) = answers.values()
    assert intact.status_code == 200 and intact.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_bulkdata_of_an_element_that_is_not_bulk_data_is_404_for_every_element(workspace, serve) -> None:  # type: ignore[no-untyped-def]
    """Every top-level element that is not binary (names, IDs, dates, numbers, sequences) answers 404
    with no value in the body, where it was an internal error (500 and a traceback in the log)."""
    ds = make_ct(deidentified=True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    server = serve(create_app(workspace, token=TOKEN, verified_deidentified=True))
    assert _stow(server.url, [buf.getvalue()]).status_code == 200
    stored = pydicom.dcmread(io.BytesIO(workspace.store.get_bytes(_digests(workspace)[0])))
    url = f"{server.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    text = [e for e in stored if not isinstance(e.value, bytes)]
    assert len(text) > 10
    for elem in text:
        r = httpx.get(f"{url}/instances/{ds.SOPInstanceUID}/bulkdata/{elem.tag:08X}", headers=auth)
        assert r.status_code == 404, (elem.tag, r.status_code)
        assert "not bulk data" in r.json()["detail"]
    pixels = httpx.get(f"{url}/instances/{ds.SOPInstanceUID}/bulkdata/7FE00010", headers=auth)
    assert pixels.status_code == 200
