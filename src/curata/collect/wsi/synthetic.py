"""Synthetic pyramidal slides with identity planted everywhere a scanner hides it (for tests and the demo).

Each writer puts the given identity in every TIFF text tag, every vendor metadata field, the label
and macro images (as raw bytes of the uncompressed image, so a byte scan finds them) and returns
the planted strings. The tissue is a drawn H&E-like pattern so QC and tiling have something to see.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WSI_TIFF_TAGS = {
    "DocumentName": 269,
    "PageName": 285,
    "Artist": 315,
    "HostComputer": 316,
    "Copyright": 33432,
    "ImageUniqueID": 42016,
}


@dataclass
class PlantedIdentity:
    patient_name: str = "Okonkwo^Adaeze"
    patient_id: str = "LAG-4471023"
    accession: str = "ACC-88412377"
    barcode: str = "BC-55190341"
    operator: str = "Dr Babatunde Fashola"
    institution: str = "Lagos Teaching Hospital"
    birth_date: str = "19580312"

    def strings(self) -> list[str]:
        parts = [
            self.patient_name,
            self.patient_id,
            self.accession,
            self.barcode,
            self.operator,
            self.institution,
        ]
        words = [w for p in parts for w in p.replace("^", " ").split() if len(w) >= 5]
        return parts + words

    def label_bytes(self, size: int) -> bytes:
        text = f"{self.patient_name}|{self.patient_id}|{self.accession}|{self.barcode}|{self.institution}|".encode()
        return (text * (size // len(text) + 1))[:size]


def tissue_image(width: int, height: int, seed: int = 0, *, tissue: float = 0.45) -> np.ndarray:
    """An RGB image with H&E-coloured blobs (nuclei on pink stroma) on a white background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((height, width), np.float32)
    for _ in range(6):
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        r = rng.uniform(0.12, 0.3) * min(width, height)
        field += np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
    thr = np.quantile(field, 1 - tissue)
    mask = field > thr
    img = np.full((height, width, 3), 242, np.float32)
    stroma = np.array([225, 150, 190], np.float32)
    nuclei = np.array([90, 60, 150], np.float32)
    texture = rng.normal(0, 12, (height, width, 1)).astype(np.float32)
    dots = rng.random((height, width)) < 0.06
    img[mask] = stroma + texture[mask]
    img[mask & dots] = nuclei + texture[mask & dots]
    return np.clip(img, 0, 255).astype(np.uint8)


def _pyramid(base: np.ndarray, levels: int) -> list[np.ndarray]:
    out = [base]
    for _ in range(levels - 1):
        a = out[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8)
        out.append(a)
    return out


def _extratags(who: PlantedIdentity, *, datetime: bool = True) -> list[tuple[int, str, int, str, bool]]:
    text = f"{who.patient_name} {who.patient_id} {who.accession}"
    tags = [(code, "s", 0, f"{name}: {text} {who.barcode}", True) for name, code in WSI_TIFF_TAGS.items()]
    tags.append((65000, "s", 0, f"private {who.operator} {who.barcode}", True))
    if datetime:
        tags.append((306, "s", 0, "2021:03:14 10:11:12", True))
    return tags


