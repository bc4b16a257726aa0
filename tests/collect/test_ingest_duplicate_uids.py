"""Two inputs with one SOP Instance UID: the same instance sent again is ``present`` (idempotent),
but another instance under that UID (different content after de-identification) is quarantined with
a reason. ``curata ingest`` counted the second as present and dropped it, with no reason and no
quarantine entry, where ``curata deid`` quarantines the same pair as DuplicateUID."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from curata.catalog import Instance, QuarantineItem
from curata.collect.ingest import Ingestor
from tests.conftest import make_ct

CONFLICT = "another instance with the same SOP Instance UID and different content is already stored"


def _count(ws, model) -> int:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _pair(folder: Path, *, deidentified: bool, same_pixels: bool) -> tuple[Path, Path]:
    uids = {"study_uid": generate_uid(), "series_uid": generate_uid(), "sop_uid": generate_uid()}
    first, second = folder / "a" / "IM0001", folder / "b" / "IM0001"
    make_ct(first, deidentified=deidentified, seed=1, **uids)  # type: ignore[arg-type]
    ds = make_ct(deidentified=deidentified, seed=1 if same_pixels else 2, **uids)  # type: ignore[arg-type]
    if same_pixels:  # other bytes, the same instance once de-identified: a private note it removes
        ds.private_block(0x0009, "RESEND NOTE", create=True).add_new(0x01, "LO", "sent again")
    second.parent.mkdir(parents=True)
    ds.save_as(second, enforce_file_format=True)
    assert first.read_bytes() != second.read_bytes()
    return first, second


@pytest.mark.parametrize("deidentify", [True, False], ids=["site", "platform"])
def test_another_instance_under_a_stored_uid_is_quarantined_with_a_reason(
    workspace, tmp_path, deidentify
) -> None:  # type: ignore[no-untyped-def]
    _, second = _pair(tmp_path / "in", deidentified=not deidentify, same_pixels=False)
    summary, problems = Ingestor(workspace, deidentify=deidentify, workers=1).ingest_paths([tmp_path / "in"])
    assert (summary.counts["ingested"], summary.counts["present"], summary.counts["quarantined"]) == (1, 0, 1)
    assert summary.failed
    assert [(p.status, Path(p.source), p.reason) for p in problems] == [("quarantined", second, CONFLICT)]
    assert _count(workspace, Instance) == 1 and _count(workspace, QuarantineItem) == 1
    with workspace.catalog.session() as s:
        item = s.scalar(select(QuarantineItem))
        assert item is not None and item.reason == CONFLICT and item.input_digest == problems[0].input_digest
    kept = sorted(p.name for p in workspace.quarantine_path.glob("*"))
    # a site keeps the refused input's bytes on site; the platform keeps none (the sender has them)
    assert kept == ([f"{item.input_digest}.bin", f"{item.input_digest}.json"] if deidentify else [])
    again, _ = Ingestor(workspace, deidentify=deidentify, workers=1).ingest_paths([tmp_path / "in"])
    assert (again.counts["ingested"], again.counts["present"], again.counts["quarantined"]) == (0, 1, 1)
    assert _count(workspace, Instance) == 1 and _count(workspace, QuarantineItem) == 1


def test_the_same_instance_sent_again_is_present(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _pair(tmp_path / "in", deidentified=False, same_pixels=True)
    ing = Ingestor(workspace, deidentify=True, workers=1)
    summary, problems = ing.ingest_paths([tmp_path / "in"])
    assert (summary.counts["ingested"], summary.counts["present"], summary.counts["quarantined"]) == (1, 1, 0)
    assert not problems and not summary.failed
    assert _count(workspace, Instance) == 1 and _count(workspace, QuarantineItem) == 0
    again, _ = ing.ingest_paths([tmp_path / "in"])
    assert (again.counts["ingested"], again.counts["present"], again.counts["quarantined"]) == (0, 2, 0)


def _two_under_one_uid() -> list[bytes]:
    """Two de-identified CT slices with other pixels under one SOP Instance UID (and study, series)."""
    import io

    uids = {"study_uid": generate_uid(), "series_uid": generate_uid(), "sop_uid": generate_uid()}
    raws = []
    for seed in (1, 2):
        buf = io.BytesIO()
        make_ct(deidentified=True, seed=seed, **uids).save_as(buf, enforce_file_format=True)  # type: ignore[arg-type]
        raws.append(buf.getvalue())
    return raws


def test_ingest_bytes_quarantines_another_instance_under_a_stored_uid(workspace) -> None:  # type: ignore[no-untyped-def]
    raws = _two_under_one_uid()
    ing = Ingestor(workspace, deidentify=False)
    assert ing.ingest_bytes(raws[0], "assoc-1").status == "ingested"
    out = ing.ingest_bytes(raws[1], "assoc-2")
    assert (out.status, out.reason) == ("quarantined", CONFLICT)
    assert _count(workspace, Instance) == 1 and _count(workspace, QuarantineItem) == 1


def _store_matches_catalog(ws) -> None:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        filed = set(s.scalars(select(Instance.blob_digest)))
    assert set(ws.store.digests()) == filed, "a blob with no catalog row was left in the store"


@pytest.mark.parametrize("deidentify", [True, False], ids=["site", "platform"])
def test_a_refused_duplicate_leaves_no_blob_in_the_store(workspace, tmp_path, deidentify) -> None:  # type: ignore[no-untyped-def]
    """The conflicting input's de-identified bytes were written to the store before it was refused, and
    stayed there with no row pointing at them; the filed instance's blob stays."""
    _pair(tmp_path / "in", deidentified=not deidentify, same_pixels=False)
    summary, _ = Ingestor(workspace, deidentify=deidentify, workers=1).ingest_paths([tmp_path / "in"])
    assert (summary.counts["ingested"], summary.counts["quarantined"]) == (1, 1)
    _store_matches_catalog(workspace)
    assert len(list(workspace.store.digests())) == 1
    again, _ = Ingestor(workspace, deidentify=deidentify, workers=1).ingest_paths([tmp_path / "in"])
    assert (again.counts["present"], again.counts["quarantined"]) == (1, 1)
    _store_matches_catalog(workspace)


def test_ingest_bytes_leaves_no_blob_of_a_refused_duplicate(workspace) -> None:  # type: ignore[no-untyped-def]
    raws = _two_under_one_uid()
    ing = Ingestor(workspace, deidentify=False)
    assert ing.ingest_bytes(raws[0], "assoc-1").status == "ingested"
    assert ing.ingest_bytes(raws[1], "assoc-2").status == "quarantined"
    _store_matches_catalog(workspace)
    assert ing.ingest_bytes(raws[0], "assoc-3").status == "present"
    _store_matches_catalog(workspace)
