"""Text a slide carries where no kept tag shows it: directories a dropped tag pointed at (EXIF, GPS,
private IFDs), bytes between and after the structures, ICC elements that are not colour data, the free
bytes of a JPEG tile's Adobe segment, and dates written where a vendor field keeps a number.

Each test plants the patient's identifiers, in several spellings and scripts, in every place of its
class, de-identifies without a sidecar (nothing names the patient: the gate cannot know the values) and
looks for every spelling in every output byte, case-folded, separators removed, UTF-8 and UTF-16.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
import tifffile
from PIL import Image

from curata.collect.deid.codestream import icc_text_spans, metadata_spans
from curata.collect.wsi import SlideDeidentifier, deidentify_slide
from curata.collect.wsi import synthetic as syn
from curata.errors import CurataError, DeidError

KEY = b"k" * 32
SPELLINGS = [
    "SUZUKI^KENJI",
    "Suzuki Kenji",
    "KENJI SUZUKI",
    "suzukikenji",
    "Nguyễn Văn Thành",
    "김민준",
    "S26-12345",
    "BC778899XQ",
]
DATES = ["1961/02/03", "1961-02-03", "19610203", "03.02.1961"]
PLANT = " ".join(SPELLINGS)


def _sep_free(data: bytes) -> bytes:
    return re.sub(rb"[\s^,.\-_'/\\\x00:|;+=\[\]()]+", b"", data.lower())


def survivors(blobs: list[bytes], spellings: list[str] = SPELLINGS) -> list[str]:
    hays = []
    for blob in blobs:
        hays += [_sep_free(blob), _sep_free(blob.decode("utf-16-le", "ignore").encode())]
        hays.append(_sep_free(blob.decode("utf-16-be", "ignore").encode()))
    return [s for s in spellings if any(_sep_free(s.encode()) in h for h in hays)]


def _tile(rgb: np.ndarray, segments: list[tuple[int, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=85)
    jpeg = buf.getvalue()
    extra = b"".join(bytes([0xFF, m]) + struct.pack(">H", len(b) + 2) + b for m, b in segments)
    return jpeg[:2] + extra + jpeg[2:]


def write_svs(
    path: Path,
    *,
    fields: str = "",
    extratags: list | None = None,  # type: ignore[type-arg]
    segments: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
) -> Path:
    """A small Aperio SVS, two JPEG levels written tile by tile (``segments`` go into every tile)."""
    levels = syn._pyramid(syn.tissue_image(512, 512, 5), 2)
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            h, w = level.shape[:2]
            head = f"{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=85" if i == 0 else f"{w}x{h} -> {w}x{h} - "
            tiles = [
                _tile(np.ascontiguousarray(level[y : y + 256, x : x + 256]), segments)
                for y in range(0, h, 256)
                for x in range(0, w, 256)
            ]
            tw.write(
                iter(tiles), shape=level.shape, dtype=np.uint8, tile=(256, 256), compression="jpeg",
                photometric="rgb", subfiletype=0, metadata=None, extratags=extratags or [],
                description=f"Aperio Image Library v12.0.5 \r\n{head}|AppMag = 20|MPP = 0.5{fields}".encode(),
            )  # fmt: skip
    return path


def _levels(data: bytes) -> list[np.ndarray]:
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        return [p.asarray() for p in tf.pages if p.is_tiled]


# ---------------------------------------------------------------------- bytes no kept IFD points at
_PLACEHOLDERS = {34664: 34665, 34852: 34853, 40963: 40965, 50998: 330}  # tifffile writes none of these


def _directory(at: int, text: bytes) -> bytes:
    """A little-endian IFD at offset ``at``: four text entries (UserComment, an ASCII tag, a private
    BYTE tag, CameraOwnerName) whose values follow it."""
    entries = [(0x9286, 7), (0x010F, 2), (0xC000, 1), (0xA430, 2)]
    values_at = at + 2 + 12 * len(entries) + 4
    out = struct.pack("<H", len(entries))
    for k, (tag, dtype) in enumerate(entries):
        out += struct.pack("<HHII", tag, dtype, len(text), values_at + k * len(text))
    return out + bytes(4) + text * len(entries)


def write_with_directories(path: Path) -> Path:
    """An SVS whose levels point at an EXIF, a GPS, an Interoperability and a private sub-directory
    holding the identity, with more of it between two structures and after the last one."""
    text = (PLANT + " " + " ".join(DATES)).encode() + b"\0"
    tags = [(tag, "I", 1, 0, True) for tag in _PLACEHOLDERS]
    write_svs(path, extratags=tags)
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        spots = [(p.tags[t].offset, p.tags[t].valueoffset, t) for p in tf.pages for t in _PLACEHOLDERS]
    for entry, value, tag in spots:
        raw += bytes(len(raw) % 2)
        struct.pack_into("<I", raw, value, len(raw))
        struct.pack_into("<H", raw, entry, _PLACEHOLDERS[tag] if tag != 50998 else 50999)
        raw += _directory(len(raw), text)
    raw += b"trailing " + text
    return path.write_bytes(bytes(raw)) and path


def test_bytes_no_kept_ifd_points_at_are_zeroed(tmp_path: Path) -> None:
    path = write_with_directories(tmp_path / "slide.svs")
    raw = path.read_bytes()
    assert survivors([raw], SPELLINGS + DATES) == SPELLINGS + DATES
    res = deidentify_slide(raw, key=KEY, source=str(path), identity=None)
    assert survivors([res.deid.output_bytes, *res.instances], SPELLINGS + DATES) == []
    assert "unreferenced bytes (zeroed)" in res.deid.record.rewritten
    out = tmp_path / "out.svs"
    out.write_bytes(res.deid.output_bytes)
    with openslide.OpenSlide(out) as slide:
        assert slide.level_count == 2
    assert all(
        np.array_equal(a, b) for a, b in zip(_levels(raw), _levels(res.deid.output_bytes), strict=True)
    )


def test_real_slides_open_after_unreferenced_bytes_are_zeroed(shared_wsi: Path, tmp_path: Path) -> None:
    for name in ("CMU-1-Small-Region.svs", "test3-DAPI-2-387.ndpi", "boxes.tiff"):
        raw = (shared_wsi / name).read_bytes()
        res = deidentify_slide(raw, key=KEY, source=name, identity=None)
        out = tmp_path / f"out-{name}"
        out.write_bytes(res.deid.output_bytes)
        with openslide.OpenSlide(out) as slide, openslide.OpenSlide(shared_wsi / name) as before:
            assert slide.level_dimensions == before.level_dimensions
            w, h = slide.level_dimensions[-1]
            a = np.asarray(slide.read_region((0, 0), slide.level_count - 1, (w, h)))
            b = np.asarray(before.read_region((0, 0), before.level_count - 1, (w, h)))
            assert np.array_equal(a, b), name


# ---------------------------------------------------------------------- ICC elements that are not colour
def icc_with_free_text(text: bytes) -> bytes:
    """A v4 profile whose colour elements (white point, TRC) sit beside elements of types that are not
    colour data (``data``, a private type, named colours, a dictionary), a gap and a tail of text."""
    elems = [
        (b"wtpt", b"XYZ " + bytes(4) + struct.pack(">3i", 63190, 65536, 54061)),
        (b"rTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0233) + bytes(2)),
        (b"ZPRV", b"data" + bytes(4) + struct.pack(">I", 0) + text),
        (b"ZUNK", b"zzzz" + bytes(4) + text),
        (b"ncl2", b"ncl2" + bytes(4) + struct.pack(">III", 0, 1, 0) + text.ljust(64, b"\0")[:64] * 2),
        (b"meta", b"dict" + bytes(4) + struct.pack(">II", 1, 16) + text),
    ]
    off = 132 + 12 * len(elems)
    table, data = b"", b""
    for sig, body in elems:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", off + len(data), len(body))
        data += body + b"gap " + text + bytes(-(len(text) + 4) % 4)
    header = struct.pack(">I", off + len(data)) + b"lcms" + bytes([4, 0x30, 0, 0]) + b"mntrRGB XYZ "
    header = (header + bytes(12) + b"acsp").ljust(128, b"\0")
    return header + struct.pack(">I", len(elems)) + table + data + b"tail " + text


def test_icc_elements_that_are_not_colour_data_are_zeroed(tmp_path: Path) -> None:
    text = PLANT.encode() + b" " + PLANT.encode("utf-16-be")
    profile = icc_with_free_text(text)
    path = write_svs(tmp_path / "slide.svs", extratags=[(34675, "B", 0, profile, True)])
    assert survivors([path.read_bytes()]) == SPELLINGS
    res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
    assert survivors([res.deid.output_bytes, *res.instances]) == []
    with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as tf:
        kept = tf.pages[0].tags[34675].value
    # the colour elements (white point, TRC) and the tag table are byte for byte
    spans = icc_text_spans(profile)
    mask = np.zeros(len(profile), bool)
    for a, b in spans:
        mask[a:b] = True
    assert all(kept[i] == profile[i] for i in range(132, len(profile)) if not mask[i])
    assert kept[132 : 132 + 12 * 6] == profile[132 : 132 + 12 * 6]


# ---------------------------------------------------------------------- Adobe APP14 in every tile
def test_adobe_segment_keeps_only_its_colour_transform(tmp_path: Path) -> None:
    """Adobe's APP14 is kept for its transform byte; its version and flags (six bytes) are free for text
    (``王`` and ``S26-12`` fit), in every tile of every level."""
    plants = ["王", "S26-12", "KENJI^"]
    leaked = []
    for k, plant in enumerate(plants):
        body = b"Adobe" + plant.encode().ljust(6, b" ")[:6] + b"\x01"
        path = write_svs(tmp_path / f"slide{k}.svs", segments=[(0xEE, body)])
        raw = path.read_bytes()
        assert raw.count(plant.encode()) == 5  # every tile of both levels
        res = deidentify_slide(raw, key=KEY, source=str(path), identity=None)
        if plant.encode() in res.deid.output_bytes:
            leaked.append(plant)
        assert all(
            np.array_equal(a, b) for a, b in zip(_levels(raw), _levels(res.deid.output_bytes), strict=True)
        )
    assert leaked == []
    zero, keep = metadata_spans(
        _tile(np.zeros((8, 8, 3), np.uint8), [(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")])
    )
    assert keep and zero  # the segment stays (a decoder reads its transform), its free bytes go


# ---------------------------------------------------------------------- numbers that are dates
def test_aperio_numeric_fields_keep_no_date_and_icc_profile_no_name(tmp_path: Path) -> None:
    leaked = []
    for k, date in enumerate(DATES):
        for key in ("Rack", "Slide", "Exposure Scale", "Gamma", "Left"):
            path = write_svs(tmp_path / f"d{k}-{key}.svs", fields=f"|{key} = {date}")
            res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
            if survivors([res.deid.output_bytes, *res.instances], [date]):
                leaked.append((key, date))
    for k, spelling in enumerate(SPELLINGS):
        path = write_svs(tmp_path / f"icc{k}.svs", fields=f"|ICC Profile = {spelling}")
        res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
        if survivors([res.deid.output_bytes, *res.instances], [spelling]):
            leaked.append(("ICC Profile", spelling))
    assert leaked == []


def test_real_aperio_technical_fields_are_kept(shared_wsi: Path) -> None:
    raw = (shared_wsi / "CMU-1-Small-Region.svs").read_bytes()
    res = deidentify_slide(raw, key=KEY, source="CMU-1-Small-Region.svs", identity=None)
    with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as tf:
        desc = tf.pages[0].description
    for field in ("AppMag = 20", "MPP = 0.499", "Left = ", "Top = ", "LineCameraSkew = ", "Filtered = 5"):
        assert field in desc, field


def test_scanner_profile_names_are_kept(tmp_path: Path) -> None:
    for k, name in enumerate(["ScanScope v1", "AT2", "sRGB"]):
        path = write_svs(tmp_path / f"p{k}.svs", fields=f"|ICC Profile = {name}")
        res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
        with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as tf:
            assert f"ICC Profile = {name}" in tf.pages[0].description


def planted_leaks(places: list[str], write: Callable[[str, int, str], Path | None]) -> list[tuple[str, str]]:
    """Every (place, spelling) whose slide, written by ``write`` with the spelling in that place and
    de-identified without a sidecar, was stored with the spelling still in it (a slide the gate refuses
    is never stored: not a leak)."""
    deider = SlideDeidentifier(KEY)
    leaked: list[tuple[str, str]] = []
    for place in places:
        for k, spelling in enumerate(SPELLINGS + DATES):
            path = write(place, k, spelling)
            if path is None:
                continue
            raw = path.read_bytes()
            assert survivors([raw], [spelling]), (place, spelling)
            try:
                out = deider.deidentify_bytes(raw, source=str(path)).output_bytes
            except DeidError:
                continue
            if survivors([out], [spelling]):
                leaked.append((place, spelling))
    return leaked


# ---------------------------------------------------------------------- Philips XML, every place
def _attr(name: str, value: str, extra: str = "") -> str:
    return (
        f'<Attribute Name="{name}" Group="0x0010" Element="0x0010" PMSVR="IString"{extra}>{value}</Attribute>'
    )


PHILIPS_PLACES = {
    "root XML attribute": lambda v: ("", f' Owner="{v}"', "", ""),
    "XML attribute of an Attribute": lambda v: (_attr("PIM_DP_UFS_X", "1", f' Note="{v}"'), "", "", ""),
    "XML attribute value of a kept name": lambda v: (
        _attr("PIM_DP_UFS_Y", "1").replace("IString", v),
        "",
        "",
        "",
    ),
    "element of another kind": lambda v: (f'<Note Who="{v}">{v}</Note>', "", "", ""),
    "text between elements": lambda v: ("", "", f"{v}", ""),
    "tail of an element": lambda v: (_attr("PIM_DP_UFS_Z", "1") + v, "", "", ""),
    "private attribute": lambda v: (_attr("PIM_DP_PRIVATE_NOTE", v), "", "", ""),
    "manufacturer": lambda v: ("", "", "", _attr("DICOM_MANUFACTURER", v)),
    "model": lambda v: ("", "", "", _attr("DICOM_MANUFACTURERS_MODEL_NAME", v)),
    "software": lambda v: ("", "", "", _attr("DICOM_SOFTWARE_VERSIONS", f'"{v}"')),
    "compression method": lambda v: ("", "", "", _attr("DICOM_LOSSY_IMAGE_COMPRESSION_METHOD", f'"{v}"')),
    "photometric": lambda v: ("", "", "", _attr("DICOM_PHOTOMETRIC_INTERPRETATION", v)),
    "image type of a level": lambda v: ("", "", "", _attr("PIM_DP_IMAGE_TYPE", v)),
}


DEVICE_PLACES = {"manufacturer", "model", "software"}
MODEL_SHAPED = {"BC778899XQ"}


def philips_xml(top: str = "", root_attrs: str = "", inner: str = "", device: str = "") -> str:
    image = _attr("PIM_DP_IMAGE_TYPE", "WSI") + inner + _attr("DICOM_PIXEL_SPACING", '"0.00025" "0.00025"')
    levels = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        + _attr("DICOM_PIXEL_SPACING", f'"{0.00025 * 2**i:g}" "{0.00025 * 2**i:g}"')
        + "</DataObject>"
        for i in range(2)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8" ?><DataObject ObjectType="DPUfsImport"{root_attrs}>'
        + _attr("DICOM_MANUFACTURER", "PHILIPS")
        + device
        + top
        + '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray"><Array>'
        + f'<DataObject ObjectType="DPScannedImage">{image}'
        + '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" PMSVR="IDataObjectArray"><Array>'
        + levels
        + "</Array></Attribute></DataObject></Array></Attribute></DataObject>"
    )


def write_philips(path: Path, xml: str) -> Path:
    levels = syn._pyramid(syn.tissue_image(512, 512, 6), 2)
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            tw.write(
                level, tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=0 if i == 0 else 1,
                description=(xml if i == 0 else f"Level={i}").encode(), metadata=None, software="Philips",
            )  # fmt: skip
    return path


def test_philips_xml_keeps_no_text_outside_its_kept_attributes(tmp_path: Path) -> None:
    def write(place: str, k: int, spelling: str) -> Path | None:
        if place in DEVICE_PLACES and spelling in MODEL_SHAPED:
            return None  # left open (README): a letters-and-digits ID has a model number's shape
        return write_philips(tmp_path / f"p-{k}.tiff", philips_xml(*PHILIPS_PLACES[place](spelling)))

    assert planted_leaks(list(PHILIPS_PLACES), write) == []


def test_philips_slide_keeps_what_its_reader_needs(tmp_path: Path) -> None:
    device = _attr("DICOM_SOFTWARE_VERSIONS", '"4.0.3"') + _attr(
        "DICOM_LOSSY_IMAGE_COMPRESSION_METHOD", '"ISO_10918_1"'
    )
    path = write_philips(tmp_path / "ok.tiff", philips_xml(device=device))
    res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
    out = tmp_path / "out.tiff"
    out.write_bytes(res.deid.output_bytes)
    with openslide.OpenSlide(out) as slide:
        assert slide.properties["openslide.vendor"] == "philips"
        assert slide.properties["philips.DICOM_SOFTWARE_VERSIONS"] == '"4.0.3"'
        assert slide.properties["philips.DICOM_MANUFACTURER"] == "PHILIPS"
        assert slide.level_count == 2


# ---------------------------------------------------------------------- OME-XML attributes kept for their kind
OME_PLACES = {
    "Objective Correction": lambda v: (
        f'<Instrument ID="Instrument:0"><Objective ID="Objective:0" Correction="{v}"/></Instrument>'
    ),
    "Objective Immersion": lambda v: (
        f'<Instrument ID="Instrument:0"><Objective ID="Objective:0" Immersion="{v}"/></Instrument>'
    ),
    "Detector Type": lambda v: (
        f'<Instrument ID="Instrument:0"><Detector ID="Detector:0" Type="{v}"/></Instrument>'
    ),
    "Laser Medium": lambda v: (
        f'<Instrument ID="Instrument:0"><Laser ID="LightSource:0" LaserMedium="{v}"/></Instrument>'
    ),
    "Channel AcquisitionMode": "AcquisitionMode",
    "Channel IlluminationType": "IlluminationType",
    "Channel ContrastMethod": "ContrastMethod",
    "Channel Color": "Color",
    "Pixels PhysicalSizeXUnit": "PhysicalSizeXUnit",
    "schemaLocation": "schemaLocation",
}


def ome_xml(
    instrument: str = "", channel: str = "", pixels: str = "", root: str = "", file: str | None = None
) -> str:
    uuid = "urn:uuid:12345678-1234-1234-1234-123456789abc"
    tiffdata = f'<UUID FileName="{file}">{uuid}</UUID>' if file else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'UUID="{uuid}"{root}>{instrument}'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="512" SizeY="512" '
        f'SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="0.25" PhysicalSizeY="0.25"{pixels}>'
        f'<Channel ID="Channel:0:0" SamplesPerPixel="3"{channel}/>'
        f'<TiffData IFD="0" PlaneCount="1">{tiffdata}</TiffData></Pixels></Image></OME>'
    )


def _ome_plant(place: str, value: str) -> str:
    how = OME_PLACES[place]
    if callable(how):
        return ome_xml(instrument=how(value))
    if how == "PhysicalSizeXUnit":
        return ome_xml(pixels=f' {how}="{value}"')
    if how == "schemaLocation":
        return ome_xml(
            root=f' xsi:schemaLocation="http://www.openmicroscopy.org/Schemas/OME/2016-06 {value}"'
        )
    return ome_xml(channel=f' {how}="{value}"')


def write_ome(path: Path, xml: str) -> Path:
    levels = syn._pyramid(syn.tissue_image(512, 512, 7), 2)
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            levels[0], tile=(256, 256), compression="jpeg", photometric="rgb", subifds=1,
            description=xml.encode(), metadata=None,
        )  # fmt: skip
        tw.write(
            levels[1], tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1, metadata=None
        )
    return path


def test_ome_attributes_keep_only_numbers_and_the_schemas_values(tmp_path: Path) -> None:
    def write(place: str, k: int, spelling: str) -> Path:
        return write_ome(tmp_path / f"o-{k}.ome.tiff", _ome_plant(place, spelling))

    assert planted_leaks(list(OME_PLACES), write) == []


def test_ome_tiff_naming_its_file_in_tiffdata_converts(tmp_path: Path) -> None:
    """bioformats writes ``<TiffData><UUID FileName="...">``: the file's name (often the patient's) goes
    with the element, and the slide still converts (the UUID's FileName alone was dropped before and
    tifffile could not read the series)."""
    xml = ome_xml(
        instrument='<Instrument ID="Instrument:0"><Objective ID="Objective:0" Correction="PlanApo" '
        'Immersion="Oil" NominalMagnification="40"/></Instrument>',
        channel=' AcquisitionMode="BrightField" Color="-1"',
        pixels=' PhysicalSizeXUnit="µm"',
        file="SUZUKI^KENJI_S26-12345.ome.tif",
    )
    path = write_ome(tmp_path / "slide.ome.tiff", xml)
    res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
    assert survivors([res.deid.output_bytes, *res.instances]) == []
    with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as tf:
        kept = tf.pages[0].description
        assert tf.series[0].shape[:2] == (512, 512)
    for value in (
        'Correction="PlanApo"',
        'Immersion="Oil"',
        'AcquisitionMode="BrightField"',
        'Color="-1"',
        "µm",
    ):
        assert value in kept, value


# ---------------------------------------------------------------------- NDPI properties: keys and values
def ndpi_with_properties(src: Path, dst: Path, lines: list[str]) -> Path:
    """The real NDPI with its property map (tag 65449) rewritten in place with ``lines``."""
    raw = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tf:
        spots = {(p.tags[65449].valueoffset, p.tags[65449].count) for p in tf.pages if 65449 in p.tags}
    props = "\r\n".join(lines).encode()
    for off, count in spots:
        assert len(props) < count
        raw[off : off + count] = props.ljust(count, b"\0")
    dst.write_bytes(bytes(raw))
    return dst


def test_ndpi_property_keys_and_numbers_keep_no_identity(shared_wsi: Path, tmp_path: Path) -> None:
    """A property is kept for its number under a harmless key: the identity written as a key (any
    script, any separators) or as a number-shaped date under a harmless key goes too."""
    places = {
        "key": lambda v: f"{v}=1",
        "key with a number": lambda v: f"{v}.x=20",
        "date as a number": lambda v: f"slide.rack={v}",
        "date under AHEX": lambda v: f"AHEX[3]={v}",
        "hex-spelled under AHEX": lambda v: f"AHEX[4]={(v.encode() * 8).hex().upper()}",
    }
    names = [s for s in SPELLINGS if not re.fullmatch(r"[A-Za-z0-9]+", s)]  # suzukikenji: a key's shape
    leaked = []
    for place, plant in places.items():
        for k, spelling in enumerate(DATES if "date" in place else names):
            if place.startswith("hex") and not re.search("[A-Za-z]{4}", spelling):
                continue  # hex of an ID's digits is not told from calibration bytes (left open)
            lines = [
                "Created=2011/05/23",
                "Product=C9600-12",
                plant(spelling),
                "Objective.Lens.Magnificant=40",
            ]
            path = ndpi_with_properties(shared_wsi / "test3-DAPI-2-387.ndpi", tmp_path / f"n{k}.ndpi", lines)
            out = SlideDeidentifier(KEY).deidentify_bytes(path.read_bytes(), source=str(path)).output_bytes
            found = survivors([out], [spelling]) or spelling.encode().hex().upper() in out.decode("latin-1")
            if found:
                leaked.append((place, spelling))
            with tifffile.TiffFile(io.BytesIO(out)) as tf:
                assert "Objective.Lens.Magnificant=40" in tf.pages[0].tags[65449].value
    assert leaked == []
    real = SlideDeidentifier(KEY).deidentify_bytes((shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes())
    with tifffile.TiffFile(io.BytesIO(real.output_bytes)) as tf:
        assert tf.pages[0].tags[65449].value.count("AHEX[") == 9  # the scanner's calibration tables stay


# ---------------------------------------------------------------------- DICOM-WSI: ICC profiles at any depth
def _wsm_with_icc(shared_wsi: Path, profile: bytes, *, top: bool) -> bytes:
    import pydicom

    ds = pydicom.dcmread(shared_wsi / "boxes_0.dcm")
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "SUZUKI^KENJI", "S26-12345", "19610203"
    if top:
        ds.ICCProfile = profile
    else:
        ds.OpticalPathSequence[0].ICCProfile = profile
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_wsi_icc_profiles_lose_their_text_at_any_depth(shared_wsi: Path) -> None:
    """A DICOM slide's ICC profile (the optical path's, or the top level's) went through the PS3.15
    engine byte for byte: the patient's name there refused the slide, and any other text (a barcode,
    an operator) was stored. Now its text is zeroed as a vendor slide's is, and the colour data kept."""
    from curata.collect.deid import Deidentifier, load_profile
    from curata.collect.wsi import clean_wsm

    deid = Deidentifier(key=KEY, profile=load_profile("research"))
    text = PLANT.encode() + b" " + PLANT.encode("utf-16-be")
    others = "BC778899XQ Nguyễn Văn Thành 김민준"  # a barcode and other people: not the patient's header
    profiles = {
        "the patient's identity": icc_with_free_text(text),
        "other identifiers": icc_with_free_text(others.encode() + b" " + others.encode("utf-16-be")),
    }
    leaked, refused = [], []
    for name, profile in profiles.items():
        for top in (False, True):
            raw = _wsm_with_icc(shared_wsi, profile, top=top)
            try:
                res = deid.deidentify_bytes(raw, source="slide.dcm")
                out, ds = clean_wsm(res.output_bytes, res.dataset, raw, deid.pseudo)
            except DeidError:
                refused.append((name, top))
                continue
            leaked += [(name, top, s) for s in survivors([out])]
            icc = ds.ICCProfile if top else ds.OpticalPathSequence[0].ICCProfile
            assert len(icc) == len(profile) + len(profile) % 2  # DICOM pads an odd value
            assert icc[132 : 132 + 12 * 6] == profile[132 : 132 + 12 * 6]
    assert (leaked, refused) == ([], [])


