"""The reading workflow on PostgreSQL: assignment, SEG reads, agreement, adjudication, release labels."""

from __future__ import annotations

import pytest

from curata import annotate
from tests.annotate.conftest import _build, truth


@pytest.mark.postgres
def test_workflow_on_postgresql(pg_url, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CURATA_DATABASE_URL", pg_url)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    from curata.workspace import Workspace

    ws = Workspace.open(_build(tmp_path))
    assert ws.catalog.dialect == "postgresql"
    annotate.assign(ws, "livers")
    t = annotate.list_tasks(ws, "livers")[0]
    missed = truth()
    missed[missed == 1] = 2
    for reader, labels in zip(t.readers, (truth(), missed), strict=True):
        annotate.file_object(ws, annotate.seg_for(ws, "livers", t.id, labels, reader=reader), reader=reader)
        annotate.submit(ws, "livers", t.id, reader, seconds=12)
    (res,) = annotate.compute_agreement(ws, "livers")
    assert res.state == "adjudication"
    assert [r.reader for r in annotate.visible_reads(ws, "livers", t.id, t.readers[1])] == [t.readers[1]]
    annotate.adjudicate(ws, "livers", t.id, "dee", "staple")
    labels, card = annotate.release_labels(ws, "livers")
    assert list(labels) == [t.series_uid] and card["labels"][0]["adjudication_rate"] == 1.0
    assert annotate.status(ws, "livers")["accepted"] == 1
