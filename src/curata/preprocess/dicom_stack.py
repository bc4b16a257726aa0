"""DICOM files to volumes: frames grouped into series and stacks, geometry checked slice by slice.

The voxel layout and affine follow dcm2niix (and nibabel): columns are i, rows are j read
bottom-up (NIfTI's convention), slices k ascend along the slice normal; LPS becomes RAS by negating x and y. The slice axis of the affine is the
measured step between the first and last slice position, so a gantry tilt is kept as an exact shear
instead of being dropped.

Where slices are not evenly spaced (missing slices, variable spacing) no single affine places every
slice; Curata never writes such a volume silently: it refuses the stack, splits it into evenly spaced
runs, or interpolates onto an even grid, as the caller chooses, and says which slices it touched.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from curata.errors import InputError, decoding
from curata.preprocess.policies import (
    DEFAULT_PHILIPS,
    DEFAULT_TILT,
    DEFAULT_UNEVEN,
    PHILIPS_SCALINGS,
    PhilipsScaling,
    TiltPolicy,
    UnevenPolicy,
)
from curata.preprocess.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION_TOL_MM = 0.01  # two frames closer than this along the normal share a position
SPACING_REL_TOL = 0.01  # a slice may sit at most 1% of the spacing off the affine's prediction
UNSUPPORTED_SOP = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.88.11",
    "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33",
}


@dataclass
class Frame:
    """One 2D image: a classic instance or one frame of an enhanced multi-frame object."""

    ds: Dataset
    path: Path
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    slope: float
    inter: float
    stack_key: tuple[Any, ...]
    order_key: tuple[Any, ...]
    rows: int = 0
    cols: int = 0
    tile: int | None = None  # index of this slice's tile in a mosaic
    per_row: int = 1  # tiles per row of that mosaic
    slice_time_ms: float | None = None  # acquisition time of this slice within its volume
    kind: str = ""  # '' magnitude, 'ph', 'real', 'imag', 'fieldmaphz'
    philips_scale: float | None = None  # Philips private MR scale slope (2005,100E), when present
    pe_positive: int | None = None  # Siemens CSA PhaseEncodingDirectionPositive
    pe_reversed: bool = False  # a GE epi_pepolar volume stored with its rows reversed
    bw_per_pixel_pe: float | None = None  # Siemens CSA BandwidthPerPixelPhaseEncode (Hz)
    image_type: tuple[str, ...] = ()  # ImageType, or an enhanced frame's FrameType


@dataclass
class StackReport:
    """What conversion found and did for one stack; goes into the JSON sidecar."""

    series_uid: str
    slices: int = 0
    volumes: int = 1
    gantry_tilt_deg: float = 0.0
    tilt_handling: str = ""
    uneven: str = ""
    missing_slices: int = 0
    interpolated_slices: list[int] = field(default_factory=list)
    max_slice_residual_mm: float = 0.0
    warnings: list[str] = field(default_factory=list)
    philips: dict[str, float] = field(default_factory=dict)  # the Philips scaling found and applied
    slice_timing_s: list[float] | None = None


# -- reading ---------------------------------------------------------------------------------------
def find_dicom_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.name != "DICOMDIR" and not p.name.startswith(".")
    )


def read_dataset(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise InputError("not a DICOM file", path=str(path)) from exc
    except Exception as exc:
        raise InputError(f"unreadable DICOM: {exc}", path=str(path)) from exc


def _f(value: Any, default: float | None = None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _seq_item(ds: Dataset, *names: str) -> Dataset | None:
    """The first item of a functional-group macro, looking in ``ds`` then nested sequences."""
    for name in names:
        seq = ds.get(name)
        if seq:
            return seq[0]
    return None


RGB = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])  # NIfTI RGB24, as dcm2niix writes colour
SPECTROSCOPY_SOP = {
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR Spectroscopy Storage
}


def image_kind(tokens: Iterable[str], ds: Dataset | None = None) -> str:
    """What a frame's pixels are: '' (magnitude), 'ph', 'real', 'imag' or 'fieldmaphz'.

    Magnitude and phase, real and imaginary, and a field map beside its magnitude are different
    images of one acquisition, never time points of one 4D volume. Read from ImageType / FrameType
    (Siemens M/P/R/I, Philips and enhanced MAGNITUDE/PHASE/REAL/IMAGINARY/FIELD_MAP) and GE's
    private image type (0043,102F: 0 magnitude, 1 phase, 2 real, 3 imaginary).
    """
    tok = {t.strip().upper() for t in tokens}
    if tok & {"FIELD_MAP", "FIELDMAP", "B0 MAP", "B0MAP", "FIELDMAPHZ"}:
        return "fieldmaphz"
    if tok & {"P", "PHASE"}:
        return "ph"
    if tok & {"R", "REAL"}:
        return "real"
    if tok & {"I", "IMAGINARY"}:
        return "imag"
    if ds is not None and (0x0043, 0x102F) in ds:
        ge = {1: "ph", 2: "real", 3: "imag"}.get(int(_f(ds[0x0043, 0x102F].value, 0.0) or 0))
        if ge:
            return ge
    return ""


def _philips_scale(item: Dataset | None, ds: Dataset) -> float | None:
    """Philips' private MR scale slope (2005,100E), from a per-frame private item or the dataset."""
    if "PHILIPS" not in str(ds.get("Manufacturer", "")).upper():
        return None
    for source in (item, ds):
        if source is None or (0x2005, 0x100E) not in source:
            continue
        value = source[0x2005, 0x100E].value
        if isinstance(value, bytes | bytearray):  # implicit VR: the raw float32
            value = np.frombuffer(bytes(value)[:4], "<f4")[0] if len(value) >= 4 else None
        ss = _f(value[0] if isinstance(value, list | tuple) else value)
        if ss and math.isfinite(ss) and ss != 0:
            return float(ss)
    return None


