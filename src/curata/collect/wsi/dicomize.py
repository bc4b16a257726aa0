"""De-identified vendor slide -> DICOM VL Whole Slide Microscopy instances, one per pyramid level.

Tiles are copied, not re-encoded, wherever the codec allows: opentile hands out each JPEG (or JPEG
2000) tile as a complete codestream (Aperio's shared JPEG tables merged in; NDPI stripes cut into
tiles by lossless JPEG cropping), and those bytes become the encapsulated frames (TILED_FULL). Other
codecs (deflate, LZW, uncompressed generic TIFFs) are decoded and stored as native frames, which is
lossless too. The instances carry pseudonyms only: the patient pseudonym, the slide pseudonym as
container and specimen identifier, and UIDs derived with the site key.

wsidicomizer does the same conversion; it is not a dependency because it requires tiffslide>=3 and
therefore zarr>=3, while the project pins zarr<3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit

from curata.collect.deid.pseudonyms import Pseudonymizer
from curata.collect.wsi.formats import WSM_SOP_CLASS, positive_number
from curata.errors import DecodeError, InputError, decoding

JPEG2000 = UID("1.2.840.10008.1.2.4.91")
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1434.1"


@dataclass
class SlideInfo:
    """What the catalog records about a slide (no identity)."""

    vendor: str
    width: int
    height: int
    levels: int
    mpp: float | None
    magnification: float | None
    scanner: str | None
    tile_size: int
    compression: str
    level_sizes: list[tuple[int, int]] = field(default_factory=list)
    stain: str | None = None
    organ: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Level:
    width: int
    height: int
    tile_w: int
    tile_h: int
    mpp: float | None
    frames: list[bytes]
    transfer_syntax: UID
    photometric: str
    lossy: bool


# A slide's pixel size (micrometres per pixel of its base level): scanners write 0.1 to 10; a generic
# TIFF's 72 dpi default reads 353; past 1 mm a pixel (a 25 mm slide 25 pixels wide) it is not a
# calibration. DICOM-WSI's PixelSpacing is Type 1 and every tiling or QC step by magnification reads
# it: Curata never invents one.
MPP_RANGE = (0.01, 1000.0)
MAGNIFICATION_RANGE = (0.1, 200.0)
_MPP_HINT = (
    "export the slide again from the scanner's software with its calibration (Aperio MPP, the TIFF "
    "resolution, Philips DICOM_PIXEL_SPACING, OME PhysicalSizeX/Y)"
)


def _photometric(level: Any) -> str:
    name = getattr(level.photometric_interpretation, "name", str(level.photometric_interpretation))
    if level.compression.name == "JPEG":
        if name == "RGB":
            return "RGB"
        return "YBR_FULL_422"  # the WSM IOD's term for YCbCr JPEG (decoders follow the JPEG header)
    if level.compression.name in ("APERIO_JP2000_YCBC", "JPEG2000"):
        return "YBR_ICT"
    return "RGB"


@contextlib.contextmanager
def _vendor_metadata() -> Iterator[None]:
    """opentile reads the vendor's calibration as it opens a slide and each level (Aperio MPP, Philips
    DICOM_PIXEL_SPACING, OME PhysicalSize, NDPI's TIFF resolution) and fails on a missing, zero or
    non-numeric one with KeyError, ZeroDivisionError or a validation error quoting the value: the
    slide is refused by the failure's kind only."""
    try:
        yield
    except (KeyError, ValueError, ArithmeticError, AttributeError, IndexError, TypeError) as exc:
        raise InputError(
            "the slide's vendor metadata cannot be read: a field the tiler needs, such as its pixel size, "
            f"is missing or malformed (missing, zero, negative or not a number: {type(exc).__name__})",
            hint=_MPP_HINT,
        ) from None


