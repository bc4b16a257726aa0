"""The patient's identifiers in every spelling, planted where a slide's metadata keeps technical values.

Each test writes a small real Aperio SVS, plants one spelling in one position of the class under test,
de-identifies it with and without the site's sidecar identity, and looks for every spelling in every
output byte (DICOM-WSI levels included) case-folded and with separators removed: none may survive.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import tifffile

from curata.collect.reasons import sanitize
from curata.collect.wsi import SlideDeidentifier, SlideIdentity, deidentify_slide
from curata.collect.wsi import synthetic as syn
from curata.collect.wsi.deid import SlideDeidResult
from curata.errors import DeidError

KEY = b"k" * 32
SPELLINGS = [
    "OKONKWO-BELLO^ADAEZE",
    "Okonkwo-Bello",
    "okonkwo bello",
    "Adaeze",
    "MRN-77123",
    "MRN77123",
    "77123",
    "1948-06-14",
    "14/06/1948",
    "1948:06:14",
    "19480614",
    "ACC-5521907",
    "5521907",
    "+234-803-555-0199",
]
IDENTITY = SlideIdentity(
    patient_id="MRN-77123",
    patient_name="OKONKWO-BELLO^ADAEZE",
    birth_date="19480614",
    accession="ACC-5521907",
)
HEADER = "Aperio Image Library v12.0.5 \r\n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=80"
FIELDS = "|AppMag = 20|MPP = 0.5|Filename = slide1"


def _sep_free(data: bytes) -> bytes:
    return re.sub(rb"[\s^,.\-_'/\\\x00:|;+=\[\]()]+", b"", data.lower())


def survivors(blobs: list[bytes]) -> list[str]:
    hay = [_sep_free(b) for b in blobs]
    return [s for s in SPELLINGS if any(_sep_free(s.encode()) in h for h in hay)]


def write_slide(
    path: Path, header: str, *, extratags: list | None = None, fields: str = "", **page: str
) -> Path:
    base = syn.tissue_image(512, 512, 1)
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(syn._pyramid(base, 2)):
            head = (
                header
                if i == 0
                else header.replace("512x512 [0,0 512x512] (256x256)", "256x256 -> 256x256 -")
            )
            tw.write(
                level, tile=(256, 256), compression="jpeg", photometric="rgb", description=head + FIELDS + fields,
                subfiletype=0, extratags=extratags or [], metadata=None, **page,
            )  # fmt: skip
    return path


def _outcome(path: Path, identity: SlideIdentity | None) -> list[str] | None:
    """The spellings that survive, or None when the slide was refused (the gate: never stored)."""
    try:
        res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=identity)
    except DeidError as exc:  # its reason is kept and printed: the sanitiser must leave it readable
        assert sanitize(exc.message) == " ".join(exc.message.split()), exc.message
        return None
    return survivors([res.deid.output_bytes, *res.instances])


# where, in the first line of an Aperio description, a value can be slipped in
HEADER_POSITIONS = [
    lambda h, v: h.replace("Library ", f"Library {v} "),
    lambda h, v: h.replace("v12.0.5 ", f"v12.0.5 {v} "),
    lambda h, v: h.replace(" \r\n", f" \r\n{v} "),
    lambda h, v: h.replace("(256x256)", f"(256x256) {v}"),
    lambda h, v: h + f" {v}",
    lambda h, v: h + f";{v}",
]


@pytest.mark.parametrize("identity", [None, IDENTITY], ids=["no-sidecar", "sidecar"])
def test_aperio_header_keeps_only_the_scanners_tokens(tmp_path: Path, identity: SlideIdentity | None) -> None:
    leaked: list[tuple[int, str, list[str]]] = []
    for p, plant in enumerate(HEADER_POSITIONS):
        for s, spelling in enumerate(SPELLINGS):
            path = write_slide(tmp_path / f"slide-{p}-{s}.svs", plant(HEADER, spelling))
            assert survivors([path.read_bytes()]), "the fixture must carry the spelling"
            found = _outcome(path, identity)
            if found:
                leaked.append((p, spelling, found))
    assert leaked == []


def test_real_aperio_headers_are_kept_as_they_are(shared_wsi: Path) -> None:
    for name in ("CMU-1-Small-Region.svs", "small.svs"):
        raw = (shared_wsi / name).read_bytes()
        res = deidentify_slide(raw, key=KEY, source=name, identity=None)
        with tifffile.TiffFile(shared_wsi / name) as before:
            heads = {p.description.split("|")[0] for p in before.pages if p.description.startswith("Aperio")}
        with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as after:
            kept = {p.description.split("|")[0] for p in after.pages if p.description.startswith("Aperio")}
        assert kept and kept <= heads


# the text tags a slide keeps (the scanner's make, model and software), each with a value slipped in
KEPT_TEXT = {
    "Make": lambda v: {"extratags": [(271, "s", 0, f"Aperio {v}", True)]},
    "Model": lambda v: {"extratags": [(272, "s", 0, f"GT450 {v}", True)]},
    "Software": lambda v: {"software": f"ScanScope Console {v}"},
}
IDENTITY_SPELLINGS = [s for s in SPELLINGS if not s.startswith("+")]  # the phone is not in the sidecar


def test_kept_tags_holding_the_sidecar_identity_in_any_spelling_are_refused(tmp_path: Path) -> None:
    """The gate matches the site's identity as radiology's gate does: any case, separators or none, an ID's
    number without its prefix, the birth date as TIFF writes dates (1948:06:14) or any other way."""
    stored: list[tuple[str, str, list[str]]] = []
    for tag, plant in KEPT_TEXT.items():
        for s, spelling in enumerate(IDENTITY_SPELLINGS):
            path = write_slide(tmp_path / f"{tag}-{s}.svs", HEADER, **plant(spelling))
            assert survivors([path.read_bytes()]), "the fixture must carry the spelling"
            found = _outcome(path, IDENTITY)
            if found:
                stored.append((tag, spelling, found))
    assert stored == []
    # and a slide whose kept tags hold nothing of the patient is stored
    assert (
        _outcome(
            write_slide(tmp_path / "plain.svs", HEADER, software="ScanScope Console v102.0.0.33"), IDENTITY
        )
        == []
    )


# The file's own fields that name the patient (no sidecar): as PatientName/PatientID are a DICOM file's.
def _philips_attr(name: str, value: str) -> str:
    return f'<Attribute Name="{name}" Group="0x0010" Element="0x0010" PMSVR="IString">{value}</Attribute>'


def write_philips(
    path: Path, kept_name: str, kept_value: str, *, identity_fields: bool = True, **page: Any
) -> Path:
    identity = (
        _philips_attr("DICOM_PATIENT_NAME", "OKONKWO-BELLO^ADAEZE")
        + _philips_attr("DICOM_PATIENT_ID", "MRN-77123")
        + _philips_attr("DICOM_PATIENT_BIRTH_DATE", "19480614")
        + _philips_attr("DICOM_ACCESSION_NUMBER", "ACC-5521907")
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8" ?><DataObject ObjectType="DPUfsImport">'
        + (identity if identity_fields else "")
        + _philips_attr("DICOM_PIXEL_SPACING", '"0.00025" "0.00025"')
        + _philips_attr("PIM_DP_IMAGE_TYPE", "WSI")
        + (_philips_attr(kept_name, kept_value) if kept_name else "")
        + _philips_attr("DICOM_MANUFACTURER", "PHILIPS")
        + "</DataObject>"
    )
    base = syn.tissue_image(512, 512, 2)
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(syn._pyramid(base, 2)):
            tw.write(
                level, tile=(256, 256), compression="jpeg", photometric="rgb", description=xml if i == 0 else "Level=1",
                subfiletype=0 if i == 0 else 1, metadata=None, **({"software": "Philips DP v1.0"} | page),
            )  # fmt: skip
    return path


def _vendor_outcome(path: Path) -> list[str] | None:
    try:
        res = SlideDeidentifier(KEY).deidentify_bytes(path.read_bytes(), source=path.name, identity=None)
    except DeidError:
        return None
    return survivors([res.output_bytes])


APERIO_IDENTITY = (
    "|Patient = OKONKWO-BELLO^ADAEZE|PatientID = MRN-77123|DOB = 1948-06-14|Accession = ACC-5521907"
)


def test_the_files_own_identity_fields_are_found_in_any_spelling_elsewhere(tmp_path: Path) -> None:
    """No sidecar: the vendor's patient fields (dropped) are the identity; a kept free-text attribute, Make,
    Model or Software holding it in another spelling is refused, never stored."""
    stored: list[tuple[str, str, list[str]]] = []
    places: dict[str, Any] = {
        "philips DICOM_STUDY_DESCRIPTION": lambda p, v: write_philips(
            p, "DICOM_STUDY_DESCRIPTION", f"biopsy {v}"
        ),
        "philips DICOM_DERIVATION_DESCRIPTION": lambda p, v: write_philips(
            p, "DICOM_DERIVATION_DESCRIPTION", v
        ),
        "philips PIM_DP_SOURCE_FILE": lambda p, v: write_philips(
            p, "PIM_DP_SOURCE_FILE", f"D:/scans/{v}.isyntax"
        ),
        **{
            f"philips {tag}": (lambda t: lambda p, v: write_philips(p, "", "", **t(v)))(plant)
            for tag, plant in KEPT_TEXT.items()
        },
        **{
            f"aperio {tag}": (lambda t: lambda p, v: write_slide(p, HEADER, fields=APERIO_IDENTITY, **t(v)))(
                plant
            )
            for tag, plant in KEPT_TEXT.items()
        },
    }
    for where, write in places.items():
        for s, spelling in enumerate(IDENTITY_SPELLINGS):
            path = write(tmp_path / f"{where.replace(' ', '_')}-{s}.tiff", spelling)
            found = _vendor_outcome(path)
            if found:
                stored.append((where, spelling, found))
    assert stored == []
    # the same files without the planted spelling are stored, their own identity gone
    for plain in (
        write_philips(tmp_path / "p.tiff", "", ""),
        write_slide(tmp_path / "a.svs", HEADER, fields=APERIO_IDENTITY),
    ):
        assert survivors([plain.read_bytes()])
        assert _vendor_outcome(plain) == []


# OME-XML: every place a value can sit outside the pixel description
_OME_NS = 'xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"'
OME_PLACES: dict[str, Any] = {
    "AcquisitionDate": lambda v: ("", f"<AcquisitionDate>{v}</AcquisitionDate>"),
    "ROI Label Text": lambda v: (
        f'<ROI ID="ROI:0"><Union><Label ID="Shape:0" Text="{v}" X="1" Y="1"/></Union></ROI>',
        "",
    ),
    "Plate attributes": lambda v: (f'<Plate ID="Plate:0" Description="{v}" ExternalIdentifier="{v}"/>', ""),
    "Microscope": lambda v: (
        f'<Instrument ID="Instrument:0"><Microscope Manufacturer="{v}" Model="{v}"/></Instrument>',
        "",
    ),
    "Detector": lambda v: (
        f'<Instrument ID="Instrument:1"><Detector ID="Detector:0" Model="{v}" Gain="1"/></Instrument>',
        "",
    ),
    "other namespace": lambda v: (
        f'<ca:Custom xmlns:ca="http://example.org/ca"><Patient>{v}</Patient></ca:Custom>',
        "",
    ),
    "Image child": lambda v: ("", f'<ExperimenterRef ID="{v}"/><Description>{v}</Description>'),
    "Dataset": lambda v: (f'<Dataset ID="Dataset:0" Description="{v}"/>', ""),
    "Project": lambda v: (f'<Project ID="Project:0"><Description>{v}</Description></Project>', ""),
    "StageLabel": lambda v: ("", f'<StageLabel Name="{v}" X="1" Y="2"/>'),
    "UUID FileName": lambda v: ("", ""),  # planted below, in the TiffData's UUID
    "Pixels text": lambda v: ("", ""),  # planted below, as text beside the Channel
}


def _ome_xml(where: str, value: str) -> str:
    outer, inner = OME_PLACES[where](value)
    uuid_attr = f' FileName="{value}.ome.tiff"' if where == "UUID FileName" else ""
    loose = value if where == "Pixels text" else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME {_OME_NS} Creator="scanner {value}">{outer}'
        f'<Image ID="Image:0">{inner}<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="512" '
        'SizeY="512" SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="0.25"><Channel ID="Channel:0:0" '
        f'SamplesPerPixel="3"/>{loose}<TiffData IFD="0" PlaneCount="1"><UUID{uuid_attr}>'
        "urn:uuid:12345678-1234-1234-1234-123456789abc</UUID></TiffData></Pixels></Image></OME>"
    )


def test_ome_xml_keeps_only_the_pixel_description(tmp_path: Path) -> None:
    """No sidecar, so nothing to match: what OME-XML keeps is an allow-list, and its acquisition date moves."""
    levels = syn._pyramid(syn.tissue_image(512, 512, 3), 2)
    stored: list[tuple[str, str, list[str]]] = []
    refused: list[tuple[str, str]] = []  # never stored: not a leak, but a slide lost; few may be
    for where in OME_PLACES:
        for s, spelling in enumerate([*SPELLINGS, "2021-03-14T10:11:12"]):
            path = tmp_path / f"{where.replace(' ', '_')}-{s}.ome.tiff"
            with tifffile.TiffWriter(path) as tw:
                tw.write(
                    levels[0], tile=(256, 256), compression="jpeg", photometric="rgb",
                    description=_ome_xml(where, spelling), subifds=1, metadata=None,
                )  # fmt: skip
                tw.write(levels[1], tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1)
            assert _sep_free(spelling.encode()) in _sep_free(path.read_bytes())
            try:
                res = SlideDeidentifier(KEY).deidentify_bytes(
                    path.read_bytes(), source=path.name, identity=None
                )
            except DeidError:
                refused.append((where, spelling))
                continue
            found = survivors([res.output_bytes])
            if _sep_free(spelling.encode()) in _sep_free(res.output_bytes):
                found.append(spelling)
            if found:
                stored.append((where, spelling, found))
            with tifffile.TiffFile(io.BytesIO(res.output_bytes)) as tf:
                kept = tf.pages[0].description
                assert tf.series[0].shape[:2] == (512, 512)  # TiffData's UUID (the source file) goes
            assert 'SizeX="512"' in kept and 'PhysicalSizeX="0.25"' in kept
    assert stored == []
    assert len(refused) <= len(OME_PLACES)


PHILIPS_TEXT = [
    "DICOM_STUDY_DESCRIPTION",
    "DICOM_DERIVATION_DESCRIPTION",
    "PIM_DP_SOURCE_FILE",
    "DICOM_REQUESTED_PROCEDURE_DESCRIPTION",
    "DICOM_IMAGE_COMMENTS",
    "PIM_DP_SCANNER_NOTES",
]


def test_philips_xml_keeps_numbers_and_the_readers_few_text_attributes(tmp_path: Path) -> None:
    """No sidecar and no patient field in the file, so nothing to match: a free-text attribute goes whatever
    its name, numbers and the attributes a reader needs stay."""
    stored: list[tuple[str, str, list[str]]] = []
    for name in PHILIPS_TEXT:
        for s, spelling in enumerate(SPELLINGS):
            path = write_philips(
                tmp_path / f"{name}-{s}.tiff", name, f"case {spelling}", identity_fields=False
            )
            assert survivors([path.read_bytes()])
            found = _vendor_outcome(path)
            if found:
                stored.append((name, spelling, found))
            out = SlideDeidentifier(KEY).deidentify_bytes(path.read_bytes(), source=path.name, identity=None)
            kept = tifffile.TiffFile(io.BytesIO(out.output_bytes)).pages[0].description
            assert "DICOM_PIXEL_SPACING" in kept and "PIM_DP_IMAGE_TYPE" in kept and "PHILIPS" in kept
    assert stored == []


def test_ndpi_number_tags_keep_numbers_only(shared_wsi: Path) -> None:
    """The NDPI tags kept for their numbers (magnification, offsets, focus...) keep no text put in them."""
    from curata.collect.wsi._tiff import TiffEditor
    from curata.collect.wsi.deid import _NDPI_KEEP

    raw = (shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes()
    planted = 0
    stored: list[tuple[int, str, list[str]]] = []
    for tag in sorted(_NDPI_KEEP - {65434}):
        if TiffEditor(raw).ifds[0].get(tag) is None:
            continue  # not in this file: set_text can only rewrite a tag that is there
        for spelling in ("OKONKWO-BELLO^ADAEZE", "MRN77123", "14/06/1948"):
            ed = TiffEditor(raw)
            ed.set_text(ed.ifds[0], tag, f"{spelling} ACC-5521907")
            planted += 1
            try:
                res = SlideDeidentifier(KEY).deidentify_bytes(bytes(ed.buf), source="x.ndpi", identity=None)
            except DeidError:
                continue
            if found := survivors([res.output_bytes]):
                stored.append((tag, spelling, found))
    assert planted >= 60 and stored == []
    clean = SlideDeidentifier(KEY).deidentify_bytes(raw, source="x.ndpi", identity=None)
    page = tifffile.TiffFile(io.BytesIO(clean.output_bytes)).pages[0]
    assert page.tags[65434].value == "DAPI 2 (387)" and page.tags[65421].value == 40.0


# structural tags a scanner may write and the rewrite keeps for their numbers
NUMBER_TAGS = [263, 266, 274, 280, 281, 290, 291, 297, 301, 318, 319, 340, 341, 512, 513, 514, 515, 529, 531]
NUMBER_TAGS += [32995, 32996, 32997, 32998]


def test_structural_tags_keep_numbers_only(tmp_path: Path) -> None:
    """Text put in a tag the rewrite keeps for its number (orientation, sample range, JPEG tables' kin...)."""
    stored: list[tuple[int, str, list[str]]] = []
    planted = 0
    for tag in NUMBER_TAGS:
        for spelling in ("OKONKWO-BELLO^ADAEZE", "MRN77123", "14/06/1948"):
            text = [(tag, "s", 0, f"{spelling} x", True)]
            path = write_slide(tmp_path / f"{tag}.svs", HEADER, extratags=text)
            if not survivors([path.read_bytes()]):
                continue  # a tag tifffile writes itself, or will not write as text
            planted += 1
            try:
                res = SlideDeidentifier(KEY).deidentify_bytes(
                    path.read_bytes(), source=path.name, identity=None
                )
            except DeidError:
                continue
            if found := survivors([res.output_bytes]):
                stored.append((tag, spelling, found))
    assert planted >= 30 and stored == []


def test_the_record_names_removed_images_by_their_kind(tmp_path: Path) -> None:
    """The de-identification record (kept in the catalog, the provenance and the log) says what was removed
    in its own words, never with the input's name for it (an OME label image named after the patient)."""
    levels = syn._pyramid(syn.tissue_image(512, 512, 3), 2)
    pixels = (
        '<Pixels ID="Pixels:{i}" DimensionOrder="XYCZT" Type="uint8" SizeX="{w}" SizeY="{h}" SizeC="3" SizeZ="1" '
        'SizeT="1"><Channel ID="Channel:{i}:0" SamplesPerPixel="3"/><TiffData IFD="{i}" PlaneCount="1"/></Pixels>'
    )
    for s, spelling in enumerate(SPELLINGS):
        for word in ("label", "macro", "overview"):
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><OME {_OME_NS}><Image ID="Image:0">'
                + pixels.format(i=0, w=512, h=512)
                + f'</Image><Image ID="Image:1" Name="{word} {spelling}">'
                + pixels.format(i=1, w=64, h=48)
                + "</Image></OME>"
            )
            path = tmp_path / f"{word}-{s}.ome.tiff"
            with tifffile.TiffWriter(path) as tw:
                tw.write(
                    levels[0],
                    tile=(256, 256),
                    compression="jpeg",
                    photometric="rgb",
                    description=xml,
                    subifds=1,
                )
                tw.write(levels[1], tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1)
                tw.write(levels[1][:48, :64], photometric="rgb", description=word, metadata=None)
            res = SlideDeidentifier(KEY).deidentify_bytes(path.read_bytes(), source=path.name, identity=None)
            record = json.dumps(res.record.as_dict()).encode()
            assert survivors([record]) == [], record
            assert f"{word} (OME image)" in res.record.removed_images


