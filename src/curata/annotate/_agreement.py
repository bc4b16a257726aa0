"""Agreement between two label maps on one physical grid: overlap, surface distances, detection, kappa.

Surface distances come in the two conventions the field uses, each matching its reference:

- ``surfel`` (default): surface elements on the voxel-corner grid, weighted by their area in mm²
  (marching-cubes cases, as DeepMind's ``surface-distance``); HD95 is the area-weighted percentile.
- ``voxel``: boundary voxels (mask minus its 6-connected erosion), each weighing the same, as MONAI's
  ``compute_hausdorff_distance`` / ``compute_average_surface_distance``; HD95 interpolates linearly.

Both references run a distance transform over the whole bounding box (DeepMind) or a KD-tree over
every boundary voxel (MONAI). Here the distance transform is restricted to a band of ``MARGIN``
voxels around the two surfaces and evaluated only at surface points: the band's offsets are
visited in order of their length in mm, and the first one that lands on the other surface gives a
point its exact distance (most points are 0 or 1 offset away). The few points farther than the
band (a missed lesion) fall back to an exact KD-tree query. Surfaces are found on masks packed
eight voxels to a byte, so the full volume is read only once per mask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

Convention = Literal["surfel", "voxel"]

MARGIN = 6  # voxels (of the finest axis) searched around each surface point

_BITS = (  # the bit of each corner of a 2x2x2 neighbourhood, as the reference encodes them
    ((0, 0, 0), 128),
    ((0, 0, 1), 64),
    ((0, 1, 0), 32),
    ((0, 1, 1), 16),
    ((1, 0, 0), 8),
    ((1, 0, 1), 4),
    ((1, 1, 0), 2),
    ((1, 1, 1), 1),
)


@lru_cache(maxsize=1)
def _normals() -> list[np.ndarray]:
    data = json.loads((Path(__file__).parent / "_standard" / "surfel_normals.json").read_text())
    return [np.asarray(n, dtype=np.float64).reshape(-1, 3) for n in data["normals"]]


@lru_cache(maxsize=64)
def surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area (mm²) of the surface crossing each of the 256 neighbour codes at ``spacing``."""
    s0, s1, s2 = spacing
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.array([float(np.linalg.norm(n * scale, axis=1).sum()) for n in _normals()])


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each surface element of ``a`` to surface ``b`` and back, sorted, with the
    weight of each element (area in mm² for ``surfel``, 1 for ``voxel``)."""

    a_to_b: np.ndarray
    b_to_a: np.ndarray
    weight_a: np.ndarray
    weight_b: np.ndarray
    convention: str

    def hd(self, percentile: float = 95.0) -> float:
        """Robust (percentile) Hausdorff distance: the larger of the two directed percentiles."""
        return max(
            self._percentile(self.a_to_b, self.weight_a, percentile),
            self._percentile(self.b_to_a, self.weight_b, percentile),
        )

    def _percentile(self, d: np.ndarray, w: np.ndarray, percentile: float) -> float:
        if d.size == 0:
            return float("inf")
        if self.convention == "voxel":
            return float(np.percentile(d, percentile))
        cum = np.cumsum(w) / np.sum(w)
        idx = int(np.searchsorted(cum, percentile / 100.0))
        return float(d[min(idx, d.size - 1)])

    def assd(self) -> float:
        """Average symmetric surface distance: every element of both surfaces, weighted."""
        total = np.sum(self.weight_a) + np.sum(self.weight_b)
        if self.a_to_b.size == 0 or self.b_to_a.size == 0:
            return float("inf")
        return float((np.sum(self.a_to_b * self.weight_a) + np.sum(self.b_to_a * self.weight_b)) / total)

    def directed_means(self) -> tuple[float, float]:
        """Mean distance a->b and b->a (the reference's ``compute_average_surface_distance``)."""
        ab = (
            float(np.sum(self.a_to_b * self.weight_a) / np.sum(self.weight_a)) if self.a_to_b.size else np.inf
        )
        ba = (
            float(np.sum(self.b_to_a * self.weight_b) / np.sum(self.weight_b)) if self.b_to_a.size else np.inf
        )
        return ab, ba

    def surface_dice(self, tolerance_mm: float) -> float:
        """Share of both surfaces (by weight) within ``tolerance_mm`` of the other surface."""
        total = np.sum(self.weight_a) + np.sum(self.weight_b)
        if total == 0:
            return float("nan")
        near = np.sum(self.weight_a[self.a_to_b <= tolerance_mm]) + np.sum(
            self.weight_b[self.b_to_a <= tolerance_mm]
        )
        return float(near / total)


def _bbox(*masks: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of the union of ``masks``, from projections (two passes over each mask)."""
    lo, hi = [np.inf] * 3, [-np.inf] * 3
    for m in masks:
        zs = np.flatnonzero(m.any(axis=(1, 2)))
        if zs.size == 0:
            continue
        plane = np.asarray(m[zs[0] : zs[-1] + 1].any(axis=0))
        ys, xs = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
        for k, v in enumerate((zs, ys, xs)):
            lo[k], hi[k] = min(lo[k], v[0]), max(hi[k], v[-1])
    if not np.isfinite(lo[0]):
        return None
    return tuple(slice(int(lo[k]), int(hi[k]) + 1) for k in range(3))


def _padded(mask: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The crop with one voxel of background on every side."""
    crop = mask[box]
    out = np.zeros(tuple(n + 2 for n in crop.shape), dtype=bool)
    out[1:-1, 1:-1, 1:-1] = crop
    return out


def _surfels(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surface corners of the padded crop ``p`` (C order) and their neighbour codes.

    A corner is on the surface when its 2x2x2 neighbourhood is mixed: the OR of its eight voxels
    differs from their AND. Both are separable and run on the mask packed eight voxels to a byte
    (along the last axis, where a pair is a one-bit shift), so the full volume is read once; the
    codes are then gathered at the surface corners only.
    """
    packed = np.packbits(p, axis=2)
    o = packed[:-1] | packed[1:]
    n = packed[:-1] & packed[1:]
    o = o[:, :-1] | o[:, 1:]
    n = n[:, :-1] & n[:, 1:]

    def pair(x: np.ndarray) -> np.ndarray:  # bit of corner x -> bits of voxels x and x+1
        nxt = np.zeros_like(x)
        nxt[..., :-1] = x[..., 1:]
        return (x << 1) | (nxt >> 7)

    mixed = (o | pair(o)) & ~(n & pair(n))
    pts = _packed_points(mixed)
    n1, n2 = p.shape[1], p.shape[2]
    base = (pts[:, 0] * n1 + pts[:, 1]) * n2 + pts[:, 2]
    vox = p.ravel()
    code = np.zeros(len(pts), dtype=np.uint8)
    for (a, b, c), weight in _BITS:
        code[vox[base + (a * n1 + b) * n2 + c]] |= np.uint8(weight)
    return pts, code


def _packed_points(packed: np.ndarray) -> np.ndarray:
    """Indices (N x 3, C order) of the set bits of a mask packed along its last axis."""
    nb = packed.shape[2]
    flat = packed.ravel()
    nz = np.flatnonzero(flat)
    bi, bit = np.nonzero(np.unpackbits(flat[nz][:, None], axis=1))
    zy, x = np.divmod(nz[bi], nb)
    z, y = np.divmod(zy, packed.shape[1])
    return np.stack([z, y, x * 8 + bit], axis=1)


def _edge_voxels(p: np.ndarray) -> np.ndarray:
    """Boundary voxels (N x 3, indices in the unpadded crop) of the padded crop ``p``: the mask minus
    its 6-connected erosion, computed on the mask packed eight voxels to a byte."""
    q = np.packbits(p, axis=2)
    core = q[1:-1, 1:-1]
    nxt = np.zeros_like(core)
    nxt[..., :-1] = core[..., 1:]
    prv = np.zeros_like(core)
    prv[..., 1:] = core[..., :-1]
    eroded = core & q[:-2, 1:-1] & q[2:, 1:-1] & q[1:-1, :-2] & q[1:-1, 2:]
    eroded &= (core << 1) | (nxt >> 7)  # voxel x+1
    eroded &= (core >> 1) | (prv << 7)  # voxel x-1
    pts = _packed_points(core & ~eroded)
    pts[:, 2] -= 1  # the packed axis kept its padding column
    return pts


@lru_cache(maxsize=64)
def _offsets(spacing: tuple[float, float, float], radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel offset within ``radius_mm``, sorted by its length in mm (the search order)."""
    reach = [int(np.floor(radius_mm / s)) for s in spacing]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), axis=-1).reshape(
        -1, 3
    )
    length = np.sqrt(((grid * np.asarray(spacing)) ** 2).sum(axis=1))
    keep = length <= radius_mm
    grid, length = grid[keep], length[keep]
    order = np.argsort(length, kind="stable")
    return grid[order], length[order]


def _nearest(
    points: np.ndarray, target_points: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray
) -> np.ndarray:
    """Exact Euclidean distance (mm) from each of ``points`` (N x 3 voxel indices) to the nearest of
    ``target_points`` (on a grid of ``shape``).

    The distance transform is evaluated only at the query points and only within a band of
    ``MARGIN`` voxels: the offsets of the band are visited in order of their length, so the first
    offset that lands on a target point gives a point its exact distance. Points with no target voxel in
    the band (a missed lesion) get theirs from a KD-tree over the target.
    """
    out = np.full(len(points), np.inf)
    if len(points) == 0 or len(target_points) == 0:
        return out
    sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    offs, lengths = _offsets(sp, MARGIN * min(sp))
    pad = np.abs(offs).max(axis=0)
    grid = np.zeros(tuple(np.array(shape) + 2 * pad), dtype=bool)  # untouched pages stay free
    tp = target_points + pad
    grid[tp[:, 0], tp[:, 1], tp[:, 2]] = True
    flat = grid.ravel()
    strides = np.array([grid.shape[1] * grid.shape[2], grid.shape[2], 1], dtype=np.int64)
    lin = (points + pad) @ strides
    off_lin = offs @ strides
    rem = np.arange(len(points))
    for step, length in zip(off_lin.tolist(), lengths.tolist(), strict=True):
        hit = flat[lin + step]
        if hit.any():
            out[rem[hit]] = length
            miss = ~hit
            rem, lin = rem[miss], lin[miss]
            if rem.size == 0:
                return out
    from scipy.spatial import cKDTree

    tree = cKDTree(target_points * spacing, leafsize=32)
    out[rem] = tree.query(points[rem] * spacing, k=1)[0]
    return out


def _sorted(d: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((w, d))
    return d[order], w[order]


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float], convention: Convention = "surfel"
) -> SurfaceDistances:
    """Surface distances between boolean masks ``a`` and ``b`` (same shape, ``spacing`` in mm per axis)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 3 or len(spacing) != 3:
        raise ValueError(
            f"masks must be 3-D of one shape with 3 spacings, got {a.shape}, {b.shape}, {spacing}"
        )
    sp = np.asarray(spacing, dtype=np.float64)
    box = _bbox(a, b)
    empty = np.zeros(0)
    if box is None:
        return SurfaceDistances(empty, empty, empty, empty, convention)
    pa, pb = _padded(a, box), _padded(b, box)
    if convention == "surfel":
        pts_a, ca = _surfels(pa)
        pts_b, cb = _surfels(pb)
        table = surfel_area_table((float(sp[0]), float(sp[1]), float(sp[2])))
        wa, wb = table[ca], table[cb]
        shape = tuple(n - 1 for n in pa.shape)
    elif convention == "voxel":
        pts_a, pts_b = _edge_voxels(pa), _edge_voxels(pb)
        shape = tuple(n - 2 for n in pa.shape)
        wa, wb = np.ones(len(pts_a)), np.ones(len(pts_b))
    else:
        raise ValueError(f"unknown convention {convention!r} (surfel or voxel)")
    dab = _nearest(pts_a, pts_b, shape, sp) if pts_a.size else empty
    dba = _nearest(pts_b, pts_a, shape, sp) if pts_b.size else empty
    dab, wa = _sorted(dab, wa)
    dba, wb = _sorted(dba, wb)
    return SurfaceDistances(dab, dba, wa, wb, convention)


# -- overlap, volume, detection, kappa -------------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Volumetric Dice; 1.0 when both are empty (two readers agreeing that nothing is there)."""
    na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    if na + nb == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / (na + nb)