def write_svs(
    path: Path,
    who: PlantedIdentity | None = None,
    *,
    size: int = 1024,
    seed: int = 0,
    image: np.ndarray | None = None,
) -> list[str]:
    """An Aperio SVS: 3 tiled JPEG levels, a thumbnail, a label and a macro; identity in every field."""
    import tifffile

    who = who or PlantedIdentity()
    base = image if image is not None else tissue_image(size, size, seed)
    levels = _pyramid(base, 3)
    h0, w0 = base.shape[:2]
    fields = (
        f"AppMag = 20|StripeWidth = 1000|ScanScope ID = SS-{who.barcode}|Filename = {who.patient_name.replace('^', '_')}"
        f"|Title = {who.patient_name} biopsy|User = {who.operator}|Date = 03/14/21|Time = 10:11:12"
        f"|Time Zone = GMT+01:00|MPP = 0.5000|DSR ID = dsr.{who.institution.replace(' ', '')}.org"
        f"|ImageID = {who.patient_id}|Barcode = {who.barcode}|Patient = {who.patient_name}|Accession = {who.accession}"
    )
    header = f"Aperio Image Library v12.0.5 \r\n{w0}x{h0} [0,0 {w0}x{h0}] (256x256) JPEG/RGB Q=80"
    label = np.frombuffer(who.label_bytes(96 * 64 * 3), np.uint8).reshape(64, 96, 3)
    macro = np.frombuffer(who.label_bytes(64 * 192 * 3), np.uint8).reshape(64, 192, 3)
    with tifffile.TiffWriter(path, bigtiff=False) as tw:
        for i, lv in enumerate(levels):
            desc = (
                header + "|" + fields
                if i == 0
                else f"Aperio Image Library v12.0.5 \r\n{lv.shape[1]}x{lv.shape[0]} -> |{fields}"
            )
            tw.write(
                lv, tile=(256, 256), compression="jpeg", photometric="rgb", description=desc,
                subfiletype=0, extratags=_extratags(who), resolution=(20000.0 / (2**i), 20000.0 / (2**i)),
                resolutionunit="CENTIMETER", metadata=None,
            )  # fmt: skip
            if i == 0:
                thumb = levels[-1]
                tw.write(
                    thumb, compression="jpeg", photometric="rgb", description=f"Aperio Image Library v12.0.5 \r\n{w0}x{h0} -> {thumb.shape[1]}x{thumb.shape[0]} - |{fields}",
                    extratags=_extratags(who), metadata=None,
                )  # fmt: skip
        tw.write(
            label,
            photometric="rgb",
            description="Aperio Image Library v12.0.5 \r\nlabel 96x64",
            subfiletype=1,
            extratags=_extratags(who),
            metadata=None,
        )
        tw.write(
            macro,
            photometric="rgb",
            description="Aperio Image Library v12.0.5 \r\nmacro 192x64",
            subfiletype=9,
            extratags=_extratags(who),
            metadata=None,
        )
    return who.strings()


def write_generic_tiff(
    path: Path, who: PlantedIdentity | None = None, *, size: int = 768, seed: int = 1
) -> list[str]:
    """A generic tiled pyramidal TIFF (deflate) with text tags and an uncompressed label page."""
    import tifffile

    who = who or PlantedIdentity()
    levels = _pyramid(tissue_image(size, size, seed), 3)
    label = np.frombuffer(who.label_bytes(48 * 64 * 3), np.uint8).reshape(48, 64, 3)
    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate(levels):
            tw.write(
                lv, tile=(128, 128), compression="zlib", photometric="rgb",
                description=f"slide of {who.patient_name} ({who.accession})", subfiletype=0 if i == 0 else 1,
                extratags=_extratags(who), resolution=(20000.0 / (2**i), 20000.0 / (2**i)), resolutionunit="CENTIMETER", metadata=None,
            )  # fmt: skip
        tw.write(
            label,
            photometric="rgb",
            description=f"label {who.barcode}",
            extratags=_extratags(who),
            metadata=None,
        )
    return who.strings()


