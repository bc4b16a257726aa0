"""SEG/SR made in the viewer come back by STOW through the project's DICOMweb: stored as new objects with
their references intact, provenance naming the author, refused when they point outside the project."""

from __future__ import annotations

import io
import re
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from fastapi.testclient import TestClient
from sqlalchemy import select

from curata.catalog import Instance, Provenance, Series
from curata.collect.dicomweb import _multipart
from curata.server import service
from curata.server.app import create_app
from tests.conftest import pseudonym_of
from tests.server.conftest import PASSWORD


def _images(ws: Any, series_uid: str) -> list[pydicom.Dataset]:
    with ws.catalog.session() as s:
        digests = list(
            s.scalars(
                select(Instance.blob_digest)
                .join(Series, Instance.series_id == Series.id)
                .where(Series.series_uid == series_uid)
                .order_by(Instance.instance_number)
            )
        )
    out = [pydicom.dcmread(io.BytesIO(ws.store.get_bytes(d))) for d in digests]
    for ds in out:  # what highdicom's Segmentation reads from its sources
        ds.StudyID = ds.get("StudyID") or ""  # empty, as the stored study has none (a value is refused)
        ds.ReferringPhysicianName = ds.get("ReferringPhysicianName") or ""
        ds.AccessionNumber = ds.get("AccessionNumber") or ""
    return out


def _seg(images: list[pydicom.Dataset]) -> bytes:
    mask = np.zeros((len(images), images[0].Rows, images[0].Columns), dtype=np.uint8)
    mask[:, 4:9, 5:11] = 1
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=hd.sr.CodedConcept(
            "49755003", "SCT", "Morphologically Altered Structure"
        ),
        segmented_property_type=hd.sr.CodedConcept("52988006", "SCT", "Lesion"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=images,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="OHIF",
        manufacturer_model_name="viewer",
        software_versions="3",
        device_serial_number="1",
    )
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def test_a_seg_from_the_viewer_is_stored_with_provenance(platform: Any) -> None:
    p = platform
    images = _images(p.ws, p.series["site-a"])
    seg = _seg(images)
    body, ctype = _multipart.encode([({}, seg)])
    with TestClient(create_app(p.ws, verified_deidentified=True), base_url="http://testserver") as c:
        tok = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/ui/login").text).group(1)  # type: ignore[union-attr]
        c.post("/ui/login", data={"username": "ann", "password": PASSWORD, "csrf_token": tok})
        url = "/projects/alpha/dicomweb/studies"
        # with the session cookie: from another origin (or none) it is refused, from ours it is filed
        assert c.post(url, content=body, headers={"Content-Type": ctype}).status_code == 403
        r = c.post(url, content=body, headers={"Content-Type": ctype, "Origin": "https://evil.example"})
        assert r.status_code == 403
        r = c.post(url, content=body, headers={"Content-Type": ctype, "Origin": "http://testserver"})
        assert r.status_code == 200, r.text
        stored = pydicom.dcmread(io.BytesIO(seg))
        series = c.get(f"/projects/alpha/dicomweb/studies/{stored.StudyInstanceUID}/series").json()
        assert stored.SeriesInstanceUID in {s["0020000E"]["Value"][0] for s in series}  # UIDs kept
        meta = c.get(
            f"/projects/alpha/dicomweb/studies/{stored.StudyInstanceUID}/series/{stored.SeriesInstanceUID}/metadata"
        ).json()[0]
        assert meta["00120062"]["Value"] == ["YES"]  # marked de-identified: derived from pseudonymous images
        # a SEG that points at another project's study is refused, whoever sends it
        other = _seg(_images(p.ws, p.series["site-b"]))
        body2, ctype2 = _multipart.encode([({}, other)])
        r = c.post(url, content=body2, headers={"Content-Type": ctype2, "Origin": "http://testserver"})
        assert r.status_code == 409
    with p.ws.catalog.session() as s:
        prov = s.scalars(select(Provenance).where(Provenance.step == "viewer.stow")).one()
    assert prov.parameters == {"project": "alpha", "author": "ann"}
    assert p.series["site-a"] in prov.inputs
    assert any(e.action == "upload" and e.username == "ann" for e in service.audit_events(p.ws))


def test_qido_includefield_adds_what_is_asked(platform: Any) -> None:
    p = platform
    with TestClient(create_app(p.ws)) as c:
        url = f"/projects/alpha/dicomweb/studies/{p.studies['site-a']}/series"
        plain = c.get(url, headers=p.auth("cur")).json()[0]
        assert "00100020" not in plain and "00080070" not in plain
        asked = c.get(url, params={"includefield": "00100020,Manufacturer"}, headers=p.auth("cur")).json()[0]
        assert asked["00100020"]["Value"] == [pseudonym_of("PA")] and asked["00080070"]["Value"] == [
            "GE MEDICAL SYSTEMS"
        ]
        everything = c.get(
            f"{url}/{p.series['site-a']}/instances", params={"includefield": "all"}, headers=p.auth("cur")
        ).json()
        assert len(everything) == 3 and all(i["00080020"]["Value"] == ["20240301"] for i in everything)
