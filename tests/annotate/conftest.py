"""A small real catalog for annotation: three CT series at two sites, a cohort, a project with a
coded schema, three readers and an adjudicator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from curata.collect.ingest import Ingestor
from tests.conftest import make_ct

SLICES, SIZE = 6, 24
LABELS = [
    {"name": "lesion", "value": 1, "code": "52988006", "meaning": "Lesion", "colour": "#ff0000"},
    {"name": "liver", "value": 2, "code": "10200004", "meaning": "Liver", "colour": "#00aa00",
     "category": ["SCT", "123037004", "Anatomical Structure"]},
    {"name": "malignancy", "value": 3, "kind": "classification", "code": "363346000",
     "meaning": "Malignant neoplastic disease", "options": ["yes", "no"]},
]  # fmt: skip


def write_series(folder: Path, patient: str, seed: int) -> None:
    study, series = generate_uid(), generate_uid()
    for i in range(SLICES):
        path = folder / patient / f"CT{i:02d}.dcm"
        ds = make_ct(path, patient_id=patient, patient_name=patient, study_uid=study, series_uid=series,
                     index=i, rows=SIZE, columns=SIZE, deidentified=True, seed=seed)  # fmt: skip
        ds.StudyID = ""  # every profile empties it (Z)
        ds.ReferringPhysicianName = ""
        ds.PixelData = (phantom_hu()[i] + 1024).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)


def phantom_hu() -> np.ndarray:
    """A tiny chest: soft-tissue body, two lungs, a spine."""
    _z, y, x = np.indices((SLICES, SIZE, SIZE))
    hu = np.full((SLICES, SIZE, SIZE), -1000, np.int16)
    hu[(y - 12) ** 2 + (x - 12) ** 2 <= 10**2] = 40
    hu[((y - 11) ** 2 + (x - 7) ** 2 <= 3**2) | ((y - 11) ** 2 + (x - 17) ** 2 <= 3**2)] = -850
    hu[(y - 18) ** 2 + (x - 12) ** 2 <= 2**2] = 700
    return hu


def truth() -> np.ndarray:
    lm = np.zeros((SLICES, SIZE, SIZE), np.uint16)
    lm[1:5, 4:16, 4:18] = 2
    lm[2:4, 6:10, 6:10] = 1
    return lm


def _build(root: Path):  # type: ignore[no-untyped-def]
    from curata import annotate
    from curata.select import create_cohort
    from curata.workspace import Workspace

    ws = Workspace.init(root / "ws", site="test-site")
    for site, patients in (("site-a", ["P1", "P2"]), ("site-b", ["P3"])):
        folder = root / site
        for n, pid in enumerate(patients):
            write_series(folder, pid, n)
        _, problems = Ingestor(ws, deidentify=False, workers=1, site=site).ingest_paths([folder])
        assert not problems
    create_cohort(ws, "ct", "modality = CT")
    annotate.create_project(ws, "livers", "ct", skip_own_site=True)
    annotate.set_schema(ws, "livers", LABELS, "Outline the liver and every lesion.")
    annotate.add_reader(ws, "livers", "ana", site="site-a")
    annotate.add_reader(ws, "livers", "bo", site="site-b")
    annotate.add_reader(ws, "livers", "chi", site="site-c")
    annotate.add_reader(ws, "livers", "dee", site="site-c", adjudicator=True)
    assert annotate.create_tasks(ws, "livers") == 3
    ws.catalog.dispose()
    return root / "ws"


@pytest.fixture(scope="session")
def _template(tmp_path_factory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CURATA_DATABASE_URL", raising=False)
        mp.delenv("CURATA_WORKSPACE", raising=False)
        return _build(tmp_path_factory.mktemp("annotate-template"))


@pytest.fixture
def project(_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A copy of the session's template workspace: 3 CT series at two sites, cohort ``ct``, project
    ``livers`` (lesion, liver, a classification), readers ana/bo/chi, adjudicator dee, 3 tasks."""
    import shutil

    from curata.workspace import Workspace

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    shutil.copytree(_template, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws")


PASSWORD = "a long reader password"
MEMBERS = {"ana": "annotator", "bo": "annotator", "chi": "reviewer", "dee": "curator", "sam": "site"}


def on_platform(ws, *readings: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Platform project ``lab`` over both sites holding the annotation projects ``readings``; an account
    per reader with its role (``sam``: a site account) and an API token each: {user: token}."""
    from curata.server import service

    service.create_project(ws, "lab", title="Lab")
    for site in ("site-a", "site-b"):
        service.add_resource(ws, "lab", "site", site)
    for name in readings:
        service.add_resource(ws, "lab", "annotation", name)
    tokens = {}
    for user, role in MEMBERS.items():
        service.create_user(ws, user, PASSWORD)
        service.set_role(ws, user, "lab", role)
        tokens[user] = service.create_token(ws, user, "test").token
    return tokens


def as_stowed(ws, data: bytes, sender: str) -> None:  # type: ignore[no-untyped-def]
    """Record ``sender`` as the account that STOWed ``data`` (the provenance the project STOW handler
    writes, ``server/dicomweb.py``), for objects a test puts in the catalog by ingesting a folder."""
    import io

    import pydicom

    from curata.annotate.service import STOW_STEP
    from curata.catalog import record_provenance

    ds = pydicom.dcmread(io.BytesIO(data))
    series = [str(s.SeriesInstanceUID) for s in ds.ReferencedSeriesSequence]
    with ws.catalog.session() as s:
        record_provenance(
            s, STOW_STEP, [*series, str(ds.SOPInstanceUID)], {"project": "lab", "author": sender}, {}
        )