def _levels_opentile(path: str, tile_size: int) -> tuple[list[_Level], dict[str, Any]] | None:
    from opentile import OpenTile

    try:
        with _vendor_metadata():
            tiler = OpenTile.open(path, tile_size)
    except NotImplementedError:
        return None
    levels: list[_Level] = []
    with tiler:
        meta: dict[str, Any] = {}
        with _vendor_metadata():
            md = tiler.metadata
            for attr, key in (
                ("scanner_manufacturer", "make"),
                ("scanner_model", "model"),
                ("magnification", "mag"),
            ):
                meta[key] = getattr(md, attr, None)
            tiled = list(tiler.levels)
        for n, lv in enumerate(tiled):
            with _vendor_metadata():
                comp = lv.compression.name
                tw, th = lv.tile_size.width, lv.tile_size.height
                cols, rows = lv.tiled_size.width, lv.tiled_size.height
                width, height = lv.image_size.width, lv.image_size.height
                spacing = lv.pixel_spacing
                mpp = positive_number(spacing.width * 1000) if spacing else None
            if comp not in ("JPEG", "APERIO_JP2000_RGB", "APERIO_JP2000_YCBC", "JPEG2000"):
                return None
            frames = [_opentile_tile(lv, x, y, n, cols) for y in range(rows) for x in range(cols)]
            ts = JPEGBaseline8Bit if comp == "JPEG" else JPEG2000
            photometric = _photometric(lv) if comp != "APERIO_JP2000_RGB" else "RGB"
            levels.append(_Level(width, height, tw, th, mpp, frames, ts, photometric, True))
    return levels, meta


def _opentile_tile(level: Any, x: int, y: int, n: int, cols: int) -> bytes:
    """One tile's codestream from opentile; a damaged one (opentile's JpegTagNotFound or JpegCropError
    on an NDPI stripe, turbojpeg's OSError...: plain exceptions) refuses the slide naming the tile."""
    with decoding(f"tile {y * cols + x} (column {x}, row {y}) of level {n}", corrupt=(Exception,)):
        return bytes(level.get_tile((x, y)))


def _levels_native(path: str, tile_size: int) -> list[_Level]:
    """Any tiled TIFF pyramid: each stored tile decoded on its own (never a whole level in memory)
    and kept as a native frame (lossless); frames are the file's own tiles."""
    import tifffile

    levels: list[_Level] = []
    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        pages = [lvl.keyframe for lvl in series.levels if lvl.keyframe.is_tiled]
        base_w = pages[0].imagewidth if pages else 0
        base_mpp = _mpp_from_resolution(pages[0]) if pages else None
        fh = tf.filehandle
        for n, page in enumerate(pages):
            w, h = page.imagewidth, page.imagelength
            tw, th = page.tilewidth, page.tilelength
            cols = -(-w // tw)
            decode = page.decode
            frames = []
            for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
                tile = np.full((th, tw, 3), 255, np.uint8)
                if count:
                    fh.seek(offset)
                    what = f"tile {index} (column {index % cols}, row {index // cols}) of level {n}"
                    # a damaged tile refuses the slide with its place, never the codec's text
                    with decoding(what, corrupt=(RuntimeError, ValueError, TypeError)):
                        seg = decode(fh.read(count), index, jpegtables=page.jpegtables)[0]
                        arr = None if seg is None else np.asarray(seg).reshape(th, tw, -1)
                    if arr is not None:
                        if arr.shape[-1] == 1:
                            arr = np.repeat(arr, 3, axis=-1)
                        tile[:] = arr[..., :3].astype(np.uint8)
                frames.append(tile.tobytes())
            mpp = base_mpp * base_w / w if base_mpp else None
            levels.append(_Level(w, h, tw, th, mpp, frames, ExplicitVRLittleEndian, "RGB", False))
    return levels


def _mpp_from_resolution(page: Any) -> float | None:
    """A generic TIFF's pixel size from its resolution; None where it states none (no resolution, or
    no unit: a plain image). A resolution in inches or centimetres that is zero, has no denominator
    or is not a number is a calibration written wrong, and the slide is refused."""
    try:
        xres = page.tags["XResolution"].value
        per_unit_um = {2: 25400.0, 3: 10000.0}.get(int(page.tags["ResolutionUnit"].value))
    except (KeyError, TypeError, ValueError):
        return None
    if per_unit_um is None:
        return None
    if isinstance(xres, tuple):  # a rational: a zero denominator is no resolution (not a division error)
        res = positive_number(xres[0] / xres[1]) if len(xres) == 2 and xres[1] else None
    else:
        res = positive_number(xres)
    return base_pixel_size(per_unit_um / res if res else None)


def slide_info(path: str) -> SlideInfo:
    """Open the (de-identified) slide with OpenSlide and read what the catalog needs; a slide OpenSlide
    cannot open, or whose smallest level cannot be decoded, is refused with OpenSlide's reason."""
    import openslide

    try:
        slide = openslide.OpenSlide(path)
    except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError) as exc:
        raise InputError(f"the slide cannot be opened: {exc}") from exc
    with slide:
        try:
            top = slide.level_count - 1
            w, h = slide.level_dimensions[top]
            slide.read_region((0, 0), top, (min(w, 512), min(h, 512)))
            slide.read_region((0, 0), 0, (min(slide.dimensions[0], 256), min(slide.dimensions[1], 256)))
        except openslide.OpenSlideError as exc:
            raise DecodeError(f"the slide's tiles cannot be decoded: {exc}") from exc
        props = slide.properties
        mpp = props.get(openslide.PROPERTY_NAME_MPP_X)
        mag = props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        make = props.get("tiff.Make") or props.get("dicom.Manufacturer") or ""
        model = props.get("tiff.Model") or props.get("dicom.ManufacturerModelName") or ""
        vendor = props.get(openslide.PROPERTY_NAME_VENDOR) or "unknown"
        if not make and vendor == "aperio":
            make = "Aperio"
        tile = int(props.get("openslide.level[0].tile-width") or 0)
        return SlideInfo(
            vendor=vendor,
            width=slide.dimensions[0],
            height=slide.dimensions[1],
            levels=slide.level_count,
            mpp=positive_number(mpp, *MPP_RANGE),
            magnification=positive_number(mag, *MAGNIFICATION_RANGE),
            scanner=" ".join(x for x in (make, model) if x) or None,
            tile_size=tile,
            compression="",
            level_sizes=[tuple(d) for d in slide.level_dimensions],  # type: ignore[misc]
        )