def volume_ml(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


@dataclass(frozen=True)
class Detection:
    """Lesion-wise matching of connected components of ``a`` and ``b`` (one-to-one, by IoU)."""

    lesions_a: int
    lesions_b: int
    matched: int
    iou_threshold: float

    @property
    def f1(self) -> float:
        total = self.lesions_a + self.lesions_b
        return 1.0 if total == 0 else 2.0 * self.matched / total

    @property
    def precision(self) -> float:  # b read against a
        return 1.0 if self.lesions_b == 0 else self.matched / self.lesions_b

    @property
    def recall(self) -> float:
        return 1.0 if self.lesions_a == 0 else self.matched / self.lesions_a


def detection(a: np.ndarray, b: np.ndarray, iou_threshold: float = 0.1) -> Detection:
    """Components (26-connected) of both masks matched one-to-one maximising IoU (Hungarian); a pair
    counts as a detection when its IoU reaches ``iou_threshold``."""
    from scipy.optimize import linear_sum_assignment

    structure = np.ones((3, 3, 3), dtype=bool)
    la, na = ndimage.label(a, structure=structure)
    lb, nb = ndimage.label(b, structure=structure)
    if na == 0 or nb == 0:
        return Detection(na, nb, 0, iou_threshold)
    size_a = np.bincount(la.ravel(), minlength=na + 1)[1:]
    size_b = np.bincount(lb.ravel(), minlength=nb + 1)[1:]
    both = (la > 0) & (lb > 0)
    pair = np.bincount((la[both] - 1).astype(np.int64) * nb + (lb[both] - 1), minlength=na * nb)
    inter = pair.reshape(na, nb).astype(np.float64)
    iou = inter / (size_a[:, None] + size_b[None, :] - inter)
    rows, cols = linear_sum_assignment(-iou)
    matched = int(np.count_nonzero(iou[rows, cols] >= iou_threshold))
    return Detection(na, nb, matched, iou_threshold)


def cohens_kappa(x: list[object], y: list[object]) -> float:
    """Cohen's kappa of two raters over the same items."""
    if len(x) != len(y) or not x:
        raise ValueError("two equally long, non-empty lists of ratings are needed")
    cats = sorted({*map(str, x), *map(str, y)})
    idx = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for u, v in zip(x, y, strict=True):
        m[idx[str(u)], idx[str(v)]] += 1
    n = m.sum()
    po = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / n**2
    return 1.0 if pe == 1.0 else float((po - pe) / (1 - pe))


def fleiss_kappa(ratings: list[list[object]]) -> float:
    """Fleiss' kappa: ``ratings[i]`` holds the categories the raters gave item ``i`` (same count each)."""
    if not ratings or len({len(r) for r in ratings}) != 1 or len(ratings[0]) < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    cats = sorted({str(v) for r in ratings for v in r})
    idx = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(ratings), len(cats)))
    for i, r in enumerate(ratings):
        for v in r:
            table[i, idx[str(v)]] += 1
    n = table.shape[1] and len(ratings[0])
    p_j = table.sum(0) / table.sum()
    p_i = ((table**2).sum(1) - n) / (n * (n - 1))
    pe = float((p_j**2).sum())
    return 1.0 if pe == 1.0 else float((p_i.mean() - pe) / (1 - pe))


