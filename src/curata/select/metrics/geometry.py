"""Geometry and header metrics of a series, from headers alone (no pixels).

Every slice is placed by its Image Position (Patient) projected on the slice normal (the cross product
of the Image Orientation row and column cosines), never by Slice Thickness or Slice Location. The
steps between sorted positions are grouped into *runs* of a constant step (within 5%, at least
0.02 mm). A short run (one or two steps) whose step is close to an integer multiple (2x, 3x...) of the
neighbouring long run's step is a *gap* (``missing_slices`` counts the slices that would fill it);
any other short run is an *irregular step*. Two or more long runs of different steps are *variable
spacing* (a protocol choice, e.g. thin slices through the region of interest), which a naive check
would report as dozens of missing slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DUPLICATE_TOL_MM = 0.01
RUN_REL_TOL = 0.05
RUN_ABS_TOL_MM = 0.02
LONG_RUN = 3
GAP_MULTIPLE_TOL = 0.15
ORIENTATION_TOL_DEG = 0.5
SPACING_TOL_MM = 1e-3

# Transfer syntaxes whose compression is lossy (PS3.5 Table A-1 and the JPEG/MPEG families).
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 (lossy allowed)
    "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.201",  # HTJ2K (lossy allowed)
    "1.2.840.10008.1.2.4.203",
}
LOCALIZER_WORDS = ("LOCALIZER", "LOCALISER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM", "TRIPILOT")


@dataclass
class SliceHeader:
    """The header fields QC needs from one image."""

    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    rows: int | None = None
    columns: int | None = None
    pixel_spacing: tuple[float, ...] | None = None
    image_type: str = ""
    lossy: bool = False
    lossy_ratio: float | None = None
    transfer_syntax: str = ""
    gantry_tilt: float | None = None
    slope: float = 1.0
    intercept: float = 0.0


def _normal(orientation: Sequence[float]) -> np.ndarray:
    o = np.asarray(orientation, dtype=float)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two lines (direction sign ignored), degrees in [0, 90]."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    c = abs(float(np.dot(a, b)) / float(na * nb))
    return math.degrees(math.acos(min(1.0, c)))


def is_localizer_image(header: SliceHeader) -> bool:
    kind = header.image_type.upper()
    return "LOCALIZER" in kind or "LOCALISER" in kind


def header_problems(headers: Sequence[SliceHeader]) -> list[str]:
    """What an AI pipeline needs and cannot find or trust: spacing, orientation, position."""
    problems: list[str] = []
    if any(h.pixel_spacing is None or len(h.pixel_spacing) != 2 for h in headers):
        problems.append("PixelSpacing missing")
    elif any(not (0 < s <= 10) for h in headers for s in h.pixel_spacing or ()):
        problems.append("PixelSpacing not in (0, 10] mm")
    if any(h.orientation is None or len(h.orientation) != 6 for h in headers):
        problems.append("ImageOrientationPatient missing")
    else:
        for h in headers:
            o = np.asarray(h.orientation, dtype=float)
            r, c = o[:3], o[3:]
            if abs(np.linalg.norm(r) - 1) > 0.01 or abs(np.linalg.norm(c) - 1) > 0.01 or abs(r @ c) > 0.01:
                problems.append("ImageOrientationPatient not two orthonormal vectors")
                break
    if any(h.position is None or len(h.position) != 3 for h in headers):
        problems.append("ImagePositionPatient missing")
    if any(not h.rows or not h.columns for h in headers):
        problems.append("Rows/Columns missing")
    return problems


def _runs(steps: np.ndarray) -> list[list[float]]:
    runs: list[list[float]] = []
    for s in steps:
        if runs:
            mean = float(np.mean(runs[-1]))
            if abs(s - mean) <= max(RUN_ABS_TOL_MM, RUN_REL_TOL * mean):
                runs[-1].append(float(s))
                continue
        runs.append([float(s)])
    return runs


def spacing_metrics(distances: np.ndarray) -> dict[str, Any]:
    """Duplicates, gaps (missing slices), irregular steps and variable spacing from sorted positions."""
    d = np.sort(np.asarray(distances, dtype=float))
    steps = np.diff(d)
    out: dict[str, Any] = {
        "duplicate_positions": int(np.sum(steps < DUPLICATE_TOL_MM)),
        "missing_slices": 0,
        "gap_count": 0,
        "irregular_steps": 0,
        "spacing_deviation": 0.0,
        "variable_spacing": False,
        "spacing_levels": 0,
        "slice_step_mm": None,
    }
    steps = steps[steps >= DUPLICATE_TOL_MM]
    if steps.size == 0:
        return out
    out["slice_step_mm"] = round(float(np.median(steps)), 4)
    runs = _runs(steps)
    long_runs = [i for i, r in enumerate(runs) if len(r) >= LONG_RUN]
    deviation = 0.0
    levels: list[float] = []
    for i in long_runs:
        mean = float(np.mean(runs[i]))
        deviation = max(deviation, max(abs(s - mean) / mean for s in runs[i]))
        if not any(abs(mean - lv) <= max(RUN_ABS_TOL_MM, RUN_REL_TOL * lv) for lv in levels):
            levels.append(mean)
    median = float(np.median(steps))
    for i, run in enumerate(runs):
        if len(run) >= LONG_RUN:
            continue
        ref = median
        if long_runs:
            nearest = min(long_runs, key=lambda j: (abs(j - i), -len(runs[j])))
            ref = float(np.mean(runs[nearest]))
        for s in run:
            ratio = s / ref
            m = round(ratio)
            if m >= 2 and abs(ratio - m) <= GAP_MULTIPLE_TOL:
                out["missing_slices"] += m - 1
                out["gap_count"] += 1
            elif abs(ratio - 1) > RUN_REL_TOL:
                out["irregular_steps"] += 1
                deviation = max(deviation, abs(ratio - 1))
    out["spacing_deviation"] = round(deviation, 4)
    out["spacing_levels"] = len(levels)
    out["variable_spacing"] = len(levels) > 1
    return out


def _plane(normal: np.ndarray) -> tuple[str, float]:
    axis = int(np.argmax(np.abs(normal)))
    name = ("SAGITTAL", "CORONAL", "AXIAL")[axis]
    unit = np.zeros(3)
    unit[axis] = 1.0
    return name, _angle_deg(normal, unit)


def geometry_metrics(headers: Sequence[SliceHeader], *, description: str | None = None) -> dict[str, Any]:
    """Every header-only metric of one series (see ``metrics.registry`` for definitions and units)."""
    m: dict[str, Any] = {"slice_count": len(headers)}
    problems = header_problems(headers)
    m["header_complete"] = not problems
    m["header_problems"] = problems
    sizes = {(h.rows, h.columns) for h in headers}
    m["mixed_size"] = len(sizes) > 1
    spacings = [h.pixel_spacing for h in headers if h.pixel_spacing]
    m["mixed_pixel_spacing"] = bool(spacings) and any(
        max(abs(a - b) for a, b in zip(s, spacings[0], strict=False)) > SPACING_TOL_MM for s in spacings
    )
    m["lossy_compression"] = any(h.lossy or h.transfer_syntax in LOSSY_TRANSFER_SYNTAXES for h in headers)
    ratios = [h.lossy_ratio for h in headers if h.lossy_ratio]
    m["lossy_ratio"] = round(max(ratios), 2) if ratios else None
    tilts = [abs(h.gantry_tilt) for h in headers if h.gantry_tilt is not None]
    m["gantry_tilt_deg"] = round(max(tilts), 3) if tilts else None
    words = (description or "").upper()
    orientations = [h.orientation for h in headers if h.orientation and len(h.orientation) == 6]
    normals = [_normal(o) for o in orientations]
    spread = 0.0
    if normals:
        spread = max(_angle_deg(normals[0], n) for n in normals)
    m["orientation_spread_deg"] = round(spread, 3)
    m["mixed_orientation"] = spread > ORIENTATION_TOL_DEG
    m["is_localizer"] = (
        all(is_localizer_image(h) for h in headers)
        or any(w in words for w in LOCALIZER_WORDS)
        or (len(headers) <= 3 and m["mixed_orientation"])
    )
    for key in ("plane", "obliquity_deg", "shear_deg", *spacing_metrics(np.zeros(0)).keys()):
        m.setdefault(key, None)
    if not normals:
        return m
    normal = normals[0]
    m["plane"], obliquity = _plane(normal)
    m["obliquity_deg"] = round(obliquity, 3)
    positions = [
        np.asarray(h.position, dtype=float)
        for h in headers
        if h.position is not None and len(h.position) == 3
    ]
    if len(positions) != len(headers) or len(positions) < 2 or m["mixed_orientation"]:
        return m
    pts = np.stack(positions)
    dist = pts @ normal
    m.update(spacing_metrics(dist))
    order = np.argsort(dist)
    span = pts[order[-1]] - pts[order[0]]
    m["shear_deg"] = round(_angle_deg(span, normal), 3) if np.linalg.norm(span) > 0 else None
    return m