def test_removed_philips_images_are_recorded_by_their_kind_only(tmp_path: Path) -> None:
    """The record (and the catalog's ``removed_images``) names a removed Philips image by the kind
    matched, never by another value the image's type attribute holds."""
    leaked = []
    for k, spelling in enumerate(SPELLINGS):
        label = (
            '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray">'
            '<Array><DataObject ObjectType="DPScannedImage">'
            + _attr("PIM_DP_IMAGE_TYPE", spelling)
            + _attr("PIM_DP_IMAGE_TYPE", "LABELIMAGE")
            + "</DataObject></Array></Attribute>"
        )
        path = write_philips(tmp_path / f"l{k}.tiff", philips_xml(top=label))
        res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
        record = json.dumps([res.deid.record.as_dict(), res.slide_fields], ensure_ascii=False, default=str)
        assert "labelimage (XML)" in res.slide_fields["removed_images"]
        if survivors([record.encode(), res.deid.output_bytes, *res.instances], [spelling]):
            leaked.append(spelling)
    assert leaked == []


def test_dicom_wsi_image_that_shows_its_label_is_not_stored(shared_wsi: Path) -> None:
    """A DICOM slide image of any type (VOLUME, THUMBNAIL) whose header says the glass label is in its
    pixels (SpecimenLabelInImage YES) was stored, its flag rewritten to NO: the label's names and
    barcode stayed in the pixels. It is dropped at the edge as LABEL and OVERVIEW images are."""
    import pydicom

    from curata.collect.deid import Deidentifier, load_profile
    from curata.collect.wsi import LabelImageRemoved, clean_wsm

    deid = Deidentifier(key=KEY, profile=load_profile("research"))
    stored = []
    for kind in ("VOLUME", "THUMBNAIL"):
        ds = pydicom.dcmread(shared_wsi / "boxes_0.dcm")
        ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
        ds.SpecimenLabelInImage = "YES"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        res = deid.deidentify_bytes(buf.getvalue(), source="slide.dcm")
        try:
            clean_wsm(res.output_bytes, res.dataset, buf.getvalue(), deid.pseudo)
            stored.append(kind)
        except LabelImageRemoved as exc:
            assert "SpecimenLabelInImage" in exc.message
    assert stored == []
    plain = pydicom.dcmread(shared_wsi / "boxes_0.dcm")  # NO: kept as before
    res = deid.deidentify_bytes((shared_wsi / "boxes_0.dcm").read_bytes(), source="slide.dcm")
    assert plain.SpecimenLabelInImage == "NO"
    assert clean_wsm(res.output_bytes, res.dataset, (shared_wsi / "boxes_0.dcm").read_bytes(), deid.pseudo)


