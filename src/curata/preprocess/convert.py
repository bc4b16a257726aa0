"""``curata convert``: every stack of every series under a folder to a volume file and a JSON sidecar."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydicom.dataset import Dataset

from curata import __version__
from curata.errors import CurataError, InputError
from curata.preprocess.dicom_stack import (
    Frame,
    StackReport,
    assemble_stack,
    find_dicom_files,
    frames_of,
    ge_readout,
    group_stacks,
    read_dataset,
)
from curata.preprocess.policies import (
    DEFAULT_PHILIPS,
    DEFAULT_TILT,
    DEFAULT_UNEVEN,
    PhilipsScaling,
    TiltPolicy,
    UnevenPolicy,
)
from curata.preprocess.volume import Volume, write_json, write_nifti, write_zarr

OutputFormat = Literal["nifti", "nifti-gz", "zarr"]
SUFFIX = {"nifti": ".nii", "nifti-gz": ".nii.gz", "zarr": ".zarr"}


@dataclass
class ConvertedStack:
    name: str
    volume_path: Path
    sidecar_path: Path
    shape: tuple[int, ...]
    report: StackReport


@dataclass
class ConvertResult:
    converted: list[ConvertedStack] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (stack name, reason)
    refused_inputs: list[str | None] = field(default_factory=list)  # the file each refusal names, if any
    skipped: list[tuple[str, str]] = field(default_factory=list)  # non-image or non-DICOM files
    # converted stacks whose input is not marked de-identified (Patient Identity Removed YES): convert
    # is no de-identifier, and names a volume by its series number and description, as dcm2niix does
    not_deidentified: int = 0


def _seconds(ms: Any) -> float | None:
    try:
        return round(float(ms) / 1000.0, 6)
    except (TypeError, ValueError):
        return None


_FIELDS = (
    "Modality",
    "MagneticFieldStrength",
    "ImagingFrequency",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "PatientPosition",
    "SoftwareVersions",
    "MRAcquisitionType",
    "SeriesDescription",
    "ProtocolName",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "SequenceName",
    "SeriesNumber",
    "AcquisitionTime",
    "AcquisitionNumber",
    "SliceThickness",
    "SpacingBetweenSlices",
    "KVP",
    "ConvolutionKernel",
    "FlipAngle",
    "EchoTrainLength",
    "PixelBandwidth",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "SOPClassUID",
)
_RENAME = {"ManufacturerModelName": "ManufacturersModelName", "BodyPartExamined": "BodyPart"}
_KIND_TYPE = {"ph": "PHASE", "real": "REAL", "imag": "IMAGINARY", "fieldmaphz": "FIELDMAPHZ"}


def _json_value(value: Any) -> Any:
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        return [_json_value(v) for v in value]
    if isinstance(value, float | int) or type(value).__name__ in ("DSfloat", "IS", "DSdecimal"):
        return float(value) if "." in str(value) or "e" in str(value).lower() else int(value)
    return str(value)


def _phase_encoding(ds: Dataset, frame: Frame | None) -> dict[str, str | float]:
    """BIDS PhaseEncodingDirection (axis and polarity) where the polarity is known, else the axis.

    i runs along a DICOM row; j runs up the columns (rows are stored bottom-up), so a Siemens
    'positive' column direction (CSA PhaseEncodingDirectionPositive = 1) is j-, as in dcm2niix.
    """
    direction = str(ds.get("InPlanePhaseEncodingDirection", "") or "")
    if not direction and "SharedFunctionalGroupsSequence" in ds:
        fov = ds.SharedFunctionalGroupsSequence[0].get("MRFOVGeometrySequence")
        direction = str(fov[0].get("InPlanePhaseEncodingDirection", "")) if fov else ""
    direction = direction.strip().upper()
    if direction not in ("ROW", "COL"):
        return {}
    axis = "i" if direction == "ROW" else "j"
    out: dict[str, str | float] = {"InPlanePhaseEncodingDirectionDICOM": direction}
    positive = frame.pe_positive if frame is not None else None
    if positive is None:
        out["PhaseEncodingAxis"] = axis
    else:
        negative = (positive == 1) if axis == "j" else (positive == 0)
        out["PhaseEncodingDirection"] = axis + ("-" if negative else "")
    if frame is None:
        return out
    # the reconstructed matrix along the phase-encoding axis: rows for COL, columns for ROW
    matrix = frame.rows if axis == "j" else frame.cols
    bandwidth = frame.bw_per_pixel_pe
    if bandwidth:
        spacing = 1.0 / (bandwidth * matrix)
        out["EffectiveEchoSpacing"] = round(spacing, 9)
        out["TotalReadoutTime"] = round(spacing * (matrix - 1), 9)
    elif (readout := ge_readout(ds, matrix)) is not None:
        out["EffectiveEchoSpacing"] = round(readout[0], 9)
        out["TotalReadoutTime"] = round(readout[1], 9)
    if "PhaseEncodingDirection" in out and "GE" in str(ds.get("Manufacturer", "")).upper():
        # dcm2niix's name for the same fact, so BIDS tools that look for it find it
        out["PhaseEncodingPolarityGE"] = "Unflipped" if positive == 1 else "Flipped"
    return out


def sidecar(ds: Dataset, report: StackReport, volume: Volume, frame: Frame | None = None) -> dict[str, Any]:
    """BIDS sidecar fields, as dcm2niix writes them, plus what conversion found about the geometry.

    Times are in seconds (EchoTime, RepetitionTime, SliceTiming); the image type says which image
    this is (magnitude, phase, field map) when one series held several. No identifiers of people
    or places (institution, station, serial numbers) are copied.
    """
    out: dict[str, Any] = {}
    for key in _FIELDS:
        value = ds.get(key)
        if value is None or value == "":
            continue
        out[_RENAME.get(key, key)] = _json_value(value)
    when = str(out.get("AcquisitionTime", ""))
    if len(when) >= 6 and when[:6].isdigit():  # DICOM TM hhmmss.ffffff -> BIDS hh:mm:ss.ffffff
        out["AcquisitionTime"] = f"{when[:2]}:{when[2:4]}:{when[4:]}"
    image_type = list(frame.image_type) if frame is not None and frame.image_type else []
    if not image_type and ds.get("ImageType"):
        image_type = [str(v) for v in ds.ImageType]
    kind = frame.kind if frame is not None else ""
    if kind and _KIND_TYPE[kind] not in image_type:
        image_type.append(_KIND_TYPE[kind])
    if image_type:
        out["ImageType"] = image_type
    echo_ms = frame.stack_key[6] if frame is not None and len(frame.stack_key) > 6 else None
    if echo_ms:
        out["EchoTime"] = _seconds(echo_ms)
    elif ds.get("EchoTime") is not None:
        out["EchoTime"] = _seconds(ds.get("EchoTime"))
    if ds.get("EchoNumbers") is not None:
        out["EchoNumber"] = _json_value(ds.EchoNumbers)
    for key in ("RepetitionTime", "InversionTime"):
        if ds.get(key) is not None:
            out[key] = _seconds(ds.get(key))
    out.update(_phase_encoding(ds, frame))
    warnings = list(report.warnings)
    if frame is not None and frame.pe_reversed:
        out["PhaseEncodingReversed"] = True  # GE epi_pepolar: the other polarity of the pair
        warnings.append("GE epi_pepolar reversed-polarity volumes: rows were stored reversed; flipped back")
    if report.slice_timing_s is not None:
        out["SliceTiming"] = report.slice_timing_s
    if frame is not None:
        out["ImageOrientationPatientDICOM"] = [round(float(v), 6) for v in frame.orientation]
    elif ds.get("ImageOrientationPatient") is not None:
        out["ImageOrientationPatientDICOM"] = [float(v) for v in ds.ImageOrientationPatient]
    if ds.get("GantryDetectorTilt") is not None:
        out["GantryDetectorTilt"] = float(ds.GantryDetectorTilt)
    out.update(report.philips)
    out["RescaleSlope"] = volume.slope
    out["RescaleIntercept"] = volume.inter
    out["Curata"] = {
        "slices": report.slices,
        "volumes": report.volumes,
        "gantry_tilt_deg": report.gantry_tilt_deg,
        "tilt_handling": report.tilt_handling,
        "uneven_spacing": report.uneven,
        "missing_slices": report.missing_slices,
        "interpolated_slices": report.interpolated_slices,
        "max_slice_residual_mm": report.max_slice_residual_mm,
        "warnings": warnings,
        "spacing_mm": [round(v, 6) for v in volume.spacing],
    }
    out["ConversionSoftware"] = "curata"
    out["ConversionSoftwareVersion"] = __version__
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "series"


def stack_name(ds: Dataset) -> str:
    number = ds.get("SeriesNumber")
    desc = _safe(str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ds.get("Modality", "")))
    return f"{number}_{desc}" if number not in (None, "") else desc


def refused_label(ds: Dataset, name: str, base: str) -> str:
    """A refused stack as messages name it: ``series <SeriesNumber>`` and the suffixes its name has
    beyond the description (``_e2``, ``_ph``...), never the description itself."""
    number = ds.get("SeriesNumber")
    series = f"series {number}" if number not in (None, "") else "a series without a number"
    return series + name[len(base) :]


def load_frames(files: list[Path], result: ConvertResult) -> list[Frame]:
    frames: list[Frame] = []
    for path in files:
        try:
            ds = read_dataset(path)
            frames.extend(frames_of(ds, path))
        except InputError as exc:
            result.skipped.append((str(path), exc.reason))
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
            # a value that is not what its attribute needs (a DS that is no number): the file is
            # skipped, named by the kind of error alone (the message may quote the value)
            result.skipped.append((str(path), f"malformed attribute value ({type(exc).__name__})"))
    return frames


def _echo_label(frame: Frame) -> tuple[Any, ...]:
    return (frame.stack_key[5], frame.stack_key[6])


def stacks_to_volumes(
    frames: list[Frame],
    result: ConvertResult,
    *,
    uneven: UnevenPolicy,
    tilt: TiltPolicy,
    philips: PhilipsScaling = DEFAULT_PHILIPS,
) -> list[tuple[str, Volume, StackReport, Dataset, Frame]]:
    """Every stack assembled; refused stacks are recorded with their reason, the rest go on.

    Names follow dcm2niix: ``<series>_<description>``, ``_e<n>`` when the series has several echoes,
    ``_ph`` / ``_real`` / ``_imag`` / ``_fieldmaphz`` for an image that is not the magnitude, and
    ``_s<n>`` for stacks still sharing a name (two stacks, split runs).
    """
    stacks = group_stacks(frames)
    echoes: dict[str, set[tuple[Any, ...]]] = {}
    for stack in stacks:
        echoes.setdefault(stack[0].stack_key[0], set()).add(_echo_label(stack[0]))
    built: list[tuple[str, Volume, StackReport, Dataset, Frame]] = []
    for stack in stacks:
        first = stack[0]
        ds = first.ds
        base = stack_name(ds)
        # a map without an echo time of its own (a field map: TE 0) follows the measured echoes
        series_echoes = sorted(echoes[first.stack_key[0]], key=lambda e: (not e[1], str(e[0]), e[1] or 0.0))
        if len(series_echoes) > 1:
            base += f"_e{series_echoes.index(_echo_label(first)) + 1}"
        if first.kind:
            base += f"_{first.kind}"
        if first.pe_reversed:
            base += "_rev"
        try:
            pieces = assemble_stack(stack, uneven=uneven, tilt=tilt, philips=philips)
        except InputError as exc:
            # the stack by its series number, not its name: no output carries the name, and a
            # description written at the scanner may hold the patient's (the file apart, by its
            # sha256 or, on request, its path)
            result.refused.append((refused_label(ds, base, stack_name(ds)), exc.reason))
            result.refused_inputs.append(str(exc.path) if exc.path else None)
            continue
        for vol, report in pieces:
            built.append((base, vol, report, ds, first))
    counts: dict[str, int] = {}
    for name, *_ in built:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for name, vol, report, ds, first in built:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name}_s{seen[name]}"
        out.append((name, vol, report, ds, first))
    return out


def convert_folder(
    source: Path,
    output: Path,
    *,
    fmt: OutputFormat = "nifti",
    uneven: UnevenPolicy = DEFAULT_UNEVEN,
    tilt: TiltPolicy = DEFAULT_TILT,
    philips: PhilipsScaling = DEFAULT_PHILIPS,
    on_file: Callable[[], None] | None = None,
    threads: int | None = None,
) -> ConvertResult:
    """Convert every series under ``source`` into ``output``: one volume + sidecar per stack."""
    if fmt not in SUFFIX:
        raise CurataError(f"unknown output format {fmt!r}", hint="use nifti, nifti-gz or zarr")
    if not source.exists():
        raise InputError("input folder does not exist", path=str(source))
    result = ConvertResult()
    files = find_dicom_files(source)
    frames = load_frames(files, result)
    output.mkdir(parents=True, exist_ok=True)
    for name, vol, report, ds, first in stacks_to_volumes(
        frames, result, uneven=uneven, tilt=tilt, philips=philips
    ):
        target = output / f"{name}{SUFFIX[fmt]}"
        meta = sidecar(ds, report, vol, first)
        if fmt == "zarr":
            vol.meta = meta
            write_zarr(vol, target)
        else:
            write_nifti(vol, target, gzip=fmt == "nifti-gz", threads=threads)
        side = output / f"{name}.json"
        write_json(side, meta)
        result.converted.append(ConvertedStack(name, target, side, vol.shape, report))
        if str(ds.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
            result.not_deidentified += 1
        if on_file:
            on_file()
    return result


def convert_series(
    files: list[Path],
    *,
    uneven: UnevenPolicy = DEFAULT_UNEVEN,
    tilt: TiltPolicy = DEFAULT_TILT,
    philips: PhilipsScaling = DEFAULT_PHILIPS,
) -> list[tuple[str, Volume]]:
    """In-memory conversion of one series' files (used by pipelines); raises on refused stacks."""
    result = ConvertResult()
    frames = load_frames(files, result)
    if not frames:
        reasons = "; ".join(r for _, r in result.skipped[:3])
        raise InputError(f"no image frames to convert ({reasons})")
    pieces = stacks_to_volumes(frames, result, uneven=uneven, tilt=tilt, philips=philips)
    if result.refused:
        raise InputError("; ".join(f"{w}: {r}" for w, r in result.refused))
    out = []
    for name, vol, report, ds, first in pieces:
        vol.meta = sidecar(ds, report, vol, first)
        out.append((name, vol))
    return out


