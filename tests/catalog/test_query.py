"""The one Series -> Study -> Patient -> Site join, and the catalog service built on it."""

from __future__ import annotations

from sqlalchemy import func

from curata.catalog import Patient, Series, Site, Study, series_rows, service
from curata.collect import Ingestor


def test_series_rows_joins_to_the_site(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    Ingestor(workspace, deidentify=False, workers=1).ingest_paths([ct_series(2, deidentified=True)])
    with workspace.catalog.session() as s:
        rows = s.execute(series_rows(Series.series_uid, Study.study_uid, Patient.pseudonym, Site.name)).all()
        assert len(rows) == 1 and rows[0][3] == "test-site"
        n = s.scalar(series_rows(func.count(Series.id), site=False).where(Series.modality == "CT"))
        assert n == 1
    listed = service.list_series(workspace, service.SeriesFilter(modality="ct"))
    assert [r.series_uid for r in listed] == [rows[0][0]] and listed[0].instances == 2
    assert service.list_series(workspace, service.SeriesFilter(site="elsewhere")) == []
    status = service.workspace_status(workspace)
    assert status.counts["instances"] == 2 and status.as_dict()["series"] == 1
    assert service.verify_store(workspace).ok
