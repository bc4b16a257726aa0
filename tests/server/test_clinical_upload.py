"""Clinical batches through a project (``/projects/{project}/clinical/batches``): a project's site
contributors add rows for the project's own patients, filed under the site of their images."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from fastapi.testclient import TestClient

from curata.catalog import Patient, Series, Study
from curata.collect.clinical import MANIFEST_TYPE, Batch
from curata.collect.dicomweb import multipart_encode
from curata.collect.ingest import Ingestor
from curata.select import series_select
from curata.server import create_app
from curata.server.models import AuditEvent
from tests.conftest import make_ct

INSIDE, OUTSIDE = "CUR-" + "A" * 16, "CUR-" + "B" * 16  # a patient of alpha (site-a), one of beta


def _batch(name: str, pseudonym: str) -> Batch:
    person = pa.table(
        {
            "pseudonym": [pseudonym],
            "gender_source_value": ["F"],
            "year_of_birth": pa.array([1960], pa.int64()),
            "age_capped": [False],
        }
    )
    condition = pa.table(
        {
            "pseudonym": [pseudonym],
            "condition_start_date": pa.array([dt.date(2020, 1, 5)], pa.date32()),
            "condition_source_value": ["C34.1"],
            "source_system": ["ICD10"],
            "source_display": ["lung adenocarcinoma"],
            "stage": ["IIIA"],
            "stage_group": ["III"],
        }
    )
    return Batch(name, "csv", tables={"person": person, "condition_occurrence": condition})


def test_project_members_upload_for_their_projects_patients_only(platform: Any, tmp_path: Path) -> None:
    ws = platform.ws
    for site, pid in (("site-a", INSIDE), ("site-b", OUTSIDE)):
        make_ct(tmp_path / site / "IM0", patient_id=pid, patient_name=pid, deidentified=True)
        Ingestor(ws, deidentify=False, site=site, workers=1).ingest_paths([tmp_path / site])
    with TestClient(create_app(ws, verified_deidentified=True)) as client:

        def post(who: str, batch: Batch) -> Any:
            body, ctype = multipart_encode(batch.parts(), MANIFEST_TYPE)
            headers = {**platform.auth(who), "Content-Type": ctype}
            return client.post("/projects/alpha/clinical/batches", content=body, headers=headers)

        r = post("hos", _batch("1" * 64, OUTSIDE))  # beta's patient, through alpha
        (answer,) = r.json()["batches"]
        assert r.status_code == 409 and answer["status"] == "refused"
        assert "not in this project" in answer["reason"]
        r = post("hos", _batch("2" * 64, INSIDE))
        assert r.status_code == 200 and r.json()["batches"][0]["status"] == "filed"
        assert post("ann", _batch("3" * 64, INSIDE)).status_code == 403  # readers upload no records
        assert post("outsider", _batch("4" * 64, INSIDE)).status_code == 404
    with ws.catalog.session() as s:
        found = set(s.scalars(series_select("clinical.condition = 'lung adenocarcinoma'")))
        mine = set(
            s.scalars(sa.select(Series.id).join(Study).join(Patient).where(Patient.pseudonym == INSIDE))
        )
        uploads = list(s.scalars(sa.select(AuditEvent.target).where(AuditEvent.action == "clinical-upload")))
    assert found == mine  # filed under site-a, the site of the patient's images: the cohort joins them
    assert uploads == ["2" * 64]
