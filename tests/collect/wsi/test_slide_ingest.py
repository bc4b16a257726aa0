"""Slides through `curata ingest`: vendor files and DICOM-WSI, one catalog, quarantine with reasons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from curata.catalog import Instance, QuarantineItem, Series
from curata.collect.ingest import Ingestor
from curata.collect.wsi import Slide
from curata.collect.wsi import synthetic as syn
from tests.collect.wsi.conftest import scan_hits

WHO = syn.PlantedIdentity()


def _all_stored(ws) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [ws.store.get_bytes(d) for d in ws.store.digests()]


def _catalog_bytes(ws) -> bytes:  # type: ignore[no-untyped-def]
    return Path(str(ws.catalog.url).removeprefix("sqlite:///")).read_bytes()


def test_real_slides_ingest_end_to_end(workspace, shared_wsi: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("CMU-1-Small-Region.svs", "test3-DAPI-2-387.ndpi", "boxes.tiff", "boxes_0.dcm", "boxes_1.dcm",
                 "unreadable.svs", "unopenable.tiff"):  # fmt: skip
        shutil.copy(shared_wsi / name, inbox / name)
    sidecar = {"patient_id": WHO.patient_id, "patient_name": WHO.patient_name, "accession": WHO.accession,
               "stain": "H&E", "organ": "breast"}  # fmt: skip
    (inbox / "CMU-1-Small-Region.svs.json").write_text(json.dumps(sidecar))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    reasons = {Path(p.source).name: p.reason for p in problems}
    assert set(reasons) == {"unreadable.svs", "unopenable.tiff"}
    assert (
        "cannot be decoded" in reasons["unreadable.svs"] and "cannot be opened" in reasons["unopenable.tiff"]
    )
    assert summary.counts["skipped"] == 1  # the sidecar
    with workspace.catalog.session() as s:
        slides = {r.vendor: r for r in s.scalars(select(Slide))}
        assert set(slides) == {"aperio", "hamamatsu", "generic_tiff"}
        svs = slides["aperio"]
        assert (svs.stain, svs.organ, svs.levels, svs.magnification) == ("H&E", "breast", 1, 20.0)
        assert svs.removed_images == ["label (IFD 2)", "macro (IFD 3)"] and svs.vendor_blob_digest
        assert slides["hamamatsu"].levels == 7
        wsm = s.scalars(select(Series).where(Series.modality == "SM")).all()
        assert len(wsm) == 4  # three converted slides and the DICOM-WSI pair
        assert all(x.sop_class_uid == "1.2.840.10008.5.1.4.1.1.77.1.6" for x in wsm)
        svs_series = s.get(Series, svs.series_id)
        assert svs_series.body_part == "BREAST"
        n_instances = s.scalar(select(func.count()).select_from(Instance))
        assert s.scalar(select(func.count()).select_from(QuarantineItem)) == 2
    secrets = ["CMU-1", "b414003d-95c6-48b0-9369-8010ed517ba7", "CPAPERIOCS", "12/29/09", "2011/05/23", "950291",
               "SLIDE_1", "SPECIMEN_1", WHO.patient_id, WHO.patient_name, WHO.accession, "Okonkwo"]  # fmt: skip
    assert scan_hits([*_all_stored(workspace), _catalog_bytes(workspace)], secrets) == []
    for digest in workspace.store.digests():
        blob = workspace.store.get_bytes(digest)
        if blob[128:132] == b"DICM":
            ds = pydicom.dcmread(__import__("io").BytesIO(blob), stop_before_pixels=True)
            assert ds.PatientIdentityRemoved == "YES"
            assert "LABEL" not in ds.ImageType and "OVERVIEW" not in ds.ImageType
    # a second run files nothing new
    summary2, _ = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary2.counts["ingested"] == 0 and summary2.counts["present"] >= 5
    with workspace.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == n_instances
        assert s.scalar(select(func.count()).select_from(Slide)) == 3


def test_dicom_wsi_label_dropped_and_specimen_cleaned(workspace, shared_wsi: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "dcm"
    inbox.mkdir()
    ds = pydicom.dcmread(shared_wsi / "boxes_0.dcm")
    ds.PatientName, ds.PatientID = WHO.patient_name, WHO.patient_id
    ds.ContainerIdentifier = WHO.barcode
    ds.LabelText = f"{WHO.patient_name} {WHO.accession}"
    ds.BarcodeValue = WHO.barcode
    spec = ds.SpecimenDescriptionSequence[0]
    spec.SpecimenIdentifier = WHO.accession
    spec.SpecimenShortDescription = f"biopsy of {WHO.patient_name}"
    ds.save_as(inbox / "level.dcm")
    label = pydicom.dcmread(shared_wsi / "boxes_0.dcm")
    label.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    label.SOPInstanceUID = label.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    label.save_as(inbox / "label.dcm")
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary.counts["ingested"] == 1 and summary.counts["skipped"] == 1 and not problems
    planted = [WHO.patient_name, WHO.patient_id, WHO.barcode, WHO.accession, "Okonkwo"]
    assert scan_hits(_all_stored(workspace), planted) == []
    stored = [b for b in _all_stored(workspace) if b[128:132] == b"DICM"]
    assert len(stored) == 1
    out = pydicom.dcmread(__import__("io").BytesIO(stored[0]))
    assert out.ContainerIdentifier.startswith("SLD-")
    assert out.SpecimenDescriptionSequence[0].SpecimenIdentifier == out.ContainerIdentifier
    assert "LabelText" not in out and "BarcodeValue" not in out


def test_planted_synthetic_slides_through_ingest(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "site"
    inbox.mkdir()
    planted: list[str] = []
    for i, (writer, name) in enumerate(
        [(syn.write_svs, "Okonkwo_Adaeze.svs"), (syn.write_philips_tiff, "BC-55190341.tiff"),
         (syn.write_generic_tiff, "LAG-4471023.tif"), (syn.write_ome_tiff, "ACC-88412377.ome.tiff")]
    ):  # fmt: skip
        planted += writer(inbox / name, WHO)
        (inbox / f"{name}.json").write_text(
            json.dumps(
                {
                    "patient_id": WHO.patient_id,
                    "patient_name": WHO.patient_name,
                    "accession": f"{WHO.accession}-{i}",
                    "organ": "lung",
                    "stain": "H&E",
                }
            )
        )
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert not problems and summary.counts["skipped"] == 4
    assert scan_hits([*_all_stored(workspace), _catalog_bytes(workspace)], sorted(set(planted))) == []
    with workspace.catalog.session() as s:
        rows = s.scalars(select(Slide)).all()
        assert len(rows) == 4
        pseudonyms = {s.get(Series, r.series_id).study.patient.pseudonym for r in rows}
        assert len(pseudonyms) == 1  # one patient, four slides


def test_mrxs_is_refused_with_a_clear_reason_and_its_folder_skipped(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "mrxs"
    (inbox / "CMU-1").mkdir(parents=True)
    (inbox / "CMU-1.mrxs").write_bytes(b"[GENERAL]\nSLIDE_VERSION=01.02\n")
    (inbox / "CMU-1" / "Slidedat.ini").write_text("[GENERAL]\nSLIDE_NAME=Okonkwo\n")
    (inbox / "CMU-1" / "Data0000.dat").write_bytes(b"\xff\xd8" + bytes(100))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary.counts["skipped"] == 2 and summary.counts["quarantined"] == 1
    assert ("MRXS" in problems[0].reason and workspace.store.digests() == []) or not list(
        workspace.store.digests()
    )


def test_an_unforeseen_slide_error_is_quarantined_without_its_message(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path, monkeypatch
) -> None:
    """An error nobody foresaw may quote the input (a name in a tag): the quarantine reason keeps
    only its type and where it happened, and the rest of the batch goes on."""
    from curata.collect.wsi import _ingest

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ValueError(f"bad tag value {WHO.patient_name}")

    monkeypatch.setattr(_ingest, "deidentify_slide", broken)
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(shared_wsi / "small.svs", inbox / "small.svs")
    syn.write_generic_tiff(inbox / "other.tiff", size=256, seed=1)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary.counts["quarantined"] == 2 and summary.counts["failed"] == 0
    for p in problems:
        assert p.reason.startswith("internal error (ValueError") and WHO.patient_name not in p.reason
    with workspace.catalog.session() as s:
        kept = [q.reason for q in s.scalars(select(QuarantineItem))]
    assert len(kept) == 2 and not any(WHO.patient_name in r for r in kept)


def test_a_broken_sidecar_is_quarantined_without_the_slide_name(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Slide file names often carry the patient's name: a broken sidecar's reason never repeats it."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    name = f"{WHO.patient_name.replace('^', '_')}.svs"
    syn.write_svs(inbox / name, size=256, seed=3)
    (inbox / f"{name}.json").write_text("{not json")
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary.counts["quarantined"] == 1 and len(problems) == 1
    reason = problems[0].reason
    assert "sidecar" in reason and "not valid JSON" in reason
    assert WHO.patient_name.split("^")[0] not in reason
