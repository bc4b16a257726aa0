"""3DHISTECH MRXS through OpenSlide: a synthetic MIRAX folder (written following OpenSlide's reader)
with identity planted in Slidedat.ini, Index.dat, the label and the macro becomes a DICOM-WSI series
with pseudonyms only; the vendor folder is not kept; a broken folder is quarantined with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openslide
import pydicom
from sqlalchemy import func, select

from curata.catalog import Instance, QuarantineItem
from curata.collect.ingest import Ingestor
from curata.collect.wsi import Slide
from curata.collect.wsi import synthetic as syn
from tests.collect.wsi.conftest import scan_hits

WHO = syn.PlantedIdentity()


def _catalog_bytes(ws) -> bytes:  # type: ignore[no-untyped-def]
    return Path(str(ws.catalog.url).removeprefix("sqlite:///")).read_bytes()


def test_synthetic_mrxs_is_read_by_openslide(tmp_path: Path) -> None:
    path = tmp_path / "slide.mrxs"
    syn.write_mrxs(path, WHO)
    with openslide.OpenSlide(path) as slide:
        assert slide.properties["openslide.vendor"] == "mirax"
        assert slide.level_dimensions == ((1024, 1024), (512, 512))
        assert set(slide.associated_images) == {"label", "macro", "thumbnail"}
        region = np.asarray(slide.read_region((0, 0), 0, (1024, 1024)).convert("RGB"), dtype=np.int16)
    assert np.abs(region - syn.tissue_image(1024, 1024, 0)).mean() < 5  # JPEG of the drawn tissue


def test_mrxs_ingested_as_dicom_wsi_without_identity(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "in"
    inbox.mkdir()
    path = inbox / "Okonkwo_Adaeze_ACC-88412377.mrxs"
    planted = syn.write_mrxs(path, WHO)
    (inbox / (path.name + ".json")).write_text(
        f'{{"patient_id": "{WHO.patient_id}", "patient_name": "{WHO.patient_name}", "stain": "H&E", "organ": "colon"}}'
    )
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert not problems, problems
    assert summary.counts["ingested"] == 1
    with workspace.catalog.session() as s:
        slide = s.scalars(select(Slide)).one()
        assert (slide.vendor, slide.levels, slide.organ) == ("mirax", 2, "colon")
        assert slide.vendor_blob_digest is None  # the vendor folder is never kept
        assert slide.removed_images == ["label (not read)", "macro (not read)", "thumbnail (not read)"]
        assert s.scalar(select(func.count()).select_from(Instance)) == 2
    blobs = [workspace.store.get_bytes(d) for d in workspace.store.digests()]
    assert len(blobs) == 2
    level0 = None
    for blob in blobs:
        ds = pydicom.dcmread(io.BytesIO(blob))
        assert ds.ContainerIdentifier.startswith("SLD-") and ds.PatientID.startswith("CUR-")
        assert ds.LossyImageCompression == "01"  # MRXS tiles are re-encoded (documented)
        if ds.TotalPixelMatrixColumns == 1024:
            level0 = ds
    assert level0 is not None
    # the tiles show the slide's tissue (re-encoded JPEG, close to the original pixels)
    frame = np.asarray(level0.pixel_array[0], dtype=np.int16)  # pydicom hands out RGB
    with openslide.OpenSlide(path) as slide:
        ref = np.asarray(slide.read_region((0, 0), 0, (512, 512)).convert("RGB"), dtype=np.int16)
    assert np.abs(frame - ref).mean() < 4
    secrets = [*planted, "Okonkwo", "Adaeze", "ACC-88412377"]
    assert scan_hits([*blobs, _catalog_bytes(workspace)], secrets) == []
    # a second run files nothing new
    summary2, _ = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary2.counts["ingested"] == 0 and summary2.counts["present"] == 1


def test_broken_mrxs_quarantined_with_a_reason(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "in"
    inbox.mkdir()
    lost = inbox / "Okonkwo_lost.mrxs"  # no data folder
    lost.write_bytes(b"3DHISTECH MRXS lone file\r\n")
    broken = inbox / "Okonkwo_broken.mrxs"
    syn.write_mrxs(broken, WHO, slide_id="11111111-2222-3333-4444-555555555555")
    index = broken.with_suffix("") / "Index.dat"
    index.write_bytes(index.read_bytes()[:40])  # truncated index
    good = inbox / "fine.mrxs"
    syn.write_mrxs(good, WHO, seed=3, slide_id="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    reasons = {Path(p.source).name: p.reason for p in problems}
    assert set(reasons) == {"Okonkwo_lost.mrxs", "Okonkwo_broken.mrxs"}, reasons
    assert "data folder" in reasons["Okonkwo_lost.mrxs"]
    assert reasons["Okonkwo_broken.mrxs"].startswith("MRXS")
    assert all("Okonkwo" not in r for r in reasons.values())
    assert summary.counts["ingested"] == 1
    with workspace.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(QuarantineItem)) == 2
        stored_reasons = list(s.scalars(select(QuarantineItem.reason)))
    assert all("Okonkwo" not in r for r in stored_reasons)


def test_mrxs_with_a_generated_label(tmp_path: Path) -> None:
    from curata.collect.wsi.labels import DEFAULT_SIZE, render_label
    from curata.collect.wsi.service import SlideSettings, convert_mrxs_slide

    path = tmp_path / "s.mrxs"
    planted = syn.write_mrxs(path, WHO)
    res = convert_mrxs_slide(
        path, path.read_bytes(), key=b"mrxs-label-key-0123456789abcdef!", identity=None,
        settings=SlideSettings(label="generated", keep_vendor_file=True),
    )  # fmt: skip
    assert res.vendor_bytes is None  # never kept, whatever the setting
    label = res.datasets[-1]
    assert "LABEL" in label.ImageType and label.LabelText == res.deid.slide_id
    assert np.array_equal(label.pixel_array, render_label(res.deid.slide_id, *DEFAULT_SIZE))
    assert scan_hits(res.instances, planted) == []
