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
    TiltPolicy,
    UnevenPolicy,
    assemble_stack,
    find_dicom_files,
    frames_of,
    group_stacks,
    read_dataset,
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
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # non-image or non-DICOM files


def _seconds(ms: Any) -> float | None:
    try:
        return round(float(ms) / 1000.0, 6)
    except (TypeError, ValueError):
        return None


def sidecar(ds: Dataset, report: StackReport, volume: Volume) -> dict[str, Any]:
    """BIDS-like acquisition parameters plus what conversion found about the geometry."""
    out: dict[str, Any] = {}
    for key in (
        "Modality",
        "Manufacturer",
        "ManufacturerModelName",
        "MagneticFieldStrength",
        "BodyPartExamined",
        "SeriesDescription",
        "ProtocolName",
        "ImageType",
        "SeriesNumber",
        "AcquisitionNumber",
        "SliceThickness",
        "SpacingBetweenSlices",
        "KVP",
        "ConvolutionKernel",
        "FlipAngle",
        "ScanningSequence",
        "SequenceVariant",
        "MRAcquisitionType",
        "PatientPosition",
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "SOPClassUID",
    ):
        value = ds.get(key)
        if value is None or value == "":
            continue
        if hasattr(value, "__iter__") and not isinstance(value, str):
            value = [str(v) for v in value]
        elif isinstance(value, float | int) or type(value).__name__ in ("DSfloat", "IS", "DSdecimal"):
            value = float(value) if "." in str(value) else int(value)
        else:
            value = str(value)
        out["ManufacturersModelName" if key == "ManufacturerModelName" else key] = value
    for key in ("EchoTime", "RepetitionTime", "InversionTime"):
        if ds.get(key) is not None:
            out[key] = _seconds(ds.get(key))
    if ds.get("ImageOrientationPatient") is not None:
        out["ImageOrientationPatientDICOM"] = [float(v) for v in ds.ImageOrientationPatient]
    if ds.get("GantryDetectorTilt") is not None:
        out["GantryDetectorTilt"] = float(ds.GantryDetectorTilt)
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
        "warnings": report.warnings,
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


def load_frames(files: list[Path], result: ConvertResult) -> list[Frame]:
    frames: list[Frame] = []
    for path in files:
        try:
            ds = read_dataset(path)
            frames.extend(frames_of(ds, path))
        except InputError as exc:
            result.skipped.append((str(path), exc.reason))
    return frames


def stacks_to_volumes(
    frames: list[Frame], result: ConvertResult, *, uneven: UnevenPolicy, tilt: TiltPolicy
) -> list[tuple[str, Volume, StackReport, Dataset]]:
    """Every stack assembled; refused stacks are recorded with their reason, the rest go on."""
    stacks = group_stacks(frames)
    per_series: dict[str, int] = {}
    for stack in stacks:
        per_series[stack[0].stack_key[0]] = per_series.get(stack[0].stack_key[0], 0) + 1
    out = []
    seen: dict[str, int] = {}
    for stack in stacks:
        ds = stack[0].ds
        base = stack_name(ds)
        try:
            pieces = assemble_stack(stack, uneven=uneven, tilt=tilt)
        except InputError as exc:
            result.refused.append((f"{base} ({exc.path})", exc.reason))
            continue
        for vol, report in pieces:
            many = per_series[stack[0].stack_key[0]] > 1 or len(pieces) > 1
            seen[base] = seen.get(base, 0) + 1
            name = f"{base}_s{seen[base]}" if many else base
            if not many and seen[base] > 1:
                name = f"{base}_{seen[base]}"
            out.append((name, vol, report, ds))
    return out


def convert_folder(
    source: Path,
    output: Path,
    *,
    fmt: OutputFormat = "nifti",
    uneven: UnevenPolicy = "refuse",
    tilt: TiltPolicy = "shear",
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
    for name, vol, report, ds in stacks_to_volumes(frames, result, uneven=uneven, tilt=tilt):
        target = output / f"{name}{SUFFIX[fmt]}"
        meta = sidecar(ds, report, vol)
        if fmt == "zarr":
            vol.meta = meta
            write_zarr(vol, target)
        else:
            write_nifti(vol, target, gzip=fmt == "nifti-gz", threads=threads)
        side = output / f"{name}.json"
        write_json(side, meta)
        result.converted.append(ConvertedStack(name, target, side, vol.shape, report))
        if on_file:
            on_file()
    return result


def convert_series(
    files: list[Path], *, uneven: UnevenPolicy = "refuse", tilt: TiltPolicy = "shear"
) -> list[tuple[str, Volume]]:
    """In-memory conversion of one series' files (used by pipelines); raises on refused stacks."""
    result = ConvertResult()
    frames = load_frames(files, result)
    if not frames:
        reasons = "; ".join(r for _, r in result.skipped[:3])
        raise InputError(f"no image frames to convert ({reasons})")
    pieces = stacks_to_volumes(frames, result, uneven=uneven, tilt=tilt)
    if result.refused:
        raise InputError("; ".join(f"{w}: {r}" for w, r in result.refused))
    out = []
    for name, vol, report, ds in pieces:
        vol.meta = sidecar(ds, report, vol)
        out.append((name, vol))
    return out


def convert_selection(
    workspace: Any,
    selection: str,
    output: Path,
    *,
    fmt: OutputFormat = "nifti",
    uneven: UnevenPolicy = "refuse",
    tilt: TiltPolicy = "shear",
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
        for name, vol, report, ds in stacks_to_volumes(frames, result, uneven=uneven, tilt=tilt):
            name = f"{_safe(item.patient)}_{name}_{item.item_id[-8:]}"
            target = output / f"{name}{SUFFIX[fmt]}"
            meta = sidecar(ds, report, vol)
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
