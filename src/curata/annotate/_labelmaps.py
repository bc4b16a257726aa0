"""Label maps on a series' image grid: the grid from the catalog, reads converted onto it (DICOM SEG,
NIfTI, NRRD, RTSTRUCT), label maps stored as compressed npz, and DICOM SEG written back.

A label map is a ``uint16`` array (slices, rows, columns) in the order of the series' instances
sorted along the slice normal; its values are the schema's label values (0 = background).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curata.errors import InputError, decoding

GRID_TOLERANCE_MM = 0.05


@dataclass(frozen=True)
class SeriesGrid:
    """The physical grid of one series: instance order, shape and the voxel-to-patient (LPS) affine."""

    series_uid: str
    sop_uids: tuple[str, ...]
    shape: tuple[int, int, int]  # slices, rows, columns
    affine: np.ndarray  # 4x4: (slice, row, column, 1) -> LPS mm

    @property
    def spacing(self) -> tuple[float, float, float]:
        cols = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(cols[0]), float(cols[1]), float(cols[2])

    def ras_affine(self) -> np.ndarray:
        """The affine a NIfTI file of this grid carries (RAS), for arrays indexed (column, row, slice)."""
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        swap = np.zeros((4, 4))
        swap[0, 2] = swap[1, 1] = swap[2, 0] = swap[3, 3] = (
            1.0  # (column, row, slice) -> (slice, row, column)
        )
        return flip @ self.affine @ swap


def grid_from_rows(
    series_uid: str,
    rows: int,
    columns: int,
    pixel_spacing: tuple[float, float],
    instances: list[tuple[str, list[float], list[float]]],
) -> SeriesGrid:
    """The grid from catalog rows: ``instances`` holds (SOP UID, ImagePositionPatient, ImageOrientationPatient)."""
    usable = [i for i in instances if i[1] and i[2]]
    if not usable:
        raise InputError(f"series {series_uid} has no image positions", hint="is it an image series?")
    ori = np.asarray(usable[0][2], dtype=float)
    row_dir, col_dir = ori[:3], ori[3:]
    normal = np.cross(row_dir, col_dir)
    ordered = sorted(usable, key=lambda i: float(np.dot(normal, np.asarray(i[1], dtype=float))))
    pos = np.array([i[1] for i in ordered], dtype=float)
    step = pos[1] - pos[0] if len(pos) > 1 else normal * 1.0
    dr, dc = pixel_spacing  # row spacing (between rows), column spacing (between columns)
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = col_dir * dr  # moving along rows: down the column direction
    affine[:3, 2] = row_dir * dc
    affine[:3, 3] = pos[0]
    return SeriesGrid(series_uid, tuple(i[0] for i in ordered), (len(ordered), rows, columns), affine)


# -- storage ---------------------------------------------------------------------------------------


def labelmap_bytes(labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=labels.astype(np.uint16))
    return buf.getvalue()


def labelmap_from_bytes(data: bytes) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data)) as npz:
            return np.asarray(npz["labels"])
    except Exception as exc:  # not an npz, cut short, or without its array: numpy's errors vary
        raise InputError(
            f"the stored label map cannot be read ({type(exc).__name__})",
            hint="its blob is damaged; `curata store verify` checks the store",
        ) from exc


# -- readers of the formats ------------------------------------------------------------------------


def _to_grid(data: np.ndarray, affine_lps: np.ndarray, grid: SeriesGrid, what: str) -> np.ndarray:
    """Reorder ``data`` (any axis order/flips, voxel->LPS ``affine_lps``) onto ``grid``: only axis
    permutations and flips are undone; any other difference is an error (resampling is not a read)."""
    if data.ndim != 3:
        raise InputError(f"{what}: a label map must be 3-D, got {data.ndim}-D")
    # for each grid axis, the data axis that runs along it
    g_dirs = grid.affine[:3, :3] / np.linalg.norm(grid.affine[:3, :3], axis=0)
    d_dirs = affine_lps[:3, :3] / np.linalg.norm(affine_lps[:3, :3], axis=0)
    dots = g_dirs.T @ d_dirs  # [grid axis, data axis]
    perm = [int(np.argmax(np.abs(dots[g]))) for g in range(3)]
    if sorted(perm) != [0, 1, 2] or np.any(np.abs(np.abs(dots[range(3), perm]) - 1) > 1e-3):
        raise InputError(
            f"{what}: its axes are not those of the series", hint="resample it onto the image grid"
        )
    out = np.transpose(data, perm)
    aff = affine_lps[:, [*perm, 3]]
    for g in range(3):
        if dots[g, perm[g]] < 0:
            out = np.flip(out, axis=g)
            n = out.shape[g]
            aff = aff.copy()
            aff[:3, 3] = aff[:3, 3] + aff[:3, g] * (n - 1)
            aff[:3, g] = -aff[:3, g]
    if out.shape != grid.shape:
        raise InputError(
            f"{what}: shape {out.shape} is not the series' {grid.shape}", hint="export it on the image grid"
        )
    if np.abs(aff - grid.affine).max() > GRID_TOLERANCE_MM:
        raise InputError(
            f"{what}: its grid is not the series' grid (origin or spacing differ)",
            hint="resample it onto the image grid",
        )
    return np.ascontiguousarray(out)


def read_nifti(path: Path, grid: SeriesGrid) -> np.ndarray:
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise InputError(f"not a readable NIfTI file ({exc.__class__.__name__})") from exc
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    return _check_values(_to_grid(data, ras_to_lps @ img.affine, grid, "the NIfTI file"), "the NIfTI file")


def read_nrrd(path: Path, grid: SeriesGrid) -> np.ndarray:
    import nrrd

    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:
        raise InputError(f"not a readable NRRD file ({exc.__class__.__name__})") from exc
    dirs = np.asarray(header.get("space directions"), dtype=float)
    origin = np.asarray(header.get("space origin", [0, 0, 0]), dtype=float)
    if dirs.shape != (3, 3):
        raise InputError("NRRD without 3-D space directions")
    affine = np.eye(4)
    affine[:3, :3] = dirs.T
    affine[:3, 3] = origin
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space in ("right-anterior-superior", "ras"):
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    return _check_values(_to_grid(data, affine, grid, "the NRRD file"), "the NRRD file")


def _check_values(labels: np.ndarray, what: str) -> np.ndarray:
    if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
        raise InputError(f"{what}: label values must be whole numbers")
    if labels.min() < 0 or labels.max() > 65535:
        raise InputError(f"{what}: label values must lie in 0..65535")
    return labels.astype(np.uint16)


def read_seg(ds: Any, grid: SeriesGrid, value_of_segment: dict[int, int]) -> np.ndarray:
    """A DICOM Segmentation onto the grid; ``value_of_segment`` maps segment numbers to label values."""
    import highdicom as hd

    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (AttributeError, KeyError, ValueError):  # e.g. OHIF's frames carry no FrameContentSequence
        return _read_seg_frames(ds, grid, value_of_segment)
    out = np.zeros(grid.shape, dtype=np.uint16)
    index = {uid: i for i, uid in enumerate(grid.sop_uids)}
    referenced = [uid for uid in grid.sop_uids if uid in set(_seg_sources(seg))]
    if not referenced:
        raise InputError(
            "the SEG references no instance of the task's series", hint="segment the task's series"
        )
    numbers = sorted(value_of_segment)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=referenced, segment_numbers=numbers, combine_segments=False
    )
    for k, uid in enumerate(referenced):
        for j, number in enumerate(numbers):
            out[index[uid]][pixels[k, :, :, j] > 0] = value_of_segment[number]
    return out


def _read_seg_frames(ds: Any, grid: SeriesGrid, value_of_segment: dict[int, int]) -> np.ndarray:
    """A SEG read frame by frame, each frame placed by the source image it derives from (what a
    viewer's SEG always states): BINARY/FRACTIONAL frames hold one segment, LABELMAP frames hold
    segment numbers as pixel values."""
    index = {uid: i for i, uid in enumerate(grid.sop_uids)}
    with decoding("the SEG's pixel data"):
        pixels = np.asarray(ds.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.shape[1:] != tuple(grid.shape[1:]):
        raise InputError(f"the SEG's frames are {pixels.shape[1:]}, the series' slices {grid.shape[1:]}")
    labelmap = str(getattr(ds, "SegmentationType", "")).upper() == "LABELMAP"
    out = np.zeros(grid.shape, dtype=np.uint16)
    placed = 0
    for frame, item in zip(pixels, getattr(ds, "PerFrameFunctionalGroupsSequence", []), strict=False):
        try:
            source = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        except (AttributeError, IndexError):
            raise InputError("a SEG frame names no source image", hint="segment the task's series") from None
        if source not in index:
            continue
        placed += 1
        if labelmap:
            for number, value in value_of_segment.items():
                out[index[source]][frame == number] = value
        else:
            number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            if number in value_of_segment:
                out[index[source]][frame > 0] = value_of_segment[number]
    if not placed:
        raise InputError(
            "the SEG references no instance of the task's series", hint="segment the task's series"
        )
    return out


def _seg_sources(seg: Any) -> list[str]:
    uids: list[str] = []
    for item in getattr(seg, "ReferencedSeriesSequence", []):
        uids.extend(str(i.ReferencedSOPInstanceUID) for i in getattr(item, "ReferencedInstanceSequence", []))
    return uids


def read_rtstruct(ds: Any, grid: SeriesGrid, value_of_roi: dict[str, int]) -> np.ndarray:
    """RTSTRUCT contours (CLOSED_PLANAR) filled on the grid's slices; ROIs named in ``value_of_roi``."""
    from skimage.draw import polygon

    names = {int(r.ROINumber): str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", [])}
    out = np.zeros(grid.shape, dtype=np.uint16)
    inv = np.linalg.inv(grid.affine)
    for roi in getattr(ds, "ROIContourSequence", []):
        value = value_of_roi.get(names.get(int(roi.ReferencedROINumber), ""))
        if value is None:
            continue
        for contour in getattr(roi, "ContourSequence", []):
            pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            ijk = (inv @ np.c_[pts, np.ones(len(pts))].T)[:3].T
            s = round(float(ijk[:, 0].mean()))
            if not 0 <= s < grid.shape[0] or np.abs(ijk[:, 0] - s).max() > 0.5:
                raise InputError("an RTSTRUCT contour does not lie on a slice of the series")
            rr, cc = polygon(ijk[:, 1], ijk[:, 2], shape=grid.shape[1:])
            plane = out[s]
            plane[rr, cc] = np.where(plane[rr, cc] == value, 0, value)  # holes: even-odd rule
    return out
