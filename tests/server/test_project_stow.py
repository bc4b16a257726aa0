"""A SEG sent through a project's STOW-RS (outside review 9, findings 1, 2 and 6): identifiers in its
patient and study attributes or its text are refused with nothing kept; it may only add new series and
instances (never join another project's series); a release never takes a derived object a member
stored, filed or not. Images de-identified with the site's vault, as a site-local install holds them."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import select

from curata.catalog import Instance, Series
from curata.collect.dicomweb import multipart
from tests.conftest import make_ct

NAME, MRN = "QUIMBY^ZEBEDEE", "MRN8675309"
PLANTED = ("QUIMBY", "ZEBEDEE", "8675309", "19610413", "ACC55512")
LABELS = [{"name": "lesion", "value": 1, "code": "52988006", "meaning": "Lesion", "colour": "#ff0000"}]
USERS = {"ann1": ("PA", "annotator"), "annB": ("PB", "annotator"), "site1": ("PA", "site")}


def _build(root: Path) -> dict[str, Any]:
    from curata import annotate
    from curata.collect.ingest import Ingestor
    from curata.select import create_cohort
    from curata.server import service
    from curata.workspace import Workspace

    ws = Workspace.init(root / "ws", site="site-a")
    for site, (pid, name) in {"site-a": (MRN, NAME), "site-b": ("MRN24681357", "WOMBLE^TOBERMORY")}.items():
        study, series = generate_uid(), generate_uid()
        for i in range(4):
            ds = make_ct(patient_id=pid, patient_name=name, study_uid=study, series_uid=series,
                         index=i, rows=24, columns=24)  # fmt: skip
            # as a scanner writes it: a SEG made on these images (highdicom) names the equipment
            # in its ContributingEquipmentSequence, with the serial the site's profile left
            ds.DeviceSerialNumber, ds.StationName = "SN-44719-QX", "CTAWP73"
            (root / site).mkdir(parents=True, exist_ok=True)
            ds.save_as(root / site / f"IM{i}", enforce_file_format=True)
        Ingestor(ws, site=site, workers=1).ingest_paths([root / site])  # de-identified: the vault knows them
    for p, site in (("PA", "site-a"), ("PB", "site-b")):
        create_cohort(ws, f"co{p}", f"site = {site}")
        annotate.create_project(ws, f"les{p}", f"co{p}")
        annotate.set_schema(ws, f"les{p}", LABELS, "Outline every lesion.")
        service.create_project(ws, p, title=p)
        service.add_resource(ws, p, "site", site)
        service.add_resource(ws, p, "annotation", f"les{p}")
    tokens = {}
    for user, (p, role) in USERS.items():
        service.create_user(ws, user, "a long enough password")
        service.set_role(ws, user, p, role)
        tokens[user] = service.create_token(ws, user, "test").token
    annotate.add_reader(ws, "lesPA", "ann1")
    annotate.add_reader(ws, "lesPA", "rev1")
    annotate.add_reader(ws, "lesPB", "revB")
    annotate.add_reader(ws, "lesPB", "annB")
    for p in ("PA", "PB"):
        annotate.create_tasks(ws, f"les{p}")
        annotate.assign(ws, f"les{p}")
    ws.catalog.dispose()
    return tokens


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CURATA_DATABASE_URL", raising=False)
        mp.delenv("CURATA_WORKSPACE", raising=False)
        root = tmp_path_factory.mktemp("project-stow")
        return root / "ws", _build(root)


@pytest.fixture
def site(_template: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from curata.workspace import Workspace

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    shutil.copytree(_template[0], tmp_path / "ws", symlinks=True)
    return Workspace.open(tmp_path / "ws"), _template[1]


def _task(ws: Any, project: str) -> Any:
    from curata import annotate

    return annotate.list_tasks(ws, project)[0]


def _seg(ws: Any, project: str, reader: str, **changes: Any) -> pydicom.Dataset:
    """A reader's SEG on the project's task (as OHIF or Slicer saves it), with ``changes`` made."""
    from curata import annotate

    t = _task(ws, project)
    lm = np.zeros(annotate.series_grid(ws, t.series_uid).shape, np.uint16)
    lm[:, 6:14, 6:14] = 1
    ds = pydicom.dcmread(io.BytesIO(annotate.seg_for(ws, project, t.id, lm, reader=reader)))
    for keyword, value in changes.items():
        if keyword in ("SegmentLabel", "SegmentDescription"):
            setattr(ds.SegmentSequence[0], keyword, value)
        else:
            setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _stow(client: TestClient, token: str, project: str, ds: pydicom.Dataset) -> Any:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    body, ctype = multipart.encode([({}, buf.getvalue())])
    return client.post(
        f"/projects/{project}/dicomweb/studies",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
    )


def _stored(ws: Any, sop: str) -> bool:
    with ws.catalog.session() as s:
        return s.scalar(select(Instance.id).where(Instance.sop_instance_uid == sop)) is not None


def _planted_anywhere(root: Path) -> list[str]:
    """Files of the workspace (store, quarantine, catalog) holding a planted identifier."""
    hits = []
    for f in root.rglob("*"):
        if f.is_file() and ".curata" not in f.parts:  # the vault and key hold the identities, sealed
            data = f.read_bytes().upper()
            hits += [f"{f.name}:{p}" for p in PLANTED if p.encode() in data]
    return hits


PLANTS = {
    "PatientBirthDate": "19610413",
    "AccessionNumber": "ACC55512",
    "StudyID": "55512",
    "StudyDescription": "CT chest Zebedee Quimby",
    "PatientComments": "Zebedee Quimby MRN8675309",
    "InstitutionName": "St Quimby General Hospital",
    "InstitutionAddress": "12 Quimby Lane",
    "SeriesDescription": "Seg of Zebedee Quimby MRN8675309",
    "ContentLabel": "QUIMBY",
    "ContentDescription": "lesion of Zebedee Quimby MRN 8675309",
    "SegmentLabel": "Quimby MRN8675309 lesion",
    "SegmentDescription": "Zebedee Quimby tumour",
}


def test_identifiers_in_a_stowed_seg_are_refused_and_nothing_is_kept(site: Any) -> None:
    from curata import annotate
    from curata.server import create_app

    ws, tokens = site
    t = _task(ws, "lesPA")
    annotate.start(ws, "lesPA", t.id, "ann1")
    with TestClient(create_app(ws)) as client:
        for keyword, value in PLANTS.items():
            ds = _seg(ws, "lesPA", "ann1", **{keyword: value})
            r = _stow(client, tokens["ann1"], "PA", ds)
            assert r.status_code == 409, (keyword, r.text)
            reason = r.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
            assert keyword in reason and value not in reason and "QUIMBY" not in reason.upper(), reason
            assert not _stored(ws, ds.SOPInstanceUID), keyword
        # in a sequence: a value the images do not carry is checked as text, a stored one passes
        for keyword, value in (("DeviceSerialNumber", "MRN8675309"), ("InstitutionName", "Quimby Clinic")):
            ds = _seg(ws, "lesPA", "ann1")
            setattr(ds.ContributingEquipmentSequence[0], keyword, value)
            r = _stow(client, tokens["ann1"], "PA", ds)
            assert r.status_code == 409, (keyword, r.text)
            reason = r.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
            # the reason goes through the catalog's sanitiser, which takes bracketed text out: the
            # item's index goes with it, the sequence and the attribute stay
            assert "ContributingEquipmentSequence" in reason and f".{keyword}" in reason, reason
            assert value not in reason
        assert _planted_anywhere(ws.root) == []
        assert annotate.visible_reads(ws, "lesPA", t.id, "ann1", manager=True) == []
        # control: the same reader's well-formed SEG is stored and filed as their read; a private
        # element it carries is removed, as the basic profile removes them
        ok = _seg(ws, "lesPA", "ann1")
        ok.add_new(0x00091010, "LO", "PRIVATE NOTE")
        r = _stow(client, tokens["ann1"], "PA", ok)
        assert r.status_code == 200, r.text
        assert [x.reader for x in annotate.visible_reads(ws, "lesPA", t.id, "ann1", manager=True)] == ["ann1"]
        meta = client.get(
            f"/projects/PA/dicomweb/studies/{ok.StudyInstanceUID}/series/{ok.SeriesInstanceUID}/metadata",
            headers={"Authorization": f"Bearer {tokens['ann1']}"},
        ).json()[0]
        assert "00091010" not in meta and meta["00120062"]["Value"] == ["YES"]
        # sent again as is: the same object, present (a retry), not a second read
        assert _stow(client, tokens["ann1"], "PA", ok).status_code == 200
        assert len(annotate.visible_reads(ws, "lesPA", t.id, "ann1", manager=True)) == 1


def test_a_stowed_object_cannot_join_another_projects_series(site: Any) -> None:
    from curata.server import create_app, service

    ws, tokens = site
    ta, tb = _task(ws, "lesPA"), _task(ws, "lesPB")
    annB = {"Authorization": f"Bearer {tokens['annB']}"}
    pa_series = f"/projects/PB/dicomweb/studies/{ta.study_uid}/series/{ta.series_uid}/metadata"
    with ws.catalog.session() as s:
        pa_sop = s.scalars(
            select(Instance.sop_instance_uid).join(Series).where(Series.series_uid == ta.series_uid)
        ).first()
    with TestClient(create_app(ws)) as client:
        assert client.get(pa_series, headers=annB).status_code == 404
        for uids in ({"SeriesInstanceUID": ta.series_uid}, {"SOPInstanceUID": pa_sop},
                     {"SeriesInstanceUID": tb.series_uid}, {"SeriesInstanceUID": tb.study_uid}):  # fmt: skip
            ds = _seg(ws, "lesPB", "annB", **uids)
            r = _stow(client, tokens["annB"], "PB", ds)
            assert r.status_code == 409, (uids, r.text)
            assert "UID" in r.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
        assert client.get(pa_series, headers=annB).status_code == 404
        assert ta.series_uid not in client.get("/projects/PB/dicomweb/series", headers=annB).text
        pb = next(p for p in service.list_projects(ws) if p.name == "PB")
        assert ta.series_uid not in pb.series and tb.series_uid not in pb.series
        # a SEG on PB's own study in a new series is stored; its series is annB's alone: another
        # member of PB cannot add to it, annB can
        first = _seg(ws, "lesPB", "annB")
        assert _stow(client, tokens["annB"], "PB", first).status_code == 200
        second = _seg(ws, "lesPB", "annB", SeriesInstanceUID=first.SeriesInstanceUID)
        assert _stow(client, tokens["annB"], "PB", second).status_code == 200
        service.set_role(ws, "ann1", "PB", "curator")
        third = _seg(ws, "lesPB", "annB", SeriesInstanceUID=first.SeriesInstanceUID)
        assert _stow(client, tokens["ann1"], "PB", third).status_code == 409


def test_a_release_takes_no_object_a_member_stored(site: Any) -> None:
    from curata.publish import create_release
    from curata.publish.manifest import Manifest
    from curata.select import create_cohort
    from curata.server import create_app

    ws, tokens = site
    with TestClient(create_app(ws)) as client:
        ds = _seg(ws, "lesPA", "ann1")  # a clean SEG a site account stores: no read of anyone's
        assert _stow(client, tokens["site1"], "PA", ds).status_code == 200
    with ws.catalog.session() as s:
        digest = s.scalar(select(Instance.blob_digest).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
    assert digest
    create_cohort(ws, "everything", "site = site-a")
    rel = create_release(ws, "all-a", cohort="everything", formats="dicom", split="100,0,0")
    files = Manifest.from_bytes(ws.store.get_bytes(rel.manifest)).files
    assert files and digest not in {f.sha256 for f in files}
    assert rel.labelled == 0


def test_an_identifier_hidden_in_iso_2022_escapes_is_refused(site: Any) -> None:
    """Outside review 10, finding 2: the MRN between ISO 2022 escapes decodes to kanji (a fixed point
    of the cleaner) and was stored; the stored bytes read as the MRN without the character set."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from curata import annotate
    from curata.server import create_app

    ws, tokens = site
    t = _task(ws, "lesPA")
    annotate.start(ws, "lesPA", t.id, "ann1")
    with TestClient(create_app(ws)) as client:
        ds = _seg(ws, "lesPA", "ann1")
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        raw = b"lesion \x1b$BMRN8675309\x1b(B"
        ds.SegmentSequence[0][0x00620006] = RawDataElement(
            Tag(0x00620006), "ST", len(raw), raw, 0, False, True
        )
        r = _stow(client, tokens["ann1"], "PA", ds)
        assert r.status_code == 409, r.text
        assert "SegmentDescription" in r.text and "8675309" not in r.text
        assert not _stored(ws, ds.SOPInstanceUID) and _planted_anywhere(ws.root) == []
        # control: Japanese text in the same character set, with no identifier, is stored
        ok = _seg(ws, "lesPA", "ann1")
        ok.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        ok.SegmentSequence[0].SegmentDescription = "肝臓の病変"
        assert _stow(client, tokens["ann1"], "PA", ok).status_code == 200
