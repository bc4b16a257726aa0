"""Synthetic CT and MR series with planted defects at chosen severities: QC's validation corpus.

``make_series(modality, defect, severity)`` returns real DICOM datasets (in memory; ``save`` writes
them) of a body-like phantom: an elliptic trunk with a fat rim, lungs and a spine (CT, HU with known
Gaussian noise) or fat, muscle and an organ (MR magnitude with known Rician noise). ``DEFECTS`` lists
every defect class with its severities, the rules expected to fire, and how the defect is planted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid


@dataclass
class Spec:
    """Everything that shapes one synthetic series."""

    modality: str = "CT"
    rows: int = 512
    slices: int = 60
    step: float = 2.5
    pixel_spacing: float = 0.75
    noise: float = 12.0  # CT: HU; MR: the Gaussian sigma of each channel before the magnitude
    signal_scale: float = 1.0
    body_scale: float = 1.0
    seed: int = 0
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    description: str = "AXIAL"
    hu_offset: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _labels(spec: Spec, z: float) -> np.ndarray:
    """Tissue labels of one slice: 0 air, 1 soft tissue, 2 fat, 3 lung/organ, 4 bone."""
    n = spec.rows
    fov = n * spec.pixel_spacing
    y, x = (np.mgrid[0:n, 0:n] + 0.5) * spec.pixel_spacing - fov / 2
    a, b = 0.40 * fov * spec.body_scale, 0.28 * fov * spec.body_scale
    wobble = 1 + 0.03 * math.sin(z / 40)
    r_body = (x / (a * wobble)) ** 2 + (y / b) ** 2
    lab = np.zeros((n, n), np.uint8)
    lab[r_body <= 1] = 2
    inner = (x / (a * wobble - 12)) ** 2 + (y / (b - 12)) ** 2 <= 1
    lab[inner] = 1
    for side in (-1, 1):
        lung = ((x - side * 0.45 * a) / (0.3 * a)) ** 2 + ((y + 0.1 * b) / (0.55 * b)) ** 2 <= 1
        lab[lung & inner] = 3
    spine = (x**2 + (y - 0.6 * b) ** 2) <= (0.12 * b) ** 2
    lab[spine & inner] = 4
    return lab


CT_VALUES = np.array([-1000.0, 40.0, -100.0, -850.0, 700.0])
MR_VALUES = np.array([0.0, 450.0, 1000.0, 650.0, 150.0])


def _image(spec: Spec, z: float, rng: np.random.Generator) -> np.ndarray:
    lab = _labels(spec, z)
    if spec.modality == "CT":
        img = CT_VALUES[lab] + rng.normal(0, spec.noise, lab.shape)
        return img
    clean = MR_VALUES[lab] * spec.signal_scale
    re = clean + rng.normal(0, spec.noise, lab.shape)
    im = rng.normal(0, spec.noise, lab.shape)
    return np.hypot(re, im)


# A phantom is no patient, but it arrives as a site releases a patient: under a pseudonym's shape
# (CUR- and 16 base32), so that a platform's verified mode, which accepts nothing else, takes it.
PHANTOM_ID = "CUR-" + base64.b32encode(hashlib.sha256(b"curata QC phantom").digest()).decode()[:16]


def _dataset(spec: Spec, img: np.ndarray, index: int, position: np.ndarray, uids: Mapping[str, str]) -> Any:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = CTImageStorage if spec.modality == "CT" else MRImageStorage
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientAge = PHANTOM_ID, PHANTOM_ID, "O", "050Y"
    ds.QualityControlSubject = "YES"  # PS3.3 C.7.1.1: the subject is a quality control phantom
    ds.PatientIdentityRemoved = "YES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.Modality = spec.modality
    ds.SeriesDescription = spec.description
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "PHANTOM"
    ds.SeriesNumber, ds.InstanceNumber = 1, index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.ImageOrientationPatient = list(spec.orientation)
    ds.PixelSpacing = [spec.pixel_spacing, spec.pixel_spacing]
    ds.SliceThickness = spec.step
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    if spec.modality == "CT":
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024 + spec.hu_offset, 1
        stored = np.clip(np.round(img + 1024), -32768, 32767).astype(np.int16)
    else:
        ds.PixelRepresentation = 0
        stored = np.clip(np.round(img), 0, 65535).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    return ds


def build(
    spec: Spec, *, edit: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None
) -> list[Any]:
    """A clean series of ``spec``; ``edit(i, img, position)`` may change each slice's image."""
    rng = np.random.default_rng(spec.seed)
    o = np.asarray(spec.orientation, float)
    normal = np.cross(o[:3], o[3:])
    fov = spec.rows * spec.pixel_spacing
    origin = -fov / 2 * o[:3] - fov / 2 * o[3:]
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    out = []
    for i in range(spec.slices):
        z = i * spec.step
        pos = origin + normal * z
        img = _image(spec, z, rng)
        if edit is not None:
            img = edit(i, img, pos)
        out.append(_dataset(spec, img, i, pos, uids))
    return out