# ---------------------------------------------------------------------- a tiled label that is not a level
def test_a_tiled_image_that_is_not_a_level_is_removed(tmp_path: Path) -> None:
    """A label or macro written tiled, with no description to say so, was kept in the vendor file:
    OpenSlide showed it as a pyramid level (the DICOM-WSI conversion skipped it). A tiled image that is
    not the base scaled down by one factor is removed as an associated image."""
    levels = syn._pyramid(syn.tissue_image(1024, 1024, 9), 3)
    card = syn._text_card(["SUZUKI KENJI", "S26-12345"], 512, 256)
    kept = []
    for kind, header in (("generic", None), ("aperio", "Aperio Image Library v12.0.5 \r\n")):
        path = tmp_path / f"{kind}.{'svs' if header else 'tiff'}"
        with tifffile.TiffWriter(path) as tw:
            for i, level in enumerate([*levels, card]):
                h, w = level.shape[:2]
                desc = f"{header}{w}x{h} (256x256) JPEG/RGB Q=80|AppMag = 20|MPP = 0.5" if header else None
                tw.write(
                    level, tile=(256, 256), compression="zlib", photometric="rgb", description=desc,
                    subfiletype=0 if i == 0 else 1, metadata=None,
                )  # fmt: skip
        res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
        out = tmp_path / f"out-{path.name}"
        out.write_bytes(res.deid.output_bytes)
        with openslide.OpenSlide(out) as slide:
            if (512, 256) in slide.level_dimensions:
                kept.append(kind)
            assert slide.level_dimensions == ((1024, 1024), (512, 512), (256, 256))
        assert res.deid.record.removed_images == ["associated (IFD 3)"]
    assert kept == []  # (every level of the real pyramids stays: test_real_slides_open_after_...)


