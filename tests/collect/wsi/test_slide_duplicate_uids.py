"""Two slides under one slide key (the sidecar's specimen or accession number) get the same DICOM
UIDs: a different slide under a key filed already is quarantined with the reason `curata ingest` gives
any other instance under a stored SOP Instance UID, and none of its levels is filed. Its levels were
counted present (the first level's UID was filed) and the rest filed into the other slide's series,
mixing two pyramids. The same slide ingested again stays present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import func, select

from curata.catalog import Instance, QuarantineItem
from curata.collect.ingest import Ingestor
from curata.collect.wsi import Slide

CONFLICT = "another instance with the same SOP Instance UID and different content is already stored"


def _slide(folder: Path, source: Path, name: str, accession: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, folder / name)
    (folder / f"{name}.json").write_text(json.dumps({"patient_id": "PAT-77", "accession": accession}))
    return folder / name


def _rows(ws) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(m)) or 0 for m in (Instance, Slide, QuarantineItem)
        )


def _store_matches_catalog(ws) -> None:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        filed = set(s.scalars(select(Instance.blob_digest)))
        filed |= {d for d in s.scalars(select(Slide.vendor_blob_digest)) if d}
    assert set(ws.store.digests()) == filed, "a blob with no catalog row was left in the store"


def test_another_slide_under_a_filed_slide_key_is_quarantined(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:
    _slide(tmp_path / "one", shared_wsi / "small.svs", "small.svs", "S-DUP-1")
    # the same slide twice in one run (another name, the same bytes): converted twice, filed once
    _slide(tmp_path / "one" / "copy", shared_wsi / "small.svs", "again.svs", "S-DUP-1")
    first, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "one"])
    assert not problems
    assert (first.counts["ingested"], first.counts["present"], first.counts["quarantined"]) == (1, 1, 0)
    filed = _rows(workspace)
    assert filed[1:] == (1, 0)
    with workspace.catalog.session() as s:
        before = sorted(s.scalars(select(Instance.sop_instance_uid)))
    # another slide (a 4-level pyramid) whose sidecar names the same accession number
    other = _slide(tmp_path / "two", shared_wsi / "boxes.tiff", "boxes.tiff", "S-DUP-1")
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "two"])
    assert (summary.counts["ingested"], summary.counts["present"], summary.counts["quarantined"]) == (0, 0, 1)
    assert [(Path(p.source), p.reason) for p in problems] == [(other, CONFLICT)]
    assert _rows(workspace) == (filed[0], 1, 1)
    with workspace.catalog.session() as s:
        assert sorted(s.scalars(select(Instance.sop_instance_uid))) == before  # no level of it filed
        item = s.scalar(select(QuarantineItem))
        assert item is not None and item.reason == CONFLICT
    assert (workspace.quarantine_path / f"{item.input_digest}.bin").read_bytes() == other.read_bytes()
    _store_matches_catalog(workspace)
    again, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "one"])  # a re-send: present
    assert (again.counts["ingested"], again.counts["present"], again.counts["quarantined"]) == (0, 2, 0)
    assert _rows(workspace) == (filed[0], 1, 1)