def write_philips_tiff(
    path: Path, who: PlantedIdentity | None = None, *, size: int = 768, seed: int = 2
) -> list[str]:
    """A Philips-style TIFF: tiled JPEG levels and the XML description with patient attributes and a
    base64 label image."""
    import tifffile

    who = who or PlantedIdentity()
    levels = _pyramid(tissue_image(size, size, seed), 3)
    label_b64 = base64.b64encode(who.label_bytes(600)).decode()

    def attr(
        name: str, value: str, group: str = "0x0010", element: str = "0x0010", pmsvr: str = "IString"
    ) -> str:
        return f'<Attribute Name="{name}" Group="{group}" Element="{element}" PMSVR="{pmsvr}">{value}</Attribute>'

    xml = (
        '<?xml version="1.0" encoding="UTF-8" ?><DataObject ObjectType="DPUfsImport">'
        + attr("DICOM_PATIENT_NAME", who.patient_name)
        + attr("DICOM_PATIENT_ID", who.patient_id)
        + attr("DICOM_ACCESSION_NUMBER", who.accession)
        + attr("PIM_DP_UFS_BARCODE", base64.b64encode(who.barcode.encode()).decode())
        + attr("DICOM_INSTITUTION_NAME", who.institution)
        + attr("DICOM_OPERATORS_NAME", who.operator)
        + attr("DICOM_ACQUISITION_DATETIME", "20210314101112.000000")
        + attr("DICOM_DEVICE_SERIAL_NUMBER", f"SN-{who.barcode}")
        + attr("DICOM_MANUFACTURER", "PHILIPS")
        + attr("DICOM_SOFTWARE_VERSIONS", '"1.0"')
        + '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray"><Array>'
        + '<DataObject ObjectType="DPScannedImage">'
        + attr("PIM_DP_IMAGE_TYPE", "WSI", "0x301D", "0x1004", "IString")
        + attr("DICOM_PIXEL_SPACING", '"0.00025" "0.00025"', "0x0028", "0x0030", "IDoubleArray")
        + '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" Element="0x8B01" PMSVR="IDataObjectArray"><Array>'
        + "".join(
            '<DataObject ObjectType="PixelDataRepresentation">'
            + attr(
                "DICOM_PIXEL_SPACING",
                f'"{0.00025 * 2**i:g}" "{0.00025 * 2**i:g}"',
                "0x0028",
                "0x0030",
                "IDoubleArray",
            )
            + "</DataObject>"
            for i in range(3)
        )
        + "</Array></Attribute>"
        + "</DataObject>"
        + '<DataObject ObjectType="DPScannedImage">'
        + attr("PIM_DP_IMAGE_TYPE", "LABELIMAGE", "0x301D", "0x1004", "IString")
        + attr("PIM_DP_IMAGE_DATA", label_b64, "0x301D", "0x1005", "IString")
        + "</DataObject>"
        + '<DataObject ObjectType="DPScannedImage">'
        + attr("PIM_DP_IMAGE_TYPE", "MACROIMAGE", "0x301D", "0x1004", "IString")
        + attr("PIM_DP_IMAGE_DATA", label_b64, "0x301D", "0x1005", "IString")
        + "</DataObject></Array></Attribute></DataObject>"
    )
    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate(levels):
            tw.write(
                lv, tile=(256, 256), compression="jpeg", photometric="rgb", description=xml if i == 0 else "Level=" + str(i),
                subfiletype=0 if i == 0 else 1, software="Philips DP v1.0", extratags=_extratags(who), metadata=None,
            )  # fmt: skip
    return who.strings()


def write_ome_tiff(
    path: Path, who: PlantedIdentity | None = None, *, size: int = 768, seed: int = 3
) -> list[str]:
    """An OME-TIFF: a tiled pyramid in SubIFDs, an OME-XML header naming an experimenter and a label image."""
    import tifffile

    who = who or PlantedIdentity()
    levels = _pyramid(tissue_image(size, size, seed), 3)
    label = np.frombuffer(who.label_bytes(48 * 64 * 3), np.uint8).reshape(48, 64, 3)
    first, last = who.patient_name.split("^")[::-1] if "^" in who.patient_name else (who.patient_name, "")
    ome = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:12345678-1234-1234-1234-123456789abc">'
        f'<Experimenter ID="Experimenter:0" FirstName="{first}" LastName="{last}" Email="{who.operator.replace(" ", ".")}@hospital.org"/>'
        f'<Image ID="Image:0" Name="{who.accession} {who.patient_name}"><AcquisitionDate>2021-03-14T10:11:12</AcquisitionDate>'
        f"<Description>{who.patient_id} {who.barcode}</Description>"
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{size}" SizeY="{size}" SizeC="3" SizeZ="1" SizeT="1"'
        ' PhysicalSizeX="0.25" PhysicalSizeY="0.25"><Channel ID="Channel:0:0" SamplesPerPixel="3"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image>'
        f'<Image ID="Image:1" Name="label"><Description>{who.patient_name}</Description>'
        '<Pixels ID="Pixels:1" DimensionOrder="XYCZT" Type="uint8" SizeX="64" SizeY="48" SizeC="3" SizeZ="1" SizeT="1">'
        '<Channel ID="Channel:1:0" SamplesPerPixel="3"/><TiffData IFD="1" PlaneCount="1"/></Pixels></Image></OME>'
    )
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            levels[0], tile=(256, 256), compression="jpeg", photometric="rgb", description=ome, subifds=len(levels) - 1,
            extratags=_extratags(who), metadata=None,
        )  # fmt: skip
        for lv in levels[1:]:
            tw.write(lv, tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1, metadata=None)
        tw.write(
            label,
            photometric="rgb",
            description=f"label {who.barcode}",
            extratags=_extratags(who),
            metadata=None,
        )
    return who.strings()


