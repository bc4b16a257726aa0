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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from curata.errors import InputError
from curata.preprocess.volume import Volume

UnevenPolicy = Literal["refuse", "split", "interpolate"]
TiltPolicy = Literal["shear", "resample"]
# Allowed values and defaults: curata.preprocess.policies (tests/preprocess/test_policies.py ties them).

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


def frames_of(ds: Dataset, path: Path) -> list[Frame]:
    """Every image frame of ``ds`` with its geometry; raises InputError when geometry is missing."""
    if ds.get("SOPClassUID", "") in UNSUPPORTED_SOP or "PixelData" not in ds:
        raise InputError("no image pixel data (not an image object)", path=str(path))
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError("colour images are not volumes", path=str(path))
    series_uid = str(ds.get("SeriesInstanceUID", ""))
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, path, series_uid)
    ipp, iop, ps = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"), ds.get("PixelSpacing")
    if ipp is None or iop is None or ps is None:
        raise InputError(
            "missing ImagePositionPatient, ImageOrientationPatient or PixelSpacing",
            path=str(path),
            hint="a volume needs slice geometry; localizers and secondary captures cannot be stacked",
        )
    image_type = tuple(str(v).upper() for v in ds.get("ImageType", []))
    frame = Frame(
        ds=ds,
        path=path,
        frame=None,
        position=np.asarray([float(v) for v in ipp]),
        orientation=np.asarray([float(v) for v in iop]),
        pixel_spacing=(float(ps[0]), float(ps[1])),
        slope=_f(ds.get("RescaleSlope"), 1.0) or 1.0,
        inter=_f(ds.get("RescaleIntercept"), 0.0) or 0.0,
        stack_key=(),
        order_key=(
            _f(ds.get("TemporalPositionIdentifier"), 0.0),
            _f(ds.get("TriggerTime"), 0.0),
            _f(ds.get("AcquisitionNumber"), 0.0),
            str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "")),
            _f(ds.get("InstanceNumber"), 0.0),
        ),
    )
    frame.stack_key = (
        series_uid,
        int(ds.Rows),
        int(ds.Columns),
        tuple(np.round(frame.orientation, 4)),
        tuple(round(v, 4) for v in frame.pixel_spacing),
        int(ds.get("EchoNumbers", 1) or 1),
        _f(ds.get("EchoTime"), 0.0),
        "LOCALIZER" in image_type,
        int(ds.get("PixelRepresentation", 0)),
    )
    return [frame]


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
        )
        out.append(frame)
    return out


def group_stacks(frames: Iterable[Frame]) -> list[list[Frame]]:
    """Frames grouped by series, then by everything that must match inside one volume."""
    groups: dict[tuple[Any, ...], list[Frame]] = defaultdict(list)
    for frame in frames:
        groups[frame.stack_key].append(frame)
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(str(v) for v in k))]


# -- pixels ------------------------------------------------------------------------------------------
def _pixels(frames: list[Frame], shape: tuple[int, ...]) -> np.ndarray:
    """Stored values of ``frames`` in C order ``shape`` = (..., rows, cols), rows bottom-up (NIfTI).

    Filling the final layout directly makes the NIfTI array (its transpose) Fortran-contiguous
    without another copy.
    """
    first = frames[0].ds
    rows, cols = int(first.Rows), int(first.Columns)
    cache: dict[int, np.ndarray] = {}
    out = None
    flat_shape = (len(frames), rows, cols)
    for n, frame in enumerate(frames):
        arr = cache.get(id(frame.ds))
        if arr is None:
            arr = _decode(frame.ds)
            cache[id(frame.ds)] = arr
        plane = arr[frame.frame] if frame.frame is not None else arr.reshape(rows, cols)
        if out is None:
            out = np.empty(flat_shape, dtype=plane.dtype)
        out[n] = plane[::-1]
    assert out is not None
    return out.reshape(shape)


def _decode(ds: Dataset) -> np.ndarray:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    bits, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    uncompressed = ts is None or not ts.is_compressed
    if (
        uncompressed
        and ts is not None
        and ts.is_little_endian
        and bits in (8, 16, 32)
        and (stored == bits or not signed)
    ):
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        arr = np.frombuffer(ds.PixelData, dtype=dtype, count=frames * int(ds.Rows) * int(ds.Columns))
        return (
            arr.reshape(frames, int(ds.Rows), int(ds.Columns))
            if frames > 1
            else arr.reshape(int(ds.Rows), int(ds.Columns))
        )
    arr = ds.pixel_array
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
    uneven: UnevenPolicy = "refuse",
    tilt: TiltPolicy = "shear",
) -> list[tuple[Volume, StackReport]]:
    """One stack's frames to volumes (one, or several when ``uneven='split'``)."""
    first = frames[0]
    report = StackReport(series_uid=str(first.ds.get("SeriesInstanceUID", "")))
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
    rows, cols = int(first.ds.Rows), int(first.ds.Columns)
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    dy, dx = first.pixel_spacing  # PixelSpacing = (row spacing, column spacing)
    nz, nt = len(groups), len(groups[0])
    positions = np.array([g[0].position for g in groups])
    if nz > 1:
        step_vec = (positions[-1] - positions[0]) / (nz - 1)
    else:
        thick = _f(first.ds.get("SpacingBetweenSlices")) or _f(first.ds.get("SliceThickness")) or 1.0
        step_vec = _normal(first.orientation) * thick
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