def test_the_dicom_wsi_header_gate_matches_the_identity_in_any_spelling(tmp_path: Path) -> None:
    """The sidecar's stain and organ reach the DICOM-WSI header (and the catalog): a spelling of the
    patient's identity there is cut from them (it used to refuse the slide at the header gate); no
    spelling is stored either way."""
    path = write_slide(tmp_path / "slide.svs", HEADER)
    stored = []
    for spelling in IDENTITY_SPELLINGS:
        for field in ("stain", "organ"):
            values = {"stain": "H&E", "organ": "lung", field: f"lung {spelling}"}
            identity = SlideIdentity(
                patient_id="MRN-77123",
                patient_name="OKONKWO-BELLO^ADAEZE",
                birth_date="19480614",
                accession="ACC-5521907",
                **values,
            )
            try:
                res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=identity)
            except DeidError:
                continue
            found = survivors([*res.instances, json.dumps(res.slide_fields).encode()])
            if found:
                stored.append((field, spelling, found))
            assert res.slide_fields[field] in ("lung", None), res.slide_fields[field]
    assert stored == []


def test_mrxs_slidedat_identity_is_found_in_any_spelling(tmp_path: Path) -> None:
    """Slidedat.ini's own fields (the slide's name, the patient's ID, a birth date) are the identity when
    the sidecar gives none: the DICOM-WSI header gate finds them in any spelling, as radiology's does (a
    sidecar's organ ``lung okonkwo bello`` beside SLIDE_NAME=OKONKWO-BELLO ADAEZE is refused)."""
    from curata.collect.wsi.service import convert_mrxs_slide

    path = tmp_path / "s.mrxs"
    who = syn.PlantedIdentity(
        patient_name="OKONKWO-BELLO^ADAEZE", patient_id="MRN-77123", accession="ACC-5521907"
    )
    syn.write_mrxs(path, who)
    ini = path.with_suffix("") / "Slidedat.ini"
    ini.write_text(
        ini.read_text()
        .replace("[GENERAL]", "[GENERAL]\r\nPATIENT_BIRTH_DATE=14.06.1948", 1)
        .replace("2024.03.12", dt.date.today().strftime("%Y.%m.%d")),
        encoding="utf-8",
    )
    stored: list[tuple[str, str, list[str]]] = []
    for spelling in IDENTITY_SPELLINGS:
        for fld in ("stain", "organ"):
            values = {"stain": "H&E", "organ": "lung", fld: f"lung {spelling}"}
            try:
                res = convert_mrxs_slide(path, path.read_bytes(), key=KEY, identity=SlideIdentity(**values))
            except DeidError:
                continue
            found = survivors([*res.instances, json.dumps(res.slide_fields).encode()])
            if found:
                stored.append((fld, spelling, found))
    assert stored == []
    # the same slide with a plain sidecar is stored (scanned today: its header's ContentDate is today)
    plain = convert_mrxs_slide(
        path, path.read_bytes(), key=KEY, identity=SlideIdentity(stain="H&E", organ="lung")
    )
    assert survivors([*plain.instances, json.dumps(plain.slide_fields).encode()]) == []


