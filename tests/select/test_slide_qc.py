"""Slide QC: metrics of DICOM-WSI series through `qc run`, rules in the query language, the report's
slide montage, and the planted-defect validation (sensitivity at high severity, no false positives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from curata.catalog import Series
from curata.collect.ingest import Ingestor
from curata.collect.wsi import synthetic as syn
from curata.select import service
from curata.select.metrics.wsi import measure_levels
from curata.select.models import QcMeasurement, QcVerdict
from curata.select.report import write_report
from curata.select.slide_phantoms import DEFECTS, plant, to_level, validate


def test_slide_metrics_on_a_clean_and_a_marked_slide() -> None:
    img = syn.tissue_image(512, 512, seed=5)
    clean, thumb = measure_levels([to_level(img)])
    assert 0.3 < clean["tissue_fraction"] < 0.6 and clean["brightfield"] is True
    assert clean["pen_fraction"] == 0 and clean["corrupted_tiles"] == 0 and clean["blur_fraction"] == 0
    assert clean["stain_h"] > 0 and clean["stain_e"] > 0 and thumb and thumb[:4] == b"\x89PNG"
    marked, _ = measure_levels([to_level(plant(img, "pen", 3))])
    assert marked["pen_fraction"] > 0.005
    blurred, _ = measure_levels([to_level(plant(img, "blur", 3))])
    assert blurred["focus_median"] < clean["focus_median"] / 4
    broken, _ = measure_levels([to_level(img, corrupt=2)])
    assert broken["corrupted_tiles"] == 2


def test_a_jpeg_2000_slide_is_not_taken_for_a_corrupt_one() -> None:
    """JPEG 2000 frames (SOC...EOC, as DICOM-WSI converters and Aperio 33003/33005 slides write them)
    were each counted as 'not a complete JPEG': every such slide was excluded as corrupt."""
    img = syn.tissue_image(512, 512, seed=5)
    clean, _ = measure_levels([to_level(img, codec="j2k")])
    jpeg, _ = measure_levels([to_level(img)])
    assert clean["corrupted_tiles"] == 0 and clean["corrupted_tile"] is None
    assert abs(clean["tissue_fraction"] - jpeg["tissue_fraction"]) < 0.05
    broken, _ = measure_levels([to_level(img, codec="j2k", corrupt=2)])
    assert broken["corrupted_tiles"] == 2 and "not a complete codestream" in broken["corrupted_tile"]


def test_qc_run_measures_slides_and_rules_decide(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site = tmp_path / "site"
    site.mkdir()
    good = syn.tissue_image(512, 512, seed=1)
    syn.write_svs(site / "good.svs", image=good)
    syn.write_svs(site / "pen.svs", image=plant(good, "pen", 3, seed=2))
    syn.write_svs(site / "empty.svs", image=plant(good, "no_tissue", 3))
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([site])
    assert summary.counts["ingested"] == 3 and not problems
    run = service.run_qc(workspace, workers=1, quiet=True)
    assert run.counts["measured"] == 3 and run.counts["failed"] == 0
    with workspace.catalog.session() as s:
        verdicts = {
            m.metrics["pen_fraction"] > 0.001: (v.passed, [r["rule"] for r in v.reasons])
            for m, v in s.execute(
                select(QcMeasurement, QcVerdict).join(
                    QcVerdict, QcVerdict.series_id == QcMeasurement.series_id
                )
            ).all()
            if m.metrics["tissue_fraction"] > 0.02
        }
        assert verdicts[False] == (True, []) and verdicts[True] == (True, ["slide_pen_marks"])
        excluded = s.scalars(select(QcVerdict).where(QcVerdict.passed.is_(False))).all()
        assert len(excluded) == 1 and excluded[0].reasons[0]["rule"] == "slide_no_tissue"
        assert all(x.modality == "SM" for x in s.scalars(select(Series)))
    cohort = service.create_cohort(
        workspace, "tissue", "modality = SM and qc.passed and qc.tissue_fraction > 0.1"
    )
    assert cohort.series == 2
    again = service.run_qc(workspace, workers=1, quiet=True)
    assert again.counts["measured"] == 0 and again.counts["cached"] == 3
    html = write_report(workspace, tmp_path / "qc.html").read_text()
    assert "Slides (3)" in html and html.count("alt='slide'") == 3


@pytest.mark.slow
def test_planted_defects_are_caught_without_false_positives() -> None:
    slides = [syn.tissue_image(320, 320, seed=11, tissue=0.4)]
    results = validate(slides)
    assert {r.defect for r in results} == set(DEFECTS)
    for r in results:
        assert r.fpr == 0.0, r
        assert r.sensitivity[3] == 1.0, r
    assert np.mean([r.sensitivity[1] for r in results]) < 1.0  # the mildest severities are not all caught


def test_a_slide_qc_cannot_read_fails_with_a_reason_that_quotes_none_of_its_values(  # type: ignore[no-untyped-def]
    workspace, tmp_path: Path
) -> None:
    """A DICOM-WSI whose Number of Frames holds a name (IS is text: int() of it quotes the value back):
    its QC fails with the error's type and place, kept in the catalog and the quarantine without the
    value; the intact slide beside it is measured."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag
    from pydicom.uid import generate_uid

    from curata.catalog import QuarantineItem
    from tests.collect.wsi.conftest import find_shared_wsi

    shared = find_shared_wsi()
    if shared is None:
        pytest.skip("shared/data/wsi not found beside the repository")
    planted = "ZEBEDIAH^QUIRINUS"
    inbox = tmp_path / "in"
    inbox.mkdir()
    from curata.collect.deid import Deidentifier, load_profile

    # as a site releases it (the platform checks more than the flag), the name planted after
    site = Deidentifier(b"k" * 32, load_profile("research"), ocr=False)
    released = site.deidentify_bytes((shared / "boxes_0.dcm").read_bytes()).output_bytes
    for name, frames in (("good.dcm", None), ("bad.dcm", planted.encode())):
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(released))
        ds.SeriesInstanceUID = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if frames:
            ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", len(frames), frames, 0, False, True)
        ds.save_as(inbox / name)
    summary, problems = Ingestor(workspace, deidentify=False, workers=1).ingest_paths([inbox])
    assert summary.counts["ingested"] == 2, [p.reason for p in problems]
    qc = service.run_qc(workspace, workers=1)
    assert (qc.counts["measured"], qc.counts["failed"]) == (1, 1)
    with workspace.catalog.session() as s:
        errors = [m.error for m in s.scalars(select(QcMeasurement)) if m.error]
        reasons = [q.reason for q in s.scalars(select(QuarantineItem).where(QuarantineItem.stage == "qc"))]
    assert errors == ["internal error (ValueError in frames.py:frame_ranges)"]
    assert reasons == [f"QC could not read the series: {errors[0]}"]
    assert not any("ZEBEDIAH" in text for text in errors + reasons)
