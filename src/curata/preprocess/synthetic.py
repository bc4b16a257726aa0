"""Small real DICOM series built with pydicom, for tests, benchmarks and the demo.

Every geometric hard case of conversion (tilt, uneven spacing, gaps, flips, several stacks, 4D,
enhanced multi-frame) is a choice of per-slice positions and orientations here, so a test can
write the case, run both converters and compare against the geometry it asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _ds_str(value: float) -> str:
    """A DS value: at most 16 characters, as precise as that allows."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= 16:
            return text
    return f"{value:.6g}"


@dataclass
class SliceSpec:
    """One 2D image: its pixels (rows x columns, stored values) and where it sits (LPS, mm)."""

    pixels: np.ndarray
    position: Sequence[float]
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    extra: dict[str, object] = field(default_factory=dict)


def phantom(shape: tuple[int, int, int], *, seed: int = 0, dtype: str = "int16") -> np.ndarray:
    """A (slices, rows, columns) volume with structure in every axis, so any flip or shift shows."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    base = 5 * x + 3 * y + 11 * z + rng.integers(0, 7, size=shape)
    info = np.iinfo(dtype)
    return np.clip(base + (0 if info.min == 0 else -200), info.min, info.max).astype(dtype)


def body_phantom(shape: tuple[int, int, int], *, center_shift: Sequence[float] = (0, 0, 0)) -> np.ndarray:
    """A smooth, asymmetric 'body' (ellipsoid with inner blobs), float32, for registration tests."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(
        np.arange(nz) - nz / 2 - center_shift[0],
        np.arange(ny) - ny / 2 - center_shift[1],
        np.arange(nx) - nx / 2 - center_shift[2],
        indexing="ij",
    )
    body = ((x / (0.42 * nx)) ** 2 + (y / (0.32 * ny)) ** 2 + (z / (0.4 * nz)) ** 2) < 1
    img = np.where(body, 100.0, -1000.0)
    for cz, cy, cx, r, v in (
        (0.1, -0.1, 0.15, 0.12, 400.0),
        (-0.15, 0.12, -0.2, 0.09, -300.0),
        (0.2, 0.1, 0.05, 0.07, 900.0),
    ):
        blob = ((x - cx * nx) ** 2 + (y - cy * ny) ** 2 + (z - cz * nz) ** 2) < (r * min(shape)) ** 2
        img = np.where(blob & body, v, img)
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(img, 1.0).astype(np.float32)