def _philips_frame(item: Dataset, ds: Dataset) -> float | None:
    """The scale slope of one enhanced frame: Philips keeps it in the private item (2005,140F)."""
    private = item.get((0x2005, 0x140F))
    value = private.value if private is not None else None
    first = value[0] if value and isinstance(value[0], Dataset) else None
    return _philips_scale(first, ds)


def _ge_image_flag(ds: Dataset) -> int:
    """GE writes a 3D B0 map's magnitude and its field map into one series, one of each per slice
    position, told apart only by (0043,1030); elsewhere 0."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper() or (0x0043, 0x1030) not in ds:
        return 0
    return int(_f(ds[0x0043, 0x1030].value, 0.0) or 0)


def _csareader() -> Any:
    """nibabel's Siemens CSA header reader (its package warns that the DICOM readers are young)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader
    return csareader


@dataclass
class Mosaic:
    """A Siemens mosaic: ``n`` slices of ``rows`` x ``cols`` tiled row-major in one image."""

    n: int
    tiles_per_row: int
    rows: int
    cols: int
    normal: np.ndarray
    times_ms: list[float] | None


def _siemens_mosaic(ds: Dataset, image_type: tuple[str, ...], path: Path) -> Mosaic | None:
    if "MOSAIC" not in image_type:
        return None
    csareader = _csareader()
    try:
        csa = csareader.get_csa_header(ds, "image")
    except Exception as exc:  # a damaged CSA header
        raise InputError(f"mosaic with an unreadable Siemens CSA header: {exc}", path=str(path)) from exc
    n = csareader.get_n_mosaic(csa) if csa else None
    normal = csareader.get_slice_normal(csa) if csa else None
    if not n or normal is None:
        raise InputError(
            "Siemens mosaic without NumberOfImagesInMosaic / SliceNormalVector (CSA header missing)",
            path=str(path),
            hint="the CSA header (0029,1010) was removed, perhaps by de-identification; keep it to unpack mosaics",
        )
    per_row = math.ceil(math.sqrt(n))
    rows, cols = int(ds.Rows) // per_row, int(ds.Columns) // per_row
    times = None
    tag = csa["tags"].get("MosaicRefAcqTimes") if csa else None
    if tag and tag.get("n_items", 0) >= n:
        times = [float(v) for v in tag["items"][:n]]
    return Mosaic(int(n), per_row, rows, cols, np.asarray(normal, float), times)


def _siemens_pe(ds: Dataset) -> tuple[int | None, float | None]:
    """Siemens' phase-encoding polarity and bandwidth per pixel along it (CSA image header
    PhaseEncodingDirectionPositive, BandwidthPerPixelPhaseEncode)."""
    if "SIEMENS" not in str(ds.get("Manufacturer", "")).upper() or (0x0029, 0x1010) not in ds:
        return None, None
    csareader = _csareader()
    try:
        csa = csareader.get_csa_header(ds, "image")
        positive = csareader.get_scalar(csa, "PhaseEncodingDirectionPositive") if csa else None
        bandwidth = csareader.get_scalar(csa, "BandwidthPerPixelPhaseEncode") if csa else None
    except Exception:  # a damaged CSA header only loses these two
        return None, None
    return (int(positive) if positive is not None else None), (_f(bandwidth) or None)


def _ge_user_define_polarity(blob: bytes) -> int | None:
    """GE's UserDefineData (0043,102A), a binary block from the raw header: for an EPI (flag 0x800
    at 0x3A) bit 2 of the word at 0x30 is 'phase encoding flipped', and a bottom-up ky order (the
    word at 0x394, or 0x308 from version 25.002, 0x4C further on) flips it again, as dcm2niix reads it.
    Returns the Siemens-style PhaseEncodingDirectionPositive (1 unflipped, 0 flipped) or None."""
    import struct

    if len(blob) < 916:
        return None
    offset = struct.unpack_from("<H", blob, 24)[0]
    if len(blob) < offset + 916:
        return None
    version = struct.unpack_from("<f", blob, offset)[0]
    if not 5.0 <= version <= 40.0:
        return None
    hdr, kydir = offset, 0x0394
    if version >= 25.002:
        hdr += 0x004C
        kydir -= 0x008C
    if hdr + max(kydir, 0x3A) + 2 > len(blob):
        return None
    if not struct.unpack_from("<H", blob, hdr + 0x3A)[0] & 0x800:
        return None  # not an EPI: no polarity recorded
    flipped = bool(struct.unpack_from("<H", blob, hdr + 0x30)[0] & 0x0004)
    if struct.unpack_from("<H", blob, hdr + kydir)[0] == 2:  # ky bottom-up
        flipped = not flipped
    return 0 if flipped else 1