@dataclass
class DicomSlide:
    instances: list[bytes]
    datasets: list[Dataset]
    study_uid: str
    series_uid: str


def to_dicom(
    data: bytes,
    *,
    suffix: str,
    pseudo: Pseudonymizer,
    patient_pseudonym: str,
    slide_id: str,
    slide_key: str,
    info: SlideInfo,
    study_date: str | None = None,
    tile_size: int = 512,
    label: np.ndarray | None = None,
    levels: list[_Level] | None = None,
) -> DicomSlide:
    """Convert a de-identified vendor file (bytes) to DICOM-WSI Part-10 instances, one per level, and
    a LABEL instance when ``label`` (a generated label image, RGB) is given."""
    if levels is None:  # read from the vendor file's bytes (levels given: already read, e.g. MRXS)
        fd, path = tempfile.mkstemp(suffix="." + suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            got = _levels_opentile(path, tile_size)
            if got is not None:
                levels, _meta = got
                info.compression = "jpeg" if levels[0].transfer_syntax == JPEGBaseline8Bit else "jpeg2000"
            else:
                levels = _levels_native(path, tile_size)
                info.compression = "native"
        finally:
            Path(path).unlink(missing_ok=True)
    if not levels:
        raise InputError("no tiled pyramid level found in the slide")
    study_uid = pseudo.uid(f"curata-slide-study:{slide_key}")
    series_uid = pseudo.uid(f"curata-slide-series:{slide_key}")
    frame_uid = pseudo.uid(f"curata-slide-frame:{slide_key}")
    pyramid_uid = pseudo.uid(f"curata-slide-pyramid:{slide_key}")
    specimen_uid = pseudo.uid(f"curata-slide-specimen:{slide_key}")
    if suffix == "tiff" and not (levels[0].mpp or info.mpp):
        # a generic TIFF with no resolution unit states no calibration (a plain image export); the
        # catalog keeps its pixel size unknown, the DICOM-WSI Type 1 PixelSpacing a 1 um placeholder
        base_mpp = 1.0
    else:
        base_mpp = base_pixel_size(levels[0].mpp, info.mpp)
    datasets, blobs = [], []
    for i, lv in enumerate(levels):
        ds = _level_dataset(
            lv,
            index=i,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=pseudo.uid(f"curata-slide-level:{slide_key}:{i}"),
            frame_uid=frame_uid,
            pyramid_uid=pyramid_uid,
            specimen_uid=specimen_uid,
            patient=patient_pseudonym,
            slide_id=slide_id,
            info=info,
            mpp=lv.mpp or base_mpp * levels[0].width / lv.width,
            study_date=study_date or "",
        )
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        datasets.append(ds)
        blobs.append(buf.getvalue())
    if label is not None:
        h, w = label.shape[:2]
        lv = _Level(w, h, w, h, LABEL_MPP, [np.ascontiguousarray(label[..., :3], np.uint8).tobytes()],
                    ExplicitVRLittleEndian, "RGB", False)  # fmt: skip
        ds = _level_dataset(
            lv,
            index=len(levels),
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=pseudo.uid(f"curata-slide-label:{slide_key}"),
            frame_uid=frame_uid,
            pyramid_uid=pseudo.uid(f"curata-slide-label-pyramid:{slide_key}"),
            specimen_uid=specimen_uid,
            patient=patient_pseudonym,
            slide_id=slide_id,
            info=info,
            mpp=LABEL_MPP,
            study_date=study_date or "",
        )
        ds.ImageType = ds.SharedFunctionalGroupsSequence[0].WholeSlideMicroscopyImageFrameTypeSequence[
            0
        ].FrameType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
        ds.SpecimenLabelInImage = "YES"  # generated: it shows the slide pseudonym, nothing else
        ds.LabelText = slide_id  # Slide Label module: what the generated label shows (text and QR code)
        ds.BarcodeValue = slide_id
        ds.VolumetricProperties = "VOLUME"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        datasets.append(ds)
        blobs.append(buf.getvalue())
    return DicomSlide(blobs, datasets, study_uid, series_uid)


def base_pixel_size(*candidates: float | None) -> float:
    """The base level's pixel size (um): the first candidate in :data:`MPP_RANGE`. A slide with none
    (the vendor field missing, zero, negative, not a number, or no TIFF resolution) is refused: a
    DICOM-WSI instance must state its PixelSpacing, and an invented one would mislead every step that
    reads the slide by magnification."""
    for value in candidates:
        if (mpp := positive_number(value, *MPP_RANGE)) is not None:
            return mpp
    raise InputError(
        "the slide's vendor metadata lacks a valid pixel size (missing, zero, negative, out of range "
        "or not a number); a DICOM-WSI slide must state its pixel spacing, and none is invented",
        hint=_MPP_HINT,
    )


LABEL_MPP = 65.0  # a glass label is ~25 mm across ~400 pixels


_SRGB: bytes | None = None


def _srgb_profile() -> bytes:
    """An sRGB ICC profile (the colour space the tiles are decoded to when the scanner gave none)."""
    global _SRGB
    if _SRGB is None:
        from PIL import ImageCms

        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _SRGB


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _level_dataset(
    lv: _Level,
    *,
    index: int,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame_uid: str,
    pyramid_uid: str,
    specimen_uid: str,
    patient: str,
    slide_id: str,
    info: SlideInfo,
    mpp: float,
    study_date: str,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(WSM_SOP_CLASS)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = lv.transfer_syntax
    ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = WSM_SOP_CLASS, sop_uid
    ds.PatientName = ds.PatientID = patient
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Curata slide de-id: label/macro removed, tags rewritten"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    now = dt.datetime.now(dt.UTC)
    ds.StudyDate = ds.SeriesDate = study_date
    ds.StudyTime = ds.SeriesTime = ""
    # Type 1: when the (date-shifted) scan date is unknown, the conversion's own date stands in
    ds.ContentDate = study_date or now.strftime("%Y%m%d")
    ds.ContentTime = "000000" if study_date else now.strftime("%H%M%S")
    ds.AcquisitionDateTime = (study_date + "000000") if study_date else now.strftime("%Y%m%d%H%M%S")
    ds.AcquisitionContextSequence = Sequence([])
    ds.StudyID = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.Modality = "SM"
    ds.SeriesNumber, ds.InstanceNumber = 1, index + 1
    ds.SeriesDescription = " ".join(x for x in (info.stain, info.organ) if x) or "whole slide"
    if info.organ:
        ds.BodyPartExamined = info.organ.upper()[:16]
    ds.StudyDescription = "pathology"
    make, _, model = (info.scanner or "").partition(" ")
    ds.Manufacturer = make or "unknown"
    ds.ManufacturerModelName = model or "unknown"
    ds.DeviceSerialNumber = "UNKNOWN"
    ds.SoftwareVersions = "curata"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, "SLIDE_CORNER"
    ds.PyramidUID = pyramid_uid
    ds.VolumetricProperties = "VOLUME"
    image_type = (
        ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        if index == 0
        else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    )
    ds.ImageType = image_type
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, lv.photometric, 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.Rows, ds.Columns = lv.tile_h, lv.tile_w
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = lv.width, lv.height
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfFrames = len(lv.frames)
    ds.DimensionOrganizationType = "TILED_FULL"
    dim_org = Dataset()
    dim_org.DimensionOrganizationUID = pyramid_uid
    ds.DimensionOrganizationSequence = Sequence([dim_org])
    ds.ImagedVolumeWidth = round(lv.width * mpp / 1000, 6)
    ds.ImagedVolumeHeight = round(lv.height * mpp / 1000, 6)
    ds.ImagedVolumeDepth = 0.001
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = 0
    origin.YOffsetInSlideCoordinateSystem = 0
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    measures = Dataset()
    measures.PixelSpacing = [round(mpp / 1000, 9), round(mpp / 1000, 9)]
    measures.SliceThickness = 0.001
    frame_type = Dataset()
    frame_type.FrameType = image_type
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.WholeSlideMicroscopyImageFrameTypeSequence = Sequence([frame_type])
    path_ident = Dataset()
    path_ident.OpticalPathIdentifier = "1"
    shared.OpticalPathIdentificationSequence = Sequence([path_ident])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    optical = Dataset()
    optical.OpticalPathIdentifier = "1"
    optical.IlluminationTypeCodeSequence = Sequence([_code("111744", "DCM", "Brightfield illumination")])
    optical.IlluminationColorCodeSequence = Sequence([_code("414298005", "SCT", "Full Spectrum")])
    optical.ICCProfile = _srgb_profile()
    if info.magnification:
        optical.ObjectiveLensPower = info.magnification
    ds.OpticalPathSequence = Sequence([optical])
    ds.NumberOfOpticalPaths = 1
    ds.ContainerIdentifier = slide_id
    ds.IssuerOfTheContainerIdentifierSequence = Sequence([])
    ds.ContainerTypeCodeSequence = Sequence([_code("433466003", "SCT", "Microscope slide")])
    spec = Dataset()
    spec.SpecimenIdentifier = slide_id
    spec.SpecimenUID = specimen_uid
    spec.IssuerOfTheSpecimenIdentifierSequence = Sequence([])
    spec.SpecimenPreparationSequence = Sequence([])
    short = "; ".join(f"{k}: {v}" for k, v in (("stain", info.stain), ("organ", info.organ)) if v)
    if short:
        spec.SpecimenShortDescription = short[:64]
    ds.SpecimenDescriptionSequence = Sequence([spec])
    ds.FocusMethod, ds.ExtendedDepthOfField = "AUTO", "NO"
    ds.SpecimenLabelInImage = "NO"
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.ContentQualification = "RESEARCH"
    ds.InstanceCreationDate = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    if lv.lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = (
            "ISO_10918_1" if lv.transfer_syntax == JPEGBaseline8Bit else "ISO_15444_1"
        )
        stored = sum(len(f) for f in lv.frames) or 1
        ds.LossyImageCompressionRatio = f"{len(lv.frames) * lv.tile_w * lv.tile_h * 3 / stored:.2f}"[:16]
    else:
        ds.LossyImageCompression = "00"
    if lv.transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = b"".join(lv.frames)
    else:
        ds.PixelData = encapsulate(lv.frames, has_bot=True)
        ds["PixelData"].VR = "OB"
    return ds


def read_frame_count(raw: bytes) -> int:
    ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    return int(ds.get("NumberOfFrames", 1))