# ---------------------------------------------------------------------- 3DHISTECH MRXS (MIRAX)
def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _text_card(lines: list[str], width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(10, height // (2 * max(len(lines), 1))))
    for i, line in enumerate(lines):
        draw.text((6, 6 + i * (height // max(len(lines), 1))), line, fill="black", font=font)
    return np.asarray(img)


def write_mrxs(
    path: Path,
    who: PlantedIdentity | None = None,
    *,
    images: int = 4,
    image_size: int = 256,
    levels: int = 2,
    seed: int = 0,
    slide_id: str = "9e4f6c1a-77d2-4b8e-a1f3-5c0d2e8b9a61",
) -> list[str]:
    """A small MIRAX slide as 3DHISTECH writes it: ``path`` (``.mrxs``) and a folder of the same stem
    with ``Slidedat.ini``, ``Index.dat`` and ``Data0000.dat`` (JPEG images), following OpenSlide's
    reader (openslide-vendor-mirax.c): ``images`` x ``images`` camera images of ``image_size`` pixels,
    no overlap, ``levels`` zoom levels (each concatenating 2x2 images), and the scan data layer with a
    macro (SlideThumbnail), a label (SlideBarcode) and a preview (SlidePreview) image.

    Identity is planted in Slidedat.ini (SLIDE_NAME, SLIDE_ID, PROJECT_NAME, dates, barcode,
    operator) and drawn into the label and macro. Returns the planted strings."""
    import struct

    who = who or PlantedIdentity()
    path = Path(path)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    n, size = images, image_size
    base = tissue_image(n * size, n * size, seed)
    data = bytearray(b"3DHISTECH data file, synthetic\0".ljust(64, b"\0"))
    records: list[list[tuple[int, int, int]]] = []  # per level: (image_index, offset, length)
    for level in range(levels):
        concat = 1 << level
        scaled = base[::concat, ::concat] if level else base
        entries = []
        for y in range(0, n, concat):
            for x in range(0, n, concat):
                px, py = (x // concat) * size, (y // concat) * size
                tile = np.full((size, size, 3), 255, np.uint8)
                part = scaled[py : py + size, px : px + size]
                tile[: part.shape[0], : part.shape[1]] = part
                blob = _jpeg(tile)
                entries.append((y * n + x, len(data), len(blob)))
                data += blob
        records.append(entries)
    planted = [
        who.patient_name.replace("^", " "),
        who.patient_id,
        who.accession,
        who.barcode,
        who.institution,
        who.operator,
        slide_id,
    ]
    label = _text_card([who.patient_name.replace("^", " "), who.patient_id, who.barcode], 300, 300)
    macro = _text_card([who.accession, who.institution], 600, 200)
    preview = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(base).resize((200, 200)), np.uint8
    )
    nonhier: list[tuple[int, int]] = []
    for img in (macro, label, preview):
        blob = _jpeg(img)
        nonhier.append((len(data), len(blob)))
        data += blob

    # Index.dat: version, slide id, then the hierarchical and non-hierarchical roots
    version = b"01.02"
    uid = slide_id.encode()
    idx = bytearray(version + uid)
    hier_root = len(idx)
    idx += bytes(8)  # hier pointer, nonhier pointer (filled below)

    def i32(*vals: int) -> bytes:
        return struct.pack(f"<{len(vals)}i", *vals)

    level_table = len(idx)
    idx += bytes(4 * levels)
    for level, entries in enumerate(records):
        header = len(idx)
        idx += i32(0, 0)
        page = len(idx)
        idx += i32(len(entries), 0)
        for image_index, offset, length in entries:
            idx += i32(image_index, offset, length, 0)
        struct.pack_into("<i", idx, header + 4, page)
        struct.pack_into("<i", idx, level_table + 4 * level, header)
    record_table = len(idx)
    idx += bytes(4 * len(nonhier))
    for i, (offset, length) in enumerate(nonhier):
        header = len(idx)
        idx += i32(0, 0)
        page = len(idx)
        idx += i32(1, 0, 0, 0, offset, length, 0)
        struct.pack_into("<i", idx, header + 4, page)
        struct.pack_into("<i", idx, record_table + 4 * i, header)
    struct.pack_into("<ii", idx, hier_root, level_table, record_table)

    ini = [
        "[GENERAL]",
        "SLIDE_VERSION=01.03",
        f"SLIDE_ID={slide_id}",
        f"SLIDE_NAME={who.patient_name.replace('^', ' ')} {who.accession}",
        f"PROJECT_NAME={who.institution}",
        "SLIDE_CREATIONDATETIME=2024.03.12 09:41:07",
        f"SLIDE_BARCODE={who.barcode}",
        f"OPERATOR={who.operator}",
        f"PATIENT_ID={who.patient_id}",
        "SCANNER_HARDWARE_VERSION=3DHISTECH P250",
        f"IMAGENUMBER_X={n}",
        f"IMAGENUMBER_Y={n}",
        "OBJECTIVE_MAGNIFICATION=20",
        "CameraImageDivisionsPerSide=1",
        "",
        "[HIERARCHICAL]",
        "HIER_COUNT=1",
        "HIER_0_NAME=Slide zoom level",
        f"HIER_0_COUNT={levels}",
    ]
    for level in range(levels):
        ini += [
            f"HIER_0_VAL_{level}=ZoomLevel_{level}",
            f"HIER_0_VAL_{level}_SECTION=LAYER_0_LEVEL_{level}_SECTION",
        ]
    ini += [
        "NONHIER_COUNT=1",
        "NONHIER_0_NAME=Scan data layer",
        "NONHIER_0_COUNT=3",
        "NONHIER_0_VAL_0=ScanDataLayer_SlideThumbnail",
        "NONHIER_0_VAL_0_SECTION=NONHIERLAYER_0_LEVEL_0_SECTION",
        "NONHIER_0_VAL_1=ScanDataLayer_SlideBarcode",
        "NONHIER_0_VAL_1_SECTION=NONHIERLAYER_0_LEVEL_1_SECTION",
        "NONHIER_0_VAL_2=ScanDataLayer_SlidePreview",
        "NONHIER_0_VAL_2_SECTION=NONHIERLAYER_0_LEVEL_2_SECTION",
        "INDEXFILE=Index.dat",
        "",
        "[DATAFILE]",
        "FILE_COUNT=1",
        "FILE_0=Data0000.dat",
        "",
    ]
    for level in range(levels):
        ini += [
            f"[LAYER_0_LEVEL_{level}_SECTION]",
            "OVERLAP_X=0",
            "OVERLAP_Y=0",
            f"MICROMETER_PER_PIXEL_X={0.25 * (1 << level)}",
            f"MICROMETER_PER_PIXEL_Y={0.25 * (1 << level)}",
            "IMAGE_FORMAT=JPEG",
            "IMAGE_FILL_COLOR_BGR=16777215",
            f"DIGITIZER_WIDTH={size}",
            f"DIGITIZER_HEIGHT={size}",
            f"IMAGE_CONCAT_FACTOR={0 if level == 0 else 1}",
            "",
        ]
    ini += [
        "[NONHIERLAYER_0_LEVEL_0_SECTION]",
        "THUMBNAIL_IMAGE_TYPE=JPEG",
        "",
        "[NONHIERLAYER_0_LEVEL_1_SECTION]",
        "BARCODE_IMAGE_TYPE=JPEG",
        f"BARCODE_VALUE={who.barcode}",
        "",
        "[NONHIERLAYER_0_LEVEL_2_SECTION]",
        "PREVIEW_IMAGE_TYPE=JPEG",
        "",
    ]
    (folder / "Slidedat.ini").write_text("\r\n".join(ini), encoding="utf-8")
    (folder / "Index.dat").write_bytes(bytes(idx))
    (folder / "Data0000.dat").write_bytes(bytes(data))
    path.write_bytes(b"3DHISTECH MRXS " + uid + b"\r\n")
    return [*planted, "2024.03.12"]