def _ge_pe(ds: Dataset) -> int | None:
    """GE's phase-encoding polarity, as Siemens' PhaseEncodingDirectionPositive (1 = unflipped).

    From software RX27 on, RectilinearPhaseEncodeReordering (0018,9034) says it: LINEAR is the
    flipped polarity, REVERSE_LINEAR (or REVERSE_CENTRIC) the unflipped one (dcm2niix issue 674);
    before, the raw header block (0043,102A) does, for EPI."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper():
        return None
    reorder = str(ds.get("RectilinearPhaseEncodeReordering", "") or "").strip().upper()
    if reorder.startswith("L"):
        return 0
    if reorder.startswith("R"):
        return 1
    if (0x0043, 0x102A) in ds:
        blob = ds[0x0043, 0x102A].value
        if isinstance(blob, bytes | bytearray):
            try:
                return _ge_user_define_polarity(bytes(blob))
            except Exception:  # a short or odd block only loses the polarity
                return None
    return None


def ge_readout(ds: Dataset, recon_matrix_pe: int) -> tuple[float, float] | None:
    """GE effective echo spacing and total readout time (seconds), as dcm2niix derives them: the
    echo spacing (0043,102C, microseconds) times the phase-encoding lines actually read, which are
    the acquisition matrix's PE lines over the ASSET factor (0043,1083), rounded up to a multiple
    of 2 (4 with partial Fourier), minus one; the effective spacing spreads that over the
    reconstructed matrix."""
    import math

    if "GE" not in str(ds.get("Manufacturer", "")).upper() or (0x0043, 0x102C) not in ds:
        return None
    spacing_us = _f(ds[0x0043, 0x102C].value)
    if not spacing_us or spacing_us <= 0 or recon_matrix_pe < 2:
        return None
    matrix = [int(v) for v in (ds.get("AcquisitionMatrix") or [])]
    lines = max(matrix[2:4]) if len(matrix) == 4 else 0
    lines = lines or recon_matrix_pe
    asset = 1.0
    if (0x0043, 0x1083) in ds:
        raw = ds[0x0043, 0x1083].value
        first = raw[0] if isinstance(raw, list | tuple) or type(raw).__name__ == "MultiValue" else raw
        if isinstance(first, bytes | bytearray):
            first = first.decode(errors="replace").split("\\")[0]
        asset = _f(first, 1.0) or 1.0
    options = ds.get("ScanOptions") or []
    options = [options] if isinstance(options, str) else options
    partial = str(ds.get("PartialFourier", "") or "").upper() == "YES" or "PFP" in [
        str(v).upper() for v in options
    ]
    round_to = 4.0 if partial else 2.0
    read_lines = math.ceil(lines * asset / round_to) * round_to
    total = (read_lines - 1.0) * spacing_us * 1e-6
    return total / (recon_matrix_pe - 1), total


@dataclass
class UihGrid(Mosaic):
    """A United Imaging 'GRID' (ImageType VFRAME): ``n`` slices tiled ceil(sqrt(n)) across, each
    slice placed by its own item of the private MR VFrame Sequence (0065,1051)."""

    positions: list[np.ndarray] = field(default_factory=list)


def _tm_seconds(value: Any) -> float | None:
    text = str(value or "").strip()
    if len(text) < 6 or not text[:6].isdigit():
        return None
    return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:] or 0)


def _uih_grid(ds: Dataset, image_type: tuple[str, ...], path: Path) -> UihGrid | None:
    if "VFRAME" not in image_type or (0x0065, 0x1050) not in ds:
        return None
    raw = ds[0x0065, 0x1050].value
    n = int(_f(raw.decode() if isinstance(raw, bytes | bytearray) else raw, 0.0) or 0)
    items = ds[0x0065, 0x1051].value if (0x0065, 0x1051) in ds else None
    if isinstance(items, bytes | bytearray):  # implicit VR: the private sequence arrives unparsed
        from pydicom.values import convert_SQ

        try:
            items = convert_SQ(bytes(items), True, True)
        except Exception:
            items = None
    if n < 1 or not items or len(items) < n or any("ImagePositionPatient" not in it for it in items[:n]):
        raise InputError(
            "UIH grid (VFRAME) without a slice count (0065,1050) or a position for every slice (0065,1051)",
            path=str(path),
            hint="the VFrame sequence holds each slice's ImagePositionPatient; keep private tags to convert",
        )
    per_row = math.ceil(math.sqrt(n))
    grid_rows = math.ceil(n / per_row)
    positions = [np.asarray([float(v) for v in it.ImagePositionPatient]) for it in items[:n]]
    seconds = [_tm_seconds(it.get("AcquisitionTime")) for it in items[:n]]
    times = None
    if all(t is not None for t in seconds):
        start = min(seconds)  # type: ignore[type-var]
        times = [round((t - start) * 1000.0, 3) for t in seconds]  # type: ignore[operator]
    normal = positions[-1] - positions[0] if n > 1 else np.zeros(3)
    return UihGrid(
        n, per_row, int(ds.Rows) // grid_rows, int(ds.Columns) // per_row, normal, times, positions
    )


def frames_of(ds: Dataset, path: Path) -> list[Frame]:
    """Every image frame of ``ds`` with its geometry; raises InputError when geometry is missing."""
    sop = str(ds.get("SOPClassUID", ""))
    if sop in SPECTROSCOPY_SOP or "SpectroscopyData" in ds:
        raise InputError(
            "MR spectroscopy holds spectra, not images: it is not converted to a volume",
            path=str(path),
            hint="keep the DICOM for spectroscopy tools (e.g. spec2nii)",
        )
    if sop in UNSUPPORTED_SOP or "PixelData" not in ds:
        raise InputError("no image pixel data (not an image object)", path=str(path))
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples not in (1, 3) or (samples == 3 and int(ds.BitsAllocated) != 8):
        raise InputError(
            f"{samples} samples of {ds.BitsAllocated} bits per pixel: not a volume", path=str(path)
        )
    series_uid = str(ds.get("SeriesInstanceUID", ""))
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, path, series_uid)
    image_type = tuple(str(v).upper() for v in ds.get("ImageType", []))
    mosaic = _siemens_mosaic(ds, image_type, path)
    grid = _uih_grid(ds, image_type, path)
    pe_positive, bw_pe = _siemens_pe(ds)
    if pe_positive is None:
        pe_positive = _ge_pe(ds)
    ipp, iop, ps = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"), ds.get("PixelSpacing")
    if grid is not None and ipp is None:
        ipp = grid.positions[0]  # a UIH grid places every slice in its VFrame sequence instead
    if ipp is None or iop is None or ps is None:
        raise InputError(
            "missing ImagePositionPatient, ImageOrientationPatient or PixelSpacing",
            path=str(path),
            hint="a volume needs slice geometry; localizers and secondary captures cannot be stacked",
        )
    try:
        position = np.asarray([float(v) for v in ipp])
        orientation = np.asarray([float(v) for v in iop])
        spacing = (float(ps[0]), float(ps[1]))
    except (ValueError, TypeError, IndexError):
        # named, not quoted: a damaged value may hold anything (a patient's ID)
        raise InputError(
            "ImagePositionPatient, ImageOrientationPatient or PixelSpacing is not a list of numbers",
            path=str(path),
        ) from None
    rows, cols = int(ds.Rows), int(ds.Columns)
    kind = image_kind(image_type, ds)
    order_key = (
        _f(ds.get("TemporalPositionIdentifier"), 0.0),
        _f(ds.get("TriggerTime"), 0.0),
        _f(ds.get("AcquisitionNumber"), 0.0),
        str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "")),
        _f(ds.get("InstanceNumber"), 0.0),
    )
    tiles: list[tuple[int | None, np.ndarray, float | None]] = [(None, position, None)]
    if mosaic is not None:
        # ImagePositionPatient of a mosaic is the corner of the whole tiled image placed as if it
        # were one slice centred on the first tile; the first slice's corner is half the
        # difference of the two sizes in along the columns and rows (as nibabel and dcm2niix).
        row_cos, col_cos = orientation[:3], orientation[3:]
        first = (
            position
            + col_cos * spacing[0] * (rows - mosaic.rows) / 2.0
            + row_cos * spacing[1] * (cols - mosaic.cols) / 2.0
        )
        step = _f(ds.get("SpacingBetweenSlices")) or _f(ds.get("SliceThickness")) or 1.0
        rows, cols = mosaic.rows, mosaic.cols
        tiles = [
            (k, first + k * step * mosaic.normal, mosaic.times_ms[k] if mosaic.times_ms else None)
            for k in range(mosaic.n)
        ]
    if grid is not None:
        rows, cols = grid.rows, grid.cols
        tiles = [(k, grid.positions[k], grid.times_ms[k] if grid.times_ms else None) for k in range(grid.n)]
        mosaic = grid
    out = []
    for tile, pos, t_ms in tiles:
        frame = Frame(
            ds=ds,
            path=path,
            frame=None,
            position=pos,
            orientation=orientation,
            pixel_spacing=spacing,
            slope=_f(ds.get("RescaleSlope"), 1.0) or 1.0,
            inter=_f(ds.get("RescaleIntercept"), 0.0) or 0.0,
            stack_key=(),
            order_key=order_key,
            rows=rows,
            cols=cols,
            tile=tile,
            per_row=mosaic.tiles_per_row if mosaic else 1,
            slice_time_ms=t_ms,
            kind=kind,
            philips_scale=_philips_scale(None, ds),
            pe_positive=pe_positive,
            bw_per_pixel_pe=bw_pe,
            image_type=image_type,
        )
        frame.stack_key = (
            series_uid,
            rows,
            cols,
            tuple(np.round(orientation, 4)),
            tuple(round(v, 4) for v in spacing),
            int(ds.get("EchoNumbers", 1) or 1),
            _f(ds.get("EchoTime"), 0.0),
            "LOCALIZER" in image_type,
            int(ds.get("PixelRepresentation", 0)),
            kind,
            _ge_image_flag(ds),
            samples,
        )
        out.append(frame)
    return out


def _enhanced_frames(ds: Dataset, path: Path, series_uid: str) -> list[Frame]:
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence") or Dataset()
    out = []
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        plane_pos = _seq_item(item, "PlanePositionSequence") or _seq_item(shared, "PlanePositionSequence")
        plane_ori = _seq_item(item, "PlaneOrientationSequence") or _seq_item(
            shared, "PlaneOrientationSequence"
        )
        measures = _seq_item(item, "PixelMeasuresSequence") or _seq_item(shared, "PixelMeasuresSequence")
        transform = _seq_item(item, "PixelValueTransformationSequence") or _seq_item(
            shared, "PixelValueTransformationSequence"
        )
        content = _seq_item(item, "FrameContentSequence") or Dataset()
        if plane_pos is None or plane_ori is None or measures is None:
            raise InputError(
                f"frame {index + 1} has no plane position, orientation or pixel measures", path=str(path)
            )
        echo = _seq_item(item, "MREchoSequence") or _seq_item(shared, "MREchoSequence")
        ftype = _seq_item(item, "MRImageFrameTypeSequence", "CTImageFrameTypeSequence") or _seq_item(
            shared, "MRImageFrameTypeSequence", "CTImageFrameTypeSequence"
        )
        tokens = [str(v) for v in (ftype.get("FrameType", []) if ftype is not None else [])]
        if ftype is not None and ftype.get("ComplexImageComponent"):
            tokens.append(str(ftype.ComplexImageComponent))
        kind = image_kind(tokens)
        frame = Frame(
            ds=ds,
            path=path,
            frame=index,
            position=np.asarray([float(v) for v in plane_pos.ImagePositionPatient]),
            orientation=np.asarray([float(v) for v in plane_ori.ImageOrientationPatient]),
            pixel_spacing=(float(measures.PixelSpacing[0]), float(measures.PixelSpacing[1])),
            slope=_f(transform.get("RescaleSlope"), 1.0) if transform is not None else 1.0,  # type: ignore[arg-type]
            inter=_f(transform.get("RescaleIntercept"), 0.0) if transform is not None else 0.0,  # type: ignore[arg-type]
            stack_key=(),
            order_key=(
                _f(content.get("TemporalPositionIndex"), 0.0),
                0.0,
                _f(content.get("FrameAcquisitionNumber"), 0.0),
                str(content.get("FrameAcquisitionDateTime", "")),
                float(index),
            ),
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            kind=kind,
            philips_scale=_philips_frame(item, ds),
            image_type=tuple(t.upper() for t in tokens),
        )
        frame.stack_key = (
            series_uid,
            int(ds.Rows),
            int(ds.Columns),
            tuple(np.round(frame.orientation, 4)),
            tuple(round(v, 4) for v in frame.pixel_spacing),
            str(content.get("StackID", "")),
            _f(echo.get("EffectiveEchoTime"), 0.0) if echo is not None else 0.0,
            False,
            int(ds.get("PixelRepresentation", 0)),
            kind,
            0,
            int(ds.get("SamplesPerPixel", 1)),
        )
        out.append(frame)
    return out


def group_stacks(frames: Iterable[Frame]) -> list[list[Frame]]:
    """Frames grouped by series, then by everything that must match inside one volume; then the
    single-volume series of one run joined into one 4D stack (see ``_join_run_volumes``)."""
    groups: dict[tuple[Any, ...], list[Frame]] = defaultdict(list)
    for frame in frames:
        groups[frame.stack_key].append(frame)
    stacks = [groups[k] for k in sorted(groups, key=lambda k: tuple(str(v) for v in k))]
    return [part for stack in _join_run_volumes(stacks) for part in _split_ge_pepolar(stack)]


def _ge_pepolar_mode(ds: Dataset) -> int | None:
    """GE's epi_pepolar research sequence: (0019,109C) names it, UserData12 (0019,10B3) holds the
    mode: 0 all forward, 1 all reversed, 2 reversed then forward, 3 forward then reversed."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper() or (0x0019, 0x109C) not in ds:
        return None
    name = ds[0x0019, 0x109C].value
    name = name.decode(errors="replace") if isinstance(name, bytes | bytearray) else str(name)
    if "epi_pepolar" not in name.lower() or (0x0019, 0x10B3) not in ds:
        return None
    value = ds[0x0019, 0x10B3].value
    value = value.decode(errors="replace") if isinstance(value, bytes | bytearray) else value
    mode = _f(value)
    return int(mode) if mode is not None and int(mode) in (0, 1, 2, 3) else None


