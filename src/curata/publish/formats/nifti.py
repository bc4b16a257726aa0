"""NIfTI volumes and label maps from the stored DICOM of one series (and its DICOM-SEG, when one exists).

Image and label are built on the same slice order (instances sorted along the slice normal), so the label
map shares the image's grid and affine exactly. SimpleITK (ITK's GDCM reader) does the geometry.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from curata.errors import InputError


@dataclass
class SliceRef:
    sop_instance_uid: str
    blob_digest: str
    position: Sequence[float] | None
    orientation: Sequence[float] | None
    instance_number: int | None


@dataclass
class NiftiCase:
    image: bytes
    label: bytes | None = None
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    label_voxels: dict[int, int] = field(default_factory=dict)  # label value -> voxel count
    voxel_ml: float = 0.0
    stacks: int = 1  # stacks the series held (the first is released)


def sort_slices(slices: Sequence[SliceRef]) -> list[SliceRef]:
    """Order along the slice normal (falls back to instance number where geometry is missing)."""
    first = next((s for s in slices if s.orientation and len(s.orientation) == 6), None)
    if first is None or any(s.position is None for s in slices):
        return sorted(slices, key=lambda s: (s.instance_number or 0, s.sop_instance_uid))
    o = np.asarray(first.orientation, dtype=float)
    normal = np.cross(o[:3], o[3:])
    return sorted(
        slices, key=lambda s: (float(np.dot(normal, np.asarray(s.position, dtype=float))), s.sop_instance_uid)
    )


def _materialize(store: Any, digest: str, tmp: Path) -> str:
    """A local path for a blob; ITK needs files. Local stores lend theirs, others are copied out."""
    local = store.local_path(digest)
    link = tmp / f"{digest}.dcm"
    if local is not None and Path(local).exists():
        os.symlink(local, link)
    else:
        link.write_bytes(store.get_bytes(digest))
    return str(link)


def _write_nifti(img: sitk.Image, tmp: Path, name: str) -> bytes:
    path = tmp / name
    sitk.WriteImage(img, str(path), useCompression=True)
    return path.read_bytes()


def _read_series(store: Any, ordered: Sequence[SliceRef], tmp: Path) -> sitk.Image:
    files = [_materialize(store, s.blob_digest, tmp) for s in ordered]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"ITK cannot read the series as a volume: {str(exc).strip()[:200]}") from exc


def _label_image(
    store: Any, ordered: Sequence[SliceRef], img: sitk.Image, seg_digests: Sequence[str]
) -> sitk.Image:
    labels = np.zeros(sitk.GetArrayViewFromImage(img).shape[:3], dtype=np.uint8)
    uids = [s.sop_instance_uid for s in ordered]
    for digest in seg_digests:
        labels = np.maximum(labels, seg_label_array(store.get_bytes(digest), uids, labels.shape))
    label_img = sitk.GetImageFromArray(labels)
    label_img.SetOrigin(img.GetOrigin())
    label_img.SetSpacing(img.GetSpacing())
    label_img.SetDirection(img.GetDirection())
    return label_img


def _count(case: NiftiCase, label_img: sitk.Image) -> None:
    labels = sitk.GetArrayViewFromImage(label_img)
    if labels.dtype == np.uint8:  # one counting pass; np.unique sorts every voxel of the volume
        counts = np.bincount(labels.ravel(), minlength=1)
        values = np.flatnonzero(counts)
        counts = counts[values]
    else:
        values, counts = np.unique(labels, return_counts=True)
    case.label_voxels = {int(v): int(c) for v, c in zip(values, counts, strict=True) if v}


def series_to_nifti(store: Any, slices: Sequence[SliceRef], seg_digests: Sequence[str] = ()) -> NiftiCase:
    """The series as a .nii.gz volume and, given DICOM-SEG blobs that reference it, a label map.

    The volume comes from ``curata.preprocess.convert`` (lossless, exact affine, tilt, gaps, 4D and
    enhanced multi-frame handled; checked against dcm2niix) and the label map is resampled onto its
    grid; where the converter cannot read a series (e.g. colour), ITK converts both on one grid.
    """
    if not slices:
        raise InputError("series has no instances to convert")
    from curata.preprocess import convert_series
    from curata.publish.formats.pipeline import nifti_gz, reference_image

    with tempfile.TemporaryDirectory(prefix="curata-nifti-") as tmpdir:
        tmp = Path(tmpdir)
        files = [Path(_materialize(store, s.blob_digest, tmp)) for s in sort_slices(slices)]
        try:
            pieces = convert_series(files)
        except InputError:
            raise
        except Exception:  # a case the converter does not handle (e.g. colour): ITK may still read it
            return itk_series_to_nifti(store, slices, seg_digests)
    _name, volume = pieces[0]
    spacing = tuple(float(v) for v in volume.spacing)
    case = NiftiCase(
        image=nifti_gz(volume),
        shape=tuple(volume.shape),
        spacing=spacing,
        voxel_ml=float(abs(np.linalg.det(volume.affine[:3, :3]))) / 1000.0,
        stacks=len(pieces),
    )
    if seg_digests:
        case.label, case.label_voxels = label_on_grid(store, slices, seg_digests, reference_image(volume))
    return case


def itk_series_to_nifti(store: Any, slices: Sequence[SliceRef], seg_digests: Sequence[str] = ()) -> NiftiCase:
    """ITK reads image and label on one grid (used where ``curata.preprocess`` is not installed)."""
    ordered = sort_slices(slices)
    with tempfile.TemporaryDirectory(prefix="curata-nifti-") as tmpdir:
        tmp = Path(tmpdir)
        img = _read_series(store, ordered, tmp)
        spacing = tuple(float(v) for v in img.GetSpacing())
        case = NiftiCase(
            image=_write_nifti(img, tmp, "image.nii.gz"),
            shape=tuple(img.GetSize()),
            spacing=spacing,
            voxel_ml=float(np.prod(spacing[:3])) / 1000.0,
        )
        if seg_digests:
            label_img = _label_image(store, ordered, img, seg_digests)
            case.label = _write_nifti(label_img, tmp, "label.nii.gz")
            _count(case, label_img)
    return case


def label_on_grid(
    store: Any, slices: Sequence[SliceRef], seg_digests: Sequence[str], reference: sitk.Image
) -> tuple[bytes, dict[int, int]]:
    """The SEG label map resampled (nearest neighbour) onto another grid, e.g. a pre-processed volume."""
    ordered = sort_slices(slices)
    with tempfile.TemporaryDirectory(prefix="curata-nifti-") as tmpdir:
        tmp = Path(tmpdir)
        img = _read_series(store, ordered, tmp)
        label_img = _label_image(store, ordered, img, seg_digests)
        moved = sitk.Resample(
            label_img, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )
        case = NiftiCase(image=b"")
        _count(case, moved)
        return _write_nifti(moved, tmp, "label.nii.gz"), case.label_voxels


def seg_label_array(seg_bytes: bytes, source_uids: Sequence[str], shape: tuple[int, ...]) -> np.ndarray:
    """A DICOM-SEG as segment numbers on the source slices, in the order of ``source_uids``."""
    import io

    import highdicom as hd
    import pydicom

    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(seg_bytes)))
    referenced = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    wanted = [u for u in source_uids if u in referenced]
    out = np.zeros(shape, dtype=np.uint8)
    if not wanted:
        return out
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=wanted,
        combine_segments=True,
        skip_overlap_checks=True,
        assert_missing_frames_are_empty=True,
    )
    index = {u: i for i, u in enumerate(source_uids)}
    for j, uid in enumerate(wanted):
        out[index[uid]] = pixels[j].astype(np.uint8)
    return out


def seg_labels(seg_bytes: bytes) -> dict[int, str]:
    """Segment number -> label of a DICOM-SEG (header only)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(seg_bytes), stop_before_pixels=True)
    return {int(item.SegmentNumber): str(item.SegmentLabel) for item in ds.get("SegmentSequence", [])}


def seg_referenced_series(seg_bytes: bytes) -> set[str]:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(seg_bytes), stop_before_pixels=True)
    out = {str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", [])}
    return out