def convert_selection(
    workspace: Any,
    selection: str,
    output: Path,
    *,
    fmt: OutputFormat = "nifti",
    uneven: UnevenPolicy = DEFAULT_UNEVEN,
    tilt: TiltPolicy = DEFAULT_TILT,
    philips: PhilipsScaling = DEFAULT_PHILIPS,
    on_file: Callable[[], None] | None = None,
) -> ConvertResult:
    """Convert workspace series: ``all``, ``cohort:NAME`` or ``series:UID`` (read from the store)."""
    import io

    from curata.preprocess.pipeline import series_from_workspace

    kind, _, value = selection.partition(":")
    if kind not in ("all", "cohort", "series") or (kind != "all" and not value):
        raise CurataError(f"unknown selection {selection!r}", hint="use all, cohort:NAME or series:UID")
    items = series_from_workspace(workspace, cohort=value if kind == "cohort" else None)
    if kind == "series":
        items = [i for i in items if i.item_id == value]
        if not items:
            raise CurataError(f"no series {value} in the workspace", hint="`curata ls` lists series")
    result = ConvertResult()
    output.mkdir(parents=True, exist_ok=True)
    for item in items:
        files: list[Any] = [
            io.BytesIO(workspace.store.get_bytes(s[5:])) if s.startswith("blob:") else Path(s)
            for s in item.sources
        ]
        frames = load_frames(files, result)
        for name, vol, report, ds, first in stacks_to_volumes(
            frames, result, uneven=uneven, tilt=tilt, philips=philips
        ):
            name = f"{_safe(item.patient)}_{name}_{item.item_id[-8:]}"
            target = output / f"{name}{SUFFIX[fmt]}"
            meta = sidecar(ds, report, vol, first)
            if fmt == "zarr":
                vol.meta = meta
                write_zarr(vol, target)
            else:
                write_nifti(vol, target, gzip=fmt == "nifti-gz")
            side = output / f"{name}.json"
            write_json(side, meta)
            result.converted.append(ConvertedStack(name, target, side, vol.shape, report))
            if on_file:
                on_file()
    return result
