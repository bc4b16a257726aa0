"""Slides whose vendor metadata is missing or malformed (no pixel size, MPP = 0, a non-numeric MPP, no
AppMag, a truncated description, a zero TIFF resolution, a NaN magnification) are refused with a reason
that names the problem and no patient value, or converted with the field left unknown; never an
internal error, never an invented or impossible pixel spacing, and the rest of the batch goes on."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import pydicom
import pytest
import tifffile
from sqlalchemy import select

from curata.collect.ingest import Ingestor
from curata.collect.wsi import Slide
from curata.collect.wsi import synthetic as syn

WHO = syn.PlantedIdentity()
STEM = "Okonkwo_Adaeze"
HEADER = "Aperio Image Library v12.0.5 \r\n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=80"
IDENT = f"|Filename = {STEM}|Title = {WHO.patient_name}"


def _svs(path: Path, fields: str | None, header: str = HEADER) -> None:
    base = syn.tissue_image(512, 512, 0)
    levels = syn._pyramid(base, 2)
    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate(levels):
            tail = "|" + fields if fields is not None else ""
            desc = header + tail if i == 0 else f"Aperio Image Library v12.0.5 \r\n256x256 -> |{fields or ''}"
            tw.write(
                lv, tile=(256, 256), compression="jpeg", photometric="rgb", description=desc, metadata=None
            )


# Aperio: the description's MPP is the only pixel size an SVS carries (no TIFF resolution)
SVS_REFUSED = {
    "no_mpp": "AppMag = 20" + IDENT,
    "mpp_zero": "AppMag = 20|MPP = 0" + IDENT,
    "mpp_negative": "AppMag = 20|MPP = -0.5" + IDENT,
    "mpp_word": "AppMag = 20|MPP = abc" + IDENT,
    "mpp_empty": "AppMag = 20|MPP = " + IDENT,
    "mpp_comma": "AppMag = 20|MPP = 0,5" + IDENT,
    "mpp_inf": "AppMag = 20|MPP = inf" + IDENT,
    "mpp_nan": "AppMag = 20|MPP = nan" + IDENT,
    "mpp_overflow": "AppMag = 20|MPP = 1e400" + IDENT,
    "mpp_huge": "AppMag = 20|MPP = 5000" + IDENT,
    "no_fields": None,
}
SVS_KEPT = {  # the magnification is optional: unknown when missing or malformed, never 0 or NaN
    "no_appmag": "MPP = 0.5" + IDENT,
    "appmag_word": "AppMag = x|MPP = 0.5" + IDENT,
    "appmag_zero": "AppMag = 0|MPP = 0.5" + IDENT,
    "appmag_nan": "AppMag = nan|MPP = 0.5" + IDENT,
}


def _write_cases(inbox: Path, shared: Path) -> tuple[set[str], set[str]]:
    refused: set[str] = set()
    for case, fields in SVS_REFUSED.items():
        _svs(inbox / f"{STEM}_{case}.svs", fields)
        refused.add(f"{STEM}_{case}.svs")
    _svs(inbox / f"{STEM}_truncated.svs", None, header="Aperio Image Library v12")
    _svs(inbox / f"{STEM}_bare.svs", None, header="Aperio")
    refused |= {f"{STEM}_truncated.svs", f"{STEM}_bare.svs"}
    kept = set()
    for case, fields in SVS_KEPT.items():
        _svs(inbox / f"{STEM}_{case}.svs", fields)
        kept.add(f"{STEM}_{case}.svs")
    syn.write_philips_tiff(inbox / "philips.tiff", WHO, size=512)
    philips = (inbox / "philips.tiff").read_bytes()
    for case, new in {"zero": b'"0.00000" "0.00000"', "word": b'"abcdefg" "abcdefg"',
                      "negative": b'"-0.0002" "-0.0002"'}.items():  # fmt: skip
        (inbox / f"{STEM}_philips_{case}.tiff").write_bytes(philips.replace(b'"0.00025" "0.00025"', new))
        refused.add(f"{STEM}_philips_{case}.tiff")
    (inbox / f"{STEM}_philips_missing.tiff").write_bytes(
        philips.replace(b"DICOM_PIXEL_SPACING", b"DICOM_PIXEL_SPACINX")
    )
    refused.add(f"{STEM}_philips_missing.tiff")
    (inbox / "philips.tiff").unlink()
    syn.write_ome_tiff(inbox / "ome.tiff", WHO, size=512)
    ome = (inbox / "ome.tiff").read_bytes()
    for case, new in {"zero": b'PhysicalSizeX="0.00"', "word": b'PhysicalSizeX="abcd"',
                      "negative": b'PhysicalSizeX="-1.0"', "missing": b'PhysicalSizeQ="0.25"'}.items():  # fmt: skip
        (inbox / f"{STEM}_ome_{case}.ome.tiff").write_bytes(ome.replace(b'PhysicalSizeX="0.25"', new))
        refused.add(f"{STEM}_ome_{case}.ome.tiff")
    (inbox / "ome.tiff").unlink()
    ndpi = (shared / "test3-DAPI-2-387.ndpi").read_bytes()
    with tifffile.TiffFile(shared / "test3-DAPI-2-387.ndpi") as tf:
        res = [
            t.valueoffset for p in tf.pages for n in ("XResolution", "YResolution") if (t := p.tags.get(n))
        ]
        mag = tf.pages[0].tags[65421].valueoffset
    for case, value in {"zero": (0, 1), "no_denominator": (1, 0)}.items():
        buf = bytearray(ndpi)
        for off in res:
            struct.pack_into("<II", buf, off, *value)
        (inbox / f"{STEM}_ndpi_resolution_{case}.ndpi").write_bytes(bytes(buf))
        refused.add(f"{STEM}_ndpi_resolution_{case}.ndpi")
    buf = bytearray(ndpi)
    struct.pack_into("<f", buf, mag, math.nan)
    (inbox / f"{STEM}_ndpi_magnification_nan.ndpi").write_bytes(bytes(buf))
    kept.add(f"{STEM}_ndpi_magnification_nan.ndpi")
    syn.write_generic_tiff(inbox / "generic.tiff", WHO, size=512)  # a resolution in cm of 0 pixels
    generic = bytearray((inbox / "generic.tiff").read_bytes())
    with tifffile.TiffFile(inbox / "generic.tiff") as tf:
        for page in tf.pages:
            struct.pack_into("<II", generic, page.tags["XResolution"].valueoffset, 0, 1)
    (inbox / "generic.tiff").unlink()
    (inbox / f"{STEM}_generic_resolution_zero.tiff").write_bytes(bytes(generic))
    refused.add(f"{STEM}_generic_resolution_zero.tiff")
    _svs(inbox / "good.svs", "AppMag = 20|MPP = 0.5")  # the batch goes on: a good slide among them
    kept.add("good.svs")
    return refused, kept


def test_malformed_vendor_metadata_is_refused_with_a_clear_reason(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    refused, kept = _write_cases(inbox, shared_wsi)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    reasons = {Path(p.source).name: p.reason for p in problems}
    # OpenSlide itself refuses a Philips file without a usable spacing ("Couldn't get level downsamples")
    clear = ("pixel size", "the slide cannot be opened")
    wrong = {n: reasons.get(n) for n in refused if not any(c in (reasons.get(n) or "") for c in clear)}
    assert wrong == {}, f"{len(wrong)} of {len(refused)} malformed slides not refused with a clear reason"
    for name, reason in reasons.items():
        assert "internal error" not in reason and "Okonkwo" not in reason and "0,5" not in reason, name
    assert set(reasons) == refused, set(reasons) ^ refused
    assert summary.counts["quarantined"] == len(refused)
    with workspace.catalog.session() as s:
        rows = s.scalars(select(Slide)).all()
        assert len(rows) == len(kept)
        for row in rows:
            assert row.mpp is not None and row.mpp > 0
            assert row.magnification is None or (math.isfinite(row.magnification) and row.magnification > 0)
    for digest in workspace.store.digests():
        blob = workspace.store.get_bytes(digest)
        if blob[128:132] != b"DICM":
            continue
        ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
        spacing = [
            float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        ]
        assert all(0 < v <= 1.0 for v in spacing), spacing  # millimetres: at most 1 mm a pixel
        power = ds.OpticalPathSequence[0].get("ObjectiveLensPower")
        assert power is None or (math.isfinite(float(power)) and float(power) > 0)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "nan", "inf", "1e400", None])
def test_positive_number_refuses_what_is_not_a_calibration(value: str | None) -> None:
    from curata.collect.wsi.dicomize import positive_number

    assert positive_number(value) is None


def _wsm_with_spacing(shared: Path, value: str | None) -> bytes:
    """boxes_0.dcm with its PixelSpacing written as ``value`` (bytes replaced: pydicom refuses to write
    an invalid DS), or without one."""
    ds = pydicom.dcmread(shared / "boxes_0.dcm")
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    if value is None:
        del measures.PixelSpacing
    else:
        measures.PixelSpacing = ["0.00012", "0.00012"]
    buf = io.BytesIO()
    ds.save_as(buf)
    raw = buf.getvalue()
    return raw if value is None else raw.replace(b"0.00012\\0.00012 ", f"{value}\\{value}".encode().ljust(16))


@pytest.mark.parametrize("value", ["0", "-0.0005", "abc", "", "nan", "1e400", None])
def test_qc_and_tiling_read_a_malformed_pixel_spacing_as_unknown(shared_wsi: Path, value: str | None) -> None:
    """A DICOM-WSI from a site with a PixelSpacing that is no positive number: QC and tiling failed on
    it (ValueError) or measured with it (-0.5, nan, inf um a pixel); its pixel size is unknown now."""
    from curata.preprocess.wsi.read import read_slide
    from curata.select.metrics.wsi import measure_slide

    raw = _wsm_with_spacing(shared_wsi, value)
    metrics, _thumb = measure_slide([io.BytesIO(raw)])
    assert metrics.get("mpp") is None
    assert read_slide([io.BytesIO(raw)]).mpp(0) is None
    assert _wsm_with_spacing(shared_wsi, "0.00025")  # (the writer works for a valid value too)


def test_the_tile_reader_refuses_a_damaged_file_with_a_clear_reason(shared_wsi: Path, tmp_path: Path) -> None:
    """``SlideReader`` (a training loader's tiles) on a file that is no TIFF, cut in its directories or
    short of its tile table: tifffile's TiffFileError or an IndexError escaped (4 of 4); now an
    InputError by kind, and a tile outside the grid an IndexError naming it."""
    from curata.collect.wsi import SlideReader
    from curata.errors import InputError

    cases = {
        "cut.svs": (shared_wsi / "small.svs").read_bytes()[:300],
        "short.svs": (shared_wsi / "CMU-1-Small-Region.svs").read_bytes()[:200_000],
        "gif.svs": b"GIF89a" + bytes(100),
        "empty.svs": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="the slide cannot be opened") as caught:
            SlideReader(tmp_path / name)
        assert str(tmp_path) not in caught.value.reason
    with SlideReader(shared_wsi / "CMU-1-Small-Region.svs") as reader:
        cols, rows = reader.grid(0)
        with pytest.raises(IndexError, match="outside level 0"):
            reader.raw_tile(0, cols, 0)
        assert reader.tile(0, cols - 1, rows - 1).shape[-1] == 3


@pytest.mark.parametrize("mag", [None, 1.25, math.nan])
def test_an_ndpi_macro_whose_magnification_is_lost_is_still_removed(
    shared_wsi: Path, mag: float | None
) -> None:
    """NDPI tells its macro and map by a magnification of -1 and -2. With that tag lost (or rewritten
    to a positive number or NaN) the macro was kept in the vendor file and OpenSlide refused the slide
    ("No such value: directory 4, tag 65421"): 3 of 3 refused. A page that is not the base scaled down
    is removed as an associated image; the slide is stored with its 4 levels."""
    from curata.collect.wsi._tiff import TiffEditor
    from curata.collect.wsi.service import deidentify_slide

    ed = TiffEditor((shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes())
    for ifd in ed.ifds[4:]:  # the macro (-1) and the map (-2)
        if mag is None:
            ed.drop_tags(ifd, {65421})
        else:
            struct.pack_into(ed.bo + "f", ed.buf, ifd.get(65421).value_pos, mag)
    res = deidentify_slide(bytes(ed.buf), key=b"k" * 32, source="x.ndpi", identity=None)
    assert res.deid.record.removed_images == ["associated (IFD 4)", "associated (IFD 5)"]
    assert len(res.instances) == 4
    with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as tf:
        assert len(tf.pages) == 4
