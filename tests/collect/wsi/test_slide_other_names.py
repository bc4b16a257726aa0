"""Other people's names (the pathologist's, the referring physician's) in a slide's free text: no sidecar
names them and no patient field says whose they are, so only the shape of what a slide keeps protects
them. Planted in the Aperio description (custom fields, the header, kept fields), XMP, Philips XML
attributes, NDPI property values and keys, a Leica SCN description and a Ventana BIF XMP; every output
(vendor file, DICOM-WSI, slide row, record) must hold none of them, without a sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from curata.collect.wsi import SlideDeidentifier, deidentify_slide
from curata.collect.wsi._tiff import TiffEditor
from curata.errors import DeidError
from tests.collect.wsi.test_slide_planted_spellings import HEADER, write_philips, write_slide

KEY = b"k" * 32
NAMES = ["Dr. Okafor", "Pathologist: Yetunde Okafor", "signed OKAFOR^YETUNDE", "Okafor", "YETUNDE OKAFOR MD"]
WORDS = (b"okafor", b"yetunde")
APERIO_FIELDS = ["Pathologist", "User", "Title", "Comment", "Parmset", "ScanScope ID", "Rack", "ICC Profile"]
PHILIPS_ATTRS = ["DICOM_MANUFACTURER", "DICOM_MANUFACTURERS_MODEL_NAME", "DICOM_SOFTWARE_VERSIONS",
                 "PIM_DP_IMAGE_TYPE", "DICOM_OPERATORS_NAME", "DICOM_REFERRING_PHYSICIAN_NAME", "PIM_DP_COMMENT"]  # fmt: skip


def _names_in(blobs: list[bytes]) -> list[str]:
    low = [b.lower() for b in blobs]
    return [w.decode() for w in WORDS if any(w in b or w.decode().encode("utf-16-le") in b for b in low)]


def _outcome(raw: bytes, source: str, *, convert: bool = True) -> str:
    try:
        if convert:
            res = deidentify_slide(raw, key=KEY, source=source, identity=None)
            deid = res.deid
            blobs = [deid.output_bytes, *res.instances, json.dumps(res.slide_fields).encode()]
        else:  # (the Philips fixture is XML only: de-identified, not converted)
            deid = SlideDeidentifier(KEY).deidentify_bytes(raw, source=source, identity=None)
            blobs = [deid.output_bytes]
    except DeidError:
        return "refused"
    found = _names_in([*blobs, json.dumps(deid.record.as_dict()).encode()])
    return f"stored with {found}" if found else "stored"


def _ndpi(shared: Path, lines: str) -> bytes:
    ed = TiffEditor((shared / "test3-DAPI-2-387.ndpi").read_bytes())
    props = (ed.text(ed.ifds[0], 65449) or "") + lines
    for ifd in ed.ifds:
        ed.set_text(ifd, 65449, props)
    return bytes(ed.buf)


def _tiled(path: Path, description: str, xmp: bytes | None = None) -> bytes:
    extratags = [(700, "B", 0, xmp, True)] if xmp else []
    with tifffile.TiffWriter(path) as tw:
        for size in (512, 256):
            tw.write(
                np.full((size, size, 3), 200, np.uint8), tile=(256, 256), compression="jpeg", photometric="rgb",
                description=description, extratags=extratags, resolution=(40000, 40000),
                resolutionunit="CENTIMETER", metadata=None,
            )  # fmt: skip
    return path.read_bytes()


def _cases(tmp: Path, shared: Path) -> list[tuple[str, str, bytes, str, bool]]:
    cases = []
    for n, name in enumerate(NAMES):
        for field in APERIO_FIELDS:
            raw = write_slide(tmp / f"a{n}.svs", HEADER, fields=f"|{field} = {name}").read_bytes()
            cases.append((f"Aperio {field}", name, raw, "a.svs", True))
        cases.append(("Aperio header", name, write_slide(tmp / f"h{n}.svs", f"{HEADER} {name}").read_bytes(), "a.svs", True))  # fmt: skip
        xmp = f"<x:xmpmeta><dc:creator>{name}</dc:creator></x:xmpmeta>".encode()
        raw = write_slide(tmp / f"x{n}.svs", HEADER, extratags=[(700, "B", 0, xmp, True)]).read_bytes()
        cases.append(("XMP", name, raw, "a.svs", True))
        for attr in PHILIPS_ATTRS:
            raw = write_philips(tmp / f"p{n}.tiff", attr, name).read_bytes()
            cases.append((f"Philips {attr}", name, raw, "ph.tiff", False))
        cases.append(("NDPI value", name, _ndpi(shared, f"\r\nReviewer={name}\r\nNDP.Pathologist={name}"), "x.ndpi", True))  # fmt: skip
        key = name.replace(" ", ".").replace(":", "").replace("^", ".")
        cases.append(("NDPI key", name, _ndpi(shared, f"\r\n{key}=1"), "x.ndpi", True))
        cases.append(("NDPI key", name, _ndpi(shared, f"\r\nstage.{key}.offset=2"), "x.ndpi", True))
        scn = (
            '<?xml version="1.0"?><scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01">'
            f'<collection name="{name}"><image name="{name}"><creationDate>2021-03-14</creationDate>'
            '<device model="Leica SCN400" version="1.4"/><pixels sizeX="512" sizeY="512"/></image></collection></scn>'
        )
        cases.append(("Leica SCN", name, _tiled(tmp / f"scn{n}.tiff", scn), "scn.tiff", True))
        bif = f'<iScan Magnification="40" ScannerModel="VENTANA DP 200" UserName="{name}"><AOI0/></iScan>'
        cases.append(("Ventana BIF", name, _tiled(tmp / f"bif{n}.tiff", "level=0 mag=40 quality=90", bif.encode()), "bif.tiff", True))  # fmt: skip
    return cases


@pytest.fixture(scope="module")
def cases(
    tmp_path_factory: pytest.TempPathFactory, shared_wsi: Path
) -> list[tuple[str, str, bytes, str, bool]]:
    return _cases(tmp_path_factory.mktemp("names"), shared_wsi)


def test_other_peoples_names_in_slide_free_text_are_not_stored(cases) -> None:  # type: ignore[no-untyped-def]
    """Without a sidecar: every plant stored, none of the names in any output."""
    bad = [(where, name, got) for where, name, raw, src, conv in cases if (got := _outcome(raw, src, convert=conv)) != "stored"]  # fmt: skip
    assert bad == [], f"{len(bad)} of {len(cases)}: {bad}"


def test_ndpi_keys_of_the_scanners_words_stay(shared_wsi: Path) -> None:
    """Every key of the real NDPI's property map (and its values) is kept as it was."""
    raw = (shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes()
    res = SlideDeidentifier(KEY).deidentify_bytes(raw, source="x.ndpi", identity=None)
    with tifffile.TiffFile(shared_wsi / "test3-DAPI-2-387.ndpi") as before:
        old = before.pages[0].tags[65449].value
    with tifffile.TiffFile(__import__("io").BytesIO(res.output_bytes)) as after:
        new = after.pages[0].tags[65449].value
    kept = [line.partition("=")[0] for line in new.splitlines()]
    assert kept == [k for k in (line.partition("=")[0] for line in old.splitlines()) if k in KEPT_NDPI_KEYS]
    assert kept == KEPT_NDPI_KEYS  # what the real map kept before keys were judged by their words


KEPT_NDPI_KEYS = [
    "system.version", "roi.slide.macro", "slide.tickness", "PSHV", "exposure.slide.macro", "Objective.Lens.Magnificant",
    "ccd.width", "ccd.height", "coarse.focus.pitch", "fine.focus.pitch", "YRNP[0]", "YRNP[1]", "zCoarse[0]",
    "zCoarse[1]", "zFine[0]", "zFine[1]", "slant.lefttop", "slant.leftbottom", "slant.righttop", "slant.rightbottom",
    "AHEX[0]", "AHEX[1]", "stage.center", "lane.shift.amount", "exposure.slide.darkfield.macro", "cube.kind",
    "AHEX[0].fluorescence", "AHEX[1].fluorescence", "PSHV.ploidy", "PSHV.ploidy.10x", "ccd.width.ploidy", "AHEX[2]",
    "AHEX[2].fluorescence", "YRNP[2]", "zCoarse[2]", "zFine[2]", "PSHV.10x", "PSHV.40x", "AHEX[0].ploidy",
    "AHEX[1].ploidy", "AHEX[2].ploidy", "focalplane.lefttop", "focalplane.leftbottom", "focalplane.righttop",
    "focalplane.rightbottom", "target.white.intensity", "calibration.version",
]  # fmt: skip


def test_a_dicom_wsi_keeps_no_name_or_id_in_its_device_strings_or_optical_path(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:
    """A DICOM-WSI from a site goes through the PS3.15 engine, which keeps Manufacturer, the model, the
    software versions, the optical path's description and lens power: another person's name, the
    patient's ID digits (SS4417702) and a birth date as a lens power (19610412) were stored (3 of 3 planted
    words). They keep a device string's shape now, as a vendor file's Make/Model/Software do."""
    import io
    import re

    import pydicom

    from curata.collect.ingest import Ingestor

    inbox = tmp_path / "in"
    inbox.mkdir()
    ds = pydicom.dcmread(shared_wsi / "boxes_0.dcm")
    ds.PatientID, ds.PatientName = "MRN4417702", "SUZUKI^KENJI"
    ds.Manufacturer, ds.ManufacturerModelName = "MRN4417702 Scanner", "Dr Okafor GT450"
    ds.SoftwareVersions = ["v10.0.51", "SS4417702"]
    ds.OpticalPathSequence[0].OpticalPathDescription = "read by Dr. Okafor"
    ds.OpticalPathSequence[0].ObjectiveLensPower = "19610412"
    ds.save_as(inbox / "planted.dcm")
    (inbox / "real.dcm").write_bytes((shared_wsi / "boxes_1.dcm").read_bytes())
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([inbox])
    assert summary.counts["ingested"] == 2 and not problems
    found, kept = [], []
    for digest in workspace.store.digests():
        blob = workspace.store.get_bytes(digest)
        squeezed = re.sub(rb"[\s^,.\-_'/\\\x00:|;+=]+", b"", blob.lower())
        found += [w for w in (b"okafor", b"4417702", b"19610412", b"suzuki") if w in squeezed]
        out = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
        power = out.OpticalPathSequence[0].get("ObjectiveLensPower")
        kept.append((out.Manufacturer, float(power) if power is not None else None))
    assert found == []
    # the real slide keeps its maker and lens power (its model, which the engine wrote as com.*.convert...,
    # and the converter's date in SoftwareVersions are no device strings: unknown)
    assert sorted(kept, key=str) == [("Leica Biosystems", 20.0), ("unknown", None)]