def write_series(
    folder: Path,
    slices: Sequence[SliceSpec],
    *,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    slice_thickness: float = 2.0,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = "PHANTOM1",
    series_description: str = "phantom",
    series_number: int = 1,
    gantry_tilt: float | None = None,
    shuffle_seed: int | None = 0,
    study_date: str = "20240101",
) -> list[Path]:
    """Write one classic (single-frame) DICOM file per slice; file order shuffled like a real export."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or str(generate_uid())
    study_uid = study_uid or str(generate_uid())
    frame_uid = generate_uid()
    order = list(range(len(slices)))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    paths = []
    for number, index in enumerate(order):
        spec = slices[index]
        ds = _base_dataset(CT_IMAGE if modality == "CT" else MR_IMAGE, modality, patient_id, study_uid)
        ds.StudyDate = ds.SeriesDate = study_date
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [_ds_str(v) for v in spec.position]
        ds.ImageOrientationPatient = [_ds_str(v) for v in spec.orientation]
        ds.PixelSpacing = [_ds_str(v) for v in pixel_spacing]
        ds.SliceThickness = _ds_str(slice_thickness)
        if modality == "CT":
            ds.RescaleSlope = _ds_str(slope)
            ds.RescaleIntercept = _ds_str(intercept)
            ds.RescaleType = "HU"
            ds.KVP = "120"
        else:
            ds.MagneticFieldStrength = "3"
            ds.RepetitionTime = "2000"
            ds.EchoTime = "30"
        if gantry_tilt is not None:
            ds.GantryDetectorTilt = _ds_str(gantry_tilt)
        for key, value in spec.extra.items():
            setattr(ds, key, value)
        _set_pixels(ds, spec.pixels)
        path = folder / f"IM{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _base_dataset(sop_class: str, modality: str, patient_id: str, study_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = "Phantom^One"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.Manufacturer = "Curata"
    return ds


def _set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    arr = np.ascontiguousarray(pixels)
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if arr.dtype == np.int16 else 0
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def axial_slices(
    volume: np.ndarray,
    *,
    origin: Sequence[float] = (-100.0, -120.0, 50.0),
    spacing: float = 2.5,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    offsets: Sequence[float] | None = None,
    shear: Sequence[float] = (0.0, 0.0, 0.0),
) -> list[SliceSpec]:
    """Slices of ``volume`` (slices, rows, cols) stepping along the orientation normal.

    ``offsets`` gives each slice's distance from the first along the normal (default: even
    ``spacing``); ``shear`` adds a per-slice in-plane shift (gantry tilt) in LPS mm per mm of offset.
    """
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    if offsets is None:
        offsets = [k * spacing for k in range(volume.shape[0])]
    out = []
    for k, d in enumerate(offsets):
        pos = np.asarray(origin, float) + d * normal + d * np.asarray(shear, float)
        out.append(SliceSpec(volume[k], tuple(pos), tuple(orientation)))
    return out


def write_enhanced(
    path: Path,
    volume: np.ndarray,
    *,
    modality: str = "CT",
    origin: Sequence[float] = (-100.0, -120.0, 50.0),
    spacing: float = 2.5,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    temporal: int = 1,
    slice_major_dimensions: bool = False,
) -> Path:
    """One enhanced (multi-frame) CT or MR object; ``temporal`` > 1 repeats the stack as time points.

    ``volume`` is (time x slices, rows, cols), time-major. Frames are stored time-major, or
    slice-major (all time points of a slice together) with ``slice_major_dimensions``.
    """
    sop = ENHANCED_CT if modality == "CT" else ENHANCED_MR
    ds = _base_dataset(sop, modality, "PHANTOM1", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 7
    ds.SeriesDescription = f"enhanced {modality}"
    ds.FrameOfReferenceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    nz = volume.shape[0] // temporal
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [_ds_str(v) for v in orientation]
    shared.PlaneOrientationSequence = DicomSequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [_ds_str(v) for v in pixel_spacing]
    measures.SliceThickness = _ds_str(spacing)
    shared.PixelMeasuresSequence = DicomSequence([measures])
    transform = Dataset()
    transform.RescaleSlope = _ds_str(slope)
    transform.RescaleIntercept = _ds_str(intercept)
    transform.RescaleType = "HU" if modality == "CT" else "US"
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    order = []
    for index in range(volume.shape[0]):
        t, k = divmod(index, nz) if not slice_major_dimensions else divmod(index, temporal)[::-1]
        order.append(t * nz + k)
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [_ds_str(v) for v in np.asarray(origin) + k * spacing * normal]
        item.PlanePositionSequence = DicomSequence([plane])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.TemporalPositionIndex = t + 1
        content.StackID = "1"
        content.DimensionIndexValues = [1, k + 1, t + 1] if slice_major_dimensions else [1, t + 1, k + 1]
        item.FrameContentSequence = DicomSequence([content])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    dims = []
    pointers = ["StackID", "TemporalPositionIndex", "InStackPositionNumber"]
    if slice_major_dimensions:
        pointers[1:] = pointers[2:0:-1]
    for pointer in pointers:
        dim = Dataset()
        dim.DimensionIndexPointer = pydicom.datadict.tag_for_keyword(pointer)
        dim.FunctionalGroupPointer = pydicom.datadict.tag_for_keyword("FrameContentSequence")
        dims.append(dim)
    ds.DimensionIndexSequence = DicomSequence(dims)
    ds.NumberOfFrames = volume.shape[0]
    _set_pixels(ds, volume[order])
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def read_back(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def moved_phantom(
    volume: np.ndarray,
    spacing: float,
    *,
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0),
    translation_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """``volume`` (slices, rows, cols) seen after a rigid move about its centre: a follow-up scan."""
    import math

    import SimpleITK as sitk

    img = sitk.GetImageFromArray(volume)
    img.SetSpacing([spacing] * 3)
    t = sitk.Euler3DTransform()
    t.SetCenter(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()]))
    t.SetRotation(*(math.radians(a) for a in rotation_deg))
    t.SetTranslation(tuple(float(v) for v in translation_mm))
    out = sitk.Resample(img, img, t, sitk.sitkLinear, float(volume.min()))
    return sitk.GetArrayFromImage(out)


def write_ct_volume(
    folder: Path,
    hu: np.ndarray,
    *,
    spacing: float,
    patient_id: str,
    study_date: str = "20240101",
    series_description: str = "CT chest",
    origin: Sequence[float] = (-100.0, -120.0, 50.0),
) -> list[Path]:
    """A CT series of ``hu`` (slices, rows, cols, Hounsfield units) stored with intercept -1024."""
    stored = np.clip(np.rint(hu + 1024), -32768, 32767).astype(np.int16)
    slices = axial_slices(stored, origin=origin, spacing=spacing)
    paths = write_series(
        folder,
        slices,
        pixel_spacing=(spacing, spacing),
        slice_thickness=spacing,
        patient_id=patient_id,
        series_description=series_description,
        shuffle_seed=None,
        study_uid=_study_uid(patient_id, study_date),
        study_date=study_date,
    )
    return paths


def _study_uid(patient_id: str, date: str) -> str:
    import hashlib

    return "2.25." + str(int(hashlib.sha256(f"{patient_id}/{date}".encode()).hexdigest()[:30], 16))