def _split_ge_pepolar(stack: list[Frame]) -> list[list[Frame]]:
    """GE epi_pepolar volumes acquired with reversed phase-encoding polarity are stored with their
    rows in reverse order and nothing else changed in the header, so they are flipped back; and,
    being the other polarity of a TOPUP pair, they are a separate output, not more time points
    (as dcm2niix does)."""
    mode = _ge_pepolar_mode(stack[0].ds)
    if not mode:
        return [stack]
    by_position: dict[tuple[float, ...], list[Frame]] = defaultdict(list)
    for f in stack:
        by_position[tuple(np.round(f.position, 3))].append(f)
    for frames in by_position.values():
        frames.sort(key=lambda f: f.order_key)
        for t, f in enumerate(frames):
            f.pe_reversed = mode == 1 or (mode == 2 and t % 2 == 0) or (mode == 3 and t % 2 == 1)
    forward = [f for f in stack if not f.pe_reversed]
    reverse = [f for f in stack if f.pe_reversed]
    for f in reverse:
        f.stack_key = (*f.stack_key, "pepolar-reversed")
        if f.pe_positive is not None:  # the other polarity of the pair
            f.pe_positive = 1 - f.pe_positive
    return [part for part in (forward, reverse) if part]


def _run_key(stack: list[Frame]) -> tuple[Any, ...] | None:
    """What the single-volume series of one run share: the study, the series number and
    description, the frame of reference, and everything a volume's frames must share, and the
    same slice positions. None for a stack that is not one volume of an MR run."""
    ds = stack[0].ds
    if str(ds.get("Modality", "")) != "MR" or ds.get("SeriesNumber") in (None, ""):
        return None
    positions = [tuple(np.round(f.position, 3)) for f in stack]
    if len(set(positions)) != len(positions):  # several frames per position: already 4D
        return None
    return (
        str(ds.get("StudyInstanceUID", "")),
        str(ds.get("SeriesNumber")),
        str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "")),
        str(ds.get("FrameOfReferenceUID", "")),
        stack[0].stack_key[1:],
        tuple(sorted(positions)),
    )