def _reposition(series: list[Any], positions: list[np.ndarray]) -> list[Any]:
    for ds, p in zip(series, positions, strict=True):
        ds.ImagePositionPatient = [round(float(v), 4) for v in p]
    return series


def _positions(series: list[Any]) -> list[np.ndarray]:
    return [np.asarray(ds.ImagePositionPatient, float) for ds in series]


# -- defects --------------------------------------------------------------------------------------------


def _missing(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    n = len(series)
    drop = {1: {n // 2}, 2: {n // 2, n // 2 + 1}, 3: {n // 4, n // 2, 3 * n // 4}}[int(sev)]
    return [ds for i, ds in enumerate(series) if i not in drop]


def _variable(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    pos = _positions(series)
    step = np.asarray(pos[1]) - np.asarray(pos[0])
    half = len(pos) // 2
    new = [pos[0] + step * i for i in range(half)]
    new += [new[-1] + step * sev * (j + 1) for j in range(len(pos) - half)]
    return _reposition(series, new)


def _irregular(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    pos = _positions(series)
    step = pos[1] - pos[0]
    pos[len(pos) // 2] = pos[len(pos) // 2] + step * sev
    return _reposition(series, pos)


def _duplicates(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    extra = []
    for k in range(int(sev)):
        src = series[(k * 7 + 3) % len(series)]
        dup = copy.deepcopy(src)
        dup.SOPInstanceUID = dup.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        extra.append(dup)
    return series + extra


def _rotate_x(orientation: tuple[float, ...], deg: float) -> list[float]:
    t = math.radians(deg)
    rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    o = np.asarray(orientation, float)
    return [round(float(v), 6) for v in (*(rot @ o[:3]), *(rot @ o[3:]))]


def _mixed_orientation(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    series[len(series) // 3].ImageOrientationPatient = _rotate_x(spec.orientation, sev)
    return series


def _mixed_size(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    small = Spec(**{**spec.__dict__, "rows": spec.rows // 2, "pixel_spacing": spec.pixel_spacing * 2})
    for k in range(int(sev)):
        i = (k * 5 + 2) % len(series)
        img = _image(small, i * spec.step, np.random.default_rng(k))
        repl = _dataset(small, img, i, np.asarray(series[i].ImagePositionPatient), _uids_of(series[i]))
        repl.PixelSpacing = series[i].PixelSpacing
        series[i] = repl
    return series


def _uids_of(ds: Any) -> dict[str, str]:
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID, "frame": ds.FrameOfReferenceUID}


def _mixed_spacing(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    for k in range(int(sev)):
        series[(k * 5 + 2) % len(series)].PixelSpacing = [spec.pixel_spacing * 1.1] * 2
    return series


def _localizer(spec: Spec, sev: float) -> list[Any]:
    kind = int(sev)
    if kind == 1:
        series = build(Spec(**{**spec.__dict__, "slices": 1}))
        series[0].ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        return series
    if kind == 2:
        return build(Spec(**{**spec.__dict__, "slices": 2, "description": "SCOUT"}))
    series = build(Spec(**{**spec.__dict__, "slices": 3, "description": "3-plane"}))
    series[1].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    series[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    return series


def _scout_in_series(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    for k in range(int(sev)):
        scout = copy.deepcopy(series[k])
        scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        scout.InstanceNumber = len(series) + k + 1
        series.append(scout)
    return series


def _oblique(spec: Spec, sev: float) -> list[Any]:
    return build(Spec(**{**spec.__dict__, "orientation": tuple(_rotate_x(spec.orientation, sev))}))


def _coronal(spec: Spec, sev: float) -> list[Any]:
    return build(Spec(**{**spec.__dict__, "orientation": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)}))


def _tilt(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    shift = spec.step * math.tan(math.radians(sev))
    pos = [p + np.array([0.0, shift * i, 0.0]) for i, p in enumerate(_positions(series))]
    if sev >= 10:
        for ds in series:
            ds.GantryDetectorTilt = sev
    return _reposition(series, pos)


def _header(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    kind = int(sev)
    if kind == 1:
        del series[len(series) // 2].ImagePositionPatient
    elif kind == 2:
        for ds in series:
            del ds.PixelSpacing
    else:
        for ds in series:
            ds.PixelSpacing = [0, 0]
    return series


def _truncation(spec: Spec, sev: float) -> list[Any]:
    return build(Spec(**{**spec.__dict__, "body_scale": sev}))


def _noise(spec: Spec, sev: float) -> list[Any]:
    return build(Spec(**{**spec.__dict__, "noise": sev}))


def _mr_snr(spec: Spec, sev: float) -> list[Any]:
    # sev is the planted SNR: mean body signal / sigma
    lab = _labels(spec, 0.0)
    mean_body = float(MR_VALUES[lab[lab > 0]].mean())
    return build(Spec(**{**spec.__dict__, "noise": mean_body / sev}))


def _ghost(spec: Spec, sev: float) -> list[Any]:
    def edit(i: int, img: np.ndarray, pos: np.ndarray) -> np.ndarray:
        shifted = np.roll(img, img.shape[0] // 2, axis=0)
        return img + sev * shifted

    return build(spec, edit=edit)


def _hu_offset(spec: Spec, sev: float) -> list[Any]:
    return build(Spec(**{**spec.__dict__, "hu_offset": sev}))


def _clipping(spec: Spec, sev: float) -> list[Any]:
    # sev: share of the body's pixels pushed to the top of the range
    lab = _labels(spec, 0.0)
    clean = CT_VALUES[lab[lab > 0]] + np.random.default_rng(1).normal(0, spec.noise, int((lab > 0).sum()))
    cap = float(np.round(np.quantile(clean, 1 - sev)))

    def edit(i: int, img: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return np.minimum(img, cap)

    return build(spec, edit=edit)


def _metal(spec: Spec, sev: float) -> list[Any]:
    n = spec.rows
    yy, xx = np.mgrid[0:n, 0:n]
    cy, cx = n // 2 + n // 10, n // 2 - n // 8
    r_px = max(2.0, 4.0 / spec.pixel_spacing)
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r_px**2
    theta = np.arctan2(yy - cy, xx - cx)
    rng = np.random.default_rng(spec.seed + 99)
    angles = rng.uniform(0, math.pi, 8)
    streaks = np.zeros((n, n))
    for k, a in enumerate(angles):
        d = np.abs(np.sin(theta - a)) * np.hypot(yy - cy, xx - cx)
        streaks += (1 if k % 2 else -1) * sev * np.exp(-(d**2) / 2.0)
    lo, hi = spec.slices // 3, spec.slices // 3 + 4

    def edit(i: int, img: np.ndarray, pos: np.ndarray) -> np.ndarray:
        if not lo <= i < hi:
            return img
        lab = _labels(spec, i * spec.step)
        out = img + streaks * (lab > 0)
        out[disk] = 3000.0
        return out

    return build(spec, edit=edit)


def _lossy(spec: Spec, sev: float) -> list[Any]:
    series = build(spec)
    for ds in series:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = sev
        ds.LossyImageCompressionMethod = "ISO_15444_1"
    return series


@dataclass
class Defect:
    name: str
    modality: str
    severities: tuple[float, ...]
    rules: tuple[str, ...]
    plant: Callable[[Spec, float], list[Any]]
    unit: str = ""
    below: tuple[float, ...] = ()  # severities under the rule's threshold: must NOT be flagged


DEFECTS: list[Defect] = [
    Defect(
        "missing_slices", "CT", (1, 2, 3), ("missing_slices",), _missing, "variant: 1 gap, 2 adjacent, 3 gaps"
    ),
    Defect(
        "irregular_spacing",
        "CT",
        (0.15, 0.3, 0.45),
        ("irregular_spacing",),
        _irregular,
        "slice moved, x step",
        below=(0.04,),
    ),
    Defect(
        "duplicate_positions", "CT", (1, 3, 8), ("duplicate_positions",), _duplicates, "duplicated slices"
    ),
    Defect(
        "mixed_orientation",
        "CT",
        (2, 10, 90),
        ("mixed_orientation",),
        _mixed_orientation,
        "deg",
        below=(0.2,),
    ),
    Defect("mixed_size", "CT", (1, 3, 10), ("mixed_size",), _mixed_size, "slices at half size"),
    Defect("mixed_pixel_spacing", "CT", (1, 3, 10), ("mixed_pixel_spacing",), _mixed_spacing, "slices"),
    Defect("localizer", "CT", (1, 2, 3), ("localizer",), _localizer, "variant: type, SCOUT, 3-plane"),
    Defect("localizer_in_series", "CT", (1, 2), ("localizer_in_series",), _scout_in_series, "scout images"),
    Defect("oblique", "CT", (12, 25, 40), ("oblique",), _oblique, "deg", below=(7,)),
    Defect("non_axial_ct", "CT", (1,), ("non_axial_ct",), _coronal, "coronal"),
    Defect("gantry_tilt", "CT", (2, 10, 20), ("gantry_tilt",), _tilt, "deg", below=(0.5,)),
    Defect("header_incomplete", "CT", (1, 2, 3), ("header_incomplete",), _header, "variant"),
    Defect(
        "fov_truncation",
        "CT",
        (1.35, 1.5, 1.8),
        ("fov_truncation",),
        _truncation,
        "body scale",
        below=(1.15,),
    ),
    Defect("ct_noise", "CT", (35, 60, 120), ("ct_noise",), _noise, "HU sigma", below=(25,)),
    Defect(
        "hu_calibration", "CT", (60, 120, -150), ("hu_calibration",), _hu_offset, "HU offset", below=(30, -30)
    ),
    Defect(
        "clipping", "CT", (0.01, 0.05, 0.2), ("clipping",), _clipping, "share of body clipped", below=(0.002,)
    ),
    Defect("metal_streaks", "CT", (300, 600, 1200), ("metal_streaks",), _metal, "streak HU", below=(0,)),
    Defect("lossy_compression", "CT", (8, 20, 40), ("lossy_compression",), _lossy, "ratio"),
    Defect("mr_low_snr", "MR", (4, 3, 2), ("mr_low_snr",), _mr_snr, "SNR", below=(7,)),
    Defect(
        "mr_ghosting", "MR", (0.08, 0.15, 0.3), ("mr_ghosting",), _ghost, "ghost amplitude", below=(0.02,)
    ),
]
# Not a defect, but must not be reported as missing slices: a long run of 2x steps after 1x steps.
VARIABLE_SPACING = Defect("variable_spacing", "CT", (2.0, 1.5), ("variable_spacing",), _variable, "step x")


def clean_specs(*, rows: int = 512, slices: int = 60, count: int = 8, seed: int = 0) -> list[Spec]:
    """Clean series of varied noise, step and field of view (CT and MR, axial; MR also sagittal)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        if k % 2 == 0:
            out.append(
                Spec(
                    "CT",
                    rows,
                    slices,
                    float(rng.choice([0.625, 1.0, 2.5, 5.0])),
                    float(rng.uniform(0.6, 0.9)),
                    float(rng.uniform(6, 22)),
                    seed=seed + k,
                )
            )
        else:
            orient = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0) if k % 4 == 1 else (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
            out.append(
                Spec(
                    "MR",
                    rows,
                    slices,
                    float(rng.choice([1.0, 3.0, 5.0])),
                    float(rng.uniform(0.5, 1.0)),
                    float(560.0 / rng.uniform(20, 60)),
                    seed=seed + k,
                    orientation=orient,
                )
            )
    return out


def make_series(
    defect: Defect, severity: float, *, rows: int = 512, slices: int = 60, seed: int = 0
) -> list[Any]:
    spec = Spec(
        defect.modality, rows, slices, 2.5, 0.75, 12.0 if defect.modality == "CT" else 14.0, seed=seed
    )
    return defect.plant(spec, severity)


def save(series: list[Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(series):
        ds.save_as(folder / f"IM{i:05d}.dcm", enforce_file_format=True)
    return folder