def _ome_with_ids(image_id: str, instrument_id: str, channel_id: str, channel_name: str, fluor: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME {_OME_NS}><Instrument ID="{instrument_id}">'
        f'<Detector ID="Detector:0:0" Gain="1"/></Instrument><Image ID="{image_id}">'
        f'<InstrumentRef ID="{instrument_id}"/><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" '
        'SizeX="512" SizeY="512" SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="0.25">'
        f'<Channel ID="{channel_id}" Name="{channel_name}" Fluor="{fluor}" SamplesPerPixel="3">'
        '<DetectorSettings ID="Detector:0:0"/></Channel><TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )


def test_ome_ids_and_channel_names_keep_no_text(tmp_path: Path) -> None:
    """No sidecar: an OME ID not of OME's structural form (``Image:0``) is text the writer chose and becomes
    a structural one, the same wherever it is referenced; a channel name or fluor that is not a stain or
    fluorophore goes (recorded). ``DAPI`` and ``Alexa Fluor 488`` stay."""
    levels = syn._pyramid(syn.tissue_image(512, 512, 3), 2)

    def run(xml: str, name: str) -> tuple[list[str], str]:
        path = tmp_path / f"{name}.ome.tiff"
        with tifffile.TiffWriter(path) as tw:
            tw.write(
                levels[0], tile=(256, 256), compression="jpeg", photometric="rgb",
                description=xml, subifds=1, metadata=None,
            )  # fmt: skip
            tw.write(levels[1], tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1)
        res = SlideDeidentifier(KEY).deidentify_bytes(path.read_bytes(), source=path.name, identity=None)
        record = json.dumps(res.record.as_dict()).encode()
        found = survivors([res.output_bytes, record])
        return found, tifffile.TiffFile(io.BytesIO(res.output_bytes)).pages[0].description

    stored: list[tuple[int, str, list[str]]] = []
    for s, v in enumerate(SPELLINGS):
        plants = [
            (f"Image:{v}", "Instrument:0", "Channel:0:0", "DAPI", "DAPI"),
            ("Image:0", f"urn:lsid:{v}.org:Instrument:0", "Channel:0:0", "DAPI", "DAPI"),
            ("Image:0", "Instrument:0", f"Channel:{v}", "DAPI", "DAPI"),
            ("Image:0", "Instrument:0", "Channel:0:0", v, "DAPI"),
            ("Image:0", "Instrument:0", "Channel:0:0", f"DAPI {v}", f"scanned for {v}"),
        ]
        for p, plant in enumerate(plants):
            xml = _ome_with_ids(*plant)
            assert _sep_free(v.encode()) in _sep_free(xml.encode())
            found, kept = run(xml, f"{s}-{p}")
            if found:
                stored.append((p, v, found))
            root = ET.fromstring(kept)
            ids = {e.get("ID") for e in root.iter() if e.get("ID") and not e.tag.endswith("Ref")}
            refs = {e.get("ID") for e in root.iter() if e.tag.endswith("Ref") or e.tag.endswith("Settings")}
            assert refs <= ids, kept  # the references stay consistent
            assert all(re.fullmatch(r"[A-Za-z]+(?::\d+)+", i or "") for i in ids | refs), kept
    assert stored == []
    found, kept = run(
        _ome_with_ids("Image:0", "Instrument:0", "Channel:0:0", "Alexa Fluor 488", "DAPI"), "ok"
    )
    assert found == [] and 'Name="Alexa Fluor 488"' in kept and 'Fluor="DAPI"' in kept
    assert 'ID="Image:0"' in kept and 'ID="Instrument:0"' in kept


DEVICE_PLANTS = ["Okonkwo Adaeze", "scanned for Dr Smith", *(s for s in SPELLINGS if s != "MRN77123")]


def test_device_strings_keep_only_the_scanners_words(tmp_path: Path, shared_wsi: Path) -> None:
    """No sidecar and no patient field: nothing says whose a name in Make, Model, Software or the NDPI
    channel name would be, so a value is kept only in the shape of a device string; any other becomes
    ``unknown`` (the record says so) and the slide is stored. (``MRN77123`` has a model's shape, C13210:
    it is found only where a sidecar or a patient field names it.)"""
    from curata.collect.wsi._tiff import TiffEditor

    ndpi = (shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes()
    stored: list[tuple[str, str, list[str]]] = []
    for s, v in enumerate(DEVICE_PLANTS):
        outputs: dict[str, SlideDeidResult] = {}
        for tag, plant in {
            "Make": lambda v: {"extratags": [(271, "s", 0, v, True)]},
            "Model": lambda v: {"extratags": [(272, "s", 0, f"GT450 {v}", True)]},
            "Software": lambda v: {"software": f"ScanScope Console {v}"},
        }.items():
            path = write_slide(tmp_path / f"{tag}-{s}.svs", HEADER, **plant(v))
            outputs[tag] = SlideDeidentifier(KEY).deidentify_bytes(
                path.read_bytes(), source=path.name, identity=None
            )
        ed = TiffEditor(ndpi)
        for ifd in ed.ifds[:4]:
            ed.set_text(ifd, 65434, f"DAPI {v}")
        outputs["NDPI channel"] = SlideDeidentifier(KEY).deidentify_bytes(
            bytes(ed.buf), source="x.ndpi", identity=None
        )
        for where, res in outputs.items():
            found = survivors([res.output_bytes, json.dumps(res.record.as_dict()).encode()])
            if v.lower() in res.output_bytes.decode("latin-1").lower():
                found.append(v)
            if found:
                stored.append((where, v, found))
            assert any("not a device string" in r for r in res.record.rewritten), (where, v)
    assert stored == []


def test_real_slides_keep_their_vendor_strings(shared_wsi: Path) -> None:
    """Every real slide's Make, Model, Software and NDPI channel name is a device string, kept as it is."""
    checked = 0
    for path in sorted(shared_wsi.iterdir()):
        if path.suffix not in (".svs", ".ndpi", ".tiff", ".tif") or path.stem.startswith("un"):
            continue
        with tifffile.TiffFile(path) as before:
            want = [{k: p.tags[k].value for k in (271, 272, 305, 65434) if k in p.tags} for p in before.pages]
        res = SlideDeidentifier(KEY).deidentify_bytes(path.read_bytes(), source=path.name, identity=None)
        assert not any("not a device string" in r for r in res.record.rewritten), path.name
        with tifffile.TiffFile(io.BytesIO(res.output_bytes)) as after:
            got = [{k: p.tags[k].value for k in (271, 272, 305, 65434) if k in p.tags} for p in after.pages]
        kept = [g for g in got if g]
        assert all(g in want for g in kept), (path.name, got, want)
        checked += sum(len(g) for g in kept)
    assert checked >= 16  # the NDPI's Hamamatsu / C9600-12 / NDP.scan 2.5.89 / DAPI 2 (387) on its levels


def test_mrxs_slidedat_numbers_are_not_an_identity(tmp_path: Path) -> None:
    """A short number or a setting in Slidedat.ini (``CAMERA_SETTING=1.0``, ``SLIDE_LABEL=2``) is no one's
    identity: the header's own numbers do not refuse the slide."""
    from curata.collect.wsi.service import convert_mrxs_slide

    path = tmp_path / "s.mrxs"
    syn.write_mrxs(path, syn.PlantedIdentity())
    ini = path.with_suffix("") / "Slidedat.ini"
    extra = "\r\n".join(["CAMERA_SETTING=1.0", "SLIDE_LABEL=2", "SLIDE_GROUP=12"])
    ini.write_text(ini.read_text().replace("[GENERAL]", "[GENERAL]\r\n" + extra, 1), encoding="utf-8")
    res = convert_mrxs_slide(
        path, path.read_bytes(), key=KEY, identity=SlideIdentity(stain="H&E", organ="lung")
    )
    assert len(res.instances) == 2
