"""No PHI from annotations imported from outside the platform: identifiers planted in every header
field a NIfTI, NRRD or DICOM SEG can carry (and in an SR's text) never reach the store or the catalog."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from curata import annotate
from curata.errors import InputError
from tests.annotate.conftest import truth

PLANTED = ["Okonkwo^Adaeze", "OKONKWO", "PAT-77812", "19580214", "Lagos General", "+2348031234567"]


def _scan(ws) -> list[str]:  # type: ignore[no-untyped-def]
    hits = []
    for digest in ws.store.digests():
        blob = ws.store.get_bytes(digest)
        hits += [
            f"blob {digest[:8]}: {p}" for p in PLANTED if p.encode() in blob or p.lower().encode() in blob
        ]
    with ws.catalog.engine.connect() as conn:
        for table in (
            "annotation_read",
            "annotation_task",
            "provenance",
            "accepted_label",
            "task_assignment",
        ):
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                flat = " ".join(map(str, row))
                hits += [f"{table}: {p}" for p in PLANTED if p in flat]
    return hits


def test_planted_identifiers_never_stored(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import nibabel as nib
    import nrrd
    import pydicom

    ws = project
    assert _scan(ws) == []  # the fixture's own data is clean of these
    annotate.assign(ws, "livers")
    t = annotate.list_tasks(ws, "livers")[0]
    grid = annotate.series_grid(ws, t.series_uid)
    gt = truth()
    img = nib.Nifti1Image(np.transpose(gt, (2, 1, 0)).astype(np.uint8), grid.ras_affine())
    img.header["descrip"] = b"Okonkwo^Adaeze PAT-77812"
    img.header["aux_file"] = b"OKONKWO 19580214"
    img.header["intent_name"] = b"PAT-77812"
    img.header["db_name"] = b"Lagos General"
    path = tmp_path / "OKONKWO_PAT-77812.nii.gz"
    nib.save(img, str(path))
    r1 = annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[0], path)
    aff = grid.affine[:, [2, 1, 0, 3]]
    p2 = tmp_path / "seg.nrrd"
    nrrd.write(
        str(p2),
        np.transpose(gt, (2, 1, 0)),
        {
            "space": "left-posterior-superior",
            "space directions": aff[:3, :3].T,
            "space origin": aff[:3, 3],
            "content": "Okonkwo^Adaeze",
            "PatientID": "PAT-77812",
            "StudyDate": "19580214",
            "Institution": "Lagos General",
            "Phone": "+2348031234567",
        },
    )
    r2 = annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[1], p2)
    # a DICOM SEG from outside, identifiers in its header
    seg = pydicom.dcmread(
        __import__("io").BytesIO(annotate.seg_for(ws, "livers", t.id, gt, reader=t.readers[0]))
    )
    seg.PatientName, seg.PatientID, seg.PatientBirthDate = "Okonkwo^Adaeze", "PAT-77812", "19580214"
    seg.InstitutionName, seg.SeriesDescription = "Lagos General", "OKONKWO +2348031234567"
    p3 = tmp_path / "seg.dcm"
    seg.save_as(p3)
    r3 = annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[0], p3)
    assert {r1.kind, r2.kind, r3.kind} == {"nifti", "nrrd", "seg"}
    assert np.array_equal(annotate.read_labelmap(ws, r3.id), gt)
    # an unreadable file is refused without its name (names of files can hold identifiers)
    with pytest.raises(InputError) as err:
        annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[0], tmp_path / "missing.nii.gz")
    assert "missing" not in str(err.value)
    annotate.submit(ws, "livers", t.id, t.readers[0], seconds=1)
    annotate.submit(ws, "livers", t.id, t.readers[1], seconds=1)
    for r in annotate.compute_agreement(ws, "livers"):
        annotate.accept_review(ws, "livers", r.task_id, "dee")
    annotate.release_labels(ws, "livers")
    assert _scan(ws) == []


def test_refusal_reasons_do_not_quote_the_objects_values(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An annotation that fits no task or label is refused, and its reason (raised, quarantined in the
    catalog) names what was wrong, never the object's values: the patient's name planted in the segment's
    label and in the Content Creator's Name (as a hospital's own export may carry them)."""
    import io

    import pydicom
    from sqlalchemy import select

    from curata.catalog import QuarantineItem
    from curata.collect.ingest import Ingestor

    ws = project
    annotate.assign(ws, "livers")
    t = annotate.list_tasks(ws, "livers")[0]

    def seg(label: str | None = None, creator: str | None = None) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(annotate.seg_for(ws, "livers", t.id, truth(), reader=t.readers[0])))
        if label is not None:
            for item in ds.SegmentSequence:
                item.SegmentLabel = f"{label} lesion"
                item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "999999"
        if creator is not None:
            ds.ContentCreatorName = creator
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf)
        return buf.getvalue()

    spellings = ["Okonkwo^Adaeze", "OKONKWO ADAEZE", "PAT-77812", "19580214"]
    messages: list[str] = []
    for s in spellings:
        path = tmp_path / "outside.dcm"
        path.write_bytes(seg(label=s))
        with pytest.raises(InputError) as err:  # the CLI and the API print this message
            annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[0], path)
        messages.append(str(err.value))
    folder = tmp_path / "arrivals"
    folder.mkdir()
    for i, s in enumerate(spellings):
        (folder / f"label{i}.dcm").write_bytes(seg(label=s))
        (folder / f"creator{i}.dcm").write_bytes(seg(creator=s))
    # the platform's own check refuses person-name shapes; what passes it reaches the filing
    summary, _ = Ingestor(ws, deidentify=False, workers=1, site="site-a").ingest_paths([folder])
    result = annotate.file_new_objects(ws)
    assert len(result.refused) == summary.counts["ingested"] >= 1  # what the gate lets through is refused
    messages += [reason for _, reason in result.refused]
    with ws.catalog.session() as session:
        messages += list(
            session.scalars(select(QuarantineItem.reason).where(QuarantineItem.stage == "annotate"))
        )
    assert any("label" in m for m in messages) and any("reader" in m for m in messages)
    flat = " ".join(messages).lower()
    assert [p for p in ["okonkwo", "adaeze", "pat-77812", "19580214"] if p in flat] == []