def _join_run_volumes(stacks: list[list[Frame]]) -> list[list[Frame]]:
    """Siemens XA (and other enhanced-era exports) may write every volume of an fMRI or diffusion
    run as its own series (its own SeriesInstanceUID) under one series number. They are the time
    points of one acquisition: joined into one stack, ordered by acquisition, they become one 4D
    volume. Only stacks that match in everything but the series UID, slice for slice, are joined."""
    runs: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, stack in enumerate(stacks):
        key = _run_key(stack)
        if key is not None:
            runs[key].append(i)
    joined: dict[int, list[Frame]] = {}
    gone: set[int] = set()
    for members in runs.values():
        uids = {stacks[i][0].stack_key[0] for i in members}
        if len(members) < 2 or len(uids) != len(members):
            continue
        first = members[0]
        frames = [f for i in members for f in stacks[i]]
        key = stacks[first][0].stack_key
        for f in frames:
            f.stack_key = key  # one stack now: the first series' key names it
        joined[first] = frames
        gone.update(members[1:])
    return [joined.get(i, stack) for i, stack in enumerate(stacks) if i not in gone]


# -- pixels ------------------------------------------------------------------------------------------
def _pixels(frames: list[Frame], shape: tuple[int, ...]) -> np.ndarray:
    """Stored values of ``frames`` in C order ``shape`` = (..., rows, cols), rows bottom-up (NIfTI).

    Filling the final layout directly makes the NIfTI array (its transpose) Fortran-contiguous
    without another copy. A mosaic's slice is cut out of its tile; colour pixels become RGB24.
    """
    rows, cols = frames[0].rows, frames[0].cols
    cache: dict[int, np.ndarray] = {}
    out = None
    flat_shape = (len(frames), rows, cols)
    for n, frame in enumerate(frames):
        arr = cache.get(id(frame.ds))
        if arr is None:
            with decoding("pixel data", path=str(frame.path), ordinary=True):
                arr = _decode(frame.ds)
            cache[id(frame.ds)] = arr
        if frame.frame is not None:
            plane = arr[frame.frame]
        elif frame.tile is not None:
            r0, c0 = (frame.tile // frame.per_row) * rows, (frame.tile % frame.per_row) * cols
            plane = arr[r0 : r0 + rows, c0 : c0 + cols]
        else:
            plane = arr.reshape(arr.shape[-3:] if arr.ndim == 3 and arr.shape[-1] == 3 else (rows, cols))
        if plane.ndim == 3:  # (rows, cols, 3) colour
            plane = np.ascontiguousarray(plane, dtype=np.uint8).view(RGB)[..., 0]
        if out is None:
            out = np.empty(flat_shape, dtype=plane.dtype)
        out[n] = plane if frame.pe_reversed else plane[::-1]
    assert out is not None
    return out.reshape(shape)


def _decode(ds: Dataset) -> np.ndarray:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    bits, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    uncompressed = ts is None or not ts.is_compressed
    if (
        int(ds.get("SamplesPerPixel", 1)) == 1
        and uncompressed
        and ts is not None
        and ts.is_little_endian
        and bits in (8, 16, 32)
        and (stored == bits or not signed)
    ):
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        arr = np.frombuffer(ds.PixelData, dtype=dtype, count=frames * int(ds.Rows) * int(ds.Columns))
        if stored < bits:
            # Bits above BitsStored are not part of the value (overlays, or whatever the scanner
            # left there): an unsigned 12-bit pixel is its low 12 bits, as the standard says.
            arr = arr & dtype.type((1 << stored) - 1)
        return (
            arr.reshape(frames, int(ds.Rows), int(ds.Columns))
            if frames > 1
            else arr.reshape(int(ds.Rows), int(ds.Columns))
        )
    arr = np.asarray(ds.pixel_array)
    if stored < bits and not signed and arr.dtype.kind == "u":
        arr = arr & arr.dtype.type((1 << stored) - 1)  # the same rule whichever decoder ran
    return arr


# -- geometry -----------------------------------------------------------------------------------------
def _normal(orientation: np.ndarray) -> np.ndarray:
    n = np.cross(orientation[:3], orientation[3:])
    return n / np.linalg.norm(n)


def _positions_grouped(frames: list[Frame]) -> list[list[Frame]]:
    """Frames sorted along the normal and grouped by slice position (several per position in 4D)."""
    normal = _normal(frames[0].orientation)
    ordered = sorted(frames, key=lambda f: float(f.position @ normal))
    groups: list[list[Frame]] = []
    last = None
    for frame in ordered:
        d = float(frame.position @ normal)
        if last is None or abs(d - last) > POSITION_TOL_MM:
            groups.append([])
            last = d
        groups[-1].append(frame)
    return groups


def assemble_stack(
    frames: list[Frame],
    *,
    uneven: UnevenPolicy = DEFAULT_UNEVEN,
    tilt: TiltPolicy = DEFAULT_TILT,
    philips: PhilipsScaling = DEFAULT_PHILIPS,
) -> list[tuple[Volume, StackReport]]:
    """One stack's frames to volumes (one, or several when ``uneven='split'``).

    Philips scanners store a display value DV = SV * RescaleSlope + RescaleIntercept and, privately,
    the scale slope SS (2005,100E) that gives the precise value FP = DV / (RescaleSlope * SS), the
    one comparable between scans. ``philips='precise'`` applies it, as dcm2niix does by default;
    ``'display'`` keeps the DICOM rescale. Which one was applied goes into the report.
    """
    if philips not in PHILIPS_SCALINGS:
        raise InputError(f"unknown Philips scaling {philips!r}", hint="use precise or display")
    first = frames[0]
    report = StackReport(series_uid=str(first.ds.get("SeriesInstanceUID", "")))
    if first.philips_scale is not None:
        report.philips = {
            "PhilipsRescaleSlope": first.slope,
            "PhilipsRescaleIntercept": first.inter,
            "PhilipsScaleSlope": first.philips_scale,
            "UsePhilipsFloatNotDisplayScaling": 1 if philips == "precise" else 0,
        }
        if philips == "precise":
            for f in frames:
                if f.philips_scale is not None:
                    rs_ss = f.slope * f.philips_scale
                    f.slope, f.inter = 1.0 / f.philips_scale, f.inter / rs_ss
    where = str(first.path)
    groups = _positions_grouped(frames)
    counts = {len(g) for g in groups}
    if len(counts) != 1:
        raise InputError(
            f"positions hold different numbers of frames ({sorted(counts)}): an incomplete 4D series",
            path=where,
            hint="some time points are missing; convert the complete ones by removing partial files",
        )
    ntime = counts.pop()
    for g in groups:
        g.sort(key=lambda f: f.order_key)
    normal = _normal(first.orientation)
    dist = np.array([float(g[0].position @ normal) for g in groups])
    report.slices = len(groups)
    report.volumes = ntime
    runs = [list(range(len(groups)))]
    diffs = np.diff(dist)
    if len(groups) > 2:
        step = float(np.median(diffs))
        tol = SPACING_REL_TOL * step
        if np.any(np.abs(diffs - step) > tol):
            ratio = diffs / step
            whole = np.all(np.abs(ratio - np.round(ratio)) * step <= tol)
            if whole:
                report.missing_slices = int(np.round(ratio).sum() - len(diffs))
                report.uneven = f"{report.missing_slices} missing slice(s) at spacing {step:g} mm"
            else:
                report.uneven = f"variable slice spacing {diffs.min():g}-{diffs.max():g} mm"
            if uneven == "refuse":
                raise InputError(
                    f"unevenly spaced slices: {report.uneven}; no single affine places every slice",
                    path=where,
                    hint="choose --uneven split (one volume per evenly spaced run) or --uneven interpolate",
                )
            if uneven == "split":
                runs = _even_runs(dist, tol)
    results = []
    for run in runs:
        sub = [groups[i] for i in run]
        rep = StackReport(**{**report.__dict__, "warnings": list(report.warnings), "interpolated_slices": []})
        rep.slices = len(sub)
        if uneven == "split" and len(runs) > 1:
            rep.warnings.append(
                f"split into {len(runs)} evenly spaced runs; this is slices {run[0]}-{run[-1]}"
            )
        results.append(_volume(sub, rep, uneven=uneven, tilt=tilt))
    return results


def _slice_times_from_headers(first_volume: list[Frame]) -> list[float] | None:
    """Slice timing of a classic 4D (fMRI) series from the first volume's headers: GE writes each
    slice's time within the TR as TriggerTime (0018,1060); others stamp each slice's
    AcquisitionTime. Used only when the times differ and all fall within one repetition time."""
    tr = _f(first_volume[0].ds.get("RepetitionTime"))
    if not tr:
        return None
    trigger = [t for f in first_volume if (t := _f(f.ds.get("TriggerTime"))) is not None]
    if len(trigger) == len(first_volume) and len(set(trigger)) > 1 and max(trigger) < tr:
        return trigger
    acquired = [t for f in first_volume if (t := _tm_seconds(f.ds.get("AcquisitionTime"))) is not None]
    if len(acquired) == len(first_volume) and len(set(acquired)) > 1:
        start = min(acquired)
        relative = [round((t - start) * 1000.0, 3) for t in acquired]
        if max(relative) < tr:
            return relative
    return None


def _even_runs(dist: np.ndarray, tol: float) -> list[list[int]]:
    runs: list[list[int]] = [[0]]
    for i in range(1, len(dist)):
        run = runs[-1]
        if len(run) == 1 or abs((dist[i] - dist[run[-1]]) - (dist[run[1]] - dist[run[0]])) <= tol:
            run.append(i)
        else:
            runs.append([i])
    return runs


def _volume(
    groups: list[list[Frame]], report: StackReport, *, uneven: str, tilt: str
) -> tuple[Volume, StackReport]:
    first = groups[0][0]
    rows, cols = first.rows, first.cols
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    dy, dx = first.pixel_spacing  # PixelSpacing = (row spacing, column spacing)
    nz, nt = len(groups), len(groups[0])
    positions = np.array([g[0].position for g in groups])
    if nz > 1:
        step_vec = (positions[-1] - positions[0]) / (nz - 1)
    else:
        thick = _f(first.ds.get("SpacingBetweenSlices")) or _f(first.ds.get("SliceThickness")) or 1.0
        step_vec = _normal(first.orientation) * thick
    times: Sequence[float | None] | None = [g[0].slice_time_ms for g in groups]
    if times is not None and any(t is None for t in times) and nt > 1 and nz > 1:
        times = _slice_times_from_headers([g[0] for g in groups])
    if times and all(t is not None for t in times):
        report.slice_timing_s = [round(float(t) / 1000.0, 6) for t in times if t is not None]
    # frames in (t, k) order -> pixels (t, k, rows, cols)
    ordered = [g[t] for t in range(nt) for g in groups]
    pix = _pixels(ordered, (nt, nz, rows, cols))  # rows already bottom-up
    slopes = {(f.slope, f.inter) for f in ordered}
    if len(slopes) == 1:
        slope, inter = slopes.pop()
    else:  # per-frame scaling: apply it, as dcm2niix does, and store float32
        scale = np.array([f.slope for f in ordered], np.float32).reshape(nt, nz, 1, 1)
        shift = np.array([f.inter for f in ordered], np.float32).reshape(nt, nz, 1, 1)
        pix = pix.astype(np.float32) * scale + shift
        slope, inter = 1.0, 0.0
        report.warnings.append(
            "rescale slope/intercept vary between frames; stored as float32 physical values"
        )

    unit_step = step_vec / np.linalg.norm(step_vec)
    normal = _normal(first.orientation)
    tilt_deg = math.degrees(math.acos(min(1.0, abs(float(unit_step @ normal))))) if nz > 1 else 0.0
    report.gantry_tilt_deg = round(tilt_deg, 4)

    dist = positions @ unit_step
    if report.uneven and uneven == "interpolate":
        pix, positions, step_vec, interpolated = _interpolate_even(pix, positions, dist, report)
        nz = pix.shape[1]
        report.interpolated_slices = interpolated
        report.slices = nz

    # LPS affine for (i=col, j=row flipped, k=slice): dcm2niix/NIfTI bottom-up row order.
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dx
    lps[:3, 1] = -col_cos * dy
    lps[:3, 2] = step_vec
    lps[:3, 3] = positions[0] + col_cos * dy * (rows - 1)
    # every slice must sit where the affine says
    predicted = lps[:3, 3] + lps[:3, 1] * (rows - 1) + np.outer(np.arange(nz), step_vec)
    residual = float(np.max(np.linalg.norm(predicted - positions, axis=1))) if nz else 0.0
    report.max_slice_residual_mm = round(residual, 6)
    spacing = float(np.linalg.norm(step_vec))
    if residual > max(SPACING_REL_TOL * spacing, 1e-3):
        raise InputError(
            f"slice positions are not collinear (a slice sits {residual:.3f} mm off the stack axis)",
            path=str(first.path),
            hint="the series mixes stacks that share an orientation; split it by acquisition before converting",
        )
    affine = LPS_TO_RAS @ lps
    data = pix.transpose(3, 2, 1, 0)  # (t,k,j,i) -> (i,j,k,t): Fortran-contiguous, no copy
    if nt == 1:
        data = data[..., 0]
    vol = Volume(np.asfortranarray(data), affine, float(slope), float(inter))
    if tilt_deg > 0.01:
        if tilt == "resample":
            from curata.preprocess.spatial import deshear

            vol = deshear(vol)
            report.tilt_handling = f"resampled onto an orthogonal grid (gantry tilt {tilt_deg:.3f} deg)"
        else:
            report.tilt_handling = f"kept as an exact sheared affine (gantry tilt {tilt_deg:.3f} deg); qform is the nearest rigid"
        report.warnings.append(report.tilt_handling)
    return vol, report


def _interpolate_even(
    pix: np.ndarray, positions: np.ndarray, dist: np.ndarray, report: StackReport
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Linear interpolation along the stack axis onto an even grid at the smallest spacing found.

    The smallest step keeps the resolution of the densest part; with missing slices it is the true
    spacing, so every acquired slice lands on the grid unchanged and only the gaps are filled.
    """
    step = float(np.min(np.diff(dist)))
    span = float(dist[-1] - dist[0])
    n = round(span / step) + 1
    targets = dist[0] + np.arange(n) * (span / (n - 1))
    idx = np.clip(np.searchsorted(dist, targets, side="right") - 1, 0, len(dist) - 2)
    w = (targets - dist[idx]) / (dist[idx + 1] - dist[idx])
    w = np.where(np.abs(w) < 1e-6, 0.0, np.where(np.abs(w - 1) < 1e-6, 1.0, w))
    lo = pix[:, idx].astype(np.float64)
    hi = pix[:, idx + 1].astype(np.float64)
    ww = w.reshape(1, -1, 1, 1)
    out = lo * (1 - ww) + hi * ww
    if pix.dtype.kind in "iu":
        out = np.rint(out)
    exact = (w == 0.0) | (w == 1.0)
    interpolated = [int(i) for i in np.nonzero(~exact)[0]]
    direction = (positions[-1] - positions[0]) / span
    new_positions = positions[0] + np.outer(targets - dist[0], direction)
    step_vec = direction * (span / (n - 1))
    report.warnings.append(
        f"interpolated {len(interpolated)} slice(s) onto an even {span / (n - 1):g} mm grid"
    )
    return out.astype(pix.dtype), new_positions, step_vec, interpolated