# ---------------------------------------------------------------------- numbers that spell text
def test_structural_tags_hold_no_more_values_than_tiff_gives_them(tmp_path: Path) -> None:
    """A structural tag is kept for its numbers; written with more values than TIFF 6.0 gives it (or a
    curve no reader applies, a colour map in an RGB image) its numbers spell whatever was put there."""
    text = b"SUZUKI^KENJI S26-12345 BC778899XQ " * 2
    text += b" " * (-len(text) % 8)
    shorts = list(struct.unpack(f"<{len(text) // 2}H", text))
    longs = list(struct.unpack(f"<{len(text) // 4}I", text))
    cases = {
        "PageNumber": (297, "H", len(shorts), shorts),
        "WhitePoint": (318, "2I", len(longs) // 2, longs),
        "PrimaryChromaticities": (319, "2I", len(longs) // 2, longs),
        "SMinSampleValue": (340, "H", len(shorts), shorts),
        "YCbCrCoefficients": (529, "2I", len(longs) // 2, longs),
        "ReferenceBlackWhite": (532, "2I", len(longs) // 2, longs),
        "TransferFunction": (301, "H", len(shorts), shorts),
        "GrayResponseCurve": (291, "H", len(shorts), shorts),
        "ColorMap of an RGB image": (320, "H", len(shorts), shorts),
    }
    leaked, refused = [], []
    for name, tag in cases.items():
        levels = syn._pyramid(syn.tissue_image(512, 512, 9), 2)
        path = tmp_path / f"{tag[0]}.tiff"
        with tifffile.TiffWriter(path) as tw:
            for i, level in enumerate(levels):
                tw.write(
                    level, tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=0 if i == 0 else 1,
                    metadata=None, extratags=[(*tag, True)],
                )  # fmt: skip
        assert survivors([path.read_bytes()], ["SUZUKI^KENJI"])
        try:
            res = deidentify_slide(path.read_bytes(), key=KEY, source=str(path), identity=None)
        except CurataError:
            refused.append(name)  # not stored, but a slide lost for a tag its readers need not
            continue
        if survivors([res.deid.output_bytes, *res.instances]):
            leaked.append(name)
    assert (leaked, refused) == ([], [])


def _with_extra_tile(path: Path, blob: bytes) -> bytes:
    """``path``'s first level with one more tile offset and byte count than its grid holds, pointing at
    ``blob`` appended to the file (readers never decode it; the gate took it for a kept tile)."""
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        entries = (page.tags[324].offset, page.tags[325].offset)
        offsets, counts = list(page.dataoffsets), list(page.databytecounts)
    raw += bytes(len(raw) % 2)
    offsets.append(len(raw))
    counts.append(len(blob))
    raw += blob
    for entry, values in zip(entries, (offsets, counts), strict=True):
        raw += bytes(len(raw) % 2)
        struct.pack_into("<HII", raw, entry + 2, 4, len(values), len(raw))
        raw += struct.pack(f"<{len(values)}I", *values)
    return bytes(raw)


def test_offsets_past_the_tile_grid_are_cut(tmp_path: Path) -> None:
    leaked, refused = [], []
    for compression in ("zlib", "jpeg"):
        levels = syn._pyramid(syn.tissue_image(512, 512, 9), 2)
        path = tmp_path / f"{compression}.tiff"
        with tifffile.TiffWriter(path) as tw:
            for i, level in enumerate(levels):
                tw.write(
                    level, tile=(256, 256), compression=compression, photometric="rgb",
                    subfiletype=0 if i == 0 else 1, metadata=None,
                )  # fmt: skip
        hidden = _tile(syn._text_card(["SUZUKI KENJI"], 256, 256)) if compression == "jpeg" else b""
        raw = _with_extra_tile(path, hidden + PLANT.encode() * 3)
        try:
            res = deidentify_slide(raw, key=KEY, source=str(path), identity=None)
        except CurataError:
            refused.append(compression)  # a slide lost for bytes no reader decodes
            continue
        if survivors([res.deid.output_bytes, *res.instances]) or (
            hidden and hidden[-200:] in res.deid.output_bytes
        ):
            leaked.append(compression)
        with tifffile.TiffFile(io.BytesIO(res.deid.output_bytes)) as tf:
            assert len(tf.pages[0].dataoffsets) == 4
    assert (leaked, refused) == ([], [])


def test_device_tags_keep_no_pathology_accession(tmp_path: Path) -> None:
    """Make, Model and Software keep a device string; a pathology accession (a year and a serial:
    ``S26-12345``) had a model number's shape and reached the DICOM header and the slide's row."""
    leaked = []
    for k, accession in enumerate(["S26-12345", "SP24-00781", "H19/004411"]):
        for tag in (271, 272, 305):
            extratags = [(tag, "s", 0, f"Aperio {accession}".encode(), True)] if tag != 305 else []
            path = write_svs(tmp_path / f"a{k}-{tag}.svs", extratags=extratags)
            if tag == 305:  # tifffile writes Software itself: planted in place of its own value
                raw = path.read_bytes().replace(b"tifffile.py", f"{accession}"[:11].ljust(11).encode())
                path.write_bytes(raw)
            raw = path.read_bytes()
            assert accession.encode()[:9] in raw
            res = deidentify_slide(raw, key=KEY, source=str(path), identity=None)
            fields = json.dumps(res.slide_fields, default=str).encode()
            if survivors([res.deid.output_bytes, *res.instances, fields], [accession]):
                leaked.append((tag, accession))
    assert leaked == []


def test_device_tags_of_another_type_than_ascii_go(tmp_path: Path, shared_wsi: Path) -> None:
    """Make, Model, Software (and NDPI's channel name) are checked as device strings only when ASCII;
    written as BYTE or UNDEFINED they were kept whatever they said."""
    value = "SUZUKI^KENJI Nguyễn Văn Thành".encode()
    leaked = []
    for tag in (271, 272):
        for dtype in (1, 7):
            path = write_svs(
                tmp_path / f"d{tag}-{dtype}.svs", extratags=[(tag, dtype, len(value), value, True)]
            )
            raw = path.read_bytes()
            assert survivors([raw], ["SUZUKI^KENJI"]), (tag, dtype)
            res = deidentify_slide(raw, key=KEY, source=str(path), identity=None)
            fields = json.dumps(res.slide_fields, ensure_ascii=False).encode()
            if survivors(
                [res.deid.output_bytes, *res.instances, fields], ["SUZUKI^KENJI", "Nguyễn Văn Thành"]
            ):
                leaked.append((tag, dtype))
    # NDPI's Software and channel name, retyped UNDEFINED in place on the real slide
    for tag in (305, 65434):
        raw = bytearray((shared_wsi / "test3-DAPI-2-387.ndpi").read_bytes())
        with tifffile.TiffFile(shared_wsi / "test3-DAPI-2-387.ndpi") as tf:
            spots = {
                (p.tags[tag].offset, p.tags[tag].valueoffset, p.tags[tag].count)
                for p in tf.pages
                if tag in p.tags
            }
        for entry, at, count in spots:
            struct.pack_into("<H", raw, entry + 2, 7)
            raw[at : at + count] = b"Suzuki Kenji".ljust(count, b"\0")[:count]
        out = SlideDeidentifier(KEY).deidentify_bytes(bytes(raw), source="slide.ndpi").output_bytes
        if survivors([out], ["Suzuki Kenji"]):
            leaked.append((tag, 7))
    assert leaked == []