# -- all metrics of one label ----------------------------------------------------------------------


def label_agreement(
    a: np.ndarray,
    b: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    tolerance_mm: float = 2.0,
    convention: Convention = "surfel",
    iou_threshold: float = 0.1,
) -> dict[str, float | int | None]:
    """Every agreement figure of one label between two reads (masks on the same grid)."""
    sd = surface_distances(a, b, spacing, convention)
    va, vb = volume_ml(a, spacing), volume_ml(b, spacing)
    det = detection(a, b, iou_threshold)
    both_empty = sd.a_to_b.size == 0 and sd.b_to_a.size == 0

    def finite(v: float) -> float | None:
        return None if not np.isfinite(v) else float(v)

    return {
        "dice": dice(a, b),
        "hd95_mm": 0.0 if both_empty else finite(sd.hd(95.0)),
        "assd_mm": 0.0 if both_empty else finite(sd.assd()),
        "surface_dice": 1.0 if both_empty else sd.surface_dice(tolerance_mm),
        "tolerance_mm": tolerance_mm,
        "volume_a_ml": va,
        "volume_b_ml": vb,
        "volume_diff_ml": vb - va,
        "volume_diff_rel": 0.0 if va + vb == 0 else abs(vb - va) / ((va + vb) / 2),
        "lesions_a": det.lesions_a,
        "lesions_b": det.lesions_b,
        "lesions_matched": det.matched,
        "detection_f1": det.f1,
    }
